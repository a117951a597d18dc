"""Command line: bbcodec encode / decode / info. Thin layer over the Python API.

Every failure is one line on stderr and a non-zero exit code; outputs are written to
a temporary file beside the target and renamed into place only on success.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import click

from . import __version__

EXIT_CODES = """\b
Exit codes: 0 success, 1 bad input or failed decode, 2 usage error,
            70 internal error (please report it)."""


class Failure(click.ClickException):
    """An expected failure: printed as one line, exit code 1."""

    def show(self, file=None) -> None:  # noqa: ANN001 - click's signature
        click.echo(f"bbcodec: error: {self.message}", err=True)


def read_input(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    p = Path(path)
    if p.is_dir():
        raise Failure(f"{path} is a directory, not a file")
    try:
        return p.read_bytes()
    except FileNotFoundError:
        raise Failure(f"{path}: no such file") from None
    except OSError as e:
        raise Failure(f"cannot read {path}: {e.strerror or e}") from None


def write_output(path: str, data: bytes, src: str) -> None:
    """Write atomically: temp file in the target folder, then rename over the target."""
    if path == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    out = Path(path)
    if src != "-" and out.exists() and os.path.samefile(src, out):
        raise Failure(f"refusing to write the output over the input {src}")
    if out.is_dir():
        raise Failure(f"{path} is a directory")
    folder = out.parent if str(out.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{out.name}.", suffix=".tmp")
    except OSError as e:
        raise Failure(f"cannot write to {folder}: {e.strerror or e}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, out)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise Failure(f"cannot write {path}: {e.strerror or e}") from None
        raise


def _errors():
    """Map the codec's own exceptions to one-line failures."""
    from .codec import DecodeError
    from .entropy import EntropyError
    from .format import FormatError
    from .images import ImageError
    from .weights import WeightsError

    return (DecodeError, EntropyError, FormatError, ImageError, WeightsError)


@click.group(
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog="""\b
Examples:
  bbcodec encode photo.png photo.bbc --quality 4
  bbcodec decode photo.bbc photo-decoded.png
  bbcodec info photo.bbc
"""
    + EXIT_CODES,
)
@click.version_option(__version__, prog_name="bbcodec")
def cli() -> None:
    """bbcodec: learned block-based image compression (8x8 blocks, bit-exact decoding)."""


@cli.command(epilog=EXIT_CODES)
@click.argument("src", metavar="IN")
@click.argument("dst", metavar="OUT")
@click.option("-q", "--quality", type=click.FloatRange(1, 8), default=4, show_default=True,
              help="1 (smallest) .. 8 (best); fractions step between qualities.")
@click.option("--schedule", type=click.Choice(["wavefront", "raster"]), default="wavefront",
              show_default=True, help="Block order of the encoder (same bytes either way).")
@click.option("--quiet", is_flag=True, help="Print nothing on success.")
@click.option("-v", "--verbose", is_flag=True, help="Also print PSNR of the decoded image.")
def encode(src: str, dst: str, quality: float, schedule: str, quiet: bool, verbose: bool) -> None:
    """Compress image IN (PNG, JPEG, ...; '-' = stdin) to OUT.bbc ('-' = stdout)."""
    import numpy as np

    from . import codec, images, weights

    data = read_input(src)
    try:
        arr = images.to_array(images.open_image(data, src), src)
        w = weights.default()
        t0 = time.perf_counter()
        out, rec = codec.encode(arr, quality, w, schedule)
        secs = time.perf_counter() - t0
    except _errors() as e:
        raise Failure(str(e)) from None
    write_output(dst, out, src)
    if not quiet:
        h, wd = arr.shape[:2]
        msg = f"{dst}: {wd}x{h}{' gray' if arr.ndim == 2 else ''}, quality {quality:g}, {len(out)} bytes, {8 * len(out) / (h * wd):.4f} bpp, {secs:.2f} s"
        if verbose:
            mse = float(np.mean((arr.astype(np.float64) - rec) ** 2))
            psnr = 10 * np.log10(255**2 / mse) if mse else float("inf")
            msg += f", PSNR {psnr:.2f} dB, weights {w.path.name}"
        click.echo(msg, err=True)


@cli.command(epilog=EXIT_CODES)
@click.argument("src", metavar="IN")
@click.argument("dst", metavar="OUT")
@click.option("--quiet", is_flag=True, help="Print nothing on success.")
def decode(src: str, dst: str, quiet: bool) -> None:
    """Decompress IN.bbc ('-' = stdin) to the PNG image OUT ('-' = stdout)."""
    from . import codec, format, images, weights

    data = read_input(src)
    try:
        header, payload = format.unpack(data)
        w = weights.find(header.weights_sha256)
        t0 = time.perf_counter()
        img = codec.decode(header, payload, w)
        secs = time.perf_counter() - t0
    except _errors() as e:
        raise Failure(str(e)) from None
    write_output(dst, images.png_bytes(img), src)
    if not quiet:
        click.echo(f"{dst}: {header.width}x{header.height}, decoded in {secs:.2f} s", err=True)


