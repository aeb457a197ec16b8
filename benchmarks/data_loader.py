"""Microseconds per batch of a DataLoader over an MNIST-shaped TensorDataset (60,000 x 784
float32 images, int64 labels) at batch 64, in order and shuffled: graphnn's DataLoader against
torch's and against the bare numpy copy the batch needs (a slice copy in order, a fancy-index
gather of the permuted rows when shuffled, plus the epoch's permutation).

    python benchmarks/data_loader.py [--rounds 5] [--samples 60000] [--batch 64]

Each figure is a whole epoch's time divided by its batches, the median of interleaved rounds.
"graphnn overhead" is graphnn minus the numpy copy: what the loader adds to the data movement.
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
from graphnn.utils import data as gd  # noqa: E402

try:
    import torch
    from torch.utils import data as td
except ImportError:  # pragma: no cover
    torch = None


def numpy_epoch(x: np.ndarray, y: np.ndarray, batch: int, shuffle: bool, rng: np.random.Generator):
    """The copies an epoch's batches need, and nothing else: the floor any loader is read against."""
    order = rng.permutation(len(x)) if shuffle else None
    for start in range(0, len(x), batch):
        if order is None:
            yield x[start:start + batch].copy(), y[start:start + batch].copy()
        else:
            index = order[start:start + batch]
            yield x[index], y[index]


def loaders(x: np.ndarray, y: np.ndarray, batch: int, shuffle: bool) -> dict:
    """Each contender as a function returning one epoch's iterator."""
    ours = gd.DataLoader(gd.TensorDataset(gn.from_numpy(x), gn.from_numpy(y)), batch_size=batch, shuffle=shuffle)
    rng = np.random.default_rng(0)
    contenders = {"graphnn": lambda: iter(ours), "numpy copy": lambda: numpy_epoch(x, y, batch, shuffle, rng)}
    if torch is not None:
        theirs = td.DataLoader(td.TensorDataset(torch.from_numpy(x), torch.from_numpy(y)), batch_size=batch,
                               shuffle=shuffle)
        contenders["torch"] = lambda: iter(theirs)
    return contenders


def per_batch(epoch) -> float:
    """Microseconds per batch of one epoch of ``epoch()``."""
    start = time.perf_counter()
    count = sum(1 for _ in epoch())
    return (time.perf_counter() - start) / count * 1e6


def measure(samples: int = 60_000, features: int = 784, batch: int = 64, rounds: int = 5) -> dict:
    """{shuffle: {contender: median µs per batch}} over ``rounds`` interleaved epochs each."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((samples, features)).astype(np.float32)
    y = rng.integers(0, 10, samples)
    results = {}
    for shuffle in (False, True):
        contenders = loaders(x, y, batch, shuffle)
        times = {name: [] for name in contenders}
        for _ in range(rounds):  # interleaved, so a slow spell of the machine hits every column
            for name, epoch in contenders.items():
                times[name].append(per_batch(epoch))
        results[shuffle] = {name: statistics.median(values) for name, values in times.items()}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--samples", type=int, default=60_000)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    results = measure(args.samples, 784, args.batch, args.rounds)
    print(f"µs per batch of {args.batch} from {args.samples:,} x 784 float32, median of {args.rounds} interleaved "
          "epochs; ratio = torch / graphnn")
    print(f"{'order':<9} {'graphnn':>9} {'torch':>9} {'numpy copy':>11} {'graphnn overhead':>17} {'vs torch':>9}")
    for shuffle, row in results.items():
        torch_time = row.get("torch", float("nan"))
        print(f"{'shuffled' if shuffle else 'in order':<9} {row['graphnn']:>9.1f} {torch_time:>9.1f} "
              f"{row['numpy copy']:>11.1f} {row['graphnn'] - row['numpy copy']:>17.1f} "
              f"{torch_time / row['graphnn']:>8.1f}x")


if __name__ == "__main__":
    main()
