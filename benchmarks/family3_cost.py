"""What network family 3 costs in seconds: the default weights against the family-2 file
they were built on (the same auto-encoder; where that file is not shipped, a shipped
family-2 file of the same sizes), measured in one run, alternating.

    python benchmarks/family3_cost.py [--images 4] [--reps 3] [--quality 4]

Per Kodak image, the minimum over reps and rounds of encode and decode seconds for each
weights file (each in its own fresh process, as the CLI runs: one process timing both
models in turn ran family 3 ~10 % slower), their ratio, and the post-loop filter's share
of the family-3 decode.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from bbcodec.model import weights  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
KODAK = ROOT.parent / "shared" / "data" / "kodak"


CHILD = """
import json, sys, time
import numpy as np
from PIL import Image
from bbcodec.coding import format, loop as codec
from bbcodec.model import weights
w = weights.from_file(sys.argv[1])
q, reps = float(sys.argv[2]), int(sys.argv[3])
out = {}
for path in sys.argv[4:]:
    with Image.open(path) as im:
        img = np.asarray(im.convert("RGB"))
    enc, dec, filt = [], [], []
    for _ in range(reps):
        t0 = time.perf_counter()
        data, rec = codec.encode(img, q, w.model, w.prefix)
        t1 = time.perf_counter()
        codec.decode(*format.unpack(data), w.model)
        dec.append(time.perf_counter() - t1)
        enc.append(t1 - t0)
        if w.model.postfilter is not None:
            t0 = time.perf_counter()
            w.model.postfilter.apply(rec, w.model.params_at(round(q * 256)).bias["pf"])
            filt.append(time.perf_counter() - t0)
    out[path] = [min(enc), min(dec), min(filt) if filt else 0.0]
print(json.dumps(out))
"""


def timings(w: weights.Weights, paths: list[Path], quality: float, reps: int) -> dict[str, list[float]]:
    """{image: [encode s, decode s, filter s]} of one weights file, in a fresh process."""
    out = subprocess.run([sys.executable, "-c", CHILD, str(w.path), str(quality), str(reps), *map(str, paths)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=4)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--rounds", type=int, default=2, help="alternating rounds of fresh processes")
    p.add_argument("--quality", type=float, default=4)
    a = p.parse_args()
    new = weights.default()
    base_name = new.model.info.get("family3_base")
    if new.model.family != 3 or not base_name:
        raise SystemExit(f"the default weights {new.name} are not family 3 built on a shipped file")
    base = next((weights.load(path) for path in weights.available() if path.name.startswith(f"{base_name}-")), None)
    if base is None:  # its base is not shipped: a shipped family-2 file of the same sizes costs the same
        same = (new.model.config.get("N"), new.model.M)
        base = next((w for w in map(weights.load, weights.available())
                     if w.model.family == 2 and (w.model.config.get("N"), w.model.M) == same), None)
    if base is None:
        raise SystemExit(f"no shipped family-2 weights of the sizes of {new.name} to compare with")
    paths = sorted(KODAK.glob("*.png"))[: a.images]
    best: dict[str, dict[str, list[float]]] = {"2": {}, "3": {}}
    for _ in range(a.rounds):
        for key, w in (("2", base), ("3", new)):
            for path, t in timings(w, paths, a.quality, a.reps).items():
                old = best[key].get(path, t)
                best[key][path] = [min(x, y) for x, y in zip(old, t, strict=True)]
    print(f"{new.name} (family 3) against {base.name} (family {base.model.family}), q{a.quality:g}, one "
          f"process per weights file, min of {a.reps} x {a.rounds} rounds")
    print(f"{'image':>12} {'enc 2':>7} {'enc 3':>7} {'ratio':>6} {'dec 2':>7} {'dec 3':>7} {'ratio':>6} {'filter':>7}")
    ratios = []
    for path in map(str, paths):
        (e2, d2, _), (e3, d3, f3) = best["2"][path], best["3"][path]
        ratios.append((e3 / e2, d3 / d2))
        print(f"{Path(path).stem:>12} {e2:7.3f} {e3:7.3f} {e3 / e2:6.2f} {d2:7.3f} {d3:7.3f} {d3 / d2:6.2f} {f3:7.3f}")
    e, d = np.mean(ratios, axis=0)
    print(f"mean ratio family 3 / family 2: encode {e:.2f}, decode {d:.2f}")


if __name__ == "__main__":
    main()
