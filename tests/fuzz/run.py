"""Command line for the differential fuzzer.

    python -m tests.fuzz.run --seed 17                 # replay one case, print what it compared
    python -m tests.fuzz.run --cases 300 --start 0     # seeds 0..299 on the C backend, then a summary
    python -m tests.fuzz.run --cases 50 --backend numpy --json results.json

Exit status 1 when a case fails.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np


def summary(results: list) -> str:
    """Counts by status, failures grouped by cause with their seeds (and what the failing cases
    of a group share that most passing cases lack), and the error distribution over passing cases."""
    from tests.fuzz.compare import FLOOR, RATIO

    lines = []
    by_status: dict = {}
    for r in results:
        by_status.setdefault(r.status, []).append(r)
    lines.append(f"{len(results)} cases: " + ", ".join(f"{len(v)} {k}" for k, v in sorted(by_status.items())))
    for status in ("fail", "kink", "chaotic", "skip"):
        groups: dict = {}
        for r in by_status.get(status, []):
            groups.setdefault(r.category or r.cause, []).append(r)
        for category, members in sorted(groups.items(), key=lambda kv: -len(kv[1])):
            lines.append(f"  {status}: {category}: seeds {[r.seed for r in members]}")
            if status == "fail" and all(r.features for r in members):
                lines.append(f"    these cases all have: {', '.join(_shared(members, results)) or '(nothing rarer)'}")
    lines.append(f"tolerance: err(graphnn) <= {RATIO:g} * err(torch32) + {FLOOR:g}, errors relative to torch float64")
    passing = [r for r in results if r.status == "pass"]
    for what, label in (("trajectory", "trajectory"), ("local", "one step  ")):
        rows = [getattr(r, what) for r in passing if getattr(r, what)]
        if rows:
            ours = [max(e for e, _ in errors.values()) for errors in rows]
            theirs = [max(e for _, e in errors.values()) for errors in rows]
            used = [max(e / (RATIO * t + FLOOR) for e, t in errors.values()) for errors in rows]
            lines.append(f"{label} (worst quantity of each passing case, {len(rows)} cases): graphnn {_quantiles(ours)}; "
                         f"torch32 {_quantiles(theirs)}; share of the tolerance used {_quantiles(used)}")
    return "\n".join(lines)


def _shared(failing: list, results: list) -> list:
    """Features every one of the failing cases has and at most half of the passing ones have."""
    common = set.intersection(*(set(r.features) for r in failing))
    passing = [set(r.features) for r in results if r.status in ("pass", "kink", "chaotic")]
    return sorted(f for f in common if sum(f in p for p in passing) <= len(passing) / 2)


def _quantiles(values) -> str:
    v = np.asarray(values, np.float64)
    return f"median {np.median(v):.2g} p90 {np.percentile(v, 90):.2g} max {v.max():.2g}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz.run", description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, action="append", help="run this seed (repeatable)")
    parser.add_argument("--cases", type=int, default=0, help="run this many consecutive seeds")
    parser.add_argument("--start", type=int, default=0, help="the first seed of --cases")
    parser.add_argument("--backend", default="c", choices=("c", "numpy", "triton"))
    parser.add_argument("--json", help="write every case's result to this file")
    parser.add_argument("--quiet", action="store_true", help="print failures and the summary only")
    args = parser.parse_args(argv)
    seeds = list(args.seed or []) + list(range(args.start, args.start + args.cases))
    if not seeds:
        parser.error("give --seed N or --cases N")
    os.environ.setdefault("GRAPHNN_CACHE_DIR", tempfile.mkdtemp(prefix="graphnn-fuzz-cache-"))
    import torch

    torch.set_num_threads(1)
    from tests.fuzz.compare import run_case
    from tests.fuzz.generate import make_case

    results = []
    started = time.perf_counter()
    for seed in seeds:
        result = run_case(make_case(seed), args.backend)
        results.append(result)
        if result.status == "fail" or not args.quiet or len(seeds) == 1:
            print(result.report() if result.status != "pass" or len(seeds) == 1 else
                  f"[pass] seed {seed} ({result.seconds:.1f} s)", flush=True)
        elif args.quiet and len(results) % 25 == 0:
            print(f"... {len(results)} cases, {time.perf_counter() - started:.0f} s", flush=True)
    print(summary(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump([r.__dict__ for r in results], f, indent=1, default=str)
    return 1 if any(r.status == "fail" for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
