"""Range coding of the latent symbols with constriction (no torch).

Each symbol is an integer in [-L, L] coded under a zero-mean Gaussian quantised to unit
bins, with its scale taken from a fixed table by index. Means never reach the coder:
the codec quantises latents around the predicted mean, so only the residual is coded.
Symbols go in stream order (queue); the payload is constriction's compressed words as
uint32 little-endian.
"""

from __future__ import annotations

import constriction
import numpy as np

from .errors import Error


class EntropyError(Error, ValueError):
    """The payload does not decode to the expected symbols."""


def _model(max_symbol: int) -> constriction.stream.model.QuantizedGaussian:
    return constriction.stream.model.QuantizedGaussian(-max_symbol, max_symbol)


def encode_symbols(symbols: np.ndarray, stds: np.ndarray, max_symbol: int) -> bytes:
    """Code symbols (int, any shape) under zero-mean Gaussians with the given stds."""
    enc = constriction.stream.queue.RangeEncoder()
    sym = np.ascontiguousarray(symbols, dtype=np.int32).ravel()
    std = np.ascontiguousarray(stds, dtype=np.float64).ravel()
    if sym.size:
        enc.encode(sym, _model(max_symbol), np.zeros_like(std), std)
    return enc.get_compressed().astype("<u4").tobytes()


class SymbolDecoder:
    """Decodes symbols chunk by chunk, in the order they were encoded."""

    def __init__(self, payload: bytes, max_symbol: int) -> None:
        if len(payload) % 4:
            raise EntropyError("payload length is not a multiple of 4")
        words = np.frombuffer(payload, dtype="<u4").astype(np.uint32)
        self._dec = constriction.stream.queue.RangeDecoder(words)
        self._model = _model(max_symbol)

    def decode(self, stds: np.ndarray) -> np.ndarray:
        """Next stds.size symbols (int32, shape of stds)."""
        std = np.ascontiguousarray(stds, dtype=np.float64).ravel()
        if not std.size:
            return np.zeros(stds.shape, dtype=np.int32)
        try:
            out = self._dec.decode(self._model, np.zeros_like(std), std)
        except BaseException as e:  # constriction panics (BaseException) on bad input
            if isinstance(e, KeyboardInterrupt | SystemExit):
                raise
            raise EntropyError(f"range decoder failed: {e}") from None
        return np.asarray(out, dtype=np.int32).reshape(stds.shape)

    def finish(self) -> None:
        """Check the payload held no more than the symbols decoded."""
        if not self._dec.maybe_exhausted():
            raise EntropyError("payload has data left after the last symbol")
