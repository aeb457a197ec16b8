"""The optimizer comparison of "Python深度学习：基于PyTorch" (chapter 3): SGD, Momentum, RMSprop and
Adam training the same 1-20-1 ReLU network on y = x**2 plus noise, batches of 32.

Each network's whole training step (forward, loss, backward and its optimizer's update) is one
compiled call. Prints each optimizer's loss per epoch and, with matplotlib installed, draws the
book's loss curves.

    python examples/optimizers.py [--epochs 10] [--backend auto|c|numpy] [--plot FILE]
"""
from __future__ import annotations

import argparse

import numpy as np

import graphnn as gn
from graphnn import nn, optim

LR, BATCH_SIZE = 0.01, 32

# what `graphnn dump examples/optimizers.py:Net` traces by default
INPUT_SHAPE = ("B", 1)
LOSS = "mse"


class Net(nn.Module):
    """The book's network: one hidden layer of 20 ReLU units."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden = nn.Linear(1, 20)
        self.predict = nn.Linear(20, 1)

    def forward(self, x):
        return self.predict(nn.functional.relu(self.hidden(x)))


OPTIMIZERS = {
    "SGD": lambda params: optim.SGD(params, lr=LR),
    "Momentum": lambda params: optim.SGD(params, lr=LR, momentum=0.9),
    "RMSprop": lambda params: optim.RMSprop(params, lr=LR, alpha=0.9),
    "Adam": lambda params: optim.Adam(params, lr=LR, betas=(0.9, 0.99)),
}
"""The book's four optimizers and their settings."""


def data(rng) -> tuple[np.ndarray, np.ndarray]:
    """1000 points of x in [-1, 1] and y = x**2 plus normal noise of standard deviation 0.1."""
    x = np.linspace(-1, 1, 1000, dtype=np.float32)[:, None]
    return x, (x**2 + 0.1 * rng.standard_normal(x.shape)).astype(np.float32)


def compare(epochs: int, backend: str) -> dict[str, list[float]]:
    """Train one network per optimizer, from the same initial weights, on the same batches;
    returns each optimizer's loss per step."""
    rng = np.random.default_rng(1)
    x, y = data(rng)
    gn.manual_seed(1)
    first = Net()
    programs = {}
    for name, make in OPTIMIZERS.items():
        net = Net()
        net.load_state_dict(first.state_dict())
        programs[name] = gn.compile(net, nn.MSELoss(), make(net.parameters()), backend=backend)
    history = {name: [] for name in OPTIMIZERS}
    for epoch in range(1, epochs + 1):
        order = rng.permutation(len(x))
        for start in range(0, len(x), BATCH_SIZE):
            batch = order[start:start + BATCH_SIZE]
            for name, train in programs.items():
                history[name].append(train.step(x[batch], y[batch]))
        per_epoch = len(range(0, len(x), BATCH_SIZE))
        print(f"epoch {epoch:2d} " + "  ".join(f"{name} {np.mean(losses[-per_epoch:]):.4f}"
                                              for name, losses in history.items()))
    return history


def plot(history: dict, path: str) -> bool:
    """The book's figure: each optimizer's loss per step."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig = plt.figure(dpi=100)
    for name, losses in history.items():
        plt.plot(losses, label=name)
    plt.legend(loc="best")
    plt.xlabel("Steps")
    plt.ylabel("Loss")
    plt.ylim((0, 0.2))
    fig.savefig(path)
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--plot", default="optimizers.png", help="where to write the loss curves (needs matplotlib)")
    args = parser.parse_args()
    history = compare(args.epochs, args.backend)
    last = len(history["SGD"]) // args.epochs
    print("mean loss over the last epoch: " + ", ".join(f"{name} {np.mean(losses[-last:]):.4f}"
                                                        for name, losses in history.items()))
    if args.plot and plot(history, args.plot):
        print(f"wrote {args.plot}")


if __name__ == "__main__":
    main()
