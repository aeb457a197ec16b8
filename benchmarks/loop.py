"""Microseconds per iteration of the literal PyTorch training loop (``out = model(x)``, ``loss =
criterion(out, y)``, ``optimizer.zero_grad()``, ``loss.backward()``, ``optimizer.step()``,
``loss.item()``) on graphnn, against the same loop on torch eager and against graphnn's explicit
compiled ``step``: on the thermometer network (1-8-1 Tanh, 10 samples; an iteration is pure
overhead) and on an MLP 784-300-100-10 at batch 64 (SGD with momentum).

    python benchmarks/loop.py [--rounds 5] [--iterations 200]

Each figure is the median over interleaved rounds. It also reports the Python time per iteration
the recording costs (graphnn's loop minus its compiled step) and how it grows with the depth of an
MLP.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import graphnn as gn  # noqa: E402

try:
    import torch
except ImportError:  # pragma: no cover
    torch = None


def thermometer(lib):
    return lib.nn.Sequential(lib.nn.Linear(1, 8), lib.nn.Tanh(), lib.nn.Linear(8, 1))


def mlp(lib, depth: int = 2):
    sizes = [784] + [300, 100, 100, 100, 100, 100][:depth] + [10]
    layers = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [lib.nn.Linear(a, b), lib.nn.ReLU()]
    return lib.nn.Sequential(*layers[:-1])


def setups(name: str, depth: int = 2) -> dict:
    """Each contender as a function running one iteration."""
    rng = np.random.default_rng(0)
    if name == "thermometer":
        x = rng.random((10, 1)).astype(np.float32) * 8
        y = (x * 5 - 16).astype(np.float32)
        build, loss_name, opt = thermometer, "MSELoss", ("SGD", {"lr": 1e-3})
    else:
        x = rng.standard_normal((64, 784)).astype(np.float32)
        y = rng.integers(0, 10, 64)
        build, loss_name, opt = (lambda lib: mlp(lib, depth)), "CrossEntropyLoss", ("SGD", {"lr": 0.01, "momentum": 0.9})
    runs = {}
    for label, lib in (("graphnn loop", gn), ("torch loop", torch)):
        if lib is None:
            continue
        lib.manual_seed(0)
        model = build(lib)
        criterion = getattr(lib.nn, loss_name)()
        optimizer = getattr(lib.optim, opt[0])(model.parameters(), **opt[1])
        xt, yt = lib.tensor(x), lib.tensor(y)

        def iteration(model=model, criterion=criterion, optimizer=optimizer, xt=xt, yt=yt):
            out = model(xt)
            loss = criterion(out, yt)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            return loss.item()

        runs[label] = iteration
    gn.manual_seed(0)
    model = build(gn)
    step = gn.compile(model, getattr(gn.nn, loss_name)(), getattr(gn.optim, opt[0])(model.parameters(), **opt[1])).step
    runs["graphnn step"] = lambda: step(x, y)
    return runs


def per_iteration(run, iterations: int) -> float:
    start = time.perf_counter()
    for _ in range(iterations):
        run()
    return (time.perf_counter() - start) / iterations * 1e6


def measure(name: str, rounds: int = 5, iterations: int = 200, depth: int = 2) -> dict:
    """{contender: median µs per iteration} over interleaved rounds."""
    runs = setups(name, depth)
    for run in runs.values():  # record, compile and warm each path first
        per_iteration(run, 3)
    times = {label: [] for label in runs}
    for _ in range(rounds):
        for label, run in runs.items():
            times[label].append(per_iteration(run, iterations))
    return {label: statistics.median(values) for label, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=200)
    args = parser.parse_args()
    print(f"µs per iteration, median of {args.rounds} interleaved rounds of {args.iterations}")
    print(f"{'network':<22} {'graphnn loop':>13} {'torch loop':>11} {'graphnn step':>13} {'torch/loop':>11} {'loop/step':>10}")
    rows = [("thermometer", 2), ("mlp 784-300-100-10", 2)] + [(f"mlp depth {d}", d) for d in (4, 6)]
    for label, depth in rows:
        row = measure("thermometer" if label == "thermometer" else "mlp", args.rounds, args.iterations, depth)
        loop, step = row["graphnn loop"], row["graphnn step"]
        print(f"{label:<22} {loop:>13.1f} {row.get('torch loop', float('nan')):>11.1f} {step:>13.1f} "
              f"{row.get('torch loop', float('nan')) / loop:>10.2f}x {loop / step:>9.2f}x")


if __name__ == "__main__":
    main()
