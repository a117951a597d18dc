"""Folder runs on a Dask cluster (cluster.py, --cluster): a local cluster of two worker
processes started here, on 127.0.0.1 only. Outputs are byte-identical to the plain
CLI's; a worker killed mid-run loses nothing; a stopped run resumes, redoing only what is
not done and verified; without --cluster Dask is never imported."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import KODAK, random_image
from PIL import Image

from bbcodec import cluster as cl
from bbcodec.errors import ClusterError

N = 8


def cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bbcodec.cli", *args], capture_output=True, timeout=timeout)


@pytest.fixture(scope="module", autouse=True)
def no_thread_left():
    """After this module, no Dask thread or child process is left in the test process: the tests after it
    fork coding workers, which a process with other threads must not (workers.can_fork).
    Dask's offload thread outlives every client; its executor is swapped for a fresh one
    (whose thread starts only if used) and ended."""
    yield
    from concurrent.futures import ThreadPoolExecutor

    import distributed.utils as du

    old, du._offload_executor = du._offload_executor, ThreadPoolExecutor(1, thread_name_prefix="Dask-Offload")
    old.shutdown(wait=True)
    # Nor a child: the resource tracker that starting the workers (spawn) started (the
    # thread tests count this process's children); it starts again if needed.
    from multiprocessing import resource_tracker

    resource_tracker._resource_tracker._stop()


def _local_cluster(config: dict | None = None):  # noqa: ANN202 - a fixture's generator
    """A local cluster of two worker processes of one thread each, on 127.0.0.1 only,
    with a client; closed after its tests (config: Dask settings while it starts)."""
    import dask as dask_config
    from distributed import Client, LocalCluster

    with dask_config.config.set(config or {}):
        local = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                             dashboard_address="127.0.0.1:0")
    client = Client(local, set_as_default=False)
    yield local, client
    client.close()
    local.close()


@pytest.fixture(scope="module")
def dask():
    """A local cluster (_local_cluster) with Dask's default retries."""
    yield from _local_cluster()


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """N crops of Kodak images, 128x192 (a tenth of a second or so each to encode)."""
    folder = tmp_path_factory.mktemp("cluster") / "photos"
    folder.mkdir()
    for i in range(N):
        path = KODAK / f"kodim{i + 1:02d}.png"
        if path.exists():
            with Image.open(path) as im:
                arr = np.asarray(im.convert("RGB"))[100:228, 200:392]
        else:
            arr = random_image(128, 192, seed=i)
        Image.fromarray(np.ascontiguousarray(arr)).save(folder / f"p{i}.png")
    return folder


@pytest.fixture(scope="module")
def reference(photos, tmp_path_factory) -> dict[str, bytes]:
    """What the plain CLI writes for each photo (a folder run and, for one, a single file)."""
    out = tmp_path_factory.mktemp("reference")
    proc = cli("encode", str(photos), str(out / "folder"), "--quiet")
    assert proc.returncode == 0, proc.stderr
    ref = {p.name: p.read_bytes() for p in (out / "folder").glob("*.bbc")}
    assert cli("encode", str(photos / "p0.png"), str(out / "one.bbc"), "--quiet").returncode == 0
    assert (out / "one.bbc").read_bytes() == ref["p0.bbc"]
    return ref


def records(folder: Path) -> list[dict]:
    """The manifest's records (a torn line, which the test writes on purpose, left out)."""
    out = []
    for line in (folder / cl.MANIFEST_NAME).read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            assert line == '{"input": "torn', line
    return out


def outputs(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.glob("*.bbc")}


def temporaries(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]


def final_states(folder: Path) -> dict[str, dict]:
    """The state of each input: its last record."""
    return {r["input"]: r for r in records(folder)}


def test_a_folder_coded_on_the_cluster_is_the_cli_s_bytes_and_a_rerun_skips_it(dask, photos, reference,
                                                                                tmp_path):
    local, _ = dask
    out = tmp_path / "packed"
    proc = cli("encode", str(photos), str(out), "--cluster", local.scheduler_address)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.decode().strip().splitlines() == [f"encoded {N} of {N} files: "
                                                         + proc.stderr.decode().split(": ", 1)[1].strip()]
    assert outputs(out) == reference and not temporaries(out)
    recs = records(out)
    assert len(recs) == N and {r["status"] for r in recs} == {"done"}
    assert sorted(Path(r["input"]).name for r in recs) == sorted(p.name for p in photos.iterdir())
    for r in recs:
        assert set(r) >= {"input", "output", "bytes", "bpp", "status", "error", "sha256"}
        assert Path(r["output"]).stat().st_size == r["bytes"] and r["error"] is None
    again = cli("encode", str(photos), str(out), "--cluster", local.scheduler_address, "--json")
    assert again.returncode == 0, again.stderr
    report = json.loads(again.stdout)
    assert report["cluster"]["resumed"] == N and report["cluster"]["coded"] == 0
    assert report["summary"]["done"] == N and report["summary"]["bytes_after"] == sum(map(len, reference.values()))
    assert [Path(f["input"]).name for f in report["files"]] == [f"p{i}.png" for i in range(N)]
    assert len(records(out)) == N  # nothing appended: nothing was coded


