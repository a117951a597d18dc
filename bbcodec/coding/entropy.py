"""Range coding of the latent symbols with constriction (no torch).

Each symbol is an integer in [-L, L] coded under a zero-mean Gaussian quantised to unit
bins, with its scale taken from a fixed table by index. Means never reach the coder:
the codec quantises latents around the predicted mean, so only the residual is coded.
Symbols go in stream order (queue); the payload is constriction's compressed words as
uint32 little-endian.

A payload must be exactly what the encoder makes of the symbols it decodes to
(docs/format.md, section 2, check 9). The decoder re-encodes what it decodes as it goes
and stops as soon as that needs more words than the payload holds: past its last word
the range decoder reads zeros without end (decoding the extreme symbol, each costing 24
bits), so without this a short or zero-filled payload behind a huge declared size would
be decoded to its end before the image digest could refuse it.
"""

from __future__ import annotations

import constriction
import numpy as np

from ..errors import EntropyError


def _model(max_symbol: int) -> constriction.stream.model.QuantizedGaussian:
    return constriction.stream.model.QuantizedGaussian(-max_symbol, max_symbol)


class _Zeros:
    """Zero means for the coder, n at a time, from one buffer (a call per coder call
    costs as much as coding a few dozen symbols)."""

    def __init__(self) -> None:
        self._buf = np.zeros(0)

    def __call__(self, n: int) -> np.ndarray:
        if n > len(self._buf):
            self._buf = np.zeros(max(n, 2 * len(self._buf)))
        return self._buf[:n]


class SymbolEncoder:
    """Codes symbols chunk by chunk (the same words as one call with all of them)."""

    def __init__(self, max_symbol: int) -> None:
        self._enc = constriction.stream.queue.RangeEncoder()
        self._model = _model(max_symbol)
        self._zeros = _Zeros()

    def encode(self, symbols: np.ndarray, stds: np.ndarray) -> None:
        """Append symbols (int, any shape) under zero-mean Gaussians with the given stds."""
        sym = np.ascontiguousarray(symbols, dtype=np.int32).ravel()
        std = np.ascontiguousarray(stds, dtype=np.float64).ravel()
        if sym.size:
            self._enc.encode(sym, self._model, self._zeros(sym.size), std)

    def num_words(self) -> int:
        """Length in words of the payload so far (sealed as payload() would seal it)."""
        return int(self._enc.num_words())

    def payload(self) -> bytes:
        return self._enc.get_compressed().astype("<u4").tobytes()


class SymbolDecoder:
    """Decodes symbols chunk by chunk, in the order they were encoded, checking as it
    goes that the payload is the encoder's output for them (no word short, none left)."""

    def __init__(self, payload: bytes, max_symbol: int) -> None:
        if len(payload) % 4:
            raise EntropyError("payload length is not a multiple of 4")
        words = np.frombuffer(payload, dtype="<u4").astype(np.uint32)
        self._payload = payload
        self._words = len(words)
        self._dec = constriction.stream.queue.RangeDecoder(words)
        self._model = _model(max_symbol)
        self._zeros = _Zeros()
        self._check = SymbolEncoder(max_symbol)
        self._symbols = 0

    def decode(self, stds: np.ndarray) -> np.ndarray:
        """Next stds.size symbols (int32, shape of stds), accounted and checked (account,
        check_words)."""
        std = np.ascontiguousarray(stds, dtype=np.float64).ravel()
        if not std.size:
            return np.zeros(stds.shape, dtype=np.int32)
        out = self.decode_flat(std)
        self.account(out, std)
        self.check_words()
        return np.asarray(out, dtype=np.int32).reshape(stds.shape)

    def decode_flat(self, std: np.ndarray) -> np.ndarray:
        """The next std.size symbols of a non-empty contiguous float64 vector of stds, not
        accounted: the caller accounts them (streams.Reader, once per wavefront)."""
        try:
            return self._dec.decode(self._model, self._zeros(std.size), std)
        except BaseException as e:  # constriction panics (BaseException) on bad input
            if isinstance(e, KeyboardInterrupt | SystemExit):
                raise
            raise EntropyError(f"range decoder failed: {e}") from None

    def account(self, symbols: np.ndarray, stds: np.ndarray) -> None:
        """Re-encode decoded symbols, for check_words and finish."""
        self._check.encode(symbols, stds)
        self._symbols += symbols.size

    def check_words(self) -> None:
        """Refuse the payload if the symbols decoded so far need more words than it holds."""
        if self._check.num_words() > self._words:
            raise EntropyError(f"payload of {self._words} words ends before symbol {self._symbols} "
                               "(its symbols need more: truncated or not a coded payload)")

    def finish(self) -> None:
        """Check the payload held exactly the words the decoded symbols take."""
        used = self._check.num_words()
        if used < self._words:
            left = self._words - used
            raise EntropyError(f"payload has {left} word{'s' if left > 1 else ''} left after the last symbol")
        if not self._dec.maybe_exhausted() or self._check.payload() != self._payload:
            raise EntropyError("payload is not the range coder's encoding of the symbols it decodes to")
