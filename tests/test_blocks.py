"""Block geometry and the wavefront order."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import one_at_a_time, raster

from bbcodec.model import blocks
from bbcodec.model.blocks import Canvas


@pytest.mark.parametrize(("rows", "cols"), [(1, 1), (1, 7), (6, 1), (3, 6), (5, 4), (64, 96)])
def test_wavefronts_visit_every_block_once_after_its_neighbours(rows, cols):
    done = np.zeros((rows, cols), dtype=bool)
    for r, c in blocks.wavefronts(rows, cols):
        for rr, cc in zip(r, c, strict=True):
            for dr, dc in ((-1, -1), (-1, 0), (-1, 1), (0, -1)):
                nr, nc = rr + dr, cc + dc
                if 0 <= nr < rows and 0 <= nc < cols:
                    assert done[nr, nc], f"({rr},{cc}) before its neighbour ({nr},{nc})"
        assert not done[r, c].any()
        done[r, c] = True
    assert done.all()


@pytest.mark.parametrize(("h", "w"), [(1, 1), (9, 7), (17, 33), (16, 16)])
def test_blocks_round_trip_and_padding_repeats_edges(h, w):
    img = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    padded = blocks.pad_to_blocks(img)
    assert padded.shape[0] % 8 == 0 and padded.shape[1] % 8 == 0
    assert (padded[h:, :w] == img[-1:, :]).all() and (padded[:h, w:] == img[:, -1:]).all()
    b = blocks.to_blocks(padded)
    assert b.dtype == np.int16 and b.min() >= -128 and b.max() <= 127
    assert (blocks.from_blocks(b, h, w) == img).all()


def test_space_to_depth_channel_order_is_colour_row_column():
    img = np.zeros((8, 8, 3), dtype=np.uint8)
    img[2, 5, 1] = 200  # colour 1, dy 2, dx 5 -> channel 64 + 16 + 5
    b = blocks.to_blocks(img)
    assert b[0, 0, 85] == 200 - 128 and (np.delete(b[0, 0], 85) == -128).all()


def test_neighbours_outside_the_image_read_mid_grey():
    canvas = blocks.new_canvas(2, 2)
    canvas[1:, 1:-1] = 5
    nb = blocks.gather_neighbours(canvas, np.array([0, 1]), np.array([0, 1]))
    assert (nb[0] == 0).all()  # top-left block has no neighbours
    assert (nb[1] == 5)[: 2 * 192].all() and (nb[1, 2 * 192 : 3 * 192] == 0).all() and (nb[1, 3 * 192 :] == 5).all()


def test_blocks_gathered_per_wavefront_match_the_whole_image_conversion():
    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, (21, 35, 3), dtype=np.uint8)
    padded = blocks.pad_to_blocks(img)
    whole = blocks.to_blocks(padded)
    grid = blocks.block_grid(padded)
    for r, c in blocks.wavefronts(*whole.shape[:2]):
        assert np.array_equal(blocks.block_rows(grid, r, c), whole[r, c].astype(np.float64))
    gray = rng.integers(0, 256, (16, 24), dtype=np.uint8)
    view = np.broadcast_to(gray[:, :, None], (16, 24, 3))  # grayscale as RGB without a copy
    assert np.shares_memory(blocks.block_grid(blocks.pad_to_blocks(view)), gray)
    assert np.array_equal(blocks.from_blocks(whole, 21, 35), img)


# The rolling canvas and the block geometry without whole-image copies.

@pytest.mark.parametrize("schedule", [blocks.wavefronts, raster, one_at_a_time])
def test_a_rolling_canvas_gives_the_neighbours_of_a_whole_one(schedule):
    rows, cols = 5, 7
    rng = np.random.default_rng(0)
    values = rng.integers(-128, 128, size=(rows, cols, 192)).astype(np.int16)
    whole, rolling = blocks.new_canvas(rows, cols), Canvas(rows, cols)
    for r, c in schedule(rows, cols):
        nb = rolling.neighbours(r, c, ones=True)
        assert np.array_equal(nb[:, :-1], blocks.gather_neighbours(whole, r, c)) and (nb[:, -1] == 1).all()
        whole[r + 1, c + 1] = values[r, c]
        rolling.put(r, c, values[r, c])
    assert rolling.data.shape == (2, cols + 2, 192)


@pytest.mark.parametrize(("h", "w"), [(1, 1), (9, 7), (17, 33), (16, 16), (8, 30)])
def test_pixels_gathered_and_put_per_block_match_the_whole_image_conversion(h, w):
    rng = np.random.default_rng(h * w)
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    whole = blocks.to_blocks(blocks.pad_to_blocks(img))
    out = np.zeros_like(img)
    for r, c in blocks.wavefronts(*whole.shape[:2]):
        assert np.array_equal(blocks.gather_pixels(img, r, c), whole[r, c].astype(np.float64))
        blocks.put_pixels(out, r, c, whole[r, c])
    assert np.array_equal(out, img)
