"""A map over worker processes: the files of a folder (files.py) and of a benchmark
(bench.py), each coded in a process of its own, sharing the cores: the caller gives
each task its share (share_cores) as its threads. No numpy (files.py imports this)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def share_cores(jobs: int) -> int:
    """Threads per image when `jobs` images are coded at once: the cores divided among
    the jobs, at least one each."""
    from .coding.workers import cores

    return max(1, cores() // max(1, jobs))


def map_jobs(fn: Callable[[T], R], tasks: Iterable[T], jobs: int,
             progress: Callable[[int], None] | None = None,
             initializer: Callable[[], None] | None = None) -> Iterator[R]:
    """fn over tasks, results in task order; progress(1) after each. fn must be picklable;
    initializer, if given, runs first in each worker process. If the caller stops early
    (an exception, Ctrl-C, SIGTERM), tasks not yet started are cancelled."""
    if jobs <= 1:
        for t in tasks:
            r = fn(t)
            if progress:
                progress(1)
            yield r
        return
    ex = ProcessPoolExecutor(jobs, initializer=initializer)
    try:
        for r in ex.map(fn, tasks, chunksize=1):
            if progress:
                progress(1)
            yield r
    finally:
        ex.shutdown(wait=True, cancel_futures=True)
