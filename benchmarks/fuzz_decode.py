"""Longer fuzz run of `bbcodec decode` than the test suite's (figures, not a test).

    python benchmarks/fuzz_decode.py [--cases 5000] [--seed 0] [--streams 3]

Corrupts a real .bbc file (of 29x41 pixels: 4 block rows, coded in --streams payload
streams) in five ways (truncation, bit flips, byte edits behind a
re-sealed CRC, random garbage, garbage payload behind a valid header) and runs the CLI's
decode on each, in process. Every case must end as a clean failure (exit 1, one line,
no output file) or an exact decode; anything else is counted and printed.
"""

from __future__ import annotations

import argparse
import struct
import tempfile
import time
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
from click.testing import CliRunner

from bbcodec.cli import cli
from bbcodec.coding import loop as codec
from bbcodec.model import weights


def mutate(data: bytes, kind: str, rng: np.random.Generator) -> bytes:
    n = len(data)
    if kind == "truncate":
        return data[: rng.integers(n)]
    if kind == "bitflip":
        bad = bytearray(data)
        for _ in range(rng.integers(1, 9)):
            i = rng.integers(n * 8)
            bad[i // 8] ^= 1 << (i % 8)
        return bytes(bad)
    if kind == "garbage":
        return rng.integers(0, 256, rng.integers(0, 2 * n), dtype=np.uint8).tobytes()
    body = bytearray(data[:-4])
    if kind == "resealed-edit":
        for _ in range(rng.integers(1, 5)):
            body[rng.integers(len(body))] = rng.integers(256)
    else:  # "resealed-payload": valid header, random payload
        body[40:] = rng.integers(0, 256, len(body) - 40, dtype=np.uint8).tobytes()
    return bytes(body) + struct.pack("<I", zlib.crc32(bytes(body)))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", type=int, default=5000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--streams", type=int, default=3, help="payload streams of the file corrupted (1..4)")
    args = p.parse_args()
    rng = np.random.default_rng(args.seed)
    runner = CliRunner()
    kinds = ("truncate", "bitflip", "garbage", "resealed-edit", "resealed-payload")
    outcomes: Counter[tuple[str, str]] = Counter()
    worst = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        y, x = np.mgrid[0:29, 0:41]
        img = np.stack([x * 6, y * 8, (x * y) % 256], axis=2).astype(np.uint8)
        data = codec.encode(img, 4, weights.default().model, weights.default().prefix, n_streams=args.streams)[0]
        bad, out = folder / "bad.bbc", folder / "out.png"
        for i in range(args.cases):
            kind = kinds[i % len(kinds)]
            bad.write_bytes(mutate(data, kind, rng))
            out.unlink(missing_ok=True)
            t0 = time.perf_counter()
            res = runner.invoke(cli, ["decode", str(bad), str(out), "--quiet"])
            worst = max(worst, time.perf_counter() - t0)
            lines = res.output.strip().splitlines()
            if res.exit_code == 0 and out.exists():
                outcomes[(kind, "decoded exactly")] += 1
            elif res.exit_code == 1 and len(lines) == 1 and lines[0].startswith("bbcodec: error:") and not out.exists():
                outcomes[(kind, "clean failure")] += 1
            else:
                outcomes[(kind, f"BAD: exit {res.exit_code} {res.exception!r}")] += 1
    for (kind, what), n in sorted(outcomes.items()):
        print(f"{kind:18s} {what:40s} {n:6d}")
    bad_total = sum(n for (_, w), n in outcomes.items() if w.startswith("BAD"))
    print(f"{args.cases} corrupt files, {args.cases - bad_total} handled cleanly, {bad_total} not; slowest {worst:.2f} s")


if __name__ == "__main__":
    main()
