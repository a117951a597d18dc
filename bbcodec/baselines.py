"""The codecs bbcodec bench compares: bbcodec and the baselines it reaches through
Pillow, with their quality sweeps. No numpy: the CLI lists CODECS in its --codecs option
without loading the benchmark (bench.py)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Baseline:
    """A codec reached through Pillow: format name, quality sweep, save parameters."""

    name: str
    pil_format: str
    qualities: tuple[int, ...]
    params: Callable[[int], dict]
    plugin: str | None = None  # module to import first (registers the format)
    description: str = ""
    one_thread: dict = field(default_factory=dict)  # save parameters for one encoder thread


BASELINES = {
    "jpeg": Baseline("jpeg", "JPEG", (5, 10, 15, 20, 30, 40, 50, 60, 70, 80, 85, 90, 95),
                     lambda q: {"quality": q, "subsampling": 2}, description="libjpeg-turbo via Pillow, 4:2:0"),
    "webp": Baseline("webp", "WEBP", (5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95),
                     lambda q: {"quality": q, "method": 6}, description="libwebp via Pillow, method 6"),
    "avif": Baseline("avif", "AVIF", (10, 20, 30, 40, 50, 60, 70, 80, 90, 95),
                     lambda q: {"quality": q, "subsampling": "4:4:4", "speed": 4}, description="libavif (aom) via Pillow, 4:4:4, speed 4", one_thread={"max_threads": 1}),
    "jxl": Baseline("jxl", "JXL", (10, 20, 30, 40, 50, 60, 70, 80, 90, 95),
                    lambda q: {"quality": q, "effort": 7}, plugin="pillow_jxl", description="libjxl via pillow-jxl-plugin, effort 7",
                    one_thread={"num_threads": 0}),
}


CODECS = ("bbcodec", *BASELINES)  # the names --codecs takes, in the order of its default
