"""Files and folders: what the CLI does to one path, safely, and to a whole folder.

Inputs are read no further than a valid input can go: a .bbc file as far as its header
says, an image up to MAX_IMAGE_BYTES; reads go in pieces, so Ctrl-C works throughout.

Outputs: a regular file (or a new one) is written to a temporary file beside it, synced
and renamed into place only on success, so a failure never leaves a partial file or
clobbers an existing one; a new file gets the mode the umask gives, an existing one keeps
its mode. A symbolic link is followed (the file it points to is replaced, the link
stays); character devices (/dev/null) and FIFOs are written through, never replaced;
'-' is stdout, written in full or refused. Per-file functions return a frozen result
(EncodeResult, DecodeResult; to_dict() is the --json summary) or raise a bbcodec Error
(errors.py) with a one-line message; folder mode turns each failure into a Failed entry
and goes on.
"""

from __future__ import annotations

import os
import secrets
import select
import stat
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import IO, Any

from .codec import METADATA, ProgressFor, naming
from .coding import effort as efforts
from .coding.format import chunk_sizes
from .errors import Error, FileError
from .jobs import map_jobs, share_cores

# The most bytes read from an image input: an uncompressed 16-bit RGBA image of the
# largest size the codec takes (2^26 pixels) is 512 MiB, so no image within the limits
# needs more, whatever its format.
MAX_IMAGE_BYTES = 1 << 30
_WRITE_CHUNK = 1 << 30  # os.write moves at most about 2 GiB per call
_TEMPS: set[str] = set()  # temporary files being written (removed on SIGTERM, see cli.py)


@contextmanager
def _input(path: str) -> Iterator[IO[bytes]]:
    """A binary stream for path ('-' = stdin); OSErrors while using it become FileError."""
    if path == "-":
        if sys.stdin is None:
            raise FileError("cannot read stdin: it is closed")
        stream: IO[bytes] = sys.stdin.buffer
    else:
        if os.path.isdir(path):
            raise FileError(f"{path} is a directory, not a file")
        try:
            stream = open(path, "rb")  # noqa: SIM115 - closed below
        except FileNotFoundError:
            raise FileError(f"{path}: no such file") from None
        except OSError as e:
            raise FileError(f"cannot read {path}: {e.strerror or e}") from None
    try:
        yield stream
    except OSError as e:
        raise FileError(f"cannot read {'stdin' if path == '-' else path}: {e.strerror or e}") from None
    finally:
        if path != "-":
            stream.close()


SNIFF_BYTES = 1 << 16  # what an input's first look reads: enough for any image format's header


def read_input(path: str, limit: int = MAX_IMAGE_BYTES, sniff: Callable[[bytes], None] | None = None) -> bytes:
    """The bytes of path ('-' = stdin), refusing an input of more than limit bytes (a
    regular file by its size, before reading; a stream after limit + 1 bytes). sniff,
    if given, sees the first SNIFF_BYTES and may refuse them (raise) before the rest is
    read: an endless stream of zeros costs 64 kB, not the limit."""
    from .coding.format import read_upto

    with _input(path) as f:
        try:
            st = os.fstat(f.fileno())
            size = st.st_size if stat.S_ISREG(st.st_mode) else None
        except (OSError, ValueError):  # no file descriptor (e.g. a test's stdin)
            size = None
        if size is not None and size > limit:
            raise FileError(f"{display_name(path)} is {size} bytes, more than any input within the limits "
                            f"({limit} bytes)")
        data = read_upto(f, min(SNIFF_BYTES, limit + 1))
        if sniff is not None:
            sniff(data)
        if len(data) == SNIFF_BYTES:
            data += read_upto(f, limit + 1 - len(data))
    if len(data) > limit:
        raise FileError(f"{display_name(path)} is more than {limit} bytes, more than any input within the limits")
    return data


def read_bbc(path: str) -> bytes:
    """The bytes of one .bbc file (or '-'), read no further than its header allows
    (format.read_from): a foreign or endless input is refused after its first bytes."""
    from .coding.format import read_from

    with _input(path) as f, naming(display_name(path)):
        return read_from(f)