def test_decode_on_the_cluster_is_the_cli_s_bytes(dask, photos, reference, tmp_path):
    _, client = dask
    packed = tmp_path / "packed"
    packed.mkdir()
    for name, data in reference.items():
        (packed / name).write_bytes(data)
    assert cli("decode", str(packed), str(tmp_path / "plain"), "--quiet").returncode == 0
    report = cl.decode_folder(packed, tmp_path / "restored", client)
    assert report.summary.done == N and report.coded == N and report.resumed == 0
    plain = {p.name: p.read_bytes() for p in (tmp_path / "plain").glob("*.png")}
    assert len(plain) == N and {p.name: p.read_bytes() for p in (tmp_path / "restored").glob("*.png")} == plain
    assert (tmp_path / "restored" / cl.MANIFEST_NAME).exists() and not (packed / cl.MANIFEST_NAME).exists()


def test_a_stopped_run_resumes_and_redoes_only_what_is_not_done_and_verified(dask, photos, reference, tmp_path):
    _, client = dask
    out = tmp_path / "packed"
    ticks = []

    def stop_after_three(n: int) -> None:
        ticks.append(n)
        if len(ticks) == 3:
            raise KeyboardInterrupt  # the client stopped (Ctrl-C) with files in flight

    with pytest.raises(KeyboardInterrupt):
        cl.encode_folder(photos, out, client, progress=stop_after_three)
    assert [r["status"] for r in records(out)] == ["done"] * 3
    report = cl.encode_folder(photos, out, client)
    assert (report.resumed, report.coded, report.summary.done) == (3, N - 3, N)
    assert outputs(out) == reference
    assert [r["status"] for r in records(out)] == ["done"] * N  # one record per input, all done

    # An output deleted, one changed in place, a writer's temporary left behind, a torn
    # last manifest line (a client killed while writing it): two files redone, nothing else.
    (out / "p1.bbc").unlink()
    changed = bytearray((out / "p2.bbc").read_bytes())
    changed[-1] ^= 1
    (out / "p2.bbc").write_bytes(bytes(changed))
    (out / ".p3.bbc.0badf00d.tmp").write_bytes(b"partial")
    with open(out / cl.MANIFEST_NAME, "a") as f:
        f.write('{"input": "torn')
    report = cl.encode_folder(photos, out, client)
    assert (report.resumed, report.coded) == (N - 2, 2)
    assert outputs(out) == reference and not temporaries(out)
    states = final_states(out)
    assert len(states) == N and all(r["status"] == "done" for r in states.values())

    # Other options: every file is coded again, at the new quality.
    report = cl.encode_folder(photos, out, client, quality=6)
    assert (report.resumed, report.coded) == (0, N)
    assert all(r["options"]["quality"] == 6 for r in final_states(out).values())


