"""Hostile inputs for every command, run through the real CLI entry point (figures, not a test).

    python benchmarks/fuzz_inputs.py [--cases 10000] [--seed 0] [--timeout 120] [--memory-gib 4]

Cases, in turn:

* bbc-mutated: real .bbc files corrupted as benchmarks/fuzz_decode.py does (truncation,
  bit flips, garbage, edits and random payloads behind a re-sealed CRC), decoded;
* bbc-crafted: headers with a valid CRC that name the installed weights and declare up
  to 8192x8192 pixels, with an empty, zero, 0xff, random, borrowed or repeated payload,
  or a valid file with words appended; decoded, or shown with `info`;
* img-truncated / img-mutated: small PNG, JPEG, TIFF, WebP, GIF, BMP and PGM images cut
  short or with bytes changed (most in the headers), encoded;
* img-exif: JPEG, TIFF, PNG and WebP images carrying EXIF and TIFF tags whose fields get
  hostile values (wrong types, offsets past the end, huge counts), encoded;
* img-bomb: headers declaring more pixels than the limit (PNG, GIF, BMP, TIFF, JPEG,
  WebP), text and ICC chunks that inflate to hundreds of MB, and tiny files of large
  images within the limit, encoded;
* img-odd: 16-bit, float, 32-bit, CMYK, palette, alpha and 1-bit images, encoded.

Each case runs `bbcodec.cli.main()` in a worker process (restarted after a hang), its
address space capped (--memory-gib) and its file descriptors 1 and 2 captured (so that
what C libraries print counts too). A case must end in exit 0 with its output, or exit 1
with exactly one line on stderr ("bbcodec: error: ...") and no output or temporary file
left; anything else is counted and printed, as is a case that runs past --timeout (a
hang). Prints the outcomes per kind, the slowest case and the workers' peak memory.
"""

from __future__ import annotations

import argparse
import io
import multiprocessing as mp
import os
import resource
import struct
import sys
import tempfile
import time
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
from fuzz_decode import mutate
from PIL import Image, TiffImagePlugin

BBC_KINDS = ("truncate", "bitflip", "garbage", "resealed-edit", "resealed-payload")


# ---- the worker: one case at a time through the CLI's entry point -------------------------

def _worker(conn, memory_gib: float) -> None:  # noqa: ANN001 - a multiprocessing Connection
    resource.setrlimit(resource.RLIMIT_AS, (int(memory_gib * 2**30),) * 2)
    from bbcodec.cli import main

    work = Path(tempfile.mkdtemp(prefix="fuzz-"))
    out_fd, err_fd = os.open(work / "stdout", os.O_RDWR | os.O_CREAT), os.open(work / "stderr", os.O_RDWR | os.O_CREAT)
    while True:
        try:
            case = conn.recv()
        except EOFError:  # the parent is gone
            return
        if case is None:
            return
        args, name, data = case
        for p in work.iterdir():
            if p.name not in ("stdout", "stderr"):
                p.unlink()
        src = work / name
        src.write_bytes(data)
        out = work / ("out.png" if args[0] == "decode" else "out.bbc")
        argv = [a.replace("{in}", str(src)).replace("{out}", str(out)) for a in args]
        saved = os.dup(1), os.dup(2)
        for fd in (out_fd, err_fd):
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
        os.dup2(out_fd, 1)
        os.dup2(err_fd, 2)
        sys.argv = ["bbcodec", *argv]
        t0 = time.perf_counter()
        code = 0
        try:
            main()
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        except BaseException as e:  # noqa: BLE001 - main() must not let anything out
            code = f"escaped {type(e).__name__}"
        secs = time.perf_counter() - t0
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])
        err = (work / "stderr").read_text(errors="replace")
        temps = [p.name for p in work.iterdir() if p.name.endswith(".tmp")]
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        conn.send((code, err, out.exists(), temps, secs, rss))


