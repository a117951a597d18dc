"""Encode/decode speed and memory of the default weights, per thread count (figures, not a test).

    python benchmarks/speed.py [--threads 1,2] [--images 4] [--sizes 1,4,16,64]

threads is codec's: the processes sharing one image (the calling one and threads - 1
forked workers).

1. Kodak 768x512 at qualities 1, 4, 8, for each thread count: median encode and decode
   seconds, blocks/s, and the decoder's GFLOP/s against a plain float64 matrix product
   timed here with as many BLAS threads (and float32, for reference).
2. Scaling: one Kodak image resized to 1 .. 64 megapixels, coded in a fresh process per
   size and thread count: seconds, seconds per megapixel, and the peak resident memory
   of the encode and of the decode (the process's, image included: what a caller of
   bbcodec.encode / decode sees; Linux only, else the process's peak so far), and the
   largest peak of a forked worker (most of its pages are the caller's, shared).
3. Where one Kodak decode goes with one thread: the integer networks, the range coder,
   the rest (Python, gathering, writing pixels).
4. The matrix-product layout of arith.mm: x @ kernel(W) (W.T stored contiguous)
   against (W @ x.T).T and x @ W.T, summed over every product a decoder's networks
   make per wavefront (entropy network, group heads, synthesis; not the post-loop
   filter), at the batch sizes of a Kodak wavefront cut among 4, 2 and 1 processes (one
   BLAS thread, float64; best of 5).

The machine's load changes every figure: `uptime` is printed first.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KODAK = ROOT.parent / "shared" / "data" / "kodak"


def _stack_macs(stack) -> int:
    """Multiply-adds per block of one integer stack (matrix products and GDN)."""
    macs = stack.W_nb.size + (stack.W_cur.size if stack.W_cur is not None else 0)
    for act, layer in zip(stack.acts, stack.layers, strict=True):
        macs += layer.W.size + (act.G.size if act.G is not None else 0)
    return macs


def gemm_gflops(dtype: str, threads: int, n: int = 1024, reps: int = 5) -> float:
    """GFLOP/s of an n x n matrix product with `threads` BLAS threads."""
    import numpy as np
    from threadpoolctl import threadpool_limits

    a = np.random.default_rng(0).standard_normal((n, n)).astype(dtype)
    with threadpool_limits(limits=threads, user_api="blas"):
        a @ a
        t = time.perf_counter()
        for _ in range(reps):
            a @ a
        return 2 * n**3 * reps / (time.perf_counter() - t) / 1e9


def kodak_table(n_images: int, threads: list[int]) -> None:
    import numpy as np
    from PIL import Image

    from bbcodec.coding import format
    from bbcodec.coding import loop as codec
    from bbcodec.model import weights

    w = weights.default()
    m = w.model
    dec_macs = _stack_macs(m.he) + _stack_macs(m.gs)
    enc_macs = dec_macs + _stack_macs(m.ga)
    paths = sorted(KODAK.glob("*.png"))[:n_images]
    imgs = []
    for p in paths:
        with Image.open(p) as im:
            imgs.append(np.asarray(im.convert("RGB")))
    print(f"weights {w.path.name}: {enc_macs / 1e6:.2f}M MACs/block to encode, {dec_macs / 1e6:.2f}M to decode; "
          f"{len(imgs)} Kodak images")
    print(f"{'thr':>3} {'q':>3} {'enc s':>7} {'dec s':>7} {'enc blk/s':>10} {'dec blk/s':>10} {'dec GFLOP/s':>12} "
          f"{'of f64':>7} {'of f32':>7}")
    for n in threads:
        f64, f32 = gemm_gflops("float64", n), gemm_gflops("float32", n)
        for q in (1, 4, 8):
            enc, dec, nblocks = [], [], 0
            for img in imgs:
                t0 = time.perf_counter()
                data, _ = codec.encode(img, q, w.model, w.prefix, threads=n)
                t1 = time.perf_counter()
                codec.decode(*format.unpack(data), w.model, threads=n)
                t2 = time.perf_counter()
                enc.append(t1 - t0)
                dec.append(t2 - t1)
                nblocks = -(-img.shape[0] // 8) * -(-img.shape[1] // 8)
            e, d = float(np.median(enc)), float(np.median(dec))
            g = 2 * dec_macs * nblocks / d / 1e9
            print(f"{n:3d} {q:3d} {e:7.3f} {d:7.3f} {nblocks / e:10.0f} {nblocks / d:10.0f} {g:12.1f} "
                  f"{g / f64:7.1%} {g / f32:7.1%}")
        print(f"    (matrix product with {n} BLAS thread{'s' if n > 1 else ''}: float64 {f64:.1f} GFLOP/s, "
              f"float32 {f32:.1f} GFLOP/s)")


CHILD = """
import gc, json, resource, sys, time, numpy as np
from PIL import Image
from bbcodec.coding import format, loop as codec
from bbcodec.model import weights

def reset_peak():  # Linux: restart the peak resident memory from what is resident now
    try:
        open("/proc/self/clear_refs", "w").write("5")
    except OSError:
        pass

def peak_mb():
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

src, mp, threads = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
with Image.open(src) as im:
    im = im.convert("RGB")
    s = (mp * 1e6 / (im.width * im.height)) ** 0.5
    img = np.asarray(im.resize((max(8, round(im.width * s)), max(8, round(im.height * s))), Image.Resampling.BICUBIC))
