"""Handwritten digits with a small convolutional network, trained by graphnn.

Two 3x3 convolutions (32 and 64 channels, padding 1), each followed by BatchNorm2d, ReLU and 2x2
max pooling, then one Linear layer to the 10 classes; CrossEntropyLoss, SGD(lr=0.01, momentum=0.9) with the
learning rate x0.9 every 5 epochs, on scikit-learn's bundled 8x8 digits with the same split and
scaling as examples/digits.py (the fully connected network), so their accuracies compare.

    python examples/digits_cnn.py [--epochs 20] [--backend auto|c|triton|numpy] [--compare-mlp]
"""
from __future__ import annotations

import argparse
from collections import OrderedDict

import numpy as np

import graphnn as gn
from graphnn import nn, optim

from digits import load_data, report
from digits import train as train_mlp

# what `graphnn dump examples/digits_cnn.py:model` traces by default
INPUT_SHAPE = ("B", 1, 8, 8)
LOSS = "cross_entropy"


def model(channels: tuple = (32, 64), classes: int = 10) -> nn.Module:
    """conv-batchnorm-relu-pool twice, then a linear classifier: 8x8 -> 4x4 -> 2x2 positions."""
    first, second = channels
    return nn.Sequential(OrderedDict([
        ("block1", nn.Sequential(nn.Conv2d(1, first, 3, padding=1), nn.BatchNorm2d(first), nn.ReLU(), nn.MaxPool2d(2))),
        ("block2", nn.Sequential(nn.Conv2d(first, second, 3, padding=1), nn.BatchNorm2d(second), nn.ReLU(),
                                 nn.MaxPool2d(2))),
        ("flatten", nn.Flatten()),
        ("classifier", nn.Linear(second * 2 * 2, classes)),
    ]))


def train(epochs: int, backend: str, data, verbose: int = 1, seed: int = 0):
    """Train a fresh network; returns (model, program, history)."""
    x_train, x_test, y_train, y_test = data
    gn.manual_seed(seed)
    net = model()
    optimizer = optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    scheduler = optim.lr_scheduler.StepLR(optimizer, step_size=5, gamma=0.9)
    program = gn.compile(net, nn.CrossEntropyLoss(), optimizer, backend=backend)
    history = program.fit(x_train, y_train, batch_size=64, epochs=epochs, validation_data=(x_test, y_test),
                          seed=seed, verbose=verbose, scheduler=scheduler)
    return net, program, history


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--verbose", type=int, default=1)
    parser.add_argument("--compare-mlp", action="store_true",
                        help="also train the fully connected network of examples/digits.py for as many epochs")
    args = parser.parse_args()

    data = load_data()
    x_train, x_test, _, y_test = data
    print(f"digits: {len(x_train)} training and {len(x_test)} test images of 8x8 pixels")
    net, program, history = train(args.epochs, args.backend, data, args.verbose)
    print(net)
    parameters = sum(int(np.prod(p.shape)) for p in net.parameters())
    print(f"{parameters} parameters")
    report(net, program, history, x_test, y_test)

    if args.compare_mlp:
        _, _, mlp = train_mlp(args.epochs, args.backend, data, verbose=0)
        print(f"fully connected network after {args.epochs} epochs: test accuracy {mlp['val_accuracy'][-1]:.4f} "
              f"(convolutional: {history['val_accuracy'][-1]:.4f})")


if __name__ == "__main__":
    main()
