"""Microseconds per iteration of the literal PyTorch training loop (``out = model(x)``, ``loss =
criterion(out, y)``, ``optimizer.zero_grad()``, ``loss.backward()``, ``optimizer.step()``,
``loss.item()``) on graphnn, against the same loop on torch eager and against graphnn's explicit
compiled ``step``: on the thermometer network (1-8-1 Tanh, 10 samples; an iteration is pure
overhead) and on an MLP 784-300-100-10 at batch 64 (SGD with momentum).

    python benchmarks/loop.py [--rounds 5] [--iterations 200]

Each contender runs in a process of its own (benchmarks/processes.py: torch's and graphnn's
thread pools in one process contend for the cores, and torch's import loads the libgomp graphnn
then shares), which warms its loop up and times five blocks of iterations, reporting their
median; each figure is the median of that over interleaved rounds. It also reports the Python
time per iteration the recording costs (graphnn's loop minus its compiled step) and how it grows
with the depth of an MLP.

The thermometer row runs every contender pinned to one core (the same one; ``--unpinned`` lets
them run free). Its iterations start no parallel region in either library, and on a two-core
virtual machine an unpinned process lands in a fast or a slow mode for its whole life (graphnn's
loop measured 31-33 or 45-50 µs a process, torch's 96 to 235), which a five-process median does
not settle. Pinned, both are steady, and torch's loop measured faster than unpinned.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from processes import run_worker, worker_task  # noqa: E402

CONTENDERS = ("graphnn loop", "torch loop", "graphnn step")


def thermometer(lib):
    return lib.nn.Sequential(lib.nn.Linear(1, 8), lib.nn.Tanh(), lib.nn.Linear(8, 1))


def mlp(lib, depth: int = 2):
    sizes = [784] + [300, 100, 100, 100, 100, 100][:depth] + [10]
    layers = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [lib.nn.Linear(a, b), lib.nn.ReLU()]
    return lib.nn.Sequential(*layers[:-1])


def setup(contender: str, name: str, depth: int = 2):
    """One contender's iteration as a function (None where torch is not installed); the library
    it uses is imported here, in the worker's process only."""
    if contender == "torch loop":
        if importlib.util.find_spec("torch") is None:
            return None
        import torch

        lib = torch
    else:
        import graphnn as lib
    rng = np.random.default_rng(0)
    if name == "thermometer":
        x = rng.random((10, 1)).astype(np.float32) * 8
        y = (x * 5 - 16).astype(np.float32)
        build, loss_name, opt = thermometer, "MSELoss", ("SGD", {"lr": 1e-3})
    else:
        x = rng.standard_normal((64, 784)).astype(np.float32)
        y = rng.integers(0, 10, 64)
        build, loss_name, opt = (lambda lib: mlp(lib, depth)), "CrossEntropyLoss", ("SGD", {"lr": 0.01, "momentum": 0.9})
    lib.manual_seed(0)
    model = build(lib)
    criterion = getattr(lib.nn, loss_name)()
    optimizer = getattr(lib.optim, opt[0])(model.parameters(), **opt[1])
    if contender == "graphnn step":
        step = lib.compile(model, criterion, optimizer).step
        return lambda: step(x, y)
    xt, yt = lib.tensor(x), lib.tensor(y)

    def iteration(model=model, criterion=criterion, optimizer=optimizer, xt=xt, yt=yt):
        out = model(xt)
        loss = criterion(out, yt)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss.item()

    return iteration


def per_iteration(run, iterations: int) -> float:
    start = time.perf_counter()
    for _ in range(iterations):
        run()
    return (time.perf_counter() - start) / iterations * 1e6


def time_contender(task: dict) -> float | None:
    """In a worker: µs per iteration of one contender, the median of five timed blocks after a
    warm-up (the first iterations record, compile and settle the thread policy)."""
    if task.get("pinned") and hasattr(os, "sched_setaffinity"):  # (before either library starts its threads)
        os.sched_setaffinity(0, {max(os.sched_getaffinity(0))})
    run = setup(task["contender"], task["name"], task["depth"])
    if run is None:
        return None
    per_iteration(run, 3)
    per_iteration(run, task["iterations"])
    return statistics.median(per_iteration(run, task["iterations"]) for _ in range(5))


def measure(name: str, rounds: int = 5, iterations: int = 200, depth: int = 2, pinned: bool = False) -> dict:
    """{contender: median µs per iteration} over interleaved rounds, each measurement in a
    process of its own (``pinned``: to one core)."""
    times = {label: [] for label in CONTENDERS}
    for _ in range(rounds):
        for label in CONTENDERS:
            task = {"contender": label, "name": name, "depth": depth, "iterations": iterations, "pinned": pinned}
            value = run_worker(__file__, task)["us"]
            if value is not None:
                times[label].append(value)
    return {label: statistics.median(values) for label, values in times.items() if values}


def main() -> None:
    task = worker_task(sys.argv)
    if task is not None:  # a subprocess of the parent's rounds: one contender, one network
        print(json.dumps({"us": time_contender(task)}))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--unpinned", action="store_true", help="run the thermometer row's processes on every core")
    args = parser.parse_args()
    print(f"µs per iteration, median of {args.rounds} interleaved rounds, each contender in its own processes "
          f"(median of five blocks of {args.iterations} per process)")
    print("(the thermometer row " + ("on every core)" if args.unpinned else "pinned to one core)"))
    print(f"{'network':<22} {'graphnn loop':>13} {'torch loop':>11} {'graphnn step':>13} {'torch/loop':>11} {'loop/step':>10}")
    rows = [("thermometer", 2), ("mlp 784-300-100-10", 2)] + [(f"mlp depth {d}", d) for d in (4, 6)]
    for label, depth in rows:
        pinned = label == "thermometer" and not args.unpinned
        row = measure("thermometer" if label == "thermometer" else "mlp", args.rounds, args.iterations, depth, pinned)
        loop, step = row["graphnn loop"], row["graphnn step"]
        print(f"{label:<22} {loop:>13.1f} {row.get('torch loop', float('nan')):>11.1f} {step:>13.1f} "
              f"{row.get('torch loop', float('nan')) / loop:>10.2f}x {loop / step:>9.2f}x")


if __name__ == "__main__":
    main()