@contextmanager
def _quiet_reading() -> Iterator[None]:
    """Keep Pillow's log records and what C libraries print on file descriptor 2 (libtiff's
    complaints about a damaged TIFF) out of the CLI's stderr while an image is read:
    bad input gets bbcodec's one line, and --quiet stays quiet."""
    import logging

    pil = logging.getLogger("PIL")  # its plugins' loggers (PIL.TiffImagePlugin...) inherit its level
    level = pil.level
    pil.setLevel(logging.CRITICAL + 1)
    try:
        if sys.stderr is not None:
            sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no stderr to silence
        saved = -1
    try:
        if saved >= 0:
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, 2)
            os.close(null)
        yield
    finally:
        if saved >= 0:
            os.dup2(saved, 2)
            os.close(saved)
        pil.setLevel(level)


def _write_all(fd: int, data: bytes, what: str) -> None:
    """Write every byte to fd (short writes continued, a non-blocking pipe waited on)."""
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view[:_WRITE_CHUNK])
        except BlockingIOError:
            select.select([], [fd], [])
            continue
        except OSError as e:
            raise FileError(f"cannot write {what}: {e.strerror or e}") from None
        if n <= 0:
            raise FileError(f"cannot write {what}: nothing written")
        view = view[n:]


def _write_stdout(data: bytes) -> None:
    out = sys.stdout
    if out is None:
        raise FileError("cannot write to stdout: it is closed")
    try:
        out.flush()
        fd = out.fileno()
    except (AttributeError, ValueError, OSError):  # not a real file (e.g. a test's capture)
        try:
            out.buffer.write(data)
            out.buffer.flush()
        except OSError as e:
            raise FileError(f"cannot write to stdout: {e.strerror or e}") from None
        return
    _write_all(fd, data, "to stdout")


def _fsync_dir(folder: str) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems cannot sync a directory; the data is synced
        pass
    finally:
        os.close(fd)


def _replace(target: str, data: bytes, old: os.stat_result | None) -> None:
    """Atomically replace (or create) the regular file target with data."""
    folder, name = os.path.split(target)
    folder = folder or "."
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    while True:
        tmp = os.path.join(folder, f".{name}.{secrets.token_hex(4)}.tmp")
        try:
            fd = os.open(tmp, flags, 0o666)  # the umask applies, as to any new file
            break
        except FileExistsError:
            continue
        except OSError as e:
            raise FileError(f"cannot write to {folder}: {e.strerror or e}") from None
    _TEMPS.add(tmp)
    try:
        try:
            _write_all(fd, data, target)
            if old is not None:  # keep the replaced file's permissions (and owner, if allowed)
                os.chmod(tmp, stat.S_IMODE(old.st_mode) & 0o777)
                if hasattr(os, "fchown") and (old.st_uid, old.st_gid) != (os.geteuid(), os.getegid()):
                    try:
                        os.fchown(fd, old.st_uid, old.st_gid)
                    except OSError:
                        pass
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise FileError(f"cannot write {target}: {e.strerror or e}") from None
        raise
    finally:
        _TEMPS.discard(tmp)
    _fsync_dir(folder)


class Terminated(BaseException):
    """SIGTERM arrived (raised by on_sigterm, so that writes in progress clean up)."""


def on_sigterm(signum: int, frame: object) -> None:
    """SIGTERM handler of the CLI and of folder workers: unwind like Ctrl-C does, so no
    temporary file is left behind."""
    raise Terminated()


def remove_temporary_files() -> None:
    """Remove the temporary files of writes in progress (what Terminated left, if any)."""
    for tmp in list(_TEMPS):
        Path(tmp).unlink(missing_ok=True)
        _TEMPS.discard(tmp)


def write_output(path: str, data: bytes, src: str) -> None:
    """Write data to path ('-' = stdout) without ever leaving a partial file: see the
    module docstring for what happens to links, devices and FIFOs."""
    if path == "-":
        _write_stdout(data)
        return
    target = path
    if os.path.islink(path):
        target = os.path.realpath(path)
        if not os.path.lexists(target):
            raise FileError(f"{path} is a symbolic link to {target}, which does not exist")
    try:
        old: os.stat_result | None = os.stat(target)
    except FileNotFoundError:
        old = None
    except OSError as e:
        raise FileError(f"cannot write {path}: {e.strerror or e}") from None
    if old is not None and src != "-":
        try:
            same = os.path.samefile(src, target)
        except OSError:
            same = False
        if same:
            raise FileError(f"refusing to write the output over the input {src}")
    if old is None or stat.S_ISREG(old.st_mode):
        _replace(target, data, old)
    elif stat.S_ISDIR(old.st_mode):
        raise FileError(f"{path} is a directory")
    elif stat.S_ISCHR(old.st_mode) or stat.S_ISFIFO(old.st_mode):
        try:
            fd = os.open(target, os.O_WRONLY | getattr(os, "O_CLOEXEC", 0))
        except OSError as e:
            raise FileError(f"cannot write {path}: {e.strerror or e}") from None
        try:
            _write_all(fd, data, path)
        finally:
            os.close(fd)
    else:
        raise FileError(f"{path} is not a regular file, character device or FIFO; refusing to replace it")


