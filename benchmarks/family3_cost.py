"""What network family 3 costs in seconds: the default weights against the family-2 file
they were built on (the same auto-encoder), measured in one run, alternating.

    python benchmarks/family3_cost.py [--images 4] [--reps 3] [--quality 4]

Per Kodak image, the minimum over reps of encode and decode seconds for each weights
file, their ratio, and the post-loop filter's share of the family-3 decode.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from bbcodec import codec, format, weights  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
KODAK = ROOT.parent / "shared" / "data" / "kodak"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=4)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--quality", type=float, default=4)
    a = p.parse_args()
    new = weights.default()
    base_name = new.model.info.get("family3_base")
    if new.model.family != 3 or not base_name:
        raise SystemExit(f"the default weights {new.name} are not family 3 built on a shipped file")
    base = next(weights.load(path) for path in weights.available() if path.name.startswith(f"{base_name}-"))
    pf = new.model.postfilter
    qp = new.model.params_at(round(a.quality * 256))
    print(f"{new.name} (family 3) against {base.name} (family {base.model.family}), q{a.quality:g}, "
          f"min of {a.reps}")
    print(f"{'image':>12} {'enc 2':>7} {'enc 3':>7} {'ratio':>6} {'dec 2':>7} {'dec 3':>7} {'ratio':>6} {'filter':>7}")
    ratios = []
    for path in sorted(KODAK.glob("*.png"))[: a.images]:
        with Image.open(path) as im:
            img = np.asarray(im.convert("RGB"))
        t: dict[str, list[float]] = {k: [] for k in ("e2", "e3", "d2", "d3", "pf")}
        for _ in range(a.reps):
            for key, w in (("2", base), ("3", new)):
                t0 = time.perf_counter()
                data, rec = codec.encode(img, a.quality, w)
                t1 = time.perf_counter()
                codec.decode(*format.unpack(data), w)
                t2 = time.perf_counter()
                t["e" + key].append(t1 - t0)
                t["d" + key].append(t2 - t1)
            if pf is not None:
                t0 = time.perf_counter()
                pf.apply(rec, qp.bias["pf"])
                t["pf"].append(time.perf_counter() - t0)
        m = {k: min(v) if v else 0.0 for k, v in t.items()}
        ratios.append((m["e3"] / m["e2"], m["d3"] / m["d2"]))
        print(f"{path.stem:>12} {m['e2']:7.3f} {m['e3']:7.3f} {m['e3'] / m['e2']:6.2f} {m['d2']:7.3f} "
              f"{m['d3']:7.3f} {m['d3'] / m['d2']:6.2f} {m['pf']:7.3f}")
    e, d = np.mean(ratios, axis=0)
    print(f"mean ratio family 3 / family 2: encode {e:.2f}, decode {d:.2f}")


if __name__ == "__main__":
    main()
