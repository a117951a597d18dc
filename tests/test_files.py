"""Where outputs go and how inputs are read (files.py): special files are written
through, never replaced; links are followed; new files get the umask's mode and replaced
ones keep theirs; writes are synced; SIGTERM leaves no temporary file; no input is read
further than a valid one can go; stdout is written in full or the command fails."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import GiB, one_error_line, random_image, run_cli
from PIL import Image

import bbcodec
from bbcodec import files


def no_temporary_files(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if p.name.endswith(".tmp")]


def run(*args: str, memory: int | None = 3 * GiB, **kw) -> subprocess.CompletedProcess:
    """The CLI, its address space capped (3 GiB unless said): a read without bound ends in
    a MemoryError rather than in swapping the machine."""
    return run_cli(*args, memory=memory, **kw)


@pytest.fixture(scope="module")
def bbc(bbc: Path) -> tuple[Path, bytes]:
    """conftest's .bbc file, and the PNG bytes it decodes to."""
    ref = bbc.with_name("ref.png")
    assert run("decode", str(bbc), str(ref), "--quiet").returncode == 0
    return bbc, ref.read_bytes()


# Defect 1: special files ------------------------------------------------------------

def _char_device(tmp_path: Path) -> Path:
    """A character device to write to: a private copy of /dev/null when we may create
    one (root), else /dev/null itself (which a non-root process cannot replace)."""
    if os.geteuid() == 0:
        dev = tmp_path / "null"
        try:
            os.mknod(dev, stat.S_IFCHR | 0o666, os.makedev(1, 3))
            os.close(os.open(dev, os.O_WRONLY))  # a file system mounted nodev refuses this
            return dev
        except OSError:
            pass
        pytest.skip("cannot use a device node here, and replacing /dev/null as root is what is tested")
    return Path("/dev/null")