@dataclass(frozen=True)
class EncodeOptions:
    """The options of encode_file, as codec.encode's (codec.check checks them)."""

    quality: float | None = None  # None: quality.DEFAULT (unless a target is given)
    target_bpp: float | None = None
    target_psnr: float | None = None
    measure_psnr: bool = False
    weights: str | None = None  # a weights file instead of the default (--weights)
    tune: str | None = None  # the first weights of this tuning instead of the default (--tune)
    threads: int | None = None  # threads per image (None: the cores; run_folder: each job's share)
    effort: int = efforts.DEFAULT  # encoder effort (effort.py): more encoder time, smaller files
    metadata: frozenset[str] = frozenset(METADATA)  # of codec.METADATA: what to keep (--metadata)
    flatten: str | None = None  # a colour to compose transparent images over (--flatten), else alpha is kept
    lossless: bool | None = None  # None: exact where that is smaller; True: always; False: never
    aq: float | None = None  # adaptive-quantisation strength (--aq); None: the weights' tuning's
    linear_filter: bool = True  # whether the encoder may send a fitted linear filter (--no-linear-filter)


@dataclass(frozen=True)
class DecodeOptions:
    format: str | None = None  # a key of FORMATS, or None: by the output's extension
    threads: int | None = None  # threads per image (None: the cores; run_folder: each job's share)


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
        optional = {f.name for f in fields(self) if f.default in (None, ())}
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()
                if not (k in optional and v in (None, ()))}


@dataclass(frozen=True)
class EncodeResult(_Result):
    """One image encoded to a .bbc file."""

    weights: str | None  # file name of the weights used (None: coded losslessly, without them)
    effort: int = efforts.DEFAULT  # encoder effort
    lossless: bool = False  # whether the file holds the image exactly (format version 5)
    colours: int | None = None  # format version 5 with the image's colours reduced to this many
    target_met: bool | None = None  # with a rate target: whether it was met
    encodes: int | None = None  # with a rate target: encodes tried
    psnr: float | None = None  # when measured (-v, --json, rate targets)
    carries: tuple[str, ...] = ()  # what the file carries besides the pixels: alpha, icc, exif, xmp
    alpha_bytes: int | None = None  # the size of the coded alpha plane, if any
    notes: tuple[str, ...] = ()  # what a user should hear of (an animation's first frame, 16 bits made 8)


@dataclass(frozen=True)
class DecodeResult(_Result):
    """One .bbc file decoded to an image (bpp is the .bbc file's, bytes the image's)."""

    weights: str | None = None  # file name of the weights used (None: a lossless file)
    lossless: bool = False  # whether the file held the source image exactly (format version 5, not reduced)
    carries: tuple[str, ...] = ()  # what the file carries besides the pixels: alpha, icc, exif, xmp
    alpha_bytes: int | None = None  # the size of the coded alpha plane, if any
    notes: tuple[str, ...] = ()  # what a user should hear of (an animation's first frame, 16 bits made 8)


@dataclass(frozen=True)
class Failed:
    """A file of a folder run that could not be processed, and why."""

    input: str
    error: str
    internal: bool = False  # a bug rather than a bad input (the CLI exits with 70)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if not self.internal:
            del d["internal"]
        return d


