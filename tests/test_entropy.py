"""Range coding of symbols under scale-table Gaussians."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import coded

from bbcodec.coding import entropy


def test_symbols_round_trip_in_chunks():
    rng = np.random.default_rng(1)
    stds = rng.uniform(0.11, 50, size=(7, 13))
    sym = np.clip(np.rint(rng.normal(0, stds)), -2047, 2047).astype(np.int32)
    sym[0, 0], sym[0, 1] = 2047, -2047  # extremes of the alphabet stay codable
    data = coded(sym, stds, 2047)
    assert len(data) % 4 == 0
    dec = entropy.SymbolDecoder(data, 2047)
    out = np.concatenate([dec.decode(stds[i]) for i in range(7)])
    dec.finish()
    assert (out.reshape(7, 13) == sym).all()


def test_small_scales_cost_few_bits():
    stds = np.full(1000, 0.11)
    assert len(coded(np.zeros(1000), stds, 2047)) <= 16


def test_leftover_payload_is_detected():
    stds = np.full(200, 5.0)
    sym = np.arange(200) % 7 - 3
    data = coded(sym, stds, 2047)
    dec = entropy.SymbolDecoder(data, 2047)
    dec.decode(stds[:10])
    with pytest.raises(entropy.EntropyError):
        dec.finish()


def test_payload_not_made_of_words_is_refused():
    with pytest.raises(entropy.EntropyError):
        entropy.SymbolDecoder(b"\x00\x01\x02", 2047)


def test_coding_in_chunks_gives_the_same_words():
    rng = np.random.default_rng(2)
    stds = rng.uniform(0.11, 30, size=(9, 11))
    sym = np.clip(np.rint(rng.normal(0, stds)), -2047, 2047).astype(np.int32)
    enc = entropy.SymbolEncoder(2047)
    for i in range(9):
        enc.encode(sym[i], stds[i])
    assert enc.payload() == coded(sym, stds, 2047)


def test_the_payload_must_be_exactly_the_encoders_output():
    stds = np.full(300, 4.0)
    sym = (np.arange(300) % 9 - 4).astype(np.int32)
    data = coded(sym, stds, 2047)
    for bad in (data + b"\0\0\0\0", data + b"\x01\0\0\0"):  # one word too many
        dec = entropy.SymbolDecoder(bad, 2047)
        assert (dec.decode(stds) == sym).all()
        with pytest.raises(entropy.EntropyError, match="1 word left"):
            dec.finish()
    dec = entropy.SymbolDecoder(data[:-4], 2047)  # one word short: caught when it runs out
    with pytest.raises(entropy.EntropyError, match="ends before symbol 300"):
        dec.decode(stds)


def test_a_zero_payload_is_refused_as_soon_as_its_words_run_out():
    """Zeros decode to the extreme symbol at 24 bits each: 64 words last 86 symbols."""
    stds = np.full(128, 1.0)
    dec = entropy.SymbolDecoder(b"\0" * 256, 2047)
    with pytest.raises(entropy.EntropyError, match="ends before symbol"):
        for _ in range(10):
            dec.decode(stds)
