"""Command line: bbcodec encode / decode / info. Thin layer over the Python API.

Every failure is one line on stderr and a non-zero exit code; outputs are written to
a temporary file beside the target and renamed into place only on success (files.py:
devices, FIFOs and stdout are written through). SIGTERM unwinds like Ctrl-C, so no
temporary file is left behind.
"""

from __future__ import annotations

import json
import math
import signal
import sys
from pathlib import Path

import click

from . import __version__
from . import quality as Q
from .errors import Error

EXIT_CODES = """\b
Exit codes: 0 success, 1 bad input or failed decode, 2 usage error,
            70 internal error (please report it), 143 terminated (SIGTERM)."""


class Failure(click.ClickException):
    """An expected failure: printed as one line, exit code 1."""

    def show(self, file=None) -> None:  # noqa: ANN001 - click's signature
        click.echo(f"bbcodec: error: {one_line(self.message)}", err=True)


def one_line(text: str) -> str:
    return " ".join(text.split())


class FiniteFloatRange(click.FloatRange):
    """A FloatRange that also refuses nan (which compares false with both bounds)."""

    def convert(self, value, param, ctx):  # noqa: ANN001, ANN201 - click's signature
        rv = super().convert(value, param, ctx)
        if not math.isfinite(rv):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return rv


@click.group(
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog="""\b
Examples:
  bbcodec encode photo.png photo.bbc --quality 6
  bbcodec decode photo.bbc photo-decoded.png
  bbcodec info photo.bbc
"""
    + EXIT_CODES,
)
@click.version_option(__version__, prog_name="bbcodec")
def cli() -> None:
    """bbcodec: learned block-based image compression (8x8 blocks, bit-exact decoding)."""


def _report_single(result, as_json: bool, quiet: bool, line: str) -> None:  # noqa: ANN001 - a files.*Result
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
    elif not quiet:
        click.echo(line, err=True)


def _folder(kind: str, src: Path, dst: str, opts, jobs: int, as_json: bool, quiet: bool) -> None:  # noqa: ANN001
    """Encode or decode every file of a folder, continuing after errors."""
    from . import files

    if dst == "-":
        raise click.UsageError("a folder input needs an output folder, not '-'")
    out = Path(dst)
    if out.exists() and not out.is_dir():
        raise Failure(f"{dst} exists and is not a folder")
    pairs = files.folder_jobs(src, out, decode=(kind == "decode"))
    if not pairs:
        raise Failure(f"no {'.bbc files' if kind == 'decode' else 'files'} in {src}")
    out.mkdir(parents=True, exist_ok=True)
    with click.progressbar(length=len(pairs), label=kind, show_eta=True, file=sys.stderr,
                           hidden=quiet or as_json or not sys.stderr.isatty()) as bar:
        results = list(files.run_folder(kind, pairs, opts, jobs, bar.update))
    total = files.summarize(kind, results)
    failed = [r for r in results if isinstance(r, files.Failed)]
    if as_json:
        click.echo(json.dumps({"summary": total.to_dict(), "files": [r.to_dict() for r in results]}, indent=2))
    else:
        for r in failed:
            click.echo(f"bbcodec: skipped {r.input}: {one_line(r.error)}", err=True)
        if not quiet or failed:
            mean = f", mean {total.mean_bpp:.4f} bpp" if total.mean_bpp is not None else ""
            click.echo(f"{kind}d {total.done} of {total.files} files: {total.bytes_before} -> {total.bytes_after} bytes"
                       f"{mean}" + (f"; {total.failed} failed" if total.failed else ""), err=True)
    if any(r.internal for r in failed):
        sys.exit(70)
    if failed:
        sys.exit(1)


@cli.command(epilog=EXIT_CODES + """
\b
Examples:
  bbcodec encode photo.png photo.bbc -q 6
  bbcodec encode photo.png photo.bbc --target-bpp 0.5
  bbcodec encode photos/ compressed/ -q 5 --jobs 2""")
