"""A training step while another process keeps a core busy: does it degrade gracefully or stall?

    python benchmarks/busy.py [--rounds 3] [--seconds 2] [--cases mlp:64,mlp_silu:32] [--spincounts 1000,...]

Times the MLP 784-300-100-10 at batch 64 and the small MLP 32-64-64-4 (SiLU) at batch 32 alone
and while a background process spins on one core (pinned to it; started before and stopped after
each measurement), for:

- graphnn: its default thread policy (runtime/threads.py: bounded spinning, and one thread or
  OpenMP's team per call, whichever measured faster);
- graphnn openmp: the same library with ``GRAPHNN_THREADS=openmp`` (libgomp's own spinning, every
  large region on every core: the behaviour before the policy);
- graphnn 1 thread: ``OMP_NUM_THREADS=1``, the reference a busy machine should stay near;
- torch eager, on every core;
- with ``--spincounts``, graphnn's policy with each of those ``GOMP_SPINCOUNT`` values instead of
  its own (runtime/threads.py: SPIN_COUNT), to weigh that default on a quiet machine.

Each figure is the mean time per step over the timed window (a stall counts in full; a median
would hide it), the median over interleaved rounds; each measurement runs in a process of its own.
Without the policy, a step that must wait for a thread on the busy core can take tens of times
its one-thread time; with it, a busy step should stay within about 2x graphnn's one-thread time.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peak import cores  # noqa: E402
from processes import run_worker, worker_task  # noqa: E402

CASES = (("mlp", 64), ("mlp_silu", 32))
"""(model of benchmarks/train_step.py, batch size)."""
OPENMP = ("GRAPHNN_THREADS", "OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
"""The variables each contender sets or clears, so the caller's settings do not leak in."""
CONTENDERS = {
    "graphnn": ("graphnn", {}),
    "graphnn openmp": ("graphnn", {"GRAPHNN_THREADS": "openmp"}),
    "graphnn 1 thread": ("graphnn", {"OMP_NUM_THREADS": "1"}),
    "torch eager": ("torch eager", {}),
}
"""Each contender: (framework of train_step.py, its environment)."""


def time_steps(framework: str, case: str, batch: int, seconds: float) -> dict:
    """In this process: µs per step of ``framework`` on ``case`` over ``seconds`` (after a
    warm-up of a quarter of that, in which graphnn's policy makes its first choice): the mean
    (stalls included), the median and the 90th percentile, and the steps timed."""
    import train_step

    if framework.startswith("torch"):
        train_step.set_up_torch()
    x, y = train_step.data(case, batch, np.random.default_rng(0))
    step = train_step.stepper(framework, case, x, y)
    end = time.perf_counter() + seconds / 4
    while time.perf_counter() < end:
        step()
    times = []
    start = time.perf_counter()
    while not times or time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    times.sort()
    return {"mean": sum(times) / len(times) * 1e6, "median": times[len(times) // 2] * 1e6,
            "p90": times[int(0.9 * (len(times) - 1))] * 1e6, "steps": len(times)}


@contextlib.contextmanager
def busy_core(core: int):
    """A process spinning on ``core`` while the block runs."""
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        if hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(spinner.pid, {core})
        time.sleep(0.1)  # running before the measured process starts
        yield
    finally:
        spinner.kill()
        spinner.wait()


def spin_contender(count: int) -> str:
    """The contender running graphnn's policy with libgomp spinning ``count`` rounds (added to
    CONTENDERS)."""
    name = f"graphnn spin {count}"
    CONTENDERS[name] = ("graphnn", {"GOMP_SPINCOUNT": str(count)})
    return name


def measure(cases=CASES, rounds: int = 3, seconds: float = 2.0, contenders=tuple(CONTENDERS)) -> dict:
    """{(case, batch): {contender: {"alone": µs, "busy": µs}}}: each the median over ``rounds``
    interleaved rounds of the mean µs per step (see time_steps)."""
    core = max(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1) - 1
    samples = {(case, batch): {name: {"alone": [], "busy": []} for name in contenders} for case, batch in cases}
    for _ in range(rounds):
        for case, batch in cases:
            for load in ("alone", "busy"):
                with busy_core(core) if load == "busy" else contextlib.nullcontext():
                    for name in contenders:
                        framework, env = CONTENDERS[name]
                        task = {"framework": framework, "case": case, "batch": batch, "seconds": seconds}
                        result = run_worker(__file__, task, env={**dict.fromkeys(OPENMP), **env})
                        samples[case, batch][name][load].append(result["mean"])
    return {row: {name: {load: statistics.median(values) for load, values in by_load.items()}
                  for name, by_load in by_name.items()} for row, by_name in samples.items()}


def main() -> None:
    task = worker_task(sys.argv)
    if task is not None:
        print(json.dumps(time_steps(task["framework"], task["case"], task["batch"], task["seconds"])))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=2.0, help="timed seconds per measurement")
    parser.add_argument("--cases", default=",".join(f"{case}:{batch}" for case, batch in CASES),
                        help="model:batch pairs (models of benchmarks/train_step.py)")
    parser.add_argument("--spincounts", default="", help="GOMP_SPINCOUNT values to time graphnn's policy with too")
    args = parser.parse_args()
    if cores() < 2:
        raise SystemExit("busy.py needs at least 2 cores: one for the background process, one for the step")
    cases = [(case, int(batch)) for case, batch in (item.split(":") for item in args.cases.split(","))]
    for count in args.spincounts.split(","):
        if count:
            spin_contender(int(count))
    results = measure(cases, args.rounds, args.seconds, tuple(CONTENDERS))
    print(f"µs per step (mean over {args.seconds:g} s, median of {args.rounds} interleaved rounds), alone and with a "
          f"process spinning on one of {cores()} cores")
    print(f"{'model':<10} {'batch':>5} {'contender':<20} {'alone':>10} {'busy':>10} {'busy/alone':>11} "
          f"{'busy / 1 thread alone':>22}")
    for (case, batch), by_name in results.items():
        one = by_name["graphnn 1 thread"]["alone"]
        for name, times in by_name.items():
            relative = f"{times['busy'] / one:>21.2f}x" if name.startswith("graphnn") else f"{'-':>22}"
            print(f"{case:<10} {batch:>5} {name:<20} {times['alone']:>10.1f} {times['busy']:>10.1f} "
                  f"{times['busy'] / times['alone']:>10.2f}x {relative}", flush=True)


if __name__ == "__main__":
    main()
