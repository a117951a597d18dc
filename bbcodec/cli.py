"""Command line: bbcodec encode / decode / info / bench / train / freeze. Thin layer over
the Python API and files.py.

Every failure is one line on stderr and a non-zero exit code; outputs are written to
a temporary file beside the target and renamed into place only on success (files.py:
devices, FIFOs and stdout are written through). SIGTERM unwinds like Ctrl-C, so no
temporary file is left behind.
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from . import __version__
from .baselines import CODECS
from .coding import effort as efforts
from .errors import Error
from .files import FORMATS, display_name
from .model import quality as Q
from .model.tuning import AQ_STRENGTH, MAX_AQ, TUNES

EXIT_CODES = """\b
Exit codes: 0 success, 1 bad input or failed operation, 2 usage error,
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
        for note in result.notes:  # what reading or writing changed that the user should know
            click.echo(f"bbcodec: note: {display_name(result.input)}: {note}", err=True)


def _fail(message: str, as_json: bool, src: str) -> Failure:
    """The Failure to raise; with --json, a JSON error object is printed on stdout first."""
    if as_json:
        click.echo(json.dumps({"input": src, "error": message}, indent=2))
    return Failure(message)


def _no_binary_to_terminal(dst: str) -> None:
    if dst == "-" and sys.stdout is not None and sys.stdout.isatty():
        raise click.UsageError("refusing to write binary data to a terminal: redirect stdout "
                               "(bbcodec ... - > out) or name an output file")


def _is_folder_target(dst: str) -> bool:
    return dst != "-" and (Path(dst).is_dir() or dst.endswith(("/", os.sep)))


