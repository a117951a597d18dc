"""Files and folders: what the CLI does to one path, safely, and to a whole folder.

Every output is written to a temporary file beside its target and renamed into place
only on success, so a failure never leaves a partial file or clobbers an existing one.
Per-file functions return a frozen result (EncodeResult, DecodeResult; to_dict() is the
--json summary) or raise a bbcodec Error (errors.py) with a one-line message; folder mode
turns each such error into a Failed entry and goes on.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from . import quality as Q
from .errors import Error
from .parallel import map_jobs


class FileError(Error):
    """A path cannot be read or written; the message is one line for the user."""


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
    quality: float = Q.DEFAULT
    target_bpp: float | None = None
    target_psnr: float | None = None
    schedule: str = "wavefront"
    measure_psnr: bool = False


@dataclass(frozen=True)
class _Result:
    """What one file became; to_dict() is its --json summary (None optionals left out)."""

    input: str
    output: str
    width: int
    height: int
    channels: int
    quality: float
    input_bytes: int
    bytes: int  # of the output
    bpp: float  # bits per pixel of the .bbc file
    seconds: float  # coding time, without reading and writing files

    def to_dict(self) -> dict[str, Any]:
        optional = {f.name for f in fields(self) if f.default is None}
        return {k: v for k, v in asdict(self).items() if not (k in optional and v is None)}


@dataclass(frozen=True)
class EncodeResult(_Result):
    """One image encoded to a .bbc file."""

    weights: str  # file name of the weights used
    target_met: bool | None = None  # with a rate target: whether it was met
    encodes: int | None = None  # with a rate target: encodes tried
    psnr: float | None = None  # when measured (-v, --json, rate targets)


@dataclass(frozen=True)
class DecodeResult(_Result):
    """One .bbc file decoded to a PNG (bpp is the .bbc file's, bytes the PNG's)."""


@dataclass(frozen=True)
class Failed:
    """A file of a folder run that could not be processed, and why."""

    input: str
    error: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def encode_file(src: str, dst: str, opts: EncodeOptions) -> EncodeResult:
    """Encode one image file (or '-') to dst (or '-')."""
    from . import codec, images, ratecontrol, rd, weights

    data = read_input(src)
    arr = images.to_array(images.open_image(data, src), src)
    w = weights.default()
    t0 = time.perf_counter()
    target_met = encodes = None
    if opts.target_bpp is not None or opts.target_psnr is not None:
        r = ratecontrol.encode_to_target(arr, w, opts.target_bpp, opts.target_psnr)
        out, rec, quality, target_met, encodes = r.data, r.reconstruction, r.quality, r.met, r.probes
    else:
        out, rec = codec.encode(arr, opts.quality, w, opts.schedule)
        quality = opts.quality
    secs = time.perf_counter() - t0
    write_output(dst, out, src)
    h, wd = arr.shape[:2]
    return EncodeResult(
        input=src, output=dst, width=wd, height=h, channels=1 if arr.ndim == 2 else 3, quality=float(quality),
        input_bytes=len(data), bytes=len(out), bpp=8 * len(out) / (h * wd), seconds=secs, weights=w.path.name,
        target_met=target_met, encodes=encodes,
        psnr=rd.psnr(arr, rec) if opts.measure_psnr or target_met is not None else None,
    )


def decode_file(src: str, dst: str) -> DecodeResult:
    """Decode one .bbc file (or '-') to a PNG at dst (or '-')."""
    from . import codec, format, images, weights

    data = read_input(src)
    header, payload = format.unpack(data)
    w = weights.for_header(header)
    t0 = time.perf_counter()
    img = codec.decode(header, payload, w)
    secs = time.perf_counter() - t0
    png = images.png_bytes(img)
    write_output(dst, png, src)
    return DecodeResult(
        input=src, output=dst, width=header.width, height=header.height, channels=header.channels,
        quality=header.quality_value, input_bytes=len(data), bytes=len(png),
        bpp=8 * len(data) / (header.width * header.height), seconds=secs,
    )


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


Outcome = EncodeResult | DecodeResult | Failed


def _run_one(job: tuple[str, str, str, EncodeOptions | None]) -> Outcome:
    kind, src, dst, opts = job
    try:
        if kind == "decode":
            return decode_file(src, dst)
        return encode_file(src, dst, opts or EncodeOptions())
    except Error as e:
        return Failed(src, str(e))


def run_folder(kind: str, pairs: list[tuple[str, str]], opts: EncodeOptions | None, jobs: int,
               progress: Callable[[int], None] | None = None) -> Iterator[Outcome]:
    """Process every pair, continuing after errors; yields a result or a Failed per pair."""
    return map_jobs(_run_one, [(kind, s, d, opts) for s, d in pairs], jobs, progress)


@dataclass(frozen=True)
class FolderSummary:
    """The totals of a folder run; to_dict() is the "summary" of its --json output."""

    files: int
    done: int
    failed: int
    bytes_before: int
    bytes_after: int
    mean_bpp: float | None  # mean over the files done of each .bbc file's bpp
    bpp_overall: float | None  # all .bbc bytes over all pixels

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize(kind: str, outcomes: list[Outcome]) -> FolderSummary:
    """Totals of a folder run of kind "encode" or "decode"."""
    done = [r for r in outcomes if not isinstance(r, Failed)]
    before, after = sum(r.input_bytes for r in done), sum(r.bytes for r in done)
    pixels = sum(r.width * r.height for r in done)
    bbc_bytes = after if kind == "encode" else before
    return FolderSummary(
        files=len(outcomes), done=len(done), failed=len(outcomes) - len(done), bytes_before=before,
        bytes_after=after, mean_bpp=float(sum(r.bpp for r in done) / len(done)) if done else None,
        bpp_overall=8 * bbc_bytes / pixels if pixels else None,
    )