class Runner:
    """A worker process fed one case at a time; killed and restarted when a case hangs."""

    def __init__(self, timeout: float, memory_gib: float) -> None:
        self.timeout, self.memory_gib = timeout, memory_gib
        self.peak_kib = 0
        self._start()

    def _start(self) -> None:
        self.conn, child = mp.Pipe()
        self.proc = mp.get_context("fork").Process(target=_worker, args=(child, self.memory_gib), daemon=True)
        self.proc.start()

    def run(self, case: tuple[list[str], str, bytes]) -> tuple | None:
        self.conn.send(case)
        if not self.conn.poll(self.timeout):
            self.proc.kill()
            self.proc.join()
            self._start()
            return None
        try:
            res = self.conn.recv()
        except EOFError:  # the worker died (killed for memory, or crashed)
            self.proc.join()
            code = self.proc.exitcode
            self._start()
            return (f"worker died ({code})", "", False, [], 0.0, 0)
        self.peak_kib = max(self.peak_kib, res[5])
        return res

    def close(self) -> None:
        self.conn.send(None)
        self.proc.join(10)


# ---- .bbc cases ---------------------------------------------------------------------------

def _seal(body: bytes) -> bytes:
    return body + struct.pack("<I", zlib.crc32(body))


def real_bbc_files() -> list[bytes]:
    """A few real files: RGB and gray, several sizes and qualities."""
    import bbcodec

    rng = np.random.default_rng(7)
    out = []
    for (h, w), q, gray in (((29, 41), 4, False), ((8, 8), 1, False), ((40, 17), 8, True), ((64, 96), 2.5, False)):
        y, x = np.mgrid[0:h, 0:w]
        img = np.stack([x * 6 % 256, y * 8 % 256, (x * y + rng.integers(0, 9, (h, w))) % 256], axis=2).astype(np.uint8)
        out.append(bbcodec.encode(img[..., 1] if gray else img, q))
    return out


