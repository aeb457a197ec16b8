"""The thermometer of "Deep Learning with PyTorch", chapter 6: unknown units to Celsius.

Fits the linear model, then the small Tanh network built from an OrderedDict, with graphnn
compiling each whole training step. Prints like the book.
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np

import graphnn as gn
from graphnn import nn, optim

t_c = np.array([0.5, 14.0, 15.0, 28.0, 11.0, 8.0, 3.0, -4.0, 6.0, 13.0, 21.0], np.float32).reshape(-1, 1)
t_u = np.array([35.7, 55.9, 58.2, 81.9, 56.3, 48.9, 33.9, 21.8, 48.4, 60.4, 68.4], np.float32).reshape(-1, 1)
train_indices, val_indices = [2, 7, 8, 9, 10, 0, 1, 4, 6], [3, 5]  # the book's shuffled split
t_un = 0.1 * t_u  # the book's normalisation


def training_loop(n_epochs: int, model: nn.Module, optimizer: optim.SGD, backend: str = "auto") -> None:
    train = gn.compile(model, nn.MSELoss(), optimizer, backend=backend)
    x_train, y_train = t_un[train_indices], t_c[train_indices]
    x_val, y_val = t_un[val_indices], t_c[val_indices]
    for epoch in range(1, n_epochs + 1):
        loss_train = train.step(x_train, y_train)
        if epoch == 1 or epoch % 1000 == 0:
            loss_val = train.loss(x_val, y_val)
            print(f"Epoch {epoch}, Training loss {loss_train:.4f}, Validation loss {loss_val:.4f}")


def main() -> None:
    gn.manual_seed(0)
    linear_model = nn.Linear(1, 1)
    training_loop(3000, linear_model, optim.SGD(linear_model.parameters(), lr=1e-2))
    print()
    print("weight", linear_model.weight)
    print("bias", linear_model.bias)
    print()

    seq_model = nn.Sequential(OrderedDict([
        ("hidden_linear", nn.Linear(1, 8)),
        ("hidden_activation", nn.Tanh()),
        ("output_linear", nn.Linear(8, 1)),
    ]))
    print(seq_model)
    for name, param in seq_model.named_parameters():
        print(name, param.shape)
    training_loop(5000, seq_model, optim.SGD(seq_model.parameters(), lr=1e-3))
    print("output", gn.compile(seq_model)(t_un[val_indices]))
    print("answer", t_c[val_indices])


if __name__ == "__main__":
    main()
