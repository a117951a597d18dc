"""Files and folders: what the CLI does to one path, safely, and to a whole folder.

Every output is written to a temporary file beside its target and renamed into place
only on success, so a failure never leaves a partial file or clobbers an existing one.
Per-file functions return a summary dict or raise FileError with a one-line message.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .parallel import map_jobs


class FileError(Exception):
    """One file could not be processed; the message is one line for the user."""


def codec_errors() -> tuple[type[Exception], ...]:
    """The codec's own exceptions, each meaning 'bad input', never a bug."""
    from .codec import DecodeError
    from .entropy import EntropyError
    from .format import FormatError
    from .images import ImageError
    from .weights import WeightsError

    return (DecodeError, EntropyError, FormatError, ImageError, WeightsError)


def read_input(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    p = Path(path)
    if p.is_dir():
        raise FileError(f"{path} is a directory, not a file")
    try:
        return p.read_bytes()
    except FileNotFoundError:
        raise FileError(f"{path}: no such file") from None
    except OSError as e:
        raise FileError(f"cannot read {path}: {e.strerror or e}") from None


def write_output(path: str, data: bytes, src: str) -> None:
    """Write atomically: temp file in the target folder, then rename over the target."""
    if path == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    out = Path(path)
    if src != "-" and out.exists() and os.path.samefile(src, out):
        raise FileError(f"refusing to write the output over the input {src}")
    if out.is_dir():
        raise FileError(f"{path} is a directory")
    folder = out.parent if str(out.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{out.name}.", suffix=".tmp")
    except OSError as e:
        raise FileError(f"cannot write to {folder}: {e.strerror or e}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, out)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise FileError(f"cannot write {path}: {e.strerror or e}") from None
        raise


@dataclass(frozen=True)
class EncodeOptions:
    quality: float = 4.0
    target_bpp: float | None = None
    target_psnr: float | None = None
    schedule: str = "wavefront"
    measure_psnr: bool = False


def encode_file(src: str, dst: str, opts: EncodeOptions) -> dict:
    """Encode one image file (or '-') to dst (or '-'); returns a summary."""
    from . import codec, images, ratecontrol, rd, weights

    data = read_input(src)
    try:
        arr = images.to_array(images.open_image(data, src), src)
        w = weights.default()
        t0 = time.perf_counter()
        if opts.target_bpp is not None or opts.target_psnr is not None:
            r = ratecontrol.encode_to_target(arr, w, opts.target_bpp, opts.target_psnr)
            out, rec, quality = r.data, r.reconstruction, r.quality
            extra = {"target_met": r.met, "encodes": r.probes}
        else:
            out, rec = codec.encode(arr, opts.quality, w, opts.schedule)
            quality, extra = opts.quality, {}
        secs = time.perf_counter() - t0
    except codec_errors() as e:
        raise FileError(str(e)) from None
    write_output(dst, out, src)
    h, wd = arr.shape[:2]
    summary = {
        "input": src, "output": dst, "width": wd, "height": h, "channels": 1 if arr.ndim == 2 else 3,
        "quality": quality, "input_bytes": len(data), "bytes": len(out), "bpp": 8 * len(out) / (h * wd),
        "seconds": secs, "weights": w.path.name, **extra,
    }
    if opts.measure_psnr or extra:
        summary["psnr"] = rd.psnr(arr, rec)
    return summary


def decode_file(src: str, dst: str) -> dict:
    """Decode one .bbc file (or '-') to a PNG at dst (or '-'); returns a summary."""
    from . import codec, format, images, weights

    data = read_input(src)
    try:
        header, payload = format.unpack(data)
        w = weights.for_header(header)
        t0 = time.perf_counter()
        img = codec.decode(header, payload, w)
        secs = time.perf_counter() - t0
    except codec_errors() as e:
        raise FileError(str(e)) from None
    png = images.png_bytes(img)
    write_output(dst, png, src)
    return {"input": src, "output": dst, "width": header.width, "height": header.height,
            "channels": header.channels, "quality": header.quality, "input_bytes": len(data),
            "bytes": len(png), "bpp": 8 * len(data) / (header.width * header.height), "seconds": secs}


def folder_jobs(src_dir: Path, dst_dir: Path, decode: bool) -> list[tuple[str, str]]:
    """(input, output) pairs for a folder: images -> NAME.bbc, or .bbc -> NAME.png.

    Names are kept; where two inputs share a stem (a.png, a.jpg) the full name is used
    (a.png.bbc). Hidden files are left alone; non-images are passed on so that they are
    reported as skipped.
    """
    suffix = ".png" if decode else ".bbc"
    files = [p for p in sorted(src_dir.iterdir()) if p.is_file() and not p.name.startswith(".")]
    if decode:
        files = [p for p in files if p.suffix.lower() == ".bbc"]
    stems = [p.stem for p in files]
    pairs = []
    for p in files:
        name = p.stem if stems.count(p.stem) == 1 else p.name
        pairs.append((str(p), str(dst_dir / (name + suffix))))
    return pairs


def _run_one(job: tuple[str, str, str, EncodeOptions | None]) -> dict:
    kind, src, dst, opts = job
    try:
        return encode_file(src, dst, opts) if kind == "encode" else decode_file(src, dst)
    except FileError as e:
        return {"input": src, "error": str(e)}


def run_folder(kind: str, pairs: list[tuple[str, str]], opts: EncodeOptions | None, jobs: int,
               progress: Callable[[int], None] | None = None) -> Iterator[dict]:
    """Process every pair, continuing after errors; yields summaries (or {"error"})."""
    return map_jobs(_run_one, [(kind, s, d, opts) for s, d in pairs], jobs, progress)
