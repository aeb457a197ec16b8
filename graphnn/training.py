"""The training loop people write around a step, done once: ``fit``, ``evaluate``, ``predict``.

``fit`` shuffles with a seeded generator, runs the compiled step on each batch (the last, smaller
batch of an epoch runs on the same compiled program), evaluates on validation data in eval mode,
steps an optional learning-rate scheduler after each epoch and shows a progress bar per epoch
when the output is a terminal.
"""
from __future__ import annotations

import sys
import time
from typing import Any

import numpy as np


class History(dict):
    """Per-epoch lists: "loss", "val_loss", "val_accuracy" (classification losses), "lr",
    "epoch_time" (seconds), keyed like Keras' history so plots read naturally."""

    @property
    def epochs(self) -> int:
        return len(self.get("loss", []))


def classification_accuracy(loss_fn: Any, output: np.ndarray, target: np.ndarray) -> float | None:
    """The fraction of correct predictions for classification losses, else None."""
    name = type(loss_fn).__name__
    if name in ("CrossEntropyLoss", "NLLLoss"):
        labels = target if target.ndim == 1 else target.argmax(1)
        ignore = getattr(loss_fn, "ignore_index", -100)
        keep = labels != ignore
        return float((output.argmax(1)[keep] == labels[keep]).mean()) if keep.any() else float("nan")
    if name == "BCEWithLogitsLoss":
        return float(((output > 0) == (target > 0.5)).mean())
    return None


def _batches(count: int, batch_size: int, order: np.ndarray | None):
    for start in range(0, count, batch_size):
        index = slice(start, start + batch_size)
        yield order[index] if order is not None else index


def _shard(index, rank: int, batch_size: int):
    """A rank's part of a global batch (an index array or a slice)."""
    if isinstance(index, slice):
        start = index.start + rank * batch_size
        return slice(min(start, index.stop), min(start + batch_size, index.stop))
    return index[rank * batch_size:(rank + 1) * batch_size]


def _progress(total: int, epoch: int, epochs: int, verbose: int):
    """A tqdm bar over an epoch's batches when wanted and possible, else None."""
    if verbose <= 0 or not sys.stdout.isatty():
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=f"Epoch {epoch}/{epochs}", unit="batch", leave=True, file=sys.stdout)


def evaluate(program: Any, x: np.ndarray, y: np.ndarray, batch_size: int = 256) -> tuple[float, float | None]:
    """(mean loss, accuracy or None) over a data set, in batches, with the model in eval mode."""
    x, y = np.asarray(x), np.asarray(y)
    model = program.model
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    total, correct, count = 0.0, 0.0, 0
    accuracy_known = True
    try:
        for index in _batches(len(x), batch_size, None):
            loss, output = program.loss_and_output(x[index], y[index])
            n = len(x[index])
            reduction = getattr(program.loss_fn, "reduction", "mean")
            total += loss * (n if reduction == "mean" else 1)
            accuracy = classification_accuracy(program.loss_fn, output, y[index])
            if accuracy is None:
                accuracy_known = False
            else:
                correct += accuracy * n
            count += n
    finally:
        for m, flag in flags:
            object.__setattr__(m, "training", flag)
    reduction = getattr(program.loss_fn, "reduction", "mean")
    return (total / count if reduction == "mean" else total), (correct / count if accuracy_known else None)


