"""Every error bbcodec raises on purpose, in one place. Imports nothing (the CLI and
`import bbcodec` load it first, before numpy).

An Error is a bad input (an image the codec cannot take, a damaged or foreign file, a
quality out of range, missing weights) or a failed operation (a file that cannot be
written, a worker killed for memory); its message is one line for the user and names
the input it is about. Anything else escaping bbcodec is a bug. All but FileError and
WorkerError (a RuntimeError) are also ValueErrors, as they were before Error existed.
"""

from __future__ import annotations


class Error(Exception):
    """Bad input or a failed operation; the message is one line for the user."""


class FormatError(Error, ValueError):
    """The bytes are not a valid .bbc file of a version this decoder reads."""


class DecodeError(Error, ValueError):
    """The file is well-formed but does not decode to the image it describes."""


class EntropyError(Error, ValueError):
    """The payload does not decode to the expected symbols."""


class ImageError(Error, ValueError):
    """The input is not an image the codec can take."""


class QualityError(Error, ValueError):
    """A quality outside 1..8 (or not a number)."""


class EffortError(Error, ValueError):
    """An effort outside MIN..MAX (or not an integer)."""


class AQError(Error, ValueError):
    """A bad adaptive-quantisation strength."""


class FilterError(Error, ValueError):
    """linear_filter given as other than True or False."""


class LosslessError(Error, ValueError):
    """lossless given as other than True, False or None, or True beside a lossy coder's option."""


class ThreadsError(Error, ValueError):
    """A number of threads (workers per image) outside 1..MAX_THREADS, or not an integer."""


class WeightsError(Error, ValueError):
    """Weights missing, corrupt or not matching a file's header."""


class LayoutError(Error, ValueError):
    """Arrays that are not a weights file this decoder reads."""


class FileError(Error):
    """A path cannot be read or written; the message is one line for the user."""


class ExtraError(Error):
    """An optional part of bbcodec is used that is not installed; the message names the
    extra to install."""


class BenchError(Error, ValueError):
    """The folder or the options cannot be benchmarked."""


class WorkerError(Error, RuntimeError):
    """A worker process ended unexpectedly (killed, e.g. for memory, or by a signal) or
    failed with a bbcodec.Error or MemoryError: a failed operation, like one in this
    process (errors.py), so a file of a folder run fails alone and the CLI exits 1.
    Any other exception of a worker is a bug, raised here as a RuntimeError (exit 70).
    Still a RuntimeError, as it was before it was an Error."""


class ClusterError(Error):
    """A folder run on a cluster (cluster.py) cannot start or go on: the engine is not
    installed, the scheduler cannot be reached, or another run holds the manifest."""
