"""The decode budget of issues #28 and #32 on a machine whose speed drifts: this tree's
Kodak decode against a baseline revision's, measured in the same run (figures, not a test).

    python benchmarks/decode_budget.py [--against 0bb8ff2] [--rounds 3] [--images 4]

The budget (Kodak at q4: 2 threads <= 0.35 s, 1 thread <= 0.6 s a picture) was set when
the baseline, 0bb8ff2, decoded in 0.289 / 0.46 s on this machine (docs/performance.md,
2026-11-26); the same code has since measured up to 40 % slower here on other days, with
no change of its own. So each round runs the baseline's own benchmarks/decode_threads.py
(from a temporary git worktree: its code, its default weights, files its encoder makes)
and then this tree's, alternating, and prints both, their ratio, and the budget scaled
by how fast the baseline ran this time (budget x baseline now / baseline then).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUDGET = {1: 0.6, 2: 0.35}  # seconds a Kodak picture, by threads (the issues' figures)
BASELINE_THEN = {1: 0.46, 2: 0.289}  # 0bb8ff2 when the budget was set (q4, 2026-11-26)
LINE = re.compile(r"threads=(\d+): .*?; ([0-9.]+) s an image")


def run(tree: Path, images: int) -> dict[int, float]:
    """One round of a tree's decode_threads.py: seconds a picture by threads."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    out = subprocess.run([sys.executable, "benchmarks/decode_threads.py", "kodak", "--rounds", "1",
                          "--images", str(images)], cwd=tree, env=env, capture_output=True, text=True, check=True)
    found = {int(n): float(s) for n, s in LINE.findall(out.stdout)}
    if set(found) != {1, 2}:
        raise SystemExit(f"no 1- and 2-thread figures from {tree}:\n{out.stdout}{out.stderr}")
    return found


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--against", default="0bb8ff2", help="the baseline revision")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--images", type=int, default=4, help="Kodak images (1..24)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "baseline"
        (Path(tmp) / "shared").symlink_to(ROOT.parent / "shared")  # the data beside it, as beside this tree
        subprocess.run(["git", "worktree", "add", "--detach", str(base), args.against], cwd=ROOT, check=True,
                       capture_output=True)
        try:
            times: dict[str, list[dict[int, float]]] = {"baseline": [], "this tree": []}
            for r in range(args.rounds):
                for label, tree in (("baseline", base), ("this tree", ROOT))[:: 1 if r % 2 == 0 else -1]:
                    times[label].append(run(tree, args.images))
                    t = times[label][-1]
                    print(f"round {r} {label:9s}: 1 thread {t[1]:.3f} s, 2 threads {t[2]:.3f} s "
                          f"(load {os.getloadavg()[0]:.2f})", flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base)], cwd=ROOT, capture_output=True)
    print(f"medians of {args.rounds} rounds, seconds a Kodak picture at q4 (baseline {args.against}):")
    for n in (1, 2):
        b = statistics.median(t[n] for t in times["baseline"])
        m = statistics.median(t[n] for t in times["this tree"])
        scaled = BUDGET[n] * b / BASELINE_THEN[n]
        print(f"  {n} thread{'s' if n > 1 else ' '}: baseline {b:.3f}, this tree {m:.3f} ({m / b:.2f}x); budget "
              f"{BUDGET[n]:.2f} s, {scaled:.3f} s scaled by the baseline's speed today: "
              f"{'within' if m <= scaled else 'over'} ({m / scaled:.2f} of it)")


if __name__ == "__main__":
    main()