@cli.command(epilog=EXIT_CODES)
@click.argument("src", metavar="IN")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def info(src: str, as_json: bool) -> None:
    """Print the header of IN.bbc: size, quality, model, bpp, checksums."""
    from . import read_info, weights

    try:
        fields = read_info(read_input(src))
        try:
            fields["weights"] = weights.find(bytes.fromhex(fields["weights_sha256"])).path.name
        except weights.WeightsError:
            fields["weights"] = None
    except _errors() as e:
        raise Failure(str(e)) from None
    fields["model"] = weights.MODEL_FAMILIES.get(fields["model_id"], "unknown")
    fields["crc32"] = "ok"
    if as_json:
        click.echo(json.dumps(fields, indent=2))
        return
    rows = [
        ("format version", fields["version"]),
        ("size", f"{fields['width']}x{fields['height']}, {fields['channels']} channels"),
        ("quality", f"{fields['quality']:g}"),
        ("model", f"{fields['model']} (id {fields['model_id']})"),
        ("weights sha256", f"{fields['weights_sha256']}... ({fields['weights'] or 'not installed'})"),
        ("file size", f"{fields['file_bytes']} bytes ({fields['payload_bytes']} payload)"),
        ("bits per pixel", f"{fields['bpp']:.4f}"),
        ("image digest", f"{fields['image_digest']} (sha256 prefix of the decoded pixels)"),
        ("crc32", "ok"),
    ]
    for k, v in rows:
        click.echo(f"{k + ':':<16}{v}")


def _csv(kind: type, allowed: tuple | None = None):
    def convert(ctx, param, value: str):  # noqa: ANN001 - click callback
        try:
            items = [kind(v) for v in value.split(",") if v.strip()]
        except ValueError:
            raise click.BadParameter(f"not a comma-separated list: {value}") from None
        if allowed is not None and (bad := [v for v in items if v not in allowed]):
            raise click.BadParameter(f"unknown: {', '.join(map(str, bad))} (choose from {', '.join(allowed)})")
        return items

    return convert


@cli.command(epilog=EXIT_CODES)
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("report"),
              show_default=True, help="Folder for the JSON curves, per-image CSV and rd.png.")
@click.option("--qualities", default="1,2,3,4,5,6,7,8", show_default=True, callback=_csv(float),
              help="bbcodec qualities (baselines sweep their own range).")
@click.option("--codecs", default="bbcodec,jpeg,webp,avif,jxl", show_default=True,
              callback=_csv(str, ("bbcodec", "jpeg", "webp", "avif", "jxl")), help="Codecs to run.")
@click.option("--jobs", type=click.IntRange(1, 64), default=None, help="Parallel processes [default: cores].")
@click.option("--limit", type=click.IntRange(1), default=None, help="Use only the first N images.")
def bench(folder: Path, out_dir: Path, qualities: list[float], codecs: list[str], jobs: int | None, limit: int | None) -> None:
    """Rate-distortion and speed of bbcodec against JPEG, WebP, AVIF, JPEG XL on FOLDER.

    \b
    Example:
      bbcodec bench ../shared/data/kodak --out report/
    """
    from . import bench as b

    if any(not 1 <= q <= 8 for q in qualities):
        raise click.BadParameter("qualities must be within 1..8", param_hint="--qualities")
    try:
        paths, _ = b.list_images(folder, limit)
        usable, _ = b.available_baselines(codecs)
        total = sum(len(paths) * (len(qualities) if c == "bbcodec" else len(b.BASELINES[c].qualities)) for c in usable)
        with click.progressbar(length=total, label="bench", show_eta=True, file=sys.stderr) as bar:
            result = b.run(folder, out_dir, qualities, codecs, jobs or b.default_jobs(), limit, bar.update)
    except (b.BenchError, *_errors()) as e:
        raise Failure(str(e)) from None
    click.echo(b.format_report(result))
    click.echo(f"wrote {out_dir}/: " + ", ".join(f"{n}.json" for n in result["curves"]) + ", per_image.csv, rd.png")


def main() -> None:
    """Entry point: run the CLI, turning any unexpected crash into one line."""
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except click.exceptions.Abort:
        click.echo("bbcodec: aborted", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        click.echo("bbcodec: interrupted", err=True)
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(1)
    except MemoryError:
        click.echo("bbcodec: error: out of memory", err=True)
        sys.exit(1)
    except BaseException as e:  # noqa: BLE001 - constriction panics are BaseException
        if isinstance(e, SystemExit):
            raise
        click.echo(f"bbcodec: internal error: {type(e).__name__}: {e}", err=True)
        sys.exit(70)


if __name__ == "__main__":
    main()