def _batch(kind: str, pairs: list[tuple[str, str]], out: Path, opts, jobs: int, as_json: bool,  # noqa: ANN001
           quiet: bool, skipped: list[str] | None = None, subfolders: list[str] | None = None,
           cluster: Cluster | None = None) -> None:
    """Encode or decode every pair, continuing after errors, and report the totals (on a
    cluster, cluster.py, when given)."""
    from . import files

    skipped, subfolders = skipped or [], subfolders or []
    if out.exists() and not out.is_dir():
        raise Failure(f"{out} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    run = None
    with click.progressbar(length=len(pairs), label=kind, show_eta=True, file=sys.stderr,
                           hidden=quiet or as_json or not sys.stderr.isatty()) as bar:
        if cluster is None:
            results = list(files.run_folder(kind, pairs, opts, jobs, bar.update))
        else:
            run, results = _run_cluster(kind, pairs, out, opts, cluster, bar.update)
    total = files.summarize(kind, results, len(skipped))
    failed = [r for r in results if isinstance(r, files.Failed)]
    if as_json:
        report = {"summary": total.to_dict(), "files": [r.to_dict() for r in results], "skipped": skipped,
                  "subfolders_left_out": subfolders}
        if run is not None:
            report["cluster"] = {"manifest": str(run.manifest_path), "resumed": run.resumed, "coded": run.coded}
        click.echo(json.dumps(report, indent=2))
    else:
        for r in failed:
            click.echo(f"bbcodec: skipped: {one_line(r.error)}", err=True)
        if not quiet or failed:
            mean = f", mean {total.mean_bpp:.4f} bpp" if total.mean_bpp is not None else ""
            what = "images" if kind == "encode" else ".bbc files"
            notes = (f"; {len(skipped)} other files left out (not {what}: "
                     f"{', '.join(Path(p).name for p in skipped[:3])}{', ...' if len(skipped) > 3 else ''})"
                     if skipped else "")
            notes += (f"; {len(subfolders)} subfolders left out (--recursive includes them)" if subfolders else "")
            notes += (f"; {run.resumed} done by an earlier run (manifest {run.manifest_path})"
                      if run is not None and run.resumed else "")
            click.echo(f"{kind}d {total.done} of {total.files} files: {total.bytes_before} -> {total.bytes_after} bytes"
                       f"{mean}" + (f"; {total.failed} failed" if total.failed else "") + notes, err=True)
    if any(r.internal for r in failed):
        sys.exit(70)
    if failed:
        sys.exit(1)


@dataclass(frozen=True)
class Cluster:
    """--cluster ADDRESS and --manifest PATH of a folder run (cluster.py)."""

    address: str
    manifest: str | None = None


def _cluster(address: str | None, manifest: str | None, jobs: int, threads: int | None) -> Cluster | None:
    """The --cluster options, checked against --jobs and --threads (usage errors)."""
    if address is None:
        if manifest is not None:
            raise click.UsageError("--manifest is for folder runs on a cluster: give --cluster too")
        return None
    if jobs > 1:
        raise click.UsageError("--jobs is for one machine; with --cluster the cluster's workers code the files")
    if threads not in (None, 1):
        raise click.UsageError("with --cluster each image is coded in one process (--threads 1): run one "
                               "worker process per core instead")
    return Cluster(address, manifest)


def _run_cluster(kind: str, pairs: list[tuple[str, str]], out: Path, opts, cluster: Cluster,  # noqa: ANN001
                 progress: Callable[[int], None]) -> tuple[Any, list[Any]]:
    """A folder run on a cluster (cluster.py, which imports Dask): the run and its
    outcomes, in the order of pairs."""
    import logging

    from . import cluster as cl

    logging.getLogger("distributed").setLevel(logging.ERROR)  # Dask's log lines are not ours to print
    run = cl.FolderRun(kind, pairs, opts, cluster.address, cluster.manifest or out / cl.MANIFEST_NAME, progress)
    try:
        results = list(run)
    except Error as e:
        raise Failure(str(e)) from None
    order = {src: n for n, (src, _) in enumerate(pairs)}
    return run, sorted(results, key=lambda r: order[r.input])


def _run_many(kind: str, paths: tuple[str, ...], opts, jobs: int, as_json: bool, quiet: bool,  # noqa: ANN001
              recursive: bool, suffix: str, cluster: Cluster | None = None) -> bool:
    """Folder and several-input runs (True if paths were one of those); single files are
    left to the caller (False)."""
    from . import files

    if len(paths) < 2:
        raise click.UsageError("give the input(s) and then the output: IN... OUT")
    *srcs, dst = paths
    if len(srcs) == 1 and srcs[0] != "-" and Path(srcs[0]).is_dir():
        if dst == "-":
            raise click.UsageError("a folder input needs an output folder, not '-'")
        plan = files.scan_folder(Path(srcs[0]), Path(dst), decode=(kind == "decode"), recursive=recursive,
                                 suffix=suffix)
        if not plan.pairs:
            raise _fail(f"no {'.bbc files' if kind == 'decode' else 'images'} in {srcs[0]}"
                        + (f" ({len(plan.subfolders)} subfolders: --recursive includes them)"
                           if plan.subfolders else ""), as_json, srcs[0])
        _batch(kind, plan.pairs, Path(dst), opts, jobs, as_json, quiet, plan.skipped, plan.subfolders, cluster)
        return True
    if len(srcs) == 1 and not _is_folder_target(dst):
        if cluster is not None:
            raise click.UsageError("--cluster is for a folder or several inputs, not one file")
        return False
    if dst == "-":
        raise click.UsageError("several inputs need an output folder, not '-'")
    if Path(dst).exists() and not Path(dst).is_dir():
        raise click.UsageError(f"several inputs need an output folder; {dst} is a file")
    if not _is_folder_target(dst) and Path(dst).suffix:
        raise click.UsageError(f"several inputs need an output folder; {dst} looks like a file name "
                               f"(end it with '/' for a new folder of that name)")
    if "-" in srcs or any(Path(p).is_dir() for p in srcs):
        raise click.UsageError("with several inputs, each must be a file (a folder or '-' goes alone: IN OUT)")
    _batch(kind, files.plan_names([Path(p) for p in srcs], Path(dst), suffix), Path(dst), opts, jobs, as_json,
           quiet, cluster=cluster)
    return True


def _progress(pixels: int, quiet: bool, as_json: bool):  # noqa: ANN202 - a context manager or None
    """A progress bar (blocks) for one image of more than PROGRESS_PIXELS on a terminal."""
    if quiet or as_json or pixels <= PROGRESS_PIXELS or sys.stderr is None or not sys.stderr.isatty():
        return None
    return click.progressbar(length=pixels, label="coding", show_eta=True, file=sys.stderr)


PROGRESS_PIXELS = 4_000_000  # images above this many pixels show a progress bar on a terminal

THREADS_HELP = ("Workers per image (1..64): this process and N-1 forked ones, at most one per payload "
                "stream (2 for Kodak-sized images, 16 for 4000x3000; the same bytes for any "
                "number).  [default: the cores this process may use; with --jobs, each job's share]")


def _threads(ctx: click.Context, param: click.Parameter, value: int | None) -> int | None:
    """--threads checked by workers.check_threads, the API's check (imported only when
    given: the CLI loads no numpy to start): a usage error, exit 2, one line."""
    if value is None:
        return None
    from .coding.workers import check_threads
    from .errors import ThreadsError

    try:
        return check_threads(value)
    except ThreadsError as e:
        raise click.BadParameter(str(e), ctx, param) from None
def _metadata(ctx: click.Context, param: click.Parameter, value: str) -> frozenset[str]:
    """--metadata parsed by codec.parse_metadata (a usage error, exit 2, when wrong)."""
    from .codec import parse_metadata

    try:
        return parse_metadata(value)
    except Error as e:
        raise click.BadParameter(str(e), ctx, param) from None


def _many_options(threads_help: str) -> Callable:
    """The options encode and decode share for folders and several inputs: --jobs,
    --threads, --cluster, --manifest, --recursive."""
    def add(fn: Callable) -> Callable:
        for option in reversed((
            click.option("--jobs", type=click.IntRange(1, 64), default=1, show_default=True,
                         help="Parallel processes for a folder or several inputs."),
            click.option("--threads", type=int, default=None, callback=_threads, help=threads_help),
            click.option("--cluster", "cluster_address", metavar="ADDRESS", default=None,
                         help="Code a folder on a Dask cluster: a scheduler address (tcp://HOST:8786), a "
                              "scheduler file, or local / local:N (N worker processes here); resumable "
                              "(docs/cluster.md)."),
            click.option("--manifest", metavar="PATH", default=None,
                         help="With --cluster: the run's manifest of finished files.  "
                              "[default: OUT/.bbcodec-manifest.jsonl]"),
            click.option("-r", "--recursive", is_flag=True, help="With a folder: its subfolders too, mirrored in OUT."),
        )):
            fn = option(fn)
        return fn

    return add


# Efforts above 1 choose each wavefront's symbols in this process (rdoq.Chooser reads the
# whole canvas): only their effort-1 proxy pass, if any (effort 3), uses the workers.
ENCODE_THREADS_HELP = (THREADS_HELP[:-1] + "; --effort above 1 codes in one process, except effort 3's first "
                       "pass at effort 1]")


@cli.command(epilog=EXIT_CODES + """
\b
Examples:
  bbcodec encode photo.png photo.bbc -q 6
  bbcodec encode photo.png photo.bbc --target-bpp 0.5
  bbcodec encode photo.png photo.bbc -q 4 -e 3       smaller file, slower encode
  bbcodec encode *.png packed/                  several images into a folder
  bbcodec encode photos/ compressed/ -q 5 --jobs 2 --recursive""")
@click.argument("paths", nargs=-1, required=True, metavar="IN... OUT")
@click.option("-q", "--quality", type=FiniteFloatRange(Q.MIN, Q.MAX), default=None,
              help=f"{Q.MIN} (smallest) .. {Q.MAX} (best); fractions step between qualities.  [default: {Q.DEFAULT}]")
@click.option("--target-bpp", type=FiniteFloatRange(0, min_open=True), default=None,
              help="Pick the quality giving the largest file not above this many bits per pixel.")
@click.option("--target-psnr", type=FiniteFloatRange(0, min_open=True), default=None,
              help="Pick the quality giving the smallest file with at least this PSNR (dB).")
@click.option("-e", "--effort", type=click.IntRange(efforts.MIN, efforts.MAX), default=efforts.DEFAULT,
              show_default=True, help=f"Encoder effort {efforts.MIN} (fast) .. {efforts.MAX} (smallest files, "
              "slowest); decoding is the same at every effort.")
@click.option("--tune", type=click.Choice(TUNES), default=None,
              help="Weights tuned for the eye (visual: the default weights) or for PSNR (psnr: trained on RGB "
                   "MSE, for paper-style tables); the same decoder reads both.")
@click.option("--weights", "weights_file", type=click.Path(dir_okay=False), default=None,
              help="Encode with this weights file (.npz) instead of the default (not with --tune); decoding "
                   "finds it by its hash in $BBCODEC_WEIGHTS or the shipped weights.")
@click.option("--aq", type=FiniteFloatRange(0, MAX_AQ), default=None, metavar="STRENGTH",
              help=f"Adaptive quantisation, 0 (off) .. {MAX_AQ:g}: areas smoother than the picture's average "
                   f"get a higher quality, since the eye sees errors there (format version 6).  [default: the weights' "
                   f"tuning's: visual {AQ_STRENGTH['visual']:g}, psnr {AQ_STRENGTH['psnr']:g}]")
@click.option("--linear-filter/--no-linear-filter", default=True,
              help="Let the encoder send a small linear filter fitted to the decoded picture, where its bytes "
                   "buy more than they cost (format version 7); --no-linear-filter keeps files readable by "
                   "decoders of versions 1 to 6.  [default: --linear-filter]")
@click.option("--lossless/--no-lossless", default=None,
              help="Write the image exactly (format version 5, no networks; not with -q, targets, --effort, "
                   "--tune, --weights, --aq), or never so.  [default: exactly when that file is the smaller, as for "
                   "text, screenshots, charts and ramps]")
@click.option("--metadata", default="all", show_default=True, callback=_metadata,
              help="What to keep of the input's metadata: all, none, or a comma list of icc, exif, xmp "
                   "(as cwebp's -metadata; the pixels are turned upright and the EXIF orientation reset).")
@click.option("--flatten", metavar="COLOUR", default=None,
              help="Compose a transparent image over COLOUR (a name or #rrggbb) instead of keeping its alpha "
                   "plane (kept exactly by default).")
@_many_options(ENCODE_THREADS_HELP)
@click.option("-f", "--force", is_flag=True, help="Write OUT even if its extension is not .bbc.")
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable summary (or error) on stdout.")
@click.option("--quiet", is_flag=True, help="Print nothing on success.")
@click.option("-v", "--verbose", is_flag=True, help="Also print PSNR of the decoded image and the weights used.")
def encode(paths: tuple[str, ...], quality: float | None, target_bpp: float | None, target_psnr: float | None,
           effort: int, tune: str | None, weights_file: str | None, aq: float | None, linear_filter: bool,
           lossless: bool | None, metadata: frozenset[str], flatten: str | None, jobs: int,
           threads: int | None, cluster_address: str | None, manifest: str | None, recursive: bool, force: bool,
           as_json: bool, quiet: bool, verbose: bool) -> None:
    """Compress image IN (PNG, JPEG, ...; '-' = stdin) to OUT.bbc ('-' = stdout). A folder
    IN: every image in it into the folder OUT; several INs (or an existing folder OUT):
    each into OUT as NAME.bbc."""
    from .codec import check
    from .files import EncodeOptions, encode_file

    try:
        check(quality, target_bpp, target_psnr, effort, tune=tune, weights=weights_file,
              lossless=lossless, aq=aq)  # usage errors
    except Error as e:
        raise click.UsageError(str(e)) from None
    dst = paths[-1]
    if as_json and dst == "-":
        raise click.UsageError("--json prints on stdout, so OUT cannot be '-'")
    if flatten is not None:
        from PIL import ImageColor

        try:
            ImageColor.getrgb(flatten)
        except ValueError:
            raise click.BadParameter(f"unknown colour {flatten!r} (a name such as white, or #rrggbb)",
                                     param_hint="--flatten") from None
    opts = EncodeOptions(quality, target_bpp, target_psnr, verbose or as_json, weights_file, tune, threads,
                         effort, metadata, flatten, lossless, aq, linear_filter)
    if _run_many("encode", paths, opts, jobs, as_json, quiet, recursive, ".bbc",
                 _cluster(cluster_address, manifest, jobs, threads)):
        return
    src = paths[0]
    suffix = os.path.splitext(dst)[1]
    if dst != "-" and suffix and suffix.lower() != ".bbc" and not force and not _is_device(dst):
        raise _fail(f"{dst}: bbcodec writes .bbc files, not {suffix}; name the output .bbc "
                    f"(or give --force)", as_json, src)
    _no_binary_to_terminal(dst)
    try:
        r = encode_file(src, dst, opts, progress_for=lambda px: _progress(px, quiet, as_json))
    except Error as e:
        raise _fail(one_line(str(e)), as_json, src) from None
    coded = ("lossless" if r.lossless else f"reduced to {r.colours} colours (smaller and closer than quality "
             f"{r.quality:g})" if r.colours else f"quality {r.quality:g}")
    line = (f"{dst}: {r.width}x{r.height}{' gray' if r.channels == 1 else ''}, {coded}, "
            f"{r.bytes} bytes, {r.bpp:.4f} bpp, {r.seconds:.2f} s")
    if r.effort != efforts.DEFAULT:
        line += f", effort {r.effort}"
    if r.psnr is not None:
        line += f", PSNR {r.psnr:.2f} dB"
    if r.target_met is False:
        line += " (target not reachable: nearest quality used)"
    if r.carries:
        line += f", with {', '.join(r.carries)}"
    if verbose and r.weights:
        line += f", weights {r.weights}"
    _report_single(r, as_json, quiet, line)


def _is_device(path: str) -> bool:
    import stat

    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return stat.S_ISCHR(mode) or stat.S_ISFIFO(mode)


def _no_quality(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value is not None:
        raise click.UsageError("decode takes no quality: the .bbc file stores it (-q is --quality of "
                               "encode; --quiet prints nothing)", ctx)


@cli.command(epilog=EXIT_CODES + """
\b
Output format: by OUT's extension for lossless formats (.png, .tif/.tiff, .bmp,
.ppm/.pgm); PNG for '-' and a name without extension; lossy ones (.jpg, .webp,
.avif...) are refused unless --format names them, and so are other extensions. The
file's alpha plane and metadata (ICC, EXIF, XMP) go into PNG and TIFF (and JPEG and
WebP with --format; an image with alpha is refused in a format without it). -q is not an option of decode (the quality
is in the file); --quiet prints nothing.
\b
Examples:
  bbcodec decode photo.bbc photo.png
  bbcodec decode photo.bbc photo.tiff
  bbcodec decode *.bbc restored/
  bbcodec decode compressed/ decoded/ --jobs 2""")
@click.argument("paths", nargs=-1, required=True, metavar="IN... OUT")
@click.option("--format", "fmt", type=click.Choice(list(FORMATS), case_sensitive=False), default=None,
              help="Write this format whatever OUT's extension (jpeg and webp at quality 95: lossy).")
@_many_options(THREADS_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable summary (or error) on stdout.")
@click.option("--quiet", is_flag=True, help="Print nothing on success.")
@click.option("-v", "--verbose", is_flag=True, help="Also print the quality, bpp and weights of the file.")
@click.option("-q", "no_quality", default=None, hidden=True, expose_value=False, callback=_no_quality)
def decode(paths: tuple[str, ...], fmt: str | None, jobs: int, threads: int | None, cluster_address: str | None,
           manifest: str | None, recursive: bool, as_json: bool, quiet: bool, verbose: bool) -> None:
    """Decompress IN.bbc ('-' = stdin) to the image OUT ('-' = stdout, PNG). A folder IN:
    every .bbc in it into the folder OUT; several INs (or an existing folder OUT): each
    into OUT as NAME.png (or the --format's extension)."""
    from .files import FORMAT_SUFFIX, DecodeOptions, decode_file

    dst = paths[-1]
    if as_json and dst == "-":
        raise click.UsageError("--json prints on stdout, so OUT cannot be '-'")
    suffix = FORMAT_SUFFIX[FORMATS[fmt.lower()]] if fmt else ".png"
    if _run_many("decode", paths, DecodeOptions(fmt.lower() if fmt else None, threads), jobs, as_json, quiet,
                 recursive, suffix, _cluster(cluster_address, manifest, jobs, threads)):
        return
    src = paths[0]
    _no_binary_to_terminal(dst)
    try:
        r = decode_file(src, dst, fmt, progress_for=lambda px: _progress(px, quiet, as_json), threads=threads)
    except Error as e:
        raise _fail(one_line(str(e)), as_json, src) from None
    line = f"{dst}: {r.width}x{r.height}, decoded in {r.seconds:.2f} s"
    if verbose:
        line += (f", lossless, {r.bpp:.4f} bpp" if r.lossless
                 else f", lossless of the image in fewer colours, {r.bpp:.4f} bpp" if r.weights is None
                 else f", quality {r.quality:g}, {r.bpp:.4f} bpp, weights {r.weights}")
    _report_single(r, as_json, quiet, line)


@cli.command(epilog=EXIT_CODES)
@click.argument("srcs", nargs=-1, required=True, metavar="IN...")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (a list for several files).")
def info(srcs: tuple[str, ...], as_json: bool) -> None:
    """Print the header of each IN.bbc: size, quality, model, bpp, checksums. A file
    whose CRC is bad shows what its header says, and the exit code is 1."""
    from .files import info_file

    reports, bad = [], False
    for n, src in enumerate(srcs):
        try:
            fields, ok = info_file(src)
        except Error as e:
            bad = True
            msg = one_line(str(e))
            if as_json:
                reports.append({"input": src, "error": msg})
            else:
                click.echo(f"bbcodec: error: {msg}", err=True)
            continue
        bad = bad or not ok
        if as_json:
            reports.append(fields if len(srcs) == 1 else {"input": src, **fields})
            continue
        if n:
            click.echo("")
        rows = [("file", src)] if len(srcs) > 1 else []
        lossless = fields["lossless"]
        rows += [
            ("format version", f"{fields['version']}, lossless" + (" (of the image in fewer colours)"
                                                                   if fields["reduced"] else "") if lossless else
             f"{fields['version']}, {fields['streams']} stream{'s' if fields['streams'] > 1 else ''}"),
            ("size", f"{fields['width']}x{fields['height']}, {fields['channels']} channels"),
            ("quality", f"{fields['quality']:g}" + (" (asked for; not used: the pixels are stored exactly)"
                                                    if lossless else "")),
        ]
        if lossless:
            rows += [("coding", f"pixels stored exactly: {lossless} transform and LZMA2 (no networks, no weights)")]
        else:
            rows += [
                ("model", fields["model"] or f"{fields['family']} family (id {fields['model_id']}), weights not installed"),
                ("weights sha256", f"{fields['weights_sha256']}... ({fields['weights'] or 'not installed'})"),
            ]
        rows += [
            ("file size", f"{fields['file_bytes']} bytes ({fields['payload_bytes']} payload)"),
            ("bits per pixel", f"{fields['bpp']:.4f}"),
            ("image digest", f"{fields['image_digest']} (sha256 prefix of the decoded pixels)"),
            ("carries", ", ".join(f"{k} ({v} bytes)" for k, v in fields["chunks"].items()) or "pixels only"),
        ]
        if not lossless:
            rows += [("flat blocks", f"{fields['flat_blocks']} (of one colour, not coded by the networks)")]
            if fields["quality_range"]:
                low, high = fields["quality_range"]
                rows += [("block quality", f"{low:g} .. {high:g} (adaptive quantisation: smooth areas higher)")]
            if fields["linear_filter"]:
                rows += [("linear filter", f"{fields['linear_filter']}, {fields['linear_filter_bytes']} bytes "
                                           "(fitted by the encoder to this picture)")]
        rows += [("crc32", "ok" if ok else "BAD: the file is damaged and will not decode")]
        for k, v in rows:
            click.echo(f"{k + ':':<16}{v}")
        if not ok:
            click.echo(f"bbcodec: error: {display_name(src)}: corrupt .bbc file (CRC-32 mismatch)", err=True)
    if as_json:
        click.echo(json.dumps(reports[0] if len(srcs) == 1 else reports, indent=2))
    if bad:
        sys.exit(1)


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
              show_default=True, help="Folder for the page (index.html), its plots and images, the JSON curves and CSV tables.")
@click.option("--qualities", default=",".join(map(str, Q.TRAINED)), show_default=True, callback=_csv(float),
              help="bbcodec qualities (baselines sweep their own range).")
@click.option("--codecs", default=",".join(CODECS), show_default=True, callback=_csv(str, CODECS),
              help="Codecs to run.")
@click.option("--jobs", type=click.IntRange(1, 64), default=None, help="Parallel processes [default: cores].")
@click.option("--limit", type=click.IntRange(1), default=None, help="Use only the first N images.")
@click.option("--anchors", type=click.Path(path_type=Path), default=None,
              help="Folder of stored curves (CompressAI-layout JSON) to compare with, not re-run.")
@click.option("--tune", type=click.Choice(TUNES), default=None,
              help="bbcodec's weights: those tuned for the eye (visual) or for PSNR (psnr).  [default: the default "
                   "weights]")
@click.option("--aq", type=FiniteFloatRange(0, MAX_AQ), default=None, metavar="STRENGTH",
              help="bbcodec's adaptive quantisation, as encode's --aq.  [default: the weights' tuning's]")
@click.option("--linear-filter/--no-linear-filter", default=True,
              help="bbcodec's encoder-fitted linear filter, as encode's.  [default: --linear-filter]")
def bench(folder: Path, out_dir: Path, qualities: list[float], codecs: list[str], jobs: int | None,
          limit: int | None, anchors: Path | None, tune: str | None, aq: float | None, linear_filter: bool) -> None:
    """Rate-distortion and speed of bbcodec against JPEG, WebP, AVIF, JPEG XL on FOLDER:
    PSNR, MS-SSIM and SSIMULACRA2, BD-rates, the codecs side by side at the same file
    size, written as a page, OUT/index.html (needs: pip install 'bbcodec[bench]').

    \b
    Example:
      bbcodec bench ../shared/data/kodak --out report/
      bbcodec bench ../shared/data/kodak --codecs bbcodec --anchors ../shared/anchors/kodak
      bbcodec bench ../shared/data/kodak --tune psnr --out report-psnr/
    """
    import shlex

    from . import bench as b

    if any(not Q.MIN <= q <= Q.MAX for q in qualities):
        raise click.BadParameter(f"qualities must be within {Q.MIN}..{Q.MAX}", param_hint="--qualities")
    try:
        b.check_dependencies()  # before any work: one line naming the extra to install
        todo = b.plan(folder, qualities, codecs, limit, anchors, tune, aq, linear_filter)
        with click.progressbar(length=len(todo.tasks), label="bench", show_eta=True, file=sys.stderr,
                               hidden=not sys.stderr.isatty()) as bar:
            result = b.run(todo, out_dir, jobs or b.default_jobs(), bar.update,
                           command=shlex.join(["bbcodec", *sys.argv[1:]]))
    except Error as e:
        raise Failure(str(e)) from None
    click.echo(b.format_report(result))
    click.echo(f"wrote {out_dir}/: index.html (open it in a browser), " + ", ".join(f"{n}.json" for n in result["curves"])
               + ", per_image.csv, bd_rate.csv, environment.json" + "".join(f", {f}" for f in result["plots"])
               + (", side-by-side/" if result["side_by_side"] else "") + f"; {result['seconds']:.0f} s")


@cli.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []},
             add_help_option=False)
@click.pass_context
def train(ctx: click.Context) -> None:
    """Train a model (needs torch: pip install 'bbcodec[train]'); --help lists the options."""
    from .train import train as trainer  # imports torch if there is one: --help works without

    try:
        trainer.main(ctx.args)
    except Error as e:  # ExtraError: no torch
        raise Failure(str(e)) from None


@cli.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []},
             add_help_option=False)
@click.pass_context
def freeze(ctx: click.Context) -> None:
    """Freeze a training checkpoint into a weights file, its SHA256SUMS line and a
    model-card stub (needs torch); --help lists the options."""
    from .train import freeze as freezer  # imports torch if there is one: --help works without

    try:
        freezer.main(ctx.args, prog="bbcodec freeze")
    except Error as e:  # ExtraError: no torch
        raise Failure(str(e)) from None


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
