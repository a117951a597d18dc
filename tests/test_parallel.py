"""Processes sharing one image (coding/lockstep.py, coding/workers.py, streams.py): the
same bytes and pixels for any number of threads; workers that die or fail are one clean
error; the threads option wherever users meet it. Workers are counted where they are
made, at os.fork."""

from __future__ import annotations

import hashlib
import io
import os
import re
import signal
from pathlib import Path

import numpy as np
import pytest
from conftest import random_image, tiny_frozen
from PIL import Image

import bbcodec
from bbcodec import jobs
from bbcodec.coding import format, lockstep, streams
from bbcodec.coding import loop as codec
from bbcodec.coding import workers as parallel
from bbcodec.coding.workers import Forked
from bbcodec.model import blocks
from bbcodec.model.blocks import Canvas
from bbcodec.model.weights import Weights

THREADS = (1, 2, 3, 4)


def tiny_weights(**kw) -> Weights:
    """A tiny frozen model behind the weights record the loop's callers pass."""
    return Weights(name="tiny", path=Path("tiny"), sha256="ab" * 32, model=tiny_frozen(**kw))


@pytest.fixture(params=["default", "family2"])
def shipped(request, weights, family2_weights) -> Weights:
    """The default weights (network family 3: coding groups and a post-loop filter) and
    the shipped family-2 ones (one group, no filter)."""
    return weights if request.param == "default" else family2_weights


@pytest.fixture
def every_wavefront_split(monkeypatch):
    """Up to 4 payload streams and chunks of one block, so that small images are cut
    among processes as large ones are."""
    monkeypatch.setattr(streams, "MIN_CHUNK", 1)
    monkeypatch.setattr(streams, "default_count", lambda rows, cols: min(4, rows))


FORKS: list[int] = []  # one entry per process forked (os.fork), in the process that forked it


@pytest.fixture(autouse=True)
def count_forks(monkeypatch):
    real = os.fork

    def fork() -> int:
        FORKS.append(1)
        return real()

    FORKS.clear()
    monkeypatch.setattr(os, "fork", fork)