def encode_file(src: str, dst: str, opts: EncodeOptions, progress_for: ProgressFor | None = None) -> EncodeResult:
    """Encode one image file (or '-') to dst (or '-'); progress_for(pixels) may give a
    progress bar for a large image (the CLI's, on a terminal). An error names the file it
    is about (the input, the output or the weights)."""
    from . import codec, images, rd
    from .coding.format import MAGIC

    data = read_input(src, MAX_IMAGE_BYTES, sniff=lambda prefix: images.check_prefix(prefix, display_name(src)))
    input_bytes = len(data)
    if data[:4] == MAGIC:
        raise FileError(f"{display_name(src)} is already a .bbc file (bbcodec decode turns it back into an image)")
    with _quiet_reading():
        pic = images.read_picture(data, display_name(src), opts.flatten)
    del data  # the file's bytes are not needed while coding
    arr = pic.pixels
    r = codec.encode(arr, opts.quality, target_bpp=opts.target_bpp, target_psnr=opts.target_psnr,
                     weights=opts.weights, tune=opts.tune, effort=opts.effort, threads=opts.threads,
                     lossless=opts.lossless, aq=opts.aq, linear_filter=opts.linear_filter, extras=pic.extras.keeping(opts.metadata), progress_for=progress_for, name=display_name(src))
    write_output(dst, r.data, src)
    h, wd = arr.shape[:2]
    chunks = chunk_sizes(r.data)
    return EncodeResult(
        input=src, output=dst, width=wd, height=h, channels=1 if arr.ndim == 2 else 3, quality=r.quality,
        input_bytes=input_bytes, bytes=len(r.data), bpp=8 * len(r.data) / (h * wd), seconds=r.seconds,
        carries=tuple(r.extras.names()), alpha_bytes=chunks.get("alpha"), notes=pic.notes,
        weights=None if r.weights is None else r.weights.path.name, effort=opts.effort,
        lossless=r.weights is None and r.colours is None, colours=r.colours, target_met=r.target_met,
        encodes=r.encodes,
        psnr=None if not (opts.measure_psnr or r.target_met is not None) or (r.weights is None and r.colours is None)
        else rd.psnr(arr, r.reconstruction),
    )


# Output formats of decode, by the extension of the output: lossless ones are written as
# named, lossy ones only when asked for with --format (fmt), anything else as PNG.
LOSSLESS_SUFFIXES = {".png": "PNG", ".tif": "TIFF", ".tiff": "TIFF", ".bmp": "BMP", ".ppm": "PPM",
                     ".pgm": "PPM", ".pnm": "PPM"}
LOSSY_SUFFIXES = {".jpg": "JPEG", ".jpeg": "JPEG", ".jpe": "JPEG", ".jfif": "JPEG", ".webp": "WEBP",
                  ".avif": "AVIF", ".heic": "HEIF", ".heif": "HEIF", ".jxl": "JXL", ".jp2": "JPEG2000",
                  ".gif": "GIF"}
FORMATS = {"png": "PNG", "tiff": "TIFF", "bmp": "BMP", "ppm": "PPM", "jpeg": "JPEG", "webp": "WEBP"}
FORMAT_SUFFIX = {"PNG": ".png", "TIFF": ".tiff", "BMP": ".bmp", "PPM": ".ppm", "JPEG": ".jpg", "WEBP": ".webp"}


def display_name(path: str) -> str:
    """How a path is named in messages ('-' is stdin or stdout)."""
    return "stdin" if path == "-" else path


def output_format(dst: str, fmt: str | None = None) -> str:
    """The Pillow format decode writes to dst: fmt (a key of FORMATS) if given, else by
    dst's extension for lossless formats, PNG for '-' and a name without extension; a
    lossy extension without fmt, or one of no image format, is refused (a FileError
    naming the way out)."""
    if fmt is not None:
        return FORMATS[fmt.lower()]
    if dst == "-":
        return "PNG"
    suffix = os.path.splitext(dst)[1].lower()
    if suffix in LOSSY_SUFFIXES:
        name = LOSSY_SUFFIXES[suffix]
        raise FileError(f"{dst}: {name} is lossy and would lose what the decoder restored; write .png, .tiff, "
                        f".bmp or .ppm, or give --format {name.lower()} to write {name} anyway")
    if suffix and suffix not in LOSSLESS_SUFFIXES:
        raise FileError(f"{dst}: cannot tell an image format from {suffix}; name the output .png, .tiff, .bmp "
                        f"or .ppm, or give --format")
    return LOSSLESS_SUFFIXES.get(suffix, "PNG")


