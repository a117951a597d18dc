"""The processes that share one image's wavefronts: how many (threads), forked
workers and the channels they talk over, and memory they share (coding/lockstep.py
runs the coding loop's protocol over them)."""

from __future__ import annotations

import contextlib
import mmap
import os
import select
import signal
import struct
import threading
import time
import warnings
from collections.abc import Callable
from numbers import Integral
from typing import Any, TypeVar

import numpy as np

from ..errors import Error, ThreadsError, WorkerError

T = TypeVar("T")
R = TypeVar("R")

MAX_THREADS = 64  # the most processes coding one image (threads=), and the most cores counted


def check_threads(threads: object) -> int | None:
    """A valid threads option as an int (None, the default, stays None), else
    ThreadsError (before any work): the one check of encode and decode, the API, the
    CLI and the Pillow plugin."""
    if threads is None:
        return None
    if isinstance(threads, bool) or not isinstance(threads, Integral):
        raise ThreadsError(f"threads must be an integer within 1..{MAX_THREADS}, got {threads!r}")
    value = int(threads)
    if not 1 <= value <= MAX_THREADS:
        raise ThreadsError(f"threads must be within 1..{MAX_THREADS}, got {value}")
    return value


def cores() -> int:
    """The cores this process may use (its CPU affinity where the system has one)."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        n = os.cpu_count() or 1
    return max(1, min(n, MAX_THREADS))


def default_threads() -> int:
    """Threads per image when none are asked for: the cores this process may use (a
    caller coding several images at once passes each its share: jobs.share_cores)."""
    return cores()


def shared_zeros(shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """A zeroed array in memory that processes forked after this call share (an
    anonymous shared mapping; freed with the array)."""
    n = int(np.prod(shape)) * np.dtype(dtype).itemsize
    return np.frombuffer(mmap.mmap(-1, max(1, n)), dtype=dtype, count=int(np.prod(shape))).reshape(shape)


def can_fork() -> bool:
    """Whether workers can be forked here: a system with fork, and no other Python
    thread in this process (one could hold a lock, of numpy's or of the BLAS, that the
    copy in the worker would then wait for forever)."""
    return hasattr(os, "fork") and threading.active_count() == 1


class Channel:
    """One end of a two-way link between a process and a worker it forked: messages of
    bytes, each a u32 length and the bytes, written to one pipe and read from another.
    A hand-off (a message there and one back) takes ~2 us, against ~13 us with
    multiprocessing's Connection, whose framing and polling are layers of Python: the
    coding loop makes one or two per worker and wavefront."""

    def __init__(self, read_fd: int, write_fd: int) -> None:
        self.read_fd, self.write_fd = read_fd, write_fd
        self._poll = select.poll() if hasattr(select, "poll") else None
        if self._poll is not None:
            self._poll.register(read_fd, select.POLLIN)

    def poll(self) -> bool:
        """Whether a message (or the end of the link) is there to read, without waiting."""
        if self._poll is not None:
            return bool(self._poll.poll(0))
        return bool(select.select([self.read_fd], [], [], 0)[0])

    def send_bytes(self, data: bytes) -> None:
        """Send a message (OSError if the other end has closed)."""
        head = struct.pack("<I", len(data))
        if len(data) < 65536:  # one system call
            self._write(memoryview(head + data))
        else:  # no copy of a large message (a worker's stream payloads)
            self._write(memoryview(head))
            self._write(memoryview(data))

    def _write(self, view: memoryview) -> None:
        while len(view):
            view = view[os.write(self.write_fd, view):]

    def recv_bytes(self) -> bytes:
        """The next message, waiting for it (EOFError if the other end has closed)."""
        (n,) = struct.unpack("<I", self._read(4))
        return self._read(n)

    def _read(self, n: int) -> bytes:
        data = os.read(self.read_fd, n) if n else b""
        if len(data) == n:
            return data
        parts = [data]
        while n := n - len(data):
            data = os.read(self.read_fd, n)
            if not data:
                raise EOFError("the other process closed the link")
            parts.append(data)
        return b"".join(parts)

    def close(self) -> None:
        for fd in (self.read_fd, self.write_fd):
            with contextlib.suppress(OSError):
                os.close(fd)
        self.read_fd = self.write_fd = -1


def _channels() -> tuple[Channel, Channel]:
    """(this process's end, the worker's end) of a new link."""
    down, up = os.pipe(), os.pipe()  # to the worker, from it
    return Channel(up[0], down[1]), Channel(down[0], up[1])


class Forked:
    """n worker processes forked from this one, each running serve(index, channel) (a
    loop that mirrors the caller's); messages are bytes over a Channel per worker.

    Fork, not spawn: a worker starts in a few milliseconds with everything the caller
    has built (the model, the shared arrays of shared_zeros), and runs no Python it
    did not inherit. A worker ignores Ctrl-C (the caller handles it and stops the
    workers) and ends with os._exit, never returning into the caller's code. Not
    available where os.fork is not (Windows); see can_fork.
    """

    def __init__(self, n: int, serve: Callable[[int, Channel], None]) -> None:
        self.pids: list[int] = []
        self.conns: list[Channel] = []
        try:
            for i in range(n):
                ours, theirs = _channels()
                with warnings.catch_warnings():  # Python 3.12+ warns of fork in a threaded process
                    warnings.simplefilter("ignore", DeprecationWarning)
                    pid = os.fork()
                if pid == 0:  # the worker
                    code = 1
                    try:
                        signal.signal(signal.SIGINT, signal.SIG_IGN)
                        signal.signal(signal.SIGTERM, signal.SIG_DFL)
                        for c in self.conns:
                            c.close()
                        ours.close()
                        try:
                            serve(i, theirs)
                            code = 0
                        except BaseException as e:  # noqa: BLE001 - reported to the caller
                            kind = b"E" if isinstance(e, (Error, MemoryError)) else b"B"  # B: a bug
                            with contextlib.suppress(BaseException):
                                theirs.send_bytes(kind + f"{type(e).__name__}: {e}".encode())
                    finally:
                        os._exit(code)
                theirs.close()
                self.pids.append(pid)
                self.conns.append(ours)
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> Forked:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, i: int, data: bytes) -> None:
        """Send to worker i; one that has failed and ended raises its error here (as recv),
        whether or not it was sent before its pipe closed."""
        try:
            self.conns[i].send_bytes(data)
        except OSError:
            with contextlib.suppress(EOFError, OSError):
                while self.conns[i].poll():  # its last words, if any: the error it sent
                    self._checked(i, receive(self.conns[i]))
            raise WorkerError(self._ended(i)) from None

    def recv(self, i: int) -> bytes:
        """The next message of worker i; a worker's error is raised here (WorkerError, or
        RuntimeError for a bug, see WorkerError)."""
        try:
            data = receive(self.conns[i])
        except (EOFError, OSError):
            raise WorkerError(self._ended(i)) from None
        return self._checked(i, data)

    def _checked(self, i: int, data: bytes) -> bytes:
        """A message's content, or the error a worker reported raised."""
        if data[:1] in (b"E", b"B"):
            message = f"worker process {i + 1} of {len(self.pids)} failed: {data[1:].decode(errors='replace')}"
            raise (WorkerError if data[:1] == b"E" else RuntimeError)(message)
        return data[1:]

    def _ended(self, i: int) -> str:
        """Why worker i's pipe closed, once it has been reaped (within a second)."""
        how = ""
        pid = self.pids[i]
        for _ in range(2000 if pid else 0):
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                self.pids[i] = 0  # reaped: close() skips it
                if os.WIFSIGNALED(status):
                    try:
                        how = f" (killed by {signal.Signals(os.WTERMSIG(status)).name})"
                    except ValueError:
                        how = f" (killed by signal {os.WTERMSIG(status)})"
                elif os.WIFEXITED(status):
                    how = f" (exit status {os.WEXITSTATUS(status)})"
                break
            time.sleep(0.0005)
        return f"worker process {i + 1} of {len(self.pids)} ended unexpectedly{how}"

    def close(self) -> None:
        """Close the pipes (a worker waiting on one ends) and reap the workers."""
        for c in self.conns:
            c.close()
        for pid in self.pids:
            if not pid:  # reaped by _ended
                continue
            for _ in range(2000):  # up to a second for a worker still computing a chunk
                if os.waitpid(pid, os.WNOHANG)[0]:
                    break
                time.sleep(0.0005)
            else:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
        self.pids, self.conns = [], []


SPIN = 0.002  # seconds a wait polls before it sleeps: a sleeping process wakes late


def receive(conn: Channel) -> bytes:
    """The next message on conn, polled for up to SPIN seconds before sleeping on it: the
    messages of the coding loop come within a wavefront's time (well under SPIN), and
    a process woken from sleep may wait for a core far longer than that."""
    if not conn.poll():
        end = time.perf_counter() + SPIN
        while not conn.poll() and time.perf_counter() < end:
            os.sched_yield()  # the sender may be waiting for this core
    return conn.recv_bytes()


def reply(conn: Channel, data: bytes = b"") -> None:
    """A worker's message to the caller of Forked (b"E..." is reserved for errors)."""
    conn.send_bytes(b"D" + data)