def fit(program: Any, x, y, batch_size: int = 64, epochs: int = 1, shuffle: bool = True,
        validation_data: tuple | None = None, seed: int = 0, verbose: int = 1, scheduler: Any = None,
        checkpoint=None, checkpoint_every: int = 1, resume=None) -> History:
    """Train until ``epochs`` passes over (x, y) are done; returns the History.

    ``checkpoint``: a path written (atomically) every ``checkpoint_every`` epochs with everything
    the run depends on. ``resume``: such a path to continue from; the run then goes on from the
    epoch after the saved one, with the same data order and dropout draws as a run that was never
    stopped, so its final parameters are the same bit for bit."""
    x, y = np.asarray(x), np.asarray(y)
    if len(x) != len(y):
        from graphnn.errors import InputError

        raise InputError(f"x has {len(x)} samples but y has {len(y)}")
    if checkpoint_every < 1:
        raise ValueError(f"checkpoint_every must be at least 1, got {checkpoint_every}")
    rng = np.random.default_rng(seed)
    history = History(loss=[], val_loss=[], val_accuracy=[], lr=[], epoch_time=[])
    rank, ranks = 0, 1
    if getattr(program, "distributed", False):  # each global batch: batch_size samples per rank
        from graphnn import distributed

        rank, ranks = distributed.rank(), distributed.world_size()
        verbose = verbose if rank == 0 else 0
        checkpoint = checkpoint if rank == 0 else None
    first = 1
    if resume is not None:
        first = _collective(program, _restore, program, scheduler, rng, history, resume) + 1
    batches = -(-len(x) // (batch_size * ranks))
    for epoch in range(first, epochs + 1):
        start = time.perf_counter()
        order = rng.permutation(len(x)) if shuffle else None
        bar = _progress(batches, epoch, epochs, verbose)
        total = 0.0
        for index in _batches(len(x), batch_size * ranks, order):
            shard = _shard(index, rank, batch_size) if ranks > 1 else index
            loss = program.step(x[shard], y[shard])  # distributed: the mean over the whole batch
            total += loss * (len(range(*index.indices(len(x)))) if isinstance(index, slice) else len(index))
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.4f}")
        history["loss"].append(total / len(x))
        history["lr"].append(program.optimizer.param_groups[0]["lr"])
        if validation_data is not None:
            val_loss, val_accuracy = evaluate(program, *validation_data, batch_size=max(batch_size, 256))
            history["val_loss"].append(val_loss)
            history["val_accuracy"].append(val_accuracy)
        history["epoch_time"].append(time.perf_counter() - start)
        if bar is not None:
            summary = {"loss": f"{history['loss'][-1]:.4f}"}
            if validation_data is not None:
                summary["val_loss"] = f"{history['val_loss'][-1]:.4f}"
                if history["val_accuracy"][-1] is not None:
                    summary["val_acc"] = f"{history['val_accuracy'][-1]:.4f}"
            bar.set_postfix(summary)
            bar.close()
        if scheduler is not None:
            scheduler.step()
        if checkpoint is not None and (epoch % checkpoint_every == 0 or epoch == epochs):
            _collective(program, _save, program, scheduler, rng, history, epoch, checkpoint)
    return history


def _collective(program: Any, function, *args):
    """``function(*args)``; in a distributed program a failure aborts the whole job, since the
    other ranks would wait for this one in the next collective."""
    if not getattr(program, "distributed", False):
        return function(*args)
    try:
        return function(*args)
    except Exception as error:  # noqa: BLE001 - every failure must end the whole job
        from graphnn import distributed

        distributed.abort(error)


def run_state(program: Any, scheduler: Any, shuffle: np.random.Generator, history: History, epoch: int) -> dict:
    """Everything a fit run depends on after ``epoch`` epochs: model, optimizer (with momentum),
    scheduler, the program's dropout seed and call count, the shuffling and global generators."""
    from graphnn import random

    return {
        "epoch": epoch,
        "model": program.model.state_dict(),
        "optimizer": program.optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "program": {"seed": program.seed, "calls": program.calls},
        "shuffle": shuffle.bit_generator.state,
        "random": random.generator().bit_generator.state,
        "history": dict(history),
    }


def _save(program, scheduler, shuffle, history, epoch: int, path) -> None:
    from graphnn import checkpoint

    checkpoint.save(run_state(program, scheduler, shuffle, history, epoch), path)


def _restore(program, scheduler, shuffle, history: History, path) -> int:
    """Load a fit checkpoint into the run's objects; returns the epoch it was saved after."""
    from graphnn import checkpoint, random

    state = checkpoint.load(path)
    program.model.load_state_dict(state["model"])
    program.optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None and state["scheduler"] is not None:
        scheduler.load_state_dict(state["scheduler"])
    program.seed, program.calls = state["program"]["seed"], state["program"]["calls"]
    shuffle.bit_generator.state = state["shuffle"]
    random.generator().bit_generator.state = state["random"]
    history.update({k: list(v) for k, v in state["history"].items()})
    return int(state["epoch"])


def predict(program: Any, x, batch_size: int | None = None) -> np.ndarray:
    """The model's outputs for every sample of x, computed in batches of ``batch_size``."""
    x = np.asarray(x)
    if batch_size is None or batch_size >= len(x):
        return program(x)
    return np.concatenate([program(x[index]) for index in _batches(len(x), batch_size, None)])