def test_a_failed_file_is_recorded_and_retried_by_the_rerun(dask, tmp_path):
    _, client = dask
    src = tmp_path / "photos"
    src.mkdir()
    Image.fromarray(random_image(24, 32, seed=1)).save(src / "good.png")
    (src / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    out = tmp_path / "packed"
    report = cl.encode_folder(src, out, client)
    assert (report.summary.done, report.summary.failed) == (1, 1)
    bad = final_states(out)[str(src / "bad.png")]
    assert bad["status"] == "failed" and str(src / "bad.png") in bad["error"] and bad["sha256"] is None
    Image.fromarray(random_image(24, 32, seed=2)).save(src / "bad.png")  # repaired
    report = cl.encode_folder(src, out, client)
    assert (report.resumed, report.coded, report.summary.done) == (1, 1, 2)
    assert final_states(out)[str(src / "bad.png")]["status"] == "done"


def _executing(dask_worker) -> list[str]:  # noqa: ANN001 - run on a worker by client.run
    return [str(ts.key) for ts in dask_worker.state.executing]


@pytest.fixture(scope="module")
def dask_no_retry():
    """A local cluster whose scheduler gives up on a task the first time its worker dies
    (allowed-failures 0): the killed file fails in the first run."""
    yield from _local_cluster({"distributed.scheduler.allowed-failures": 0})


@pytest.mark.parametrize("retry", [True, False], ids=["rescheduled", "failed-then-rerun"])
def test_a_worker_killed_mid_file_loses_nothing_and_a_rerun_finishes(retry, request, photos, reference, tmp_path):
    """One of the two workers is killed (SIGKILL) while it codes a file: Dask gives its
    files to the other worker (or, allowed no retry, the run records them failed); the
    rerun ends with every output the CLI's bytes, one "done" per input, no temporary file."""
    _, client = request.getfixturevalue("dask" if retry else "dask_no_retry")
    client.wait_for_workers(2, timeout=60)
    pids = client.run(os.getpid)
    killed: list[str] = []

    def kill_a_worker_mid_file(n: int) -> None:
        if killed:
            return
        for worker, keys in client.run(_executing).items():
            if keys:
                killed.extend(keys)
                os.kill(pids[worker], signal.SIGKILL)
                return

    out = tmp_path / "packed"
    first = cl.encode_folder(photos, out, client, progress=kill_a_worker_mid_file)
    assert killed, "no worker was coding a file to be killed"
    assert first.summary.files == N and not temporaries(out)
    assert (first.summary.failed == 0) == retry
    for name, data in outputs(out).items():  # whatever was written is whole
        assert data == reference[name]
    report = cl.encode_folder(photos, out, client)
    assert report.summary.done == N and report.resumed == first.summary.done
    assert report.coded == first.summary.failed  # the rerun codes exactly what the first run did not finish
    assert outputs(out) == reference and not temporaries(out)
    states = final_states(out)
    assert len(states) == N and all(r["status"] == "done" for r in states.values())
    done = [r["input"] for r in records(out) if r["status"] == "done"]
    assert sorted(done) == sorted(states)  # one "done" per input: nothing coded twice
    client.wait_for_workers(2, timeout=60)  # the nanny restarts the killed worker


def test_two_runs_never_share_a_manifest(tmp_path):
    first = cl.Manifest(tmp_path / "m.jsonl")
    try:
        with pytest.raises(ClusterError, match="another run is using the manifest"):
            cl.Manifest(tmp_path / "m.jsonl")
    finally:
        first.close()
    cl.Manifest(tmp_path / "m.jsonl").close()  # free again


def test_without_cluster_dask_is_never_imported(tmp_path):
    src = tmp_path / "photos"
    src.mkdir()
    Image.fromarray(random_image(16, 24)).save(src / "a.png")
    code = (f"import sys; from bbcodec import cli; sys.argv = ['bbcodec', 'encode', {str(src)!r}, "
            f"{str(tmp_path / 'out')!r}, '--quiet', '--jobs', '2']\n"
            "try:\n    cli.main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
            "assert not [m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')], 'dask imported'\n"
            "assert 'bbcodec.cluster' not in sys.modules")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out" / "a.bbc").exists() and not (tmp_path / "out" / cl.MANIFEST_NAME).exists()


def test_cluster_usage_errors_and_a_missing_engine(tmp_path):
    src = tmp_path / "photos"
    src.mkdir()
    Image.fromarray(random_image(16, 24)).save(src / "a.png")
    for args, message in [(["--cluster", "local", "--jobs", "2"], "--jobs is for one machine"),
                          (["--cluster", "local", "--threads", "2"], "one worker process per core"),
                          (["--manifest", "m.jsonl"], "give --cluster too")]:
        proc = cli("encode", str(src), str(tmp_path / "out"), *args)
        assert proc.returncode == 2 and message in proc.stderr.decode(), proc.stderr
    proc = cli("encode", str(src / "a.png"), str(tmp_path / "a.bbc"), "--cluster", "local")
    assert proc.returncode == 2 and b"not one file" in proc.stderr
    code = ("import sys; sys.modules['distributed'] = None; from bbcodec import cli; "
            f"sys.argv = ['bbcodec', 'decode', {str(src)!r}, {str(tmp_path / 'o')!r}, '--cluster', 'local']; "
            "cli.main()")
    (src / "a.bbc").write_bytes(b"")  # a folder with a .bbc file, so that the run starts
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith("bbcodec: error: --cluster needs Dask distributed")
    assert "pip install 'bbcodec[cluster]'" in proc.stderr
