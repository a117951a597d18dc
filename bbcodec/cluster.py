"""Folder runs on a Dask distributed cluster, resumable: `bbcodec encode IN/ OUT/ --cluster
ADDRESS` and encode_folder / decode_folder from Python (docs/cluster.md).

Each file is one Dask task: a worker codes it with files.py's own per-file code (the
CLI's: same bytes, same errors), in one process (threads=1: a Dask worker process is
daemonic and has threads of its own, so it never forks), writing the output beside its
target and renaming it into place. Workers must see the inputs and outputs at the same
paths as the client (a shared file system), and have the same bbcodec installed.

The client keeps a manifest (JSON lines, OUT/.bbcodec-manifest.jsonl by default): one
record per file as it finishes, flushed and synced, so that a stopped run loses only the
files in flight. A rerun skips a file whose last record says "done" with the same options
and whose output still has the recorded size and sha256; it codes every other file again
(failed, never finished, output missing or changed). Only this module imports Dask, and
only the CLI's --cluster imports this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import CancelledError, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import IO, Any

from . import files
from .coding import effort as efforts
from .errors import ClusterError
from .files import DecodeOptions, DecodeResult, EncodeOptions, EncodeResult, Failed, Outcome

MANIFEST_NAME = ".bbcodec-manifest.jsonl"  # hidden: a folder run never takes it as an input
INSTALL_HINT = "pip install 'bbcodec[cluster]'"
_TEMP = re.compile(r"\.(?P<name>.+)\.[0-9a-f]{8}\.tmp")  # files._replace's temporary files


def _distributed() -> Any:
    """The distributed module, or a ClusterError saying how to install it."""
    try:
        import distributed
    except ImportError as e:
        raise ClusterError(f"--cluster needs Dask distributed ({e}); install with: {INSTALL_HINT}") from None
    return distributed


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


_malloc_tuned = False


def _tune_malloc() -> None:
    """Undo what Dask's nanny sets for its workers, MALLOC_TRIM_THRESHOLD_: glibc then keeps
    its mmap threshold at 128 KB, so every larger array of the coding loop is mapped and
    unmapped afresh (a 12 MP image codes about 30 % slower). Explicit thresholds, the most
    glibc's dynamic ones reach, give the speed of a process without the variable."""
    global _malloc_tuned
    if _malloc_tuned or "MALLOC_TRIM_THRESHOLD_" not in os.environ:
        return
    _malloc_tuned = True
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD: arrays below 32 MiB come from the heap
        libc.mallopt(-1, 64 << 20)  # M_TRIM_THRESHOLD: and the heap is not shrunk after each
    except (OSError, AttributeError):  # not glibc
        pass


def code_one(task: tuple[str, str, EncodeOptions | DecodeOptions]) -> tuple[Outcome, str | None]:
    """The task a worker runs for one file: (absolute input, absolute output, options) ->
    the file's outcome (as files.py's folder runs give it) and the sha256 of the output
    written (None if it failed)."""
    _tune_malloc()
    src, dst, opts = task
    outcome = files._run_one((src, dst, opts, None))
    if isinstance(outcome, Failed):
        return outcome, None
    try:
        return outcome, sha256_file(dst)
    except OSError as e:  # written, then gone (another run's cleanup?): failed, redone next time
        return Failed(src, f"{src}: cannot read back {dst}: {e.strerror or e}"), None


def options_record(opts: EncodeOptions | DecodeOptions) -> dict[str, Any]:
    """The options that decide an output's bytes, as the manifest stores them."""
    d = asdict(opts)
    d.pop("threads", None)
    d.pop("measure_psnr", None)
    if "metadata" in d:  # a set, as a sorted list (JSON)
        d["metadata"] = sorted(d["metadata"])
    return d


