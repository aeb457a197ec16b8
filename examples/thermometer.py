"""The thermometer of "Deep Learning with PyTorch", chapter 6: unknown units to Celsius.

Fits the linear model, then the small Tanh network built from an OrderedDict, with graphnn
compiling each whole training step. Prints like the book and, with matplotlib installed, draws
the book's plot.

    python examples/thermometer.py [--backend auto|c|numpy] [--plot FILE]
"""
from __future__ import annotations

import argparse
from collections import OrderedDict

import numpy as np

import graphnn as gn
from graphnn import nn, optim

t_c = np.array([0.5, 14.0, 15.0, 28.0, 11.0, 8.0, 3.0, -4.0, 6.0, 13.0, 21.0], np.float32).reshape(-1, 1)
t_u = np.array([35.7, 55.9, 58.2, 81.9, 56.3, 48.9, 33.9, 21.8, 48.4, 60.4, 68.4], np.float32).reshape(-1, 1)
train_indices, val_indices = [2, 7, 8, 9, 10, 0, 1, 4, 6], [3, 5]  # the book's shuffled split
t_un = 0.1 * t_u  # the book's normalisation

# what `graphnn dump examples/thermometer.py:model` traces by default
INPUT_SHAPE = ("B", 1)
LOSS = "mse"


def model() -> nn.Module:
    """The book's network: 8 tanh units between an input and an output unit."""
    return nn.Sequential(OrderedDict([
        ("hidden_linear", nn.Linear(1, 8)),
        ("hidden_activation", nn.Tanh()),
        ("output_linear", nn.Linear(8, 1)),
    ]))


def training_loop(n_epochs: int, model: nn.Module, optimizer: optim.SGD, backend: str = "auto") -> None:
    train = gn.compile(model, nn.MSELoss(), optimizer, backend=backend)
    x_train, y_train = t_un[train_indices], t_c[train_indices]
    x_val, y_val = t_un[val_indices], t_c[val_indices]
    for epoch in range(1, n_epochs + 1):
        loss_train = train.step(x_train, y_train)
        if epoch == 1 or epoch % 1000 == 0:
            loss_val = train.loss(x_val, y_val)
            print(f"Epoch {epoch}, Training loss {loss_train:.4f}, Validation loss {loss_val:.4f}")


def plot(seq_model: nn.Module, path: str, backend: str) -> bool:
    """The book's figure: the data, the model's curve over 20-90 degrees and its predictions."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    predict = gn.compile(seq_model, backend=backend)
    t_range = np.arange(20.0, 90.0, dtype=np.float32)[:, None]
    fig = plt.figure(dpi=100)
    plt.xlabel("Fahrenheit")
    plt.ylabel("Celsius")
    plt.plot(t_u[:, 0], t_c[:, 0], "o")
    plt.plot(t_range[:, 0], predict(0.1 * t_range)[:, 0], "c-")
    plt.plot(t_u[:, 0], predict(0.1 * t_u)[:, 0], "kx")
    fig.savefig(path)
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--plot", default="thermometer.png", help="where to write the plot (needs matplotlib)")
    args = parser.parse_args()

    gn.manual_seed(0)
    linear_model = nn.Linear(1, 1)
    training_loop(3000, linear_model, optim.SGD(linear_model.parameters(), lr=1e-2), args.backend)
    print()
    print("weight", linear_model.weight)
    print("bias", linear_model.bias)
    print()

    seq_model = model()
    print(seq_model)
    for name, param in seq_model.named_parameters():
        print(name, param.shape)
    training_loop(5000, seq_model, optim.SGD(seq_model.parameters(), lr=1e-3), args.backend)
    print("output", gn.compile(seq_model, backend=args.backend)(t_un[val_indices]))
    print("answer", t_c[val_indices])
    if args.plot and plot(seq_model, args.plot, args.backend):
        print(f"wrote {args.plot}")


if __name__ == "__main__":
    main()