def test_a_character_device_is_written_through_not_replaced(bbc, tmp_path):
    src, _ = bbc
    dev = _char_device(tmp_path)
    proc = run("decode", str(src), str(dev), "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert stat.S_ISCHR(os.stat(dev).st_mode), "the device was replaced by a regular file"


def test_a_fifo_gets_the_whole_output(bbc, tmp_path):
    src, png = bbc
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[bytes] = []

    def reader() -> None:
        with open(fifo, "rb") as f:
            got.append(f.read())

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    proc = run("decode", str(src), str(fifo), "--quiet", timeout=60)
    t.join(timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert got == [png], "the FIFO's reader did not get the PNG"
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_a_symlink_is_followed_and_kept(bbc, tmp_path):
    src, png = bbc
    real = tmp_path / "real.png"
    real.write_bytes(b"old")
    link = tmp_path / "link.png"
    link.symlink_to(real)
    assert run("decode", str(src), str(link), "--quiet").returncode == 0
    assert link.is_symlink() and real.read_bytes() == png
    dangling = tmp_path / "dangling.png"
    dangling.symlink_to(tmp_path / "nowhere.png")
    assert "does not exist" in one_error_line(run("decode", str(src), str(dangling)))
    assert dangling.is_symlink() and not (tmp_path / "nowhere.png").exists()
    assert no_temporary_files(tmp_path)


def test_a_socket_is_refused_and_left_alone(bbc, tmp_path):
    src, _ = bbc
    path = tmp_path / "sock"
    s = socket.socket(socket.AF_UNIX)
    try:
        s.bind(str(path))
        assert "not a regular file" in one_error_line(run("decode", str(src), str(path)))
        assert stat.S_ISSOCK(os.stat(path).st_mode)
    finally:
        s.close()


# Defect 7: modes and fsync ------------------------------------------------------------

def test_new_files_get_the_umask_mode_and_replaced_files_keep_theirs(bbc, tmp_path):
    src, _ = bbc
    new = tmp_path / "new.png"
    assert run("decode", str(src), str(new), "--quiet", umask=0o022).returncode == 0
    assert stat.S_IMODE(new.stat().st_mode) == 0o644
    assert run("decode", str(src), str(tmp_path / "private.png"), "--quiet", umask=0o077).returncode == 0
    assert stat.S_IMODE((tmp_path / "private.png").stat().st_mode) == 0o600
    old = tmp_path / "old.png"
    old.write_bytes(b"x")
    old.chmod(0o640)
    assert run("decode", str(src), str(old), "--quiet", umask=0o077).returncode == 0
    assert stat.S_IMODE(old.stat().st_mode) == 0o640 and old.read_bytes() != b"x"


def test_the_file_and_its_folder_are_synced_before_and_after_the_rename(tmp_path, monkeypatch):
    calls: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file"),
                                                 real_fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda a, b: (calls.append("rename"), real_replace(a, b))[1])
    files.write_output(str(tmp_path / "out.bin"), b"data", "-")
    assert calls == ["file", "rename", "dir"]
    assert (tmp_path / "out.bin").read_bytes() == b"data"


# Defect 9: SIGTERM while writing -------------------------------------------------------

def test_sigterm_while_writing_leaves_no_temporary_file(bbc, tmp_path):
    """SIGTERM arrives while the output is being renamed into place (the temporary file
    exists): the command ends with 143 and one line, and nothing is left behind."""
    src, _ = bbc
    script = textwrap.dedent("""
        import os, signal, sys
        real = os.replace
        def replace(a, b):
            os.kill(os.getpid(), signal.SIGTERM)
            real(a, b)
        os.replace = replace
        from bbcodec.cli import main
        sys.argv = ["bbcodec", "decode", sys.argv[1], sys.argv[2]]
        main()
    """)
    out = tmp_path / "out.png"
    proc = subprocess.run([sys.executable, "-c", script, str(src), str(out)], capture_output=True, timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, proc.stderr
    assert proc.stderr.decode().strip() == "bbcodec: terminated"
    assert not out.exists() and no_temporary_files(tmp_path)


# Defect 6: bounded reads ----------------------------------------------------------------

@pytest.mark.parametrize("how", ["info", "decode", "decode stdin"])
def test_an_endless_input_is_refused_after_its_first_bytes(how, tmp_path):
    out = tmp_path / "out.png"
    t0 = time.perf_counter()
    if how == "decode stdin":
        with open("/dev/zero", "rb") as zero:
            proc = run("decode", "-", str(out), stdin=zero, timeout=60, memory=2 * GiB)
    else:
        proc = run(*(["info", "/dev/zero"] if how == "info" else ["decode", "/dev/zero", str(out)]),
                   timeout=60, memory=2 * GiB)
    assert "not a .bbc file" in one_error_line(proc)
    assert time.perf_counter() - t0 < 30 and not out.exists()


def test_a_bbc_stream_is_read_no_further_than_its_header_says(bbc, tmp_path):
    src, _ = bbc
    data = src.read_bytes()
    cmd = f'ulimit -v {3 * GiB // 1024}; cat "{src}" /dev/zero | "{sys.executable}" -m bbcodec.cli decode - -'
    proc = subprocess.run(["sh", "-c", cmd], capture_output=True, timeout=60)  # a valid file, then endless zeros
    assert proc.returncode == 1 and "unexpected bytes after the end" in proc.stderr.decode(), proc.stderr
    assert proc.stdout == b"" and len(data) > 44


def test_an_image_input_is_read_at_most_to_the_image_byte_limit(tmp_path, monkeypatch):
    """encode /dev/zero (and any stream or file) stops at MAX_IMAGE_BYTES: a file by its
    size before reading, a stream after the limit; 1 MiB here to keep the test quick."""
    monkeypatch.setattr(files, "MAX_IMAGE_BYTES", 1 << 20)
    with pytest.raises(bbcodec.ImageError, match="not an image"):  # refused after its first 64 kB
        files.encode_file("/dev/zero", str(tmp_path / "z.bbc"), files.EncodeOptions())
    fifo = tmp_path / "endless.png"  # what starts as a PNG and never ends: stopped at the limit
    os.mkfifo(fifo)

    def feed() -> None:
        with contextlib.suppress(BrokenPipeError), open(fifo, "wb") as f:  # closing flushes: it may fail too
            f.write(b"\x89PNG\r\n\x1a\n")
            while True:
                f.write(bytes(1 << 16))

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    with pytest.raises(files.FileError, match="more than"):
        files.encode_file(str(fifo), str(tmp_path / "z.bbc"), files.EncodeOptions())
    big = tmp_path / "big.png"
    with open(big, "wb") as f:
        f.truncate((1 << 20) + 1)
    with pytest.raises(files.FileError, match=f"{(1 << 20) + 1} bytes"):
        files.encode_file(str(big), str(tmp_path / "b.bbc"), files.EncodeOptions())
    assert not (tmp_path / "z.bbc").exists() and not (tmp_path / "b.bbc").exists()


@pytest.mark.slow
def test_encode_of_dev_zero_ends_with_one_line_in_bounded_memory(tmp_path):
    """Refused after its first 64 kB (it starts like no image): within 1 GiB of address
    space, where reading it up to the input limit once took 2 GB."""
    proc = run("encode", "/dev/zero", str(tmp_path / "z.bbc"), timeout=120, memory=GiB)
    assert "/dev/zero is not an image" in one_error_line(proc)


# Defect 9: stdout ------------------------------------------------------------------------

def test_a_closed_stdout_is_one_line_not_an_internal_error(bbc):
    src, _ = bbc
    proc = run("decode", str(src), "-", close_stdout=True, stdout=None)
    assert "stdout" in one_error_line(proc)


def test_a_reader_that_goes_away_is_one_line_not_a_success(tmp_path):
    png = tmp_path / "big.png"
    Image.fromarray(random_image(256, 256, seed=9)).save(png)
    r, w = os.pipe()
    os.close(r)  # nobody reads: the write fails with EPIPE
    try:
        proc = run("encode", str(png), "-", stdout=w)
    finally:
        os.close(w)
    assert "stdout" in one_error_line(proc)


def test_a_non_blocking_pipe_gets_every_byte(bbc, tmp_path):
    """A pipe in non-blocking mode (as some parents leave it) takes 64 KiB at a time:
    the output is written in full, waiting for the reader, never cut short."""
    png = tmp_path / "noisy.png"
    Image.fromarray(np.random.default_rng(11).integers(0, 256, (300, 300, 3), dtype=np.uint8)).save(png)
    bbc_file = tmp_path / "noisy.bbc"
    assert run("encode", str(png), str(bbc_file), "-q", "8", "--quiet").returncode == 0
    expected = tmp_path / "expected.png"
    assert run("decode", str(bbc_file), str(expected), "--quiet").returncode == 0
    assert expected.stat().st_size > 128 * 1024  # more than a pipe holds
    r, w = os.pipe()
    os.set_blocking(w, False)
    chunks: list[bytes] = []

    def reader() -> None:
        time.sleep(1.0)  # let the pipe fill first
        while data := os.read(r, 65536):
            chunks.append(data)

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    try:
        proc = run("decode", str(bbc_file), "-", "--quiet", stdout=w)
    finally:
        os.close(w)
    t.join(timeout=30)
    os.close(r)
    assert proc.returncode == 0, proc.stderr
    assert b"".join(chunks) == expected.read_bytes()