def files_and_images(img, quality, w, **kw) -> set[tuple[str, str, str]]:
    """(file, encoder's image, decoder's image) hashes for each number of threads; with
    more than one thread, workers must have been forked (on a system with fork)."""
    out = set()
    for n in THREADS:
        FORKS.clear()
        data, rec = codec.encode(img, quality, w.model, w.prefix, threads=n, **kw)
        header, payload = format.unpack(data)
        dec = codec.decode(header, payload, w.model, threads=n)
        out.add(tuple(hashlib.sha256(x).hexdigest() for x in (data, rec.tobytes(), dec.tobytes())))
        rows, cols = blocks.grid_shape(*img.shape[:2])
        widest = blocks.widest(rows, cols)
        if parallel.can_fork() and n > 1 and header.streams > 1 and widest >= 2 * streams.MIN_CHUNK:
            k = min(n, header.streams, widest // streams.MIN_CHUNK)  # processes: a stream each at most
            assert len(FORKS) == 2 * (k - 1), "not as many processes as threads, streams and wavefronts allow"
    return out


def test_this_test_process_can_fork_workers():
    import sys

    if sys.platform.startswith("linux"):
        assert parallel.can_fork()  # else the tests below would not exercise the workers


@pytest.mark.parametrize(("h", "w", "quality"), [(1, 1, 4), (17, 130, 2.5), (130, 17, 8), (45, 67, 1)])
def test_files_and_images_are_identical_for_1_to_4_threads(h, w, quality, shipped, every_wavefront_split):
    results = files_and_images(random_image(h, w, seed=h + w), quality, shipped)
    assert len(results) == 1
    (_, rec, dec), = results
    assert rec == dec


def test_a_photo_codes_the_same_with_the_default_chunks(kodak_crop, shipped):
    big = np.tile(kodak_crop, (5, 8, 1))  # 240x512: wavefronts of up to 30 blocks, cut in two
    assert max(len(r) for r, _ in blocks.wavefronts(30, 64)) == blocks.widest(30, 64) >= 2 * streams.MIN_CHUNK
    assert streams.default_count(30, 64) == 1  # under 320 pixels high: one stream, one process
    assert len(files_and_images(big, 4, shipped)) == 1
    assert len(files_and_images(big, 4, shipped, n_streams=3)) == 1


def test_grayscale_images_code_the_same_for_any_threads(shipped, every_wavefront_split):
    gray = random_image(40, 72, seed=2)[..., 1].copy()
    assert len(files_and_images(gray, 6, shipped)) == 1


def test_family_3_files_decode_with_workers_group_by_group(weights, family2_weights, every_wavefront_split):
    """The default weights code their latents in groups: each process decodes its
    streams' blocks group by group; the same image as in one process, for the default
    and the family-2 weights, with as many workers as asked (4 streams here)."""
    assert weights.model.family == 3 and len(weights.model.group_columns()) > 1
    img = random_image(40, 72, seed=5)  # 5 x 9 blocks: wavefronts of up to 5 blocks
    for w in (weights, family2_weights):
        for quality in (1.5, 6):
            one = codec.encode(img, quality, w.model, w.prefix, threads=1)
            ref = codec.decode(*format.unpack(one[0]), w.model, threads=1)
            assert np.array_equal(ref, one[1])
            for n in (2, 3, 4):
                FORKS.clear()
                assert codec.encode(img, quality, w.model, w.prefix, threads=n)[0] == one[0]
                assert len(FORKS) == n - 1
                FORKS.clear()
                assert np.array_equal(codec.decode(*format.unpack(one[0]), w.model, threads=n), ref)
                assert len(FORKS) == n - 1


@pytest.mark.parametrize("n", [2, 3])
def test_the_processes_share_each_wavefronts_first_layers(weights, n):
    """lockstep.FirstLayers: each of n processes computes its output channels of every
    block's first layers; each then takes exactly the products of its own blocks' neighbours (here
    all n parts are computed in this process, as n processes would into shared memory)."""
    from bbcodec.coding import lockstep

    rows, cols = 12, 9
    m, qp = weights.model, weights.model.params_at(4 * 256 + 77)
    canvas = Canvas(rows, cols)
    rng = np.random.default_rng(n)
    names = ("ga", "he", "gs")
    first = lockstep.FirstLayers(m, qp, canvas, names, n, blocks.widest(rows, cols))
    split = 0
    for shares, _ in lockstep.waves(rows, cols, 4, n):
        if first.splits(shares):
            split += 1
            for i in range(n):
                first.compute(shares, i)
            for i, (r, c) in enumerate(shares):
                own = m.neighbours(canvas.neighbours(r, c, ones=True), qp)
                got = first.take(shares, i)
                for name in names:
                    assert np.array_equal(got.first(name), own.first(name))
        for r, c in shares:
            canvas.put(r, c, rng.integers(-128, 128, size=(len(r), 192)).astype(np.int16))
    assert split


def test_the_post_loop_filter_runs_in_bands_across_the_workers(weights, monkeypatch, every_wavefront_split):
    """Each of n processes filters one band of rows (model.finish with band (i, n)); the
    bands make the one-process image, bit for bit, with strips of any size, and files
    coded and decoded with n processes are the one-process files."""
    from bbcodec.model import filter as postfilter

    img = random_image(8 * 12 + 3, 8 * 20 + 5, seed=9)
    m = weights.model
    qp = m.params_at(5 * 256)
    whole = m.finish(img, qp)
    data, rec = codec.encode(img, 5, m, weights.prefix, threads=1)
    for n, cells in ((2, 10**6), (3, 50), (4, 1000)):
        monkeypatch.setattr(postfilter, "STRIP_CELLS", cells)
        out = np.zeros_like(img)
        for i in range(n):
            m.finish(img, qp, out, (i, n))
        assert np.array_equal(out, whole)
        assert codec.encode(img, 5, m, weights.prefix, threads=n)[0] == data
        assert np.array_equal(codec.decode(*format.unpack(data), m, threads=n), rec)


def test_each_process_codes_whole_streams_in_stream_order():
    """streams.shares gives process i the blocks of the streams it owns (s mod n == i),
    ordered by stream and then by row (each stream's bitstream order); every block of a
    wavefront goes to exactly one process, and runs() finds each stream's run."""
    r = np.arange(3, 14)  # a wavefront's rows, ascending
    c = 40 - 2 * r
    for S, n in ((1, 1), (4, 1), (4, 2), (4, 3), (5, 4), (16, 2)):
        got = streams.shares(r, c, S, n)
        assert len(got) == n
        assert sorted(np.concatenate([g[0] for g in got]).tolist()) == r.tolist()
        for i, (rr, cc) in enumerate(got):
            assert np.array_equal(cc, 40 - 2 * rr)
            owned = streams.owned(S, n, i)
            assert set((rr % S).tolist()) <= set(owned)
            keys = list(zip((rr % S).tolist(), rr.tolist(), strict=True))
            assert keys == sorted(keys)  # stream order, rows ascending in each
            for s, a, b in streams.runs(rr, S, owned):
                assert (rr[a:b] % S == s).all() and ((rr % S == s).sum() == b - a)
    assert streams.owned(4, 3, 0) == [0, 3] and streams.owned(4, 3, 2) == [2]


def test_the_default_stream_count_grows_with_the_height_and_the_widest_wavefront():
    rows = (1, 39, 40, 64, 80, 160, 319, 320, 375, 8192)
    assert [streams.default_count(r, 8192) for r in rows] == [1, 1, 2, 2, 4, 8, 8, 16, 16, 16]
    assert streams.default_count(64, 96) == streams.default_count(96, 64) == 2  # Kodak, landscape and portrait
    assert streams.default_count(375, 500) == 16  # 4000x3000
    # no more streams than processes with MIN_CHUNK blocks of the widest wavefront each
    assert [streams.default_count(8192, c) for c in (1, 46, 47, 94, 95, 190, 191, 382, 383)] == [1, 1, 2, 2, 4, 4, 8, 8, 16]


@pytest.mark.parametrize("kernels", [(3, 3, 1, 1), (3, 1, 3, 3), (3, 3, 3, 3)])
@pytest.mark.parametrize("skip", [False, True])
def test_kernel_3_hidden_layers_code_the_same_for_any_threads(kernels, skip, every_wavefront_split):
    w = tiny_weights(kernels=kernels, skip=skip, seed=len(kernels) + sum(kernels))
    img = random_image(41, 90, seed=7)
    results = files_and_images(img, 3.5, w)
    assert len(results) == 1


def test_the_golden_files_decode_identically_with_every_thread_count(every_wavefront_split):
    from test_golden import DATA

    for path in sorted(DATA.glob("*.bbc")):
        header, payload = format.unpack(path.read_bytes())
        if header.lossless:  # no networks, no threads
            continue
        from bbcodec.model import weights as wmod

        w = wmod.for_file(header.weights_sha256, header.model_id)
        images = {codec.decode(header, payload, w.model, threads=n).tobytes() for n in THREADS}
        assert len(images) == 1


def test_a_corrupt_payload_fails_the_same_way_with_threads(kodak_crop, shipped, every_wavefront_split):
    weights = shipped
    data, _ = codec.encode(kodak_crop, 4, weights.model, weights.prefix)
    header, payload = format.unpack(data)
    flipped = bytearray(payload)
    flipped[len(payload) // 3] ^= 0x10
    for bad in (payload[: len(payload) // 8 * 4], bytes(len(payload)), bytes(flipped),  # whole words
                payload + bytes(8)):  # (else unpack refuses it)
        messages = set()
        for n in THREADS:
            with pytest.raises(codec.DecodeError) as e:
                codec.decode(header, bad, weights.model, threads=n)
            messages.add(str(e.value))
        assert len(messages) == 1


@pytest.mark.skipif(not parallel.can_fork(), reason="no os.fork here")
def test_forked_workers_share_memory_and_report_their_errors():
    shared = parallel.shared_zeros((3, 4), np.int64)

    def serve(i: int, conn) -> None:  # noqa: ANN001
        shared[i] = i + 1
        parallel.reply(conn, conn.recv_bytes() * 2)
        if i == 2:
            raise ValueError("worker 2 stops here")

    with parallel.Forked(3, serve) as workers:
        for i in range(3):
            workers.send(i, bytes([65 + i]))
        assert [workers.recv(i) for i in range(2)] == [b"AA", b"BB"]
        assert workers.recv(2) == b"CC"
        with pytest.raises(RuntimeError, match="worker process 3 of 3 failed: ValueError: worker 2 stops here") as e:
            workers.recv(2)
        assert not isinstance(e.value, bbcodec.Error)  # an exception of our code in a worker: a bug
        with pytest.raises(parallel.WorkerError, match=r"worker process 1 of 3 ended unexpectedly \(exit status 0\)"):
            workers.recv(0)
    assert shared[:, 0].tolist() == [1, 2, 3]


@pytest.mark.skipif(not parallel.can_fork(), reason="no os.fork here")
def test_messages_of_any_length_cross_the_channel_whole():
    """parallel.Channel: empty, small and multi-megabyte messages (a worker's stream
    payloads of a large image), both ways, arrive whole and in order."""
    sizes = [0, 1, 65535, 65536, 3 * 2**20 + 7]

    def serve(i: int, conn) -> None:  # noqa: ANN001
        for _ in sizes:
            data = parallel.receive(conn)
            parallel.reply(conn, data[::-1])

    rng = np.random.default_rng(1)
    with parallel.Forked(1, serve) as workers:
        for n in sizes:
            data = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
            workers.send(0, data)
            assert workers.recv(0) == data[::-1]
        with pytest.raises(parallel.WorkerError, match="ended unexpectedly"):
            workers.recv(0)  # the worker has returned: the end of its channel, not a hang


@pytest.mark.skipif(not parallel.can_fork(), reason="no os.fork here")
@pytest.mark.parametrize(("stop", "message"), [
    (lambda: os.kill(os.getpid(), signal.SIGKILL), r"ended unexpectedly \(killed by SIGKILL\)$"),
    (lambda: os._exit(3), r"ended unexpectedly \(exit status 3\)$"),
    (lambda: (_ for _ in ()).throw(MemoryError("no room")), r"failed: MemoryError: no room$"),
    (lambda: (_ for _ in ()).throw(codec.DecodeError("bad")), r"failed: DecodeError: bad$"),
], ids=["killed", "exited", "memory", "error"])
def test_a_worker_that_dies_or_fails_is_a_failed_operation(stop, message):
    """A WorkerError (a bbcodec.Error: the operation failed, not the code) on recv and on
    send, saying how the worker ended; the other workers are reaped all the same."""
    def serve(i: int, conn) -> None:  # noqa: ANN001
        conn.recv_bytes()
        if i == 1:
            stop()
        parallel.reply(conn)

    with parallel.Forked(2, serve) as workers:
        workers.send(0, b"g")
        workers.send(1, b"g")
        assert workers.recv(0) == b""
        with pytest.raises(parallel.WorkerError, match="^worker process 2 of 2 " + message) as e:
            workers.recv(1)
        assert isinstance(e.value, bbcodec.Error) and isinstance(e.value, RuntimeError)
        if "failed" not in message:
            with pytest.raises(parallel.WorkerError, match="^worker process 2 of 2 ended unexpectedly$"):
                workers.send(1, b"g")  # reaped already: how it ended was said once
    with pytest.raises(ChildProcessError):  # every worker reaped
        os.waitpid(-1, os.WNOHANG)


@pytest.mark.skipif(not parallel.can_fork(), reason="no os.fork here")
def test_a_decode_stopped_by_a_corrupt_payload_leaves_no_worker_behind(kodak_crop, weights,
                                                                     every_wavefront_split):
    import os

    data, _ = codec.encode(kodak_crop, 4, weights.model, weights.prefix)
    header, payload = format.unpack(data)
    with pytest.raises(codec.DecodeError):
        codec.decode(header, payload[: 4 * (len(payload) // 12)], weights.model, threads=3)
    with pytest.raises(ChildProcessError):  # every worker reaped
        os.waitpid(-1, os.WNOHANG)


def _kill_workers(monkeypatch, when=lambda: True) -> None:  # noqa: ANN001
    """Workers forked for an image die (SIGKILL, as the kernel's OOM killer does) as
    soon as they start, if when() holds in the process that forks them."""
    real = Forked.__init__

    def start(self, n, serve):  # noqa: ANN001, ANN202
        real(self, n, serve)
        if when():
            for pid in self.pids:
                os.kill(pid, signal.SIGKILL)

    monkeypatch.setattr(Forked, "__init__", start)


KILLED = "worker process 1 of 1 ended unexpectedly (killed by SIGKILL)"


@pytest.mark.skipif(not parallel.can_fork(), reason="no os.fork here")
def test_a_dead_worker_fails_the_file_with_one_line_and_exit_1(tmp_path, monkeypatch, every_wavefront_split):
    from click.testing import CliRunner

    from bbcodec.cli import cli

    img = random_image(40, 72, seed=3)
    src, bbc = tmp_path / "in.png", tmp_path / "in.bbc"
    Image.fromarray(img).save(src)
    bbc.write_bytes(bbcodec.encode(img, threads=1))
    _kill_workers(monkeypatch)
    for args, out in ((["encode", str(src), str(tmp_path / "out.bbc")], tmp_path / "out.bbc"),
                      (["decode", str(bbc), str(tmp_path / "out.png")], tmp_path / "out.png")):
        res = CliRunner().invoke(cli, [*args, "--threads", "2"])
        assert res.exit_code == 1 and (res.exception is None or isinstance(res.exception, SystemExit)), res.output
        assert res.output.strip().splitlines() == [f"bbcodec: error: {args[1]}: {KILLED}"]
        assert not out.exists()
    with pytest.raises(ChildProcessError):  # every worker reaped
        os.waitpid(-1, os.WNOHANG)


@pytest.mark.skipif(not parallel.can_fork(), reason="no os.fork here")
def test_a_dead_worker_fails_only_its_file_of_a_folder(tmp_path, monkeypatch, every_wavefront_split):
    from click.testing import CliRunner

    from bbcodec import files
    from bbcodec.cli import cli

    src = tmp_path / "in"
    src.mkdir()
    for k, name in enumerate(("a.png", "b.png", "c.png")):
        Image.fromarray(random_image(40, 72, seed=k)).save(src / name)
    current = []
    real = files.encode_file

    def encode_file(s, d, opts, **kw):  # noqa: ANN001, ANN202
        current[:] = [s]
        return real(s, d, opts, **kw)

    monkeypatch.setattr(files, "encode_file", encode_file)
    _kill_workers(monkeypatch, lambda: current[0].endswith("b.png"))
    res = CliRunner().invoke(cli, ["encode", str(src), str(tmp_path / "out"), "--threads", "2", "--json"])
    assert res.exit_code == 1, res.output
    import json

    report = json.loads(res.stdout)
    assert report["summary"]["done"] == 2 and report["summary"]["failed"] == 1
    failed = [f for f in report["files"] if "error" in f]
    assert failed == [{"input": str(src / "b.png"), "error": f"{src / 'b.png'}: {KILLED}"}]  # not "internal"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.bbc", "c.bbc"]


@pytest.mark.skipif(not parallel.can_fork(), reason="no os.fork here")
def test_pillow_turns_a_dead_worker_into_oserror(tmp_path, monkeypatch, every_wavefront_split):
    from bbcodec import pillow_plugin

    img = random_image(40, 72, seed=3)
    (tmp_path / "a.bbc").write_bytes(bbcodec.encode(img, threads=1))
    _kill_workers(monkeypatch)
    with pytest.raises(OSError, match="cannot write .bbc image: " + re.escape(KILLED)) as e:
        Image.fromarray(img).save(tmp_path / "b.bbc", threads=2)
    assert isinstance(e.value.__cause__, parallel.WorkerError)
    monkeypatch.setattr(pillow_plugin, "THREADS", 2)  # load() passes no options: its default, for the test
    with Image.open(tmp_path / "a.bbc") as im, pytest.raises(OSError, match="cannot decode .bbc image: "
                                                             + re.escape(KILLED)) as e:
        im.load()
    assert isinstance(e.value.__cause__, parallel.WorkerError)


@pytest.mark.skipif(not parallel.can_fork(), reason="no os.fork here")
def test_an_exception_of_our_code_in_a_worker_is_an_internal_error(tmp_path, monkeypatch, capsys,
                                                                  every_wavefront_split):
    """errors.py: anything but a bbcodec.Error is a bug, in a worker as in this process:
    exit 70 (internal error), one line."""
    import sys

    from bbcodec import cli

    def follow(*args):  # noqa: ANN002, ANN202
        raise IndexError("a bug")

    monkeypatch.setattr(lockstep, "follow", follow)
    src = tmp_path / "in.png"
    Image.fromarray(random_image(40, 72, seed=3)).save(src)
    monkeypatch.setattr(sys, "argv", ["bbcodec", "encode", str(src), str(tmp_path / "out.bbc"), "--threads", "2"])
    before = signal.getsignal(signal.SIGTERM)
    try:
        with pytest.raises(SystemExit) as e:
            cli.main()
    finally:
        signal.signal(signal.SIGTERM, before)
    assert e.value.code == 70
    assert capsys.readouterr().err.strip().splitlines() == [
        "bbcodec: internal error: RuntimeError: worker process 1 of 1 failed: IndexError: a bug"]


def test_folder_workers_share_the_cores(tmp_path, monkeypatch):
    """With --jobs N, each image of a folder is coded with cores // N threads, unless
    --threads says otherwise; one job codes with the default (None: all the cores)."""
    from click.testing import CliRunner

    from bbcodec.cli import cli

    monkeypatch.setattr(parallel, "cores", lambda: 8)
    assert jobs.share_cores(1) == 8 and jobs.share_cores(3) == 2 and jobs.share_cores(16) == 1
    assert parallel.default_threads() == 8
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    for k in range(3):
        Image.fromarray(random_image(16, 24, seed=k)).save(src / f"{k}.png")
    log = tmp_path / "threads.log"  # written by the pool's worker processes too (forked with the patch)
    real_encode, real_decode = codec.encode, codec.decode

    def record(threads: int | None) -> None:
        with open(log, "a") as f:
            f.write(f"{threads}\n")

    def encode(*args, threads=None, **kw):  # noqa: ANN002, ANN003, ANN202
        record(threads)
        return real_encode(*args, threads=threads, **kw)

    def decode(*args, threads=None, **kw):  # noqa: ANN002, ANN003, ANN202
        record(threads)
        return real_decode(*args, threads=threads, **kw)

    monkeypatch.setattr(codec, "encode", encode)
    monkeypatch.setattr(codec, "decode", decode)

    def threads_of(*args: str) -> list[str]:
        log.unlink(missing_ok=True)
        res = CliRunner().invoke(cli, [*args, "--quiet"])
        assert res.exit_code == 0, res.output
        return log.read_text().split()

    assert threads_of("encode", str(src), str(out), "--jobs", "2") == ["4"] * 3
    assert threads_of("encode", str(src), str(out), "--jobs", "3") == ["2"] * 3
    assert threads_of("encode", str(src), str(out), "--jobs", "2", "--threads", "3") == ["3"] * 3
    assert threads_of("encode", str(src), str(out)) == ["None"] * 3
    assert threads_of("decode", str(out), str(tmp_path / "back"), "--jobs", "2") == ["4"] * 3
    assert threads_of("decode", str(out), str(tmp_path / "back")) == ["None"] * 3


# The option where users meet it.

@pytest.mark.parametrize("level", [2, 3])
def test_higher_efforts_give_the_one_process_file_with_threads(level, kodak_crop, weights, every_wavefront_split):
    """Efforts above 1 choose the symbols in this process alone (rdoq.Chooser reads the
    whole canvas); only the effort-1 proxy pass (effort 3) forks workers. The file is
    the one-process file whatever threads says (and not the effort-1 file)."""
    from bbcodec.coding import effort

    one, rec = codec.encode(kodak_crop, 4, weights.model, weights.prefix, effort=level, threads=1)
    assert not FORKS
    for n in (2, 3):
        FORKS.clear()
        data, rec_n = codec.encode(kodak_crop, 4, weights.model, weights.prefix, effort=level, threads=n)
        assert data == one and np.array_equal(rec_n, rec)
        if parallel.can_fork():
            assert len(FORKS) == (n - 1 if effort.LEVELS[level].needs_proxy else 0)
    assert one != codec.encode(kodak_crop, 4, weights.model, weights.prefix, threads=2)[0]
    assert np.array_equal(codec.decode(*format.unpack(one), weights.model, threads=2), rec)
    assert bbcodec.encode(kodak_crop, 4, effort=level, threads=2, aq=0) == one


def test_the_api_the_cli_and_pillow_take_threads(tmp_path, kodak_crop):
    from click.testing import CliRunner

    from bbcodec.cli import cli

    one = bbcodec.encode(kodak_crop, 5, threads=1)
    assert bbcodec.encode(kodak_crop, 5, threads=2) == one
    assert np.array_equal(np.asarray(bbcodec.decode(one, threads=2)), np.asarray(bbcodec.decode(one, threads=1)))
    src = tmp_path / "in.png"
    Image.fromarray(kodak_crop).save(src)
    runner = CliRunner()
    for n in ("1", "3"):
        res = runner.invoke(cli, ["encode", str(src), str(tmp_path / f"t{n}.bbc"), "-q", "5", "--threads", n, "--quiet"])
        assert res.exit_code == 0, res.output
        assert (tmp_path / f"t{n}.bbc").read_bytes() == one
        res = runner.invoke(cli, ["decode", str(tmp_path / f"t{n}.bbc"), str(tmp_path / f"t{n}.png"), "--threads", n])
        assert res.exit_code == 0, res.output
    assert np.array_equal(np.asarray(Image.open(tmp_path / "t1.png")), np.asarray(Image.open(tmp_path / "t3.png")))
    res = runner.invoke(cli, ["encode", str(src), str(tmp_path / "x.bbc"), "--threads", "0"])
    assert res.exit_code == 2
    Image.fromarray(kodak_crop).save(tmp_path / "p.bbc", quality=5, threads=2)
    assert (tmp_path / "p.bbc").read_bytes() == one
    with pytest.raises(ValueError, match="threads"):
        Image.fromarray(kodak_crop).save(tmp_path / "q.bbc", threads=0)


BAD_THREADS = [0, -1, parallel.MAX_THREADS + 1, 2.0, "2", True, False, [2]]


@pytest.mark.parametrize("bad", BAD_THREADS, ids=repr)
def test_a_bad_threads_value_is_refused_up_front_on_every_path(bad, weights):
    """Not only where workers would be forked: at efforts above 1, with rate targets,
    and before any input is read; always
    the one ThreadsError (a bbcodec.Error and a ValueError) with a one-line message."""
    from bbcodec import ratecontrol

    img = random_image(16, 24, seed=1)
    data = codec.encode(img, 4, weights.model, weights.prefix, threads=1)[0]
    calls = [
        lambda: codec.encode(img, 4, weights.model, weights.prefix, threads=bad),
        lambda: codec.encode(img, 4, weights.model, weights.prefix, effort=2, threads=bad),
        lambda: codec.encode(img, 4, weights.model, weights.prefix, effort=3, threads=bad),
        lambda: codec.encode(img, 4, weights.model, weights.prefix, threads=bad),
        lambda: codec.decode(*format.unpack(data), weights.model, threads=bad),
        lambda: codec.decode(*format.unpack(data), weights.model, threads=bad),
        lambda: ratecontrol.encode_to_target(img, weights, target_bpp=1.0, threads=bad),
        lambda: bbcodec.encode(img, threads=bad),
        lambda: bbcodec.encode("/no/such/image.png", threads=bad),  # refused before the path is read
        lambda: bbcodec.decode(b"not a .bbc file", threads=bad),  # and before the bytes are parsed
    ]
    for call in calls:
        with pytest.raises(parallel.ThreadsError, match=r"^threads must be (an integer )?within 1\.\.64, got ") as e:
            call()
        assert isinstance(e.value, bbcodec.Error) and isinstance(e.value, ValueError)
        assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="threads must be") as e:  # Pillow: a ValueError, as for quality
        Image.fromarray(img).save(io.BytesIO(), format="BBC", threads=bad)
    assert isinstance(e.value, parallel.ThreadsError)


def test_threads_takes_any_integer_within_the_range():
    assert parallel.check_threads(None) is None
    assert parallel.check_threads(np.int64(3)) == 3 and type(parallel.check_threads(np.int64(3))) is int
    assert parallel.check_threads(1) == 1 and parallel.check_threads(parallel.MAX_THREADS) == parallel.MAX_THREADS
    img = random_image(16, 24, seed=1)
    assert bbcodec.encode(img, threads=np.int32(2)) == bbcodec.encode(img, threads=1)


@pytest.mark.parametrize("value", ["0", "-1", "65", "x", "2.5"])
@pytest.mark.parametrize("command", ["encode", "decode"])
def test_the_cli_refuses_a_bad_threads_value_as_a_usage_error(value, command, tmp_path):
    """Exit 2 and click's usage lines, ending with one line that names --threads (as a
    bad --effort does), for encode and decode, and nothing written."""
    import subprocess
    import sys

    src = tmp_path / ("in.png" if command == "encode" else "in.bbc")
    src.write_bytes(b"\x89PNG" if command == "encode" else b"BBC")  # never read
    out = tmp_path / ("out.bbc" if command == "encode" else "out.png")
    proc = subprocess.run([sys.executable, "-m", "bbcodec.cli", command, str(src), str(out), "--threads", value],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and not out.exists()
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: Invalid value for '--threads': ")
    if value in ("0", "-1", "65"):
        assert last.endswith(f"threads must be within 1..{parallel.MAX_THREADS}, got {value}")
    from bbcodec import cli

    assert f"(1..{parallel.MAX_THREADS})" in cli.THREADS_HELP  # the help states the range check_threads takes


@pytest.mark.skipif(not parallel.can_fork(), reason="no os.fork here")
def test_the_pillow_plugin_forks_no_worker_unless_save_is_given_threads(monkeypatch, tmp_path, every_wavefront_split):
    """Pillow's save and load code in the calling process by default (a host application
    may run native threads that can_fork cannot see); save(threads=N) forks N - 1
    workers; the API keeps its default (the cores: 3 here) and the bytes are the same."""
    monkeypatch.setattr(parallel, "cores", lambda: 3)
    img = random_image(40, 72, seed=6)
    api = bbcodec.encode(img, 5)
    assert len(FORKS) == 2  # the API's default: the cores
    FORKS.clear()
    Image.fromarray(img).save(tmp_path / "a.bbc", quality=5)
    assert not FORKS
    with Image.open(tmp_path / "a.bbc") as im:
        pixels = np.asarray(im)  # load()
    assert not FORKS and np.array_equal(pixels, np.asarray(bbcodec.decode(api)))
    assert len(FORKS) == 2  # bbcodec.decode's default: the cores
    FORKS.clear()
    Image.fromarray(img).save(tmp_path / "b.bbc", quality=5, threads=2)
    assert len(FORKS) == 1
    FORKS.clear()
    Image.fromarray(img).save(tmp_path / "c.bbc", quality=5, threads=None)  # None: the API's default
    assert len(FORKS) == 2
    assert {(tmp_path / n).read_bytes() for n in ("a.bbc", "b.bbc", "c.bbc")} == {api}


def test_the_float_model_codes_with_threads(monkeypatch):
    """networks.FloatCodingModel (benchmarks/exactness_cost.py) behind the same loop: its
    float products are not exact, so only the closeness of the results is asserted."""
    torch = pytest.importorskip("torch")
    from conftest import tiny_model as tiny_float

    from bbcodec.nn.networks import FloatCodingModel

    torch.manual_seed(0)
    model = FloatCodingModel(tiny_float(seed=2, kernels=(3, 3, 1, 1)))
    img = random_image(40, 200, seed=3)
    monkeypatch.setattr(streams, "MIN_CHUNK", 1)
    (one, rec1), (two, rec2) = (codec.encode(img, 4, model, codec.UNNAMED, threads=n) for n in (1, 2))
    assert abs(len(one) - len(two)) <= 0.05 * len(one)
    assert np.abs(rec1.astype(int) - rec2).mean() < 1