@click.argument("src", metavar="IN")
@click.argument("dst", metavar="OUT")
@click.option("-q", "--quality", type=FiniteFloatRange(Q.MIN, Q.MAX), default=None,
              help=f"{Q.MIN} (smallest) .. {Q.MAX} (best); fractions step between qualities.  [default: {Q.DEFAULT}]")
@click.option("--target-bpp", type=FiniteFloatRange(0, min_open=True), default=None,
              help="Pick the quality giving the largest file not above this many bits per pixel.")
@click.option("--target-psnr", type=FiniteFloatRange(0, min_open=True), default=None,
              help="Pick the quality giving the smallest file with at least this PSNR (dB).")
@click.option("--schedule", type=click.Choice(["wavefront", "raster"]), default="wavefront",
              show_default=True, help="Block order of the encoder (same bytes either way).")
@click.option("--jobs", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Parallel processes when IN is a folder.")
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable summary on stdout.")
@click.option("--quiet", is_flag=True, help="Print nothing on success.")
@click.option("-v", "--verbose", is_flag=True, help="Also print PSNR of the decoded image.")
def encode(src: str, dst: str, quality: float | None, target_bpp: float | None, target_psnr: float | None,
           schedule: str, jobs: int, as_json: bool, quiet: bool, verbose: bool) -> None:
    """Compress image IN (PNG, JPEG, ...; '-' = stdin; a folder = every image in it)
    to OUT ('-' = stdout; a folder for a folder)."""
    from .files import EncodeOptions, encode_file

    if sum(v is not None for v in (quality, target_bpp, target_psnr)) > 1:
        raise click.UsageError("give only one of --quality, --target-bpp, --target-psnr")
    if as_json and dst == "-":
        raise click.UsageError("--json prints on stdout, so OUT cannot be '-'")
    opts = EncodeOptions(Q.DEFAULT if quality is None else quality, target_bpp, target_psnr, schedule, verbose or as_json)
    if src != "-" and Path(src).is_dir():
        _folder("encode", Path(src), dst, opts, jobs, as_json, quiet)
        return
    try:
        r = encode_file(src, dst, opts)
    except Error as e:
        raise Failure(str(e)) from None
    line = (f"{dst}: {r.width}x{r.height}{' gray' if r.channels == 1 else ''}, quality {r.quality:g}, "
            f"{r.bytes} bytes, {r.bpp:.4f} bpp, {r.seconds:.2f} s")
    if r.psnr is not None:
        line += f", PSNR {r.psnr:.2f} dB"
    if r.target_met is False:
        line += " (target not reachable: nearest quality used)"
    if verbose:
        line += f", weights {r.weights}"
    _report_single(r, as_json, quiet, line)


@cli.command(epilog=EXIT_CODES + """
\b
Examples:
  bbcodec decode photo.bbc photo.png
  bbcodec decode compressed/ decoded/ --jobs 2""")
@click.argument("src", metavar="IN")
@click.argument("dst", metavar="OUT")
@click.option("--jobs", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Parallel processes when IN is a folder.")
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable summary on stdout.")
@click.option("--quiet", is_flag=True, help="Print nothing on success.")
def decode(src: str, dst: str, jobs: int, as_json: bool, quiet: bool) -> None:
    """Decompress IN.bbc ('-' = stdin; a folder = every .bbc in it) to the PNG image OUT
    ('-' = stdout; a folder for a folder)."""
    from .files import decode_file

    if as_json and dst == "-":
        raise click.UsageError("--json prints on stdout, so OUT cannot be '-'")
    if src != "-" and Path(src).is_dir():
        _folder("decode", Path(src), dst, None, jobs, as_json, quiet)
        return
    try:
        r = decode_file(src, dst)
    except Error as e:
        raise Failure(str(e)) from None
    _report_single(r, as_json, quiet, f"{dst}: {r.width}x{r.height}, decoded in {r.seconds:.2f} s")


@cli.command(epilog=EXIT_CODES)
@click.argument("src", metavar="IN")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def info(src: str, as_json: bool) -> None:
    """Print the header of IN.bbc: size, quality, model, bpp, checksums."""
    from . import model_io, read_info, weights
    from .files import read_bbc

    try:
        i = read_info(read_bbc(src))
        try:
            weights_name = weights.find(bytes.fromhex(i.weights_sha256)).path.name
        except weights.WeightsError:
            weights_name = None
    except Error as e:
        raise Failure(str(e)) from None
    model = model_io.FAMILIES.get(i.model_id, "unknown")
    if as_json:
        click.echo(json.dumps({**i.to_dict(), "weights": weights_name, "model": model, "crc32": "ok"}, indent=2))
        return
    rows = [
        ("format version", i.version),
        ("size", f"{i.width}x{i.height}, {i.channels} channels"),
        ("quality", f"{i.quality:g}"),
        ("model", f"{model} (id {i.model_id})"),
        ("weights sha256", f"{i.weights_sha256}... ({weights_name or 'not installed'})"),
        ("file size", f"{i.file_bytes} bytes ({i.payload_bytes} payload)"),
        ("bits per pixel", f"{i.bpp:.4f}"),
        ("image digest", f"{i.image_digest} (sha256 prefix of the decoded pixels)"),
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
@click.option("--qualities", default=",".join(map(str, Q.TRAINED)), show_default=True, callback=_csv(float),
              help="bbcodec qualities (baselines sweep their own range).")
@click.option("--codecs", default="bbcodec,jpeg,webp,avif,jxl", show_default=True,
              callback=_csv(str, ("bbcodec", "jpeg", "webp", "avif", "jxl")), help="Codecs to run.")
@click.option("--jobs", type=click.IntRange(1, 64), default=None, help="Parallel processes [default: cores].")
@click.option("--limit", type=click.IntRange(1), default=None, help="Use only the first N images.")
@click.option("--anchors", type=click.Path(path_type=Path), default=None,
              help="Folder of stored curves (CompressAI-layout JSON) to compare with, not re-run.")
def bench(folder: Path, out_dir: Path, qualities: list[float], codecs: list[str], jobs: int | None,
          limit: int | None, anchors: Path | None) -> None:
    """Rate-distortion and speed of bbcodec against JPEG, WebP, AVIF, JPEG XL on FOLDER.

    \b
    Example:
      bbcodec bench ../shared/data/kodak --out report/
      bbcodec bench ../shared/data/kodak --codecs bbcodec --anchors ../shared/anchors/kodak
    """
    from . import bench as b

    if any(not Q.MIN <= q <= Q.MAX for q in qualities):
        raise click.BadParameter(f"qualities must be within {Q.MIN}..{Q.MAX}", param_hint="--qualities")
    try:
        todo = b.plan(folder, qualities, codecs, limit, anchors)
        with click.progressbar(length=len(todo.tasks), label="bench", show_eta=True, file=sys.stderr,
                               hidden=not sys.stderr.isatty()) as bar:
            result = b.run(todo, out_dir, jobs or b.default_jobs(), bar.update)
    except Error as e:
        raise Failure(str(e)) from None
    click.echo(b.format_report(result))
    click.echo(f"wrote {out_dir}/: " + ", ".join(f"{n}.json" for n in result["curves"]) + ", per_image.csv, rd.png")


@cli.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []},
             add_help_option=False)
@click.pass_context
def train(ctx: click.Context) -> None:
    """Train a model (needs torch: pip install -e '.[train]'); --help lists the options."""
    try:
        from .train import train as trainer
    except ImportError as e:
        raise Failure(f"training needs torch ({e}); install with: pip install -e '.[train]'") from None
    trainer.main(ctx.args)


def main() -> None:
    """Entry point: run the CLI, turning any unexpected crash into one line."""
    from .files import Terminated, on_sigterm, remove_temporary_files

    signal.signal(signal.SIGTERM, on_sigterm)  # unwind, so that no temporary file is left
    try:
        cli.main(standalone_mode=False)
    except Terminated:
        remove_temporary_files()
        click.echo("bbcodec: terminated", err=True)
        sys.exit(128 + signal.SIGTERM)
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