def decode_file(src: str, dst: str, fmt: str | None = None, progress_for: ProgressFor | None = None,
                threads: int | None = None) -> DecodeResult:
    """Decode one .bbc file (or '-') to dst (or '-'), in the format output_format names
    (progress_for as for encode_file; threads per image, None: the default). An error
    names the file it is about."""
    from . import codec, images

    pil_format = output_format(dst, fmt)
    data = read_bbc(src)
    r = codec.decode(data, threads=threads, progress_for=progress_for, name=display_name(src))
    with naming(dst if dst != "-" else "stdout"):
        out, notes = images.image_bytes(r.pixels, pil_format, r.extras)
    write_output(dst, out, src)
    header = r.header
    return DecodeResult(
        input=src, output=dst, width=header.width, height=header.height, channels=header.channels,
        quality=header.quality_value, input_bytes=len(data), bytes=len(out),
        bpp=8 * len(data) / (header.width * header.height), seconds=r.seconds,
        weights=None if r.weights is None else r.weights.path.name,
        lossless=header.lossless and not header.reduced, carries=tuple(r.extras.names()), alpha_bytes=chunk_sizes(data).get("alpha"), notes=notes,
    )


def info_file(src: str) -> tuple[dict[str, Any], bool]:
    """The header fields of one .bbc file (or '-') as `bbcodec info --json` shows them, and
    whether its CRC is right (the fields are shown either way). An error names the file."""
    from . import read_info
    from .coding import format
    from .model import layout, weights

    data = read_bbc(src)
    with naming(display_name(src)):
        i = read_info(data, check_crc=False)
    ok = format.crc_ok(data)
    weights_name: str | None
    model: str | None
    weights_name = model = None
    if i.lossless is None:
        try:
            w = weights.find(bytes.fromhex(i.weights_sha256))
            weights_name, model = w.path.name, w.name
        except weights.WeightsError:
            pass
    family = "none (lossless)" if i.lossless else layout.FAMILIES.get(i.model_id, "unknown")
    return {**i.to_dict(), "weights": weights_name, "model": model, "family": family,
            "crc32": "ok" if ok else "bad"}, ok


def plan_names(files: list[Path], dst_dir: Path, suffix: str) -> list[tuple[str, str]]:
    """(input, dst_dir/NAME+suffix) pairs, no two inputs sharing an output name: where
    outputs would clash (a.png and a.jpg; a.png, a.gif and a.png.gif) the clashing inputs
    keep their full names (a.png.bbc, a.gif.bbc, a.png.gif.bbc), repeated until none
    clash (names compared ignoring case, so that case-insensitive file systems are safe)."""
    full: set[Path] = set()  # inputs whose output keeps the full name
    while True:
        claims: dict[str, list[Path]] = {}
        for p in files:
            claims.setdefault(((p.name if p in full else p.stem) + suffix).casefold(), []).append(p)
        clashing = {p for group in claims.values() if len(group) > 1 for p in group} - full
        if not clashing:  # full names are distinct (up to case, on a case-sensitive system)
            break
        full |= clashing
    return [(str(p), str(dst_dir / ((p.name if p in full else p.stem) + suffix))) for p in files]


def is_image_name(name: str) -> bool:
    """Whether a file name has the extension of an image format Pillow reads (not .bbc)."""
    from PIL import Image

    suffix = os.path.splitext(name)[1].lower()
    return suffix != ".bbc" and (suffix in Image.registered_extensions() or suffix in (".jxl", ".avif", ".heic"))


@dataclass(frozen=True)
class FolderPlan:
    """What a folder run will do: (input, output) pairs, files skipped by their name (not
    images, or not .bbc for decode), subfolders left out (without --recursive)."""

    pairs: list[tuple[str, str]]
    skipped: list[str]
    subfolders: list[str]


