"""The one base class of bbcodec's own errors. Imports nothing (the CLI loads it first).

Every error the codec raises on purpose subclasses Error: a bad input (an image it
cannot take, a damaged or foreign file, a quality out of range, missing weights) or a
failed operation (a file that cannot be written). Anything else escaping bbcodec is a
bug. The subclasses live beside the code that raises them:

    format.FormatError    the bytes are not a valid .bbc file
    codec.DecodeError     a well-formed file does not decode to the image it describes
    entropy.EntropyError  the payload does not decode to the expected symbols
    images.ImageError     the input is not an image the codec can take
    quality.QualityError  a quality outside the range, or not a number
    effort.EffortError    an effort outside the range, or not an integer
    parallel.ThreadsError threads (workers per image) outside the range, or not an integer
    weights.WeightsError  weights missing, corrupt or not matching a file
    files.FileError       a path cannot be read or written
    bench.BenchError      a folder or options that cannot be benchmarked
    parallel.WorkerError  a worker process forked for an image was killed or ended, or
                          failed with an Error or MemoryError (a failed operation; any
                          other exception in a worker is a bug, a RuntimeError)

All but FileError and WorkerError (a RuntimeError) are also ValueErrors, as they were
before Error existed.
"""

from __future__ import annotations


class Error(Exception):
    """Bad input or a failed operation; the message is one line for the user."""