def crafted_bbc(rng: np.random.Generator, real: list[bytes]) -> bytes:
    from bbcodec.coding import format as fmt
    from bbcodec.model import weights

    w = weights.default()
    sizes = [(8192, 8192), (65535, 1024), (1024, 65535), (1, 65535), (8192, 8191), (4096, 4096), (1, 1), (8, 8)]
    width, height = sizes[rng.integers(len(sizes))] if rng.random() < 0.7 else \
        (int(rng.integers(1, 8193)), int(rng.integers(1, 8193)))
    donor = real[rng.integers(len(real))]
    donor_payload = fmt.unpack(donor)[1]
    kind = rng.integers(8)
    if kind == 0:
        payload = b""
    elif kind == 1:
        payload = b"\0" * (4 * int(rng.integers(1, 16385)))
    elif kind == 2:
        payload = b"\xff" * (4 * int(rng.integers(1, 4097)))
    elif kind == 3:
        payload = rng.integers(0, 256, 4 * int(rng.integers(1, 16385)), dtype=np.uint8).tobytes()
    elif kind == 4:
        payload = donor_payload
    elif kind == 5:
        payload = donor_payload * int(rng.integers(2, 50))
    elif kind == 6:  # a valid file with words appended
        n = struct.unpack_from("<I", donor, 32)[0]
        extra = rng.integers(0, 256, 4 * int(rng.integers(1, 4)), dtype=np.uint8).tobytes()
        body = bytearray(donor[:-4]) + extra
        struct.pack_into("<I", body, 32, n + len(extra))
        return _seal(bytes(body))
    else:  # the donor's payload cut short at a word
        payload = donor_payload[: 4 * int(rng.integers(0, len(donor_payload) // 4 + 1))]
    channels = 1 if rng.random() < 0.2 else 3
    quality = int(rng.integers(256, 2049))
    head = fmt.HEADER.pack(fmt.MAGIC, fmt.VERSION, channels, quality, width, height, w.prefix, b"\0" * 8,
                           len(payload), w.family_id, 0)
    return _seal(head + payload)


# ---- image cases --------------------------------------------------------------------------

def small_image(rng: np.random.Generator) -> np.ndarray:
    h, w = int(rng.integers(1, 40)), int(rng.integers(1, 40))
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([(x * 7) % 256, (y * 5) % 256, (x + y) * 3 % 256], axis=2).astype(np.uint8)


def encoded(img: Image.Image, fmt_name: str, **kw) -> bytes:  # noqa: ANN003
    buf = io.BytesIO()
    img.save(buf, format=fmt_name, **kw)
    return buf.getvalue()


FORMATS = ("PNG", "JPEG", "TIFF", "WEBP", "GIF", "BMP", "PPM")


def some_image_file(rng: np.random.Generator) -> bytes:
    im = Image.fromarray(small_image(rng))
    f = FORMATS[rng.integers(len(FORMATS))]
    if f == "PPM" and rng.random() < 0.5:
        im = im.convert("L")
    return encoded(im, f)


def exif_block(rng: np.random.Generator) -> bytes:
    ex = Image.Exif()
    ex[0x0112] = int(rng.integers(1, 9))
    ex[0x0128] = 2
    ex[0x011A] = 72.0
    ex[0x010E] = "a description"
    ex[0x8769] = {0x9003: "2020:01:01 00:00:00", 0x920A: 4.5}
    return ex.tobytes()


def hostile_exif(rng: np.random.Generator) -> bytes:
    """An image with EXIF (and, for TIFF, tags) whose IFD fields got hostile values."""
    im = Image.fromarray(small_image(rng))
    f = ("JPEG", "TIFF", "PNG", "WEBP")[rng.integers(4)]
    kw: dict = {"exif": exif_block(rng)}
    if f == "TIFF":
        info = TiffImagePlugin.ImageFileDirectory_v2()
        info[270], info[305], info[282], info[283], info[296] = "hello", "soft", 72.0, 72.0, 2
        kw["tiffinfo"] = info
        if rng.random() < 0.5:
            kw["compression"] = "tiff_lzw"
    data = bytearray(encoded(im, f, **kw))
    tiff_at = data.find(b"II*\0") if f != "TIFF" else 0
    if tiff_at < 0:
        tiff_at = data.find(b"MM\0*")
    start = max(tiff_at, 0)
    end = min(len(data), start + 400)
    for _ in range(int(rng.integers(1, 5))):
        j = int(rng.integers(start, end))
        k = rng.integers(3)
        if k == 0:
            data[j] = int(rng.integers(256))
        elif k == 1 and j + 2 <= len(data):  # a field type, count or tag of a useful value
            data[j:j + 2] = struct.pack("<H", int(rng.choice([0, 1, 2, 3, 4, 5, 7, 9, 10, 11, 12, 13, 16, 0x8769, 65535])))
        elif j + 4 <= len(data):  # an offset or count
            data[j:j + 4] = struct.pack("<I", int(rng.choice([0, 1, 8, 100, 2**31, 2**32 - 1, len(data), len(data) + 9])))
    return bytes(data)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png(width: int, height: int, idat: bytes, extra: bytes = b"", depth: int = 8, colour: int = 2) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + extra + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


_ZEROS_ZLIB: dict[int, bytes] = {}


def _zeros_zlib(n: int) -> bytes:
    if n not in _ZEROS_ZLIB:
        z = zlib.compressobj(9)
        chunk = b"\0" * (1 << 20)
        parts = [z.compress(chunk) for _ in range(n >> 20)] + [z.compress(b"\0" * (n & ((1 << 20) - 1))), z.flush()]
        _ZEROS_ZLIB[n] = b"".join(parts)
    return _ZEROS_ZLIB[n]


def bomb(rng: np.random.Generator) -> bytes:
    k = int(rng.integers(9))
    side = int(rng.choice([8193, 65535, 65536, 100000, 2**31 - 1, 2**32 - 1]))
    if k == 0:  # PNG declaring more pixels than the limit, with a small zlib stream
        return _png(side, int(rng.choice([side, 8193, 1])), _zeros_zlib(1 << 16))
    if k == 1:  # a PNG text chunk (zTXt) and an ICC profile (iCCP) inflating to 300 MB
        text = _png_chunk(b"zTXt", b"Comment\0\0" + _zeros_zlib(300 << 20))
        icc = _png_chunk(b"iCCP", b"icc\0\0" + _zeros_zlib(300 << 20))
        return _png(16, 16, _zeros_zlib(16 * 49), extra=text if rng.random() < 0.5 else icc)
    if k == 2:  # IDAT inflating far beyond the declared size
        return _png(64, 64, _zeros_zlib(200 << 20))
    if k == 3:  # a within-the-limit image in a tiny file (real work, bounded)
        s = int(rng.choice([512, 1024]))
        return _png(s, s, _zeros_zlib(s * (3 * s + 1)))
    base = Image.fromarray(small_image(rng))
    if k == 4:  # GIF logical screen and frame of 65535 x 65535
        data = bytearray(encoded(base, "GIF"))
        struct.pack_into("<HH", data, 6, 65535, 65535)
        at = data.find(b"\x2c")
        if at > 0:
            struct.pack_into("<HH", data, at + 5, 65535, 65535)
        return bytes(data)
    if k == 5:  # BMP header
        data = bytearray(encoded(base, "BMP"))
        struct.pack_into("<ii", data, 18, min(side, 2**31 - 1), -min(side, 2**31 - 1))
        return bytes(data)
    if k == 6:  # TIFF ImageWidth / ImageLength
        data = bytearray(encoded(base, "TIFF"))
        (ifd,) = struct.unpack_from("<I", data, 4)
        (n,) = struct.unpack_from("<H", data, ifd)
        for i in range(n):
            tag, typ = struct.unpack_from("<HH", data, ifd + 2 + 12 * i)
            if tag in (256, 257):
                struct.pack_into("<HHII", data, ifd + 2 + 12 * i, tag, 4, 1, side)
        return bytes(data)
    if k == 7:  # JPEG SOF0 dimensions
        data = bytearray(encoded(base, "JPEG"))
        at = data.find(b"\xff\xc0")
        struct.pack_into(">HH", data, at + 5, 65500, 65500)
        return bytes(data)
    data = bytearray(encoded(base, "WEBP", lossless=bool(rng.random() < 0.5)))  # WebP canvas
    at = data.find(b"VP8 ")
    if at > 0:
        struct.pack_into("<HH", data, at + 14, 16383, 16383)
    else:
        at = data.find(b"VP8L")
        if at > 0:
            data[at + 9:at + 13] = struct.pack("<I", (16383) | (16383 << 14))
    return bytes(data)


def odd_image(rng: np.random.Generator) -> bytes:
    arr = small_image(rng)
    g = arr[..., 0]
    k = int(rng.integers(10))
    if k == 0:
        return encoded(Image.fromarray(g.astype(np.uint16) * int(rng.integers(1, 258))), "PNG")
    if k == 1:
        return encoded(Image.fromarray(g.astype(np.float32) / float(rng.choice([1, 255, 300]))), "TIFF")
    if k == 2:
        return encoded(Image.fromarray(g.astype(np.int32) * int(rng.choice([1, 1000, -1]))), "TIFF")
    if k == 3:
        return encoded(Image.fromarray(arr).convert("CMYK"), "JPEG" if rng.random() < 0.5 else "TIFF")
    if k == 4:
        return encoded(Image.fromarray(arr).quantize(8), "PNG", transparency=int(rng.integers(0, 8)))
    if k == 5:
        rgba = np.dstack([arr, np.full(arr.shape[:2], int(rng.choice([0, 128, 255])), np.uint8)])
        return encoded(Image.fromarray(rgba), "PNG")
    if k == 6:
        return encoded(Image.fromarray(g).convert("1"), "TIFF" if rng.random() < 0.5 else "PNG")
    if k == 7:
        return encoded(Image.fromarray(g.astype(np.uint16) * 257), "TIFF")
    if k == 8:
        maxval = int(rng.choice([1, 2, 1023, 4095, 65535]))
        raw = (g.astype(np.uint32) * maxval // 255).astype(">u2" if maxval > 255 else np.uint8)
        return f"P5 {g.shape[1]} {g.shape[0]} {maxval}\n".encode() + raw.tobytes()
    frames = [Image.fromarray(arr), Image.fromarray(arr[::-1].copy())]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    return buf.getvalue()


def mutated_image(rng: np.random.Generator) -> bytes:
    data = bytearray(some_image_file(rng))
    head = rng.random() < 0.7
    for _ in range(int(rng.integers(1, 9))):
        j = int(rng.integers(min(len(data), 300) if head else len(data)))
        data[j] = int(rng.integers(256))
    return bytes(data)


KINDS = ("bbc-mutated", "bbc-crafted", "img-truncated", "img-mutated", "img-exif", "img-bomb", "img-odd")


def make_case(i: int, rng: np.random.Generator, real: list[bytes]) -> tuple[str, tuple[list[str], str, bytes]]:
    kind = KINDS[i % len(KINDS)]
    decode = ["decode", "{in}", "{out}", "--quiet"]
    encode = ["encode", "{in}", "{out}", "--quiet"]
    if kind == "bbc-mutated":
        return kind, (decode, "in.bbc", mutate(real[rng.integers(len(real))], BBC_KINDS[(i // len(KINDS)) % 5], rng))
    if kind == "bbc-crafted":
        args = ["info", "{in}"] if rng.random() < 0.1 else decode
        return kind, (args, "in.bbc", crafted_bbc(rng, real))
    if kind == "img-truncated":
        data = some_image_file(rng)
        return kind, (encode, "in.img", data[: int(rng.integers(0, len(data)))])
    if kind == "img-mutated":
        return kind, (encode, "in.img", mutated_image(rng))
    if kind == "img-exif":
        return kind, (encode, "in.img", hostile_exif(rng))
    if kind == "img-bomb":
        return kind, (encode, "in.img", bomb(rng))
    return kind, (encode, "in.img", odd_image(rng))


def judge(res: tuple | None) -> str:
    if res is None:
        return "BAD: hang"
    code, err, out_exists, temps, _, _ = res
    lines = err.strip().splitlines()
    if temps:
        return f"BAD: temporary file left {temps}"
    if code == 0 and out_exists:
        return "ok (exit 0)"
    if code == 0 and not out_exists and not lines:
        return "ok (exit 0, info)"
    if code == 1 and len(lines) == 1 and lines[0].startswith("bbcodec: error:") and not out_exists:
        return "clean failure (exit 1)"
    return f"BAD: exit {code}, {len(lines)} stderr lines: {' | '.join(lines)[:160]}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", type=int, default=10000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=120.0, help="seconds after which a case counts as a hang")
    p.add_argument("--memory-gib", type=float, default=4.0, help="address-space cap of the worker")
    p.add_argument("--keep", type=Path, default=None, help="folder to save the inputs of bad cases in")
    args = p.parse_args()
    rng = np.random.default_rng(args.seed)
    real = real_bbc_files()
    runner = Runner(args.timeout, args.memory_gib)
    outcomes: Counter[tuple[str, str]] = Counter()
    codes: Counter[str] = Counter()
    slowest: tuple[float, str, str, int, bytes] = (0.0, "", "", -1, b"")
    t_start = time.perf_counter()
    try:
        for i in range(args.cases):
            kind, case = make_case(i, rng, real)
            t0 = time.perf_counter()
            res = runner.run(case)
            wall = time.perf_counter() - t0
            verdict = judge(res)
            outcomes[(kind, verdict)] += 1
            codes["hang" if res is None else str(res[0])] += 1
            if wall > slowest[0]:
                slowest = (wall, kind, case[0][0], i, case[2])
            if verdict.startswith("BAD"):
                print(f"case {i} {kind}: {verdict}", flush=True)
                if args.keep:
                    args.keep.mkdir(parents=True, exist_ok=True)
                    (args.keep / f"case{i}-{kind}").write_bytes(case[2])
            if (i + 1) % 500 == 0:
                print(f"... {i + 1} cases, {time.perf_counter() - t_start:.0f} s", file=sys.stderr, flush=True)
    finally:
        runner.close()
    if args.keep and slowest[3] >= 0:
        args.keep.mkdir(parents=True, exist_ok=True)
        (args.keep / f"slowest-case{slowest[3]}-{slowest[1]}").write_bytes(slowest[4])
    for (kind, what), n in sorted(outcomes.items()):
        print(f"{kind:14s} {what:60s} {n:6d}")
    bad = sum(n for (_, w), n in outcomes.items() if w.startswith("BAD"))
    print("exit codes: " + ", ".join(f"{c}: {n}" for c, n in sorted(codes.items())))
    print(f"{args.cases} cases in {time.perf_counter() - t_start:.0f} s: {args.cases - bad} handled cleanly, {bad} not "
          f"(exit 70: {codes.get('70', 0)}, hangs over {args.timeout:g} s: {codes.get('hang', 0)}); "
          f"slowest case {slowest[0]:.2f} s (case {slowest[3]}, {slowest[1]}, {slowest[2]}); "
          f"worker peak RSS {runner.peak_kib / 1024:.0f} MiB (address space capped at {args.memory_gib:g} GiB)")


if __name__ == "__main__":
    main()
