"""Handwritten digits with the book's fully connected network, trained by graphnn.

The network of "Python深度学习：基于PyTorch" (Flatten; Linear + BatchNorm1d + ReLU twice; Linear),
CrossEntropyLoss, SGD(lr=0.01, momentum=0.9) with the learning rate x0.9 every 5 epochs, on
scikit-learn's bundled 8x8 digits (no download), scaled to [-1, 1], with a fixed split.

    python examples/digits.py [--epochs 20] [--backend auto|c|triton|numpy] [--compare] [--plot FILE]
    mpiexec -n 2 python examples/digits.py --distributed    (data-parallel over MPI; as root, add
                                                            --allow-run-as-root after mpiexec)
"""
from __future__ import annotations

import argparse
from collections import OrderedDict

import numpy as np

import graphnn as gn
from graphnn import nn, optim

# what `graphnn dump examples/digits.py:model` traces by default
INPUT_SHAPE = ("B", 1, 8, 8)
LOSS = "cross_entropy"


def model(in_dim: int = 64, n_hidden_1: int = 300, n_hidden_2: int = 100, out_dim: int = 10) -> nn.Module:
    """The book's network."""
    return nn.Sequential(OrderedDict([
        ("flatten", nn.Flatten()),
        ("layer1", nn.Sequential(nn.Linear(in_dim, n_hidden_1), nn.BatchNorm1d(n_hidden_1), nn.ReLU())),
        ("layer2", nn.Sequential(nn.Linear(n_hidden_1, n_hidden_2), nn.BatchNorm1d(n_hidden_2), nn.ReLU())),
        ("layer3", nn.Linear(n_hidden_2, out_dim)),
    ]))


def load_data(test_fraction: float = 0.25, seed: int = 0):
    """scikit-learn's 1797 digits as (N, 1, 8, 8) float32 in [-1, 1], split into train and test."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = (digits.images.astype(np.float32) / 8.0 - 1.0)[:, None, :, :]
    return train_test_split(images, digits.target.astype(np.int64), test_size=test_fraction, random_state=seed,
                            stratify=digits.target)


def train(epochs: int, backend: str, data, verbose: int = 1, seed: int = 0, distributed: bool = False):
    """Train a fresh network; returns (model, program, history). Distributed: each rank takes
    64 / world size samples of every batch of 64."""
    x_train, x_test, y_train, y_test = data
    gn.manual_seed(seed)
    net = model()
    optimizer = optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    scheduler = optim.lr_scheduler.StepLR(optimizer, step_size=5, gamma=0.9)
    program = gn.compile(net, nn.CrossEntropyLoss(), optimizer, backend=backend, distributed=distributed)
    batch = 64 // gn.distributed.world_size() if distributed else 64
    history = program.fit(x_train, y_train, batch_size=batch, epochs=epochs, validation_data=(x_test, y_test),
                          seed=seed, verbose=verbose, scheduler=scheduler)
    return net, program, history


def show(images: np.ndarray, predicted: np.ndarray, labels: np.ndarray) -> None:
    """A few test digits as text, with the predicted and the true label."""
    shades = " .:-=+*#%@"
    rows = []
    for r in range(8):
        line = []
        for image in images:
            line.append("".join(shades[int((v + 1) / 2 * (len(shades) - 1))] for v in image[0, r]))
        rows.append("   ".join(line))
    print("\n".join(rows))
    print("   ".join(f"pred {p} true {t}" for p, t in zip(predicted, labels)))


def report(net: nn.Module, program, history, x_test: np.ndarray, y_test: np.ndarray) -> float:
    """Print each epoch, the final accuracy and a few test digits with their predictions; return
    the median seconds per epoch."""
    for epoch in range(history.epochs):
        print(f"Epoch {epoch + 1}, lr {history['lr'][epoch]:.5f}, training loss {history['loss'][epoch]:.4f}, "
              f"test loss {history['val_loss'][epoch]:.4f}, test accuracy {history['val_accuracy'][epoch]:.4f}, "
              f"{history['epoch_time'][epoch] * 1e3:.1f} ms")
    per_epoch = float(np.median(history["epoch_time"]))
    print(f"\nfinal test accuracy {history['val_accuracy'][-1]:.4f}; {per_epoch * 1e3:.1f} ms per epoch "
          f"({program.backend} backend)")
    net.eval()
    predict = gn.compile(net, backend=program.backend)
    picks = np.arange(6)
    show(x_test[picks], predict(x_test[picks]).argmax(1), y_test[picks])
    return per_epoch


def plot(history, path: str) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    epochs = range(1, history.epochs + 1)
    left.plot(epochs, history["loss"], label="train loss")
    left.plot(epochs, history["val_loss"], label="test loss")
    left.set_xlabel("epoch")
    left.legend()
    right.plot(epochs, history["val_accuracy"], label="test accuracy")
    right.set_xlabel("epoch")
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--compare", action="store_true", help="also time one epoch on the numpy reference")
    parser.add_argument("--plot", default="digits.png", help="where to write the loss/accuracy plot (needs matplotlib)")
    parser.add_argument("--verbose", type=int, default=1)
    parser.add_argument("--distributed", action="store_true", help="data-parallel over the ranks of an MPI job")
    args = parser.parse_args()

    data = load_data()
    x_train, x_test, y_train, y_test = data
    if args.distributed and gn.distributed.rank() != 0:  # the other ranks train and stay quiet
        train(args.epochs, args.backend, data, 0, distributed=True)
        return
    print(f"digits: {len(x_train)} training and {len(x_test)} test images of 8x8 pixels")
    if args.distributed:
        print(f"data-parallel over {gn.distributed.world_size()} MPI ranks, {64 // gn.distributed.world_size()} "
              "samples of each batch of 64 per rank")
    net, program, history = train(args.epochs, args.backend, data, args.verbose, distributed=args.distributed)
    print(net)
    per_epoch = report(net, program, history, x_test, y_test)

    if args.compare:
        _, _, reference = train(1, "numpy", data, verbose=0)
        ratio = reference["epoch_time"][0] / per_epoch
        print(f"speed: {per_epoch * 1e3:.1f} ms per epoch compiled, {reference['epoch_time'][0] * 1e3:.1f} ms on the numpy "
              f"reference backend ({ratio:.1f}x faster)")
    if args.plot and plot(history, args.plot):
        print(f"wrote {args.plot}")


if __name__ == "__main__":
    main()