def scan_folder(src_dir: Path, dst_dir: Path, decode: bool, recursive: bool = False,
                suffix: str | None = None) -> FolderPlan:
    """Plan a folder run: images (by extension) -> .bbc, or .bbc -> images; with recursive,
    subfolders too, mirrored under dst_dir. Hidden files and folders are left alone."""
    suffix = suffix or (".png" if decode else ".bbc")
    pairs: list[tuple[str, str]] = []
    skipped: list[str] = []
    subfolders: list[str] = []
    todo = [(src_dir, dst_dir)]
    while todo:
        here, there = todo.pop(0)
        entries = [p for p in sorted(here.iterdir()) if not p.name.startswith(".")]
        keep = []
        for p in entries:
            if p.is_dir():
                if recursive:
                    todo.append((p, there / p.name))
                else:
                    subfolders.append(str(p))
            elif p.is_file():
                if p.suffix.lower() == ".bbc" if decode else is_image_name(p.name):
                    keep.append(p)
                else:
                    skipped.append(str(p))
        pairs += plan_names(keep, there, suffix)
    return FolderPlan(pairs, skipped, subfolders)


def _refusal(src: str, dst: str, planned: set[str]) -> str | None:
    """Why dst must not be written for src, if it must not: a second input planned to the
    same output, or an existing file of the input's own folder (an original, such as the
    PNG beside its .bbc when a folder is decoded into itself, or another input)."""
    key = os.path.normcase(os.path.abspath(dst))
    if key in planned:
        return f"{src}: another input already writes {dst}"
    planned.add(key)
    if os.path.lexists(dst):
        try:
            same_folder = os.path.samefile(os.path.dirname(dst) or ".", os.path.dirname(src) or ".")
        except OSError:
            same_folder = False
        if same_folder:
            return f"{src}: refusing to overwrite {dst}, a file of the input folder"
    return None


Outcome = EncodeResult | DecodeResult | Failed


def _run_one(job: tuple[str, str, EncodeOptions | DecodeOptions, str | None]) -> Outcome:
    src, dst, opts, refused = job
    if refused:
        return Failed(src, refused)
    try:
        os.makedirs(os.path.dirname(dst) or ".", exist_ok=True)  # mirrored subfolders (--recursive)
        if isinstance(opts, DecodeOptions):
            return decode_file(src, dst, opts.format, threads=opts.threads)
        return encode_file(src, dst, opts)
    except Error as e:  # its message names the file
        return Failed(src, str(e))
    except MemoryError:
        return Failed(src, f"{src}: out of memory")
    except Exception as e:  # a bug: reported, and the other files still go on
        return Failed(src, f"{src}: internal error: {type(e).__name__}: {e}", internal=True)


def _worker_init() -> None:
    """Worker processes of a folder run remove their temporary files on SIGTERM too."""
    import signal

    signal.signal(signal.SIGTERM, on_sigterm)


def run_folder(kind: str, pairs: list[tuple[str, str]], opts: EncodeOptions | DecodeOptions | None,
               jobs: int, progress: Callable[[int], None] | None = None) -> Iterator[Outcome]:
    """Process every pair ("encode" or "decode", opts None: the default options), continuing
    after errors; yields a result or a Failed per pair, whose error names its file. With
    jobs > 1 and no threads in opts, each image is coded with its job's share of the
    cores (jobs.share_cores), jobs images at once (jobs.map_jobs).

    Before anything is written, each output is checked against the plan: a pair whose
    output another pair already writes, or which would overwrite a file of its input's
    folder, is a Failed entry and is not run."""
    if opts is None:
        opts = DecodeOptions() if kind == "decode" else EncodeOptions()
    if jobs > 1 and opts.threads is None:
        opts = replace(opts, threads=share_cores(jobs))
    planned: set[str] = set()
    tasks = [(s, d, opts, _refusal(s, d, planned)) for s, d in pairs]
    return map_jobs(_run_one, tasks, jobs, progress, initializer=_worker_init)


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
    skipped: int = 0  # files left out by their name (not images; not .bbc for decode)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize(kind: str, outcomes: list[Outcome], skipped: int = 0) -> FolderSummary:
    """Totals of a folder run of kind "encode" or "decode"."""
    done = [r for r in outcomes if not isinstance(r, Failed)]
    before, after = sum(r.input_bytes for r in done), sum(r.bytes for r in done)
    pixels = sum(r.width * r.height for r in done)
    bbc_bytes = after if kind == "encode" else before
    return FolderSummary(
        files=len(outcomes), done=len(done), failed=len(outcomes) - len(done), bytes_before=before,
        bytes_after=after, mean_bpp=float(sum(r.bpp for r in done) / len(done)) if done else None,
        bpp_overall=8 * bbc_bytes / pixels if pixels else None, skipped=skipped,
    )
