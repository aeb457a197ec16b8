"""Microseconds per training step: graphnn (C backend) against torch eager, torch.compile and
graphnn's numpy reference, measured side by side in one run (interleaved rounds, medians).

    python benchmarks/train_step.py [--rounds 5] [--no-compile] [--quick]

Models: the MLP 784-300-100-10 (ReLU, CrossEntropy, SGD(lr=0.01, momentum=0.9)) at several
batch sizes, the book's MNIST network with BatchNorm at batch 64, and the thermometer model
(Linear(1,13), Tanh, Linear(13,1), 9 samples). Also graphnn's compile time (cold and cached)
and the Python overhead of one call.
"""
from __future__ import annotations

import os

# numpy's OpenBLAS is held to its AVX2 kernel by the machine's environment; a fair comparison
# lets it use its best kernel. This must happen before numpy is imported, in this process only.
for _name in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
    os.environ.pop(_name, None)

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import graphnn as gn  # noqa: E402
from graphnn import nn, optim  # noqa: E402

try:
    import torch
except ImportError:  # pragma: no cover
    torch = None


def mlp(lib, batchnorm=False):
    layers = [lib.Flatten(), lib.Linear(784, 300)] + ([lib.BatchNorm1d(300)] if batchnorm else []) + [lib.ReLU()]
    layers += [lib.Linear(300, 100)] + ([lib.BatchNorm1d(100)] if batchnorm else []) + [lib.ReLU(), lib.Linear(100, 10)]
    return lib.Sequential(*layers)


def thermometer(lib):
    return lib.Sequential(lib.Linear(1, 13), lib.Tanh(), lib.Linear(13, 1))


CASES = {
    "mlp": (lambda lib: mlp(lib), "ce", (784,)),
    "mnist_bn": (lambda lib: mlp(lib, batchnorm=True), "ce", (784,)),
    "thermometer": (thermometer, "mse", (1,)),
}


def data(case: str, batch: int, rng):
    _, loss, features = CASES[case]
    x = rng.standard_normal((batch, *features)).astype(np.float32)
    y = rng.integers(0, 10, batch) if loss == "ce" else rng.standard_normal((batch, 1)).astype(np.float32)
    return x, y


def graphnn_stepper(case: str, backend: str, x, y):
    model = CASES[case][0](nn)
    loss = nn.CrossEntropyLoss() if CASES[case][1] == "ce" else nn.MSELoss()
    train = gn.compile(model, loss, optim.SGD(model.parameters(), lr=0.01, momentum=0.9), backend=backend)
    train.step(x, y)
    return lambda: train.step(x, y)


def torch_stepper(case: str, x, y, compiled: bool):
    model = CASES[case][0](torch.nn)
    loss_fn = torch.nn.CrossEntropyLoss() if CASES[case][1] == "ce" else torch.nn.MSELoss()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)

    def step():
        opt.zero_grad()
        loss = loss_fn(model(tx), ty)
        loss.backward()
        opt.step()
        return loss

    if compiled:
        torch._dynamo.reset()  # a fresh model per case: start from an empty compile cache
        step = torch.compile(step)
    step()
    step()
    return step


def time_per_step(fn, budget: float = 0.25) -> float:
    """Median-friendly timing: as many steps as fit in the budget, at least 3; microseconds."""
    start = time.perf_counter()
    fn()
    once = time.perf_counter() - start
    repeats = max(3, min(10000, int(budget / max(once, 1e-7))))
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats * 1e6


def measure(case: str, batch: int, rounds: int, with_compile: bool, with_reference: bool) -> dict:
    rng = np.random.default_rng(0)
    x, y = data(case, batch, rng)
    steppers = {"graphnn": graphnn_stepper(case, "c", x, y)}
    if torch is not None:
        steppers["torch eager"] = torch_stepper(case, x, y, compiled=False)
        if with_compile:
            steppers["torch.compile"] = torch_stepper(case, x, y, compiled=True)
    if with_reference:
        steppers["numpy ref"] = graphnn_stepper(case, "numpy", x, y)
    samples = {name: [] for name in steppers}
    for _ in range(rounds):  # interleaved, so a slow spell of the machine hits every column
        for name, fn in steppers.items():
            samples[name].append(time_per_step(fn))
    return {name: statistics.median(values) for name, values in samples.items()}


def compile_times() -> tuple[float, float]:
    rng = np.random.default_rng(0)
    x, y = data("mnist_bn", 64, rng)
    with tempfile.TemporaryDirectory() as cache:
        os.environ["GRAPHNN_CACHE_DIR"] = cache
        times = []
        for _ in range(2):
            start = time.perf_counter()
            graphnn_stepper("mnist_bn", "c", x, y)
            times.append(time.perf_counter() - start)
        del os.environ["GRAPHNN_CACHE_DIR"]
    return times[0], times[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-compile", action="store_true", help="leave out torch.compile")
    parser.add_argument("--quick", action="store_true", help="batch 1 and 64 only, 3 rounds")
    args = parser.parse_args()
    if torch is not None:
        import logging
        import warnings

        torch.set_num_threads(2)
        torch._logging.set_logs(dynamo=logging.ERROR, inductor=logging.ERROR)
        warnings.filterwarnings("ignore")
    rounds = 3 if args.quick else args.rounds
    batches = (1, 64) if args.quick else (1, 16, 64, 256, 1024)
    rows = [("mlp", b) for b in batches] + [("mnist_bn", 64), ("thermometer", 9)]
    columns = ["graphnn", "torch eager"] + ([] if args.no_compile else ["torch.compile"]) + ["numpy ref"]
    print(f"µs per training step, median of {rounds} interleaved rounds; ratio = other / graphnn (higher: graphnn faster)")
    header = f"{'model':<12} {'batch':>5} " + " ".join(f"{c:>13}" for c in columns) + "  " + " ".join(
        f"{'vs ' + c:>17}" for c in columns[1:])
    print(header)
    for case, batch in rows:
        result = measure(case, batch, rounds, not args.no_compile, with_reference=True)
        cells = " ".join(f"{result.get(c, float('nan')):>13.1f}" for c in columns)
        ratios = " ".join(f"{result.get(c, float('nan')) / result['graphnn']:>16.2f}x" for c in columns[1:])
        print(f"{case:<12} {batch:>5} {cells}  {ratios}", flush=True)
    cold, cached = compile_times()
    print(f"\ngraphnn compile of the MNIST BatchNorm network (trace, autodiff, passes, C compiler, load): "
          f"cold {cold * 1e3:.0f} ms, cached {cached * 1e3:.0f} ms")
    tiny = nn.Sequential(nn.Linear(1, 1))
    train = gn.compile(tiny, nn.MSELoss(), optim.SGD(tiny.parameters(), lr=0.01), backend="c")
    x1 = np.ones((1, 1), np.float32)
    overhead = statistics.median(time_per_step(lambda: train.step(x1, x1)) for _ in range(5))
    print(f"Python overhead of one call (a Linear(1, 1) step, negligible native work): {overhead:.1f} µs")


if __name__ == "__main__":
    main()