@dataclass(frozen=True)
class Record:
    """One line of the manifest: what became of one input."""

    input: str  # absolute path
    output: str  # absolute path
    status: str  # "done" or "failed"
    bytes: int | None  # of the output
    bpp: float | None
    sha256: str | None  # of the output
    error: str | None
    kind: str  # "encode" or "decode"
    options: dict[str, Any]
    result: dict[str, Any] = field(default_factory=dict)  # the file's --json summary
    time: float = 0.0  # when it was written (seconds since the epoch)


class Manifest:
    """The manifest of a run: read at the start (the last record of each input counts; a
    torn last line, from a client killed while writing it, is left out) and appended to,
    one synced line per finished file. Held under an exclusive lock for the run, so that
    two runs never write one manifest."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.last: dict[tuple[str, str], Record] = {}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._file: IO[str] = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 - closed by close()
        except OSError as e:
            raise ClusterError(f"cannot open the manifest {self.path}: {e.strerror or e}") from None
        try:
            import fcntl

            fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:  # not on a POSIX system: no lock
            pass
        except OSError:
            self._file.close()
            raise ClusterError(f"another run is using the manifest {self.path}; wait for it to end") from None
        self._file.seek(0)
        text = self._file.read()
        for line in text.splitlines():
            try:
                r = Record(**json.loads(line))
            except (ValueError, TypeError):  # a torn or foreign line
                continue
            self.last[(r.input, r.output)] = r
        if text and not text.endswith("\n"):  # a torn last line: the next record starts afresh
            self._write("\n")

    def _write(self, text: str) -> None:
        try:
            self._file.write(text)
            self._file.flush()
            os.fsync(self._file.fileno())
        except OSError as e:
            raise ClusterError(f"cannot write the manifest {self.path}: {e.strerror or e}") from None

    def append(self, record: Record) -> None:
        self._write(json.dumps(asdict(record), separators=(",", ":")) + "\n")
        self.last[(record.input, record.output)] = record

    def close(self) -> None:
        self._file.close()


def _verified(record: Record | None, kind: str, options: dict[str, Any]) -> bool:
    """Whether a record says its output is done, with these options, and the output is
    still the file recorded (its size and sha256)."""
    if record is None or record.status != "done" or record.kind != kind or record.options != options:
        return False
    try:
        _from_record(kind, record, record.input, record.output)
    except (TypeError, ValueError):  # a record this version cannot read back: code the file again
        return False
    try:
        if os.path.getsize(record.output) != record.bytes:
            return False
        return sha256_file(record.output) == record.sha256
    except OSError:
        return False


def remove_stale_temporaries(outputs: list[str]) -> int:
    """Remove the temporary files (files._replace's) that a writer killed mid-write left
    beside these outputs; the number removed. Call only while no one writes them."""
    by_folder: dict[str, set[str]] = {}
    for out in outputs:
        folder, name = os.path.split(out)
        by_folder.setdefault(folder, set()).add(name)
    removed = 0
    for folder, names in by_folder.items():
        try:
            entries = os.listdir(folder)
        except OSError:
            continue
        for entry in entries:
            m = _TEMP.fullmatch(entry)
            if m and m["name"] in names:
                try:
                    os.unlink(os.path.join(folder, entry))
                    removed += 1
                except FileNotFoundError:
                    pass
    return removed


def _connect(cluster: Any) -> tuple[Any, list[Any]]:
    """A distributed.Client for cluster (an address, a scheduler file, "local" or
    "local:N", a Client or a cluster object), and what to close after the run (the
    client and cluster made here, in that order)."""
    d = _distributed()
    if isinstance(cluster, d.Client):
        return cluster, []
    if not isinstance(cluster, str | os.PathLike):
        client = d.Client(cluster, set_as_default=False)
        return client, [client]
    address = os.fspath(cluster)
    try:
        if address == "local" or address.startswith("local:"):
            from .coding.workers import cores

            n = int(address[6:]) if address != "local" else cores()
            if n < 1:
                raise ValueError(n)
            local = d.LocalCluster(n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1",
                                   dashboard_address="127.0.0.1:0")  # loopback only, any free port
            client = d.Client(local, set_as_default=False)
            return client, [client, local]
        if os.path.isfile(address):  # a scheduler file (dask scheduler --scheduler-file)
            client = d.Client(scheduler_file=address, timeout="30s", set_as_default=False)
        else:
            client = d.Client(address, timeout="30s", set_as_default=False)
        return client, [client]
    except ValueError:
        raise ClusterError(f"not a cluster: {address!r} (a scheduler address such as tcp://HOST:8786, a "
                           "scheduler file, or local / local:N)") from None
    except OSError as e:  # includes the connection timeouts of distributed.comm
        raise ClusterError(f"cannot reach the Dask scheduler at {address}: {e}") from None


def _relabel(outcome: Outcome, src: str, dst: str, abs_src: str) -> Outcome:
    """An outcome computed on absolute paths, named by the paths as given."""
    if isinstance(outcome, Failed):
        return replace(outcome, input=src, error=outcome.error.replace(abs_src, src))
    return replace(outcome, input=src, output=dst)


def _from_record(kind: str, record: Record, src: str, dst: str) -> Outcome:
    """The outcome a verified record stands for (the file was done by an earlier run)."""
    cls = EncodeResult if kind == "encode" else DecodeResult
    names = {f for f in cls.__dataclass_fields__}
    return cls(**{**{k: v for k, v in record.result.items() if k in names}, "input": src, "output": dst})


class FolderRun:
    """A folder run on a cluster: iterate it for one outcome per pair (in the order they
    finish; those done and verified by an earlier run first). kind is "encode" or
    "decode"; pairs are (input, output) paths as files.scan_folder or plan_names give
    them; opts as files.run_folder's (threads are set to 1); cluster as _connect takes;
    manifest: its path (default: MANIFEST_NAME in the folder of the first output).
    progress(1) is called after each file. After the run: resumed (files skipped as done),
    coded (files sent to the cluster), temporaries_removed."""

    def __init__(self, kind: str, pairs: list[tuple[str, str]], opts: EncodeOptions | DecodeOptions | None,
                 cluster: Any, manifest: str | os.PathLike[str] | None = None,
                 progress: Callable[[int], None] | None = None) -> None:
        if kind not in ("encode", "decode"):
            raise ValueError(f"kind must be 'encode' or 'decode', not {kind!r}")
        if opts is None:
            opts = DecodeOptions() if kind == "decode" else EncodeOptions()
        opts = replace(opts, threads=1)  # one process per image: Dask workers must not fork
        if isinstance(opts, EncodeOptions) and opts.weights is not None:
            opts = replace(opts, weights=os.path.abspath(opts.weights))  # workers have their own cwd
        self.kind, self.pairs, self.opts, self.cluster, self.progress = kind, pairs, opts, cluster, progress
        if manifest is None:  # in the outputs' common folder
            folders = [os.path.dirname(os.path.abspath(d)) for _, d in pairs]
            manifest = Path(os.path.commonpath(folders) if folders else ".") / MANIFEST_NAME
        self.manifest_path = Path(manifest)
        self.resumed = self.coded = self.temporaries_removed = 0

    def __iter__(self) -> Iterator[Outcome]:
        manifest = Manifest(self.manifest_path)
        try:
            yield from self._run(manifest)
        finally:
            manifest.close()

    def _tick(self) -> None:
        if self.progress:
            self.progress(1)

    def _run(self, manifest: Manifest) -> Iterator[Outcome]:
        kind, opts = self.kind, self.opts
        options = options_record(opts)
        absolute = [(os.path.abspath(s), os.path.abspath(d)) for s, d in self.pairs]
        records = [manifest.last.get(a) for a in absolute]
        with ThreadPoolExecutor(8) as pool:  # reading the outputs back: I/O, in parallel
            verified = list(pool.map(lambda r: _verified(r, kind, options), records))
        self.temporaries_removed = remove_stale_temporaries([d for _, d in absolute])
        planned: set[str] = {os.path.normcase(d) for (_, d), ok in zip(absolute, verified, strict=True) if ok}
        todo: list[tuple[int, tuple[str, str, EncodeOptions | DecodeOptions]]] = []
        for i, ((src, dst), (a_src, a_dst), ok, record) in enumerate(
                zip(self.pairs, absolute, verified, records, strict=True)):
            if ok:
                assert record is not None
                self.resumed += 1
                self._tick()
                yield _from_record(kind, record, src, dst)
                continue
            refused = files._refusal(src, dst, planned)
            if refused:
                failed = Failed(src, refused)
                self._record(manifest, i, failed, None)
                self._tick()
                yield failed
                continue
            todo.append((i, (a_src, a_dst, opts)))
        if not todo:
            return
        try:
            yield from self._submit(manifest, todo)
        finally:
            self.temporaries_removed += remove_stale_temporaries([task[1] for _, task in todo])

    def _record(self, manifest: Manifest, i: int, outcome: Outcome, digest: str | None) -> None:
        a_src, a_dst = (os.path.abspath(p) for p in self.pairs[i])
        options = options_record(self.opts)
        if isinstance(outcome, Failed):
            manifest.append(Record(a_src, a_dst, "failed", None, None, None, outcome.error, self.kind, options,
                                   outcome.to_dict(), time.time()))
        else:
            manifest.append(Record(a_src, a_dst, "done", outcome.bytes, outcome.bpp, digest, None, self.kind,
                                   options, outcome.to_dict(), time.time()))

    def _submit(self, manifest: Manifest, todo: list[tuple[int, tuple[str, str, Any]]]) -> Iterator[Outcome]:
        d = _distributed()
        client, owned = _connect(self.cluster)
        token = uuid.uuid4().hex[:12]
        futures: dict[Any, int] = {}
        try:
            queue = iter(todo)
            window = max(16, 4 * sum(client.nthreads().values()))  # tasks in flight: the scheduler's, not all

            def submit(n: int) -> list[Any]:
                new = []
                for i, task in queue:
                    fut = client.submit(code_one, task, key=f"bbcodec-{self.kind}-{token}-{i}", pure=False)
                    futures[fut] = i
                    new.append(fut)
                    if len(new) >= n:
                        break
                return new

            pending = d.as_completed(submit(window), loop=client.loop)
            done = 0
            for fut in pending:
                i = futures.pop(fut)
                src, dst = self.pairs[i]
                outcome: Outcome
                digest = None
                if fut.status == "finished":
                    outcome, digest = fut.result()
                    outcome = _relabel(outcome, src, dst, os.path.abspath(src))
                elif fut.status in ("cancelled", "lost"):
                    outcome = Failed(src, f"{src}: the cluster lost this file's task (cancelled); a rerun codes it")
                else:  # e.g. KilledWorker: the workers coding it died allowed-failures times
                    e = fut.exception()
                    outcome = Failed(src, f"{src}: the cluster failed to code it ({type(e).__name__}: {e}); "
                                          "a rerun codes it again")
                self._record(manifest, i, outcome, digest)
                self.coded += 1
                done += 1
                if done % 64 == 0:  # workers may have joined (or left)
                    window = max(16, 4 * sum(client.nthreads().values()))
                for new in submit(max(1, window - len(futures))):
                    pending.add(new)
                self._tick()
                yield outcome
        except (OSError, CancelledError, asyncio.CancelledError) as e:  # the scheduler went away
            raise ClusterError(f"the cluster stopped answering ({type(e).__name__}: {e}); finished files are "
                               f"in {self.manifest_path}, and a rerun codes the rest") from None
        finally:
            if futures:  # stopped early (Ctrl-C, an error): tasks not yet finished are dropped
                with contextlib.suppress(Exception):  # a scheduler gone cannot be told
                    client.cancel(list(futures))
            for thing in owned:
                thing.close()


def _run_dir(kind: str, src: str | os.PathLike[str], dst: str | os.PathLike[str],
             opts: EncodeOptions | DecodeOptions, cluster: Any, recursive: bool,
             manifest: str | os.PathLike[str] | None, progress: Callable[[int], None] | None,
             suffix: str | None) -> FolderReport:
    plan = files.scan_folder(Path(src), Path(dst), decode=(kind == "decode"), recursive=recursive, suffix=suffix)
    Path(dst).mkdir(parents=True, exist_ok=True)
    run = FolderRun(kind, plan.pairs, opts, cluster, manifest or Path(dst) / MANIFEST_NAME, progress)
    outcomes = list(run)
    order = {s: n for n, (s, _) in enumerate(plan.pairs)}
    outcomes.sort(key=lambda r: order[r.input])
    return FolderReport(outcomes, files.summarize(kind, outcomes, len(plan.skipped)), run.resumed, run.coded,
                        run.manifest_path)


@dataclass(frozen=True)
class FolderReport:
    """What encode_folder / decode_folder did: one outcome per file (in the folder's
    order), the totals, how many files an earlier run had done (resumed) and how many
    this run sent to the cluster (coded), and the manifest."""

    outcomes: list[Outcome]
    summary: files.FolderSummary
    resumed: int
    coded: int
    manifest: Path


def encode_folder(src: str | os.PathLike[str], dst: str | os.PathLike[str], cluster: Any, *,
                  quality: float | None = None, target_bpp: float | None = None,
                  target_psnr: float | None = None, effort: int = efforts.DEFAULT,
                  weights: str | None = None, tune: str | None = None, lossless: bool | None = None,
                  aq: float | None = None, linear_filter: bool = True, measure_psnr: bool = False,
                  recursive: bool = False,
                  metadata: str = "all", flatten: str | None = None,
                  manifest: str | os.PathLike[str] | None = None,
                  progress: Callable[[int], None] | None = None) -> FolderReport:
    """Encode every image of the folder src into the folder dst on a Dask cluster (an
    address, a scheduler file, "local" / "local:N", a distributed.Client or a cluster
    object), as `bbcodec encode src dst --cluster ...` does; resumable (see FolderRun).
    tune, lossless, aq, linear_filter, metadata and flatten as bbcodec.encode's."""
    from .codec import check, parse_metadata

    check(quality, target_bpp, target_psnr, effort, tune=tune, weights=weights, lossless=lossless, aq=aq,
          linear_filter=linear_filter)
    opts = EncodeOptions(quality, target_bpp, target_psnr, measure_psnr, weights=weights, tune=tune, threads=1,
                         effort=effort, metadata=parse_metadata(metadata), flatten=flatten, lossless=lossless,
                         aq=aq, linear_filter=linear_filter)
    return _run_dir("encode", src, dst, opts, cluster, recursive, manifest, progress, ".bbc")


def decode_folder(src: str | os.PathLike[str], dst: str | os.PathLike[str], cluster: Any, *,
                  format: str | None = None, recursive: bool = False,
                  manifest: str | os.PathLike[str] | None = None,
                  progress: Callable[[int], None] | None = None) -> FolderReport:
    """Decode every .bbc file of the folder src into images in dst (PNG, or format: a key
    of files.FORMATS) on a Dask cluster, as encode_folder."""
    if format is not None and format.lower() not in files.FORMATS:
        raise ValueError(f"format must be one of {', '.join(files.FORMATS)}, not {format!r}")
    suffix = files.FORMAT_SUFFIX[files.FORMATS[format.lower()]] if format else ".png"
    opts = DecodeOptions(format.lower() if format else None, 1)
    return _run_dir("decode", src, dst, opts, cluster, recursive, manifest, progress, suffix)