w = weights.default()
codec.encode(img[:64, :64], 4, w.model, w.prefix, threads=threads)  # load the weights, build the fast networks
gc.collect(); reset_peak()
t0 = time.perf_counter(); data, rec = codec.encode(img, 4, w.model, w.prefix, threads=threads); t1 = time.perf_counter()
enc_mb = peak_mb()
h, wd = img.shape[:2]
del img, rec
gc.collect(); reset_peak()
t2 = time.perf_counter(); codec.decode(*format.unpack(data), w.model, threads=threads); t3 = time.perf_counter()
worker_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
print(json.dumps({"w": wd, "h": h, "enc": t1 - t0, "dec": t3 - t2, "enc_mb": enc_mb, "dec_mb": peak_mb(),
                  "worker_mb": worker_mb}))
"""


def scaling(sizes: list[float], threads: list[int]) -> None:
    src = sorted(KODAK.glob("*.png"))[0]
    print(f"{'thr':>3} {'MP':>6} {'size':>11} {'enc s':>7} {'dec s':>7} {'enc s/MP':>9} {'dec s/MP':>9} "
          f"{'enc peak MB':>12} {'dec peak MB':>12} {'worker MB':>10}")
    for mp in sizes:
        for n in threads:
            out = subprocess.run([sys.executable, "-c", CHILD, str(src), str(mp), str(n)], capture_output=True,
                                 text=True, check=True)
            r = json.loads(out.stdout)
            real = r["w"] * r["h"] / 1e6
            print(f"{n:3d} {real:6.2f} {r['w']:>5}x{r['h']:<5} {r['enc']:7.2f} {r['dec']:7.2f} {r['enc'] / real:9.2f} "
                  f"{r['dec'] / real:9.2f} {r['enc_mb']:12.0f} {r['dec_mb']:12.0f} {r['worker_mb']:10.0f}", flush=True)


def breakdown() -> None:
    """One Kodak decode with one thread, profiled: networks, range coder, the rest."""
    import cProfile
    import pstats

    import numpy as np
    from PIL import Image

    from bbcodec.coding import format
    from bbcodec.coding import loop as codec
    from bbcodec.model import weights

    w = weights.default()
    with Image.open(sorted(KODAK.glob("*.png"))[0]) as im:
        img = np.asarray(im.convert("RGB"))
    header, payload = format.unpack(codec.encode(img, 4, w.model, w.prefix, threads=1)[0])
    codec.decode(header, payload, w.model, threads=1)
    prof = cProfile.Profile()
    t = time.perf_counter()
    prof.runcall(codec.decode, header, payload, w.model, threads=1)
    total = time.perf_counter() - t
    stats = pstats.Stats(prof).stats  # type: ignore[attr-defined]
    nets = coder = 0.0
    for (file, _, fn), (_, _, tottime, cumtime, _) in stats.items():
        if file.endswith("frozen.py") and fn in ("neighbours", "entropy_params", "synthesise"):
            nets += cumtime
        if "RangeDecoder" in fn or "RangeEncoder" in fn:
            coder += tottime
    print(f"one Kodak decode, 1 thread, profiled ({total:.3f} s): networks {nets:.3f} s, range coder {coder:.3f} s "
          f"(decode and the payload check), the rest {total - nets - coder:.3f} s")


def orientation() -> None:
    import numpy as np
    from threadpoolctl import threadpool_limits

    from bbcodec.model import weights
    from bbcodec.model.arith import kernel, mm

    model = weights.default().model
    Ws = []  # every product a decoder makes per wavefront, as (out, in)
    for name in ("he", "gs"):
        fast = model.stacks()[name].fast
        Ws.append(np.concatenate([fast.Wnb, np.zeros((len(fast.Wnb), 1))], axis=1))  # with the bias column
        if fast.Kcur is not None:
            Ws.append(fast.Kcur.T)
        for step in fast.steps:
            Ws += [step.W.T] + ([] if step.G is None else [step.G.T])
    if model.groups is not None:  # the group heads: their first layers on the hidden features, then each head's
        heads = [h.fast for h in model.groups.heads]
        Ws.append(np.concatenate([h.K_h for h in heads], axis=1).T)
        for head in heads:
            Ws += [head.K_s.T] + [K.T for K, _ in head.layers]
    Ws = [np.ascontiguousarray(W) for W in Ws]
    Ks = [kernel(W) for W in Ws]
    rng = np.random.default_rng(0)
    print(f"the decoder's {len(Ws)} products per wavefront (entropy network, group heads, synthesis), one BLAS thread, "
          "microseconds for all of them")
    with threadpool_limits(limits=1, user_api="blas"):
        for B in (7, 14, 28):
            xs = [np.rint(rng.uniform(-128, 127, size=(B, W.shape[1]))) for W in Ws]
            forms = {"(W @ x.T).T": lambda xs=xs: [(W @ x.T).T for W, x in zip(Ws, xs, strict=True)],
                     "x @ W.T": lambda xs=xs: [x @ W.T for W, x in zip(Ws, xs, strict=True)],
                     "mm (x @ kernel(W))": lambda xs=xs: [mm(x, K) for K, x in zip(Ks, xs, strict=True)]}
            times = {}
            for label, f in forms.items():
                f()
                best = float("inf")
                for _ in range(5):
                    t = time.perf_counter()
                    for _ in range(50):
                        f()
                    best = min(best, (time.perf_counter() - t) / 50 * 1e6)
                times[label] = best
            print(f"  {B:3d} blocks: " + "   ".join(f"{k} {v:6.0f}" for k, v in times.items()))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", default="1,2", help="thread counts to compare")
    p.add_argument("--images", type=int, default=4)
    p.add_argument("--sizes", default="1,4,16,64", help="megapixels of the scaling runs ('' for none)")
    args = p.parse_args()
    threads = [int(t) for t in args.threads.split(",")]
    print(subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip() if os.path.exists("/usr/bin/uptime")
          else "")
    kodak_table(args.images, threads)
    breakdown()
    orientation()
    if args.sizes:
        scaling([float(s) for s in args.sizes.split(",")], threads)


if __name__ == "__main__":
    main()
