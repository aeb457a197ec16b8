"""The training loop people write around a step, done once: ``fit``, ``evaluate``, ``predict``.

``fit`` shuffles with a seeded generator (or reads a DataLoader's batches), runs the compiled
step on each batch (the last, smaller batch of an epoch runs on the same compiled program),
evaluates on validation data in eval mode, steps an optional learning-rate scheduler after each
epoch (or after each batch) and shows a progress bar per epoch when the output is a terminal.
"""
from __future__ import annotations

import math
import numbers
import sys
import time
from typing import Any

import numpy as np

from graphnn.nn.module import set_modes


RUN_KEYS = ("epoch", "model", "optimizer", "scheduler", "program", "shuffle", "random", "history")
"""What a fit checkpoint holds (run_state)."""


class NonFiniteLossError(FloatingPointError):
    """``fit(..., stop_on_nan=True)`` met a batch whose loss is NaN or infinite; ``epoch`` and
    ``batch`` (both counted from 1) name it. The step on that batch has been taken."""

    def __init__(self, epoch: int, batch: int, batches: int, loss: float) -> None:
        self.epoch, self.batch, self.loss = epoch, batch, loss
        super().__init__(f"the loss of epoch {epoch}, batch {batch} of {batches} is {loss}: fit stopped right after "
                         "that batch's step, so parameters and optimizer state include its update")


def check_count(name: str, value: Any, minimum: int = 1) -> None:
    """Raise ValueError unless ``value`` is an integer (not a bool) of at least ``minimum`` (1 or 0)."""
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < minimum:
        kind = "a positive" if minimum == 1 else "a non-negative"
        raise ValueError(f"{name} should be {kind} integer value, but got {name}={value!r}")


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


def _is_loader(x: Any) -> bool:
    from graphnn.utils.data import DataLoader

    return isinstance(x, DataLoader)


def _array_batches(x: np.ndarray, y: np.ndarray, batch_size: int, order: np.ndarray | None = None,
                   rank: int = 0, ranks: int = 1):
    """(this rank's (x, y) of each batch, the batch's sample count over all ranks)."""
    for index in _batches(len(x), batch_size * ranks, order):
        shard = _shard(index, rank, batch_size) if ranks > 1 else index
        yield (x[shard], y[shard]), (len(range(*index.indices(len(x)))) if isinstance(index, slice) else len(index))


def _loader_batches(loader: Any):
    """(the batch's (inputs..., target) as numpy arrays, its sample count) for each batch of a DataLoader."""
    from graphnn.tensors import Tensor

    for batch in loader:
        if not isinstance(batch, (list, tuple)) or len(batch) < 2:
            raise TypeError(f"fit and evaluate read each DataLoader batch as (inputs..., target), a list or tuple of "
                            f"at least 2, but got a {type(batch).__name__}" +
                            (f" of {len(batch)}" if isinstance(batch, (list, tuple)) else ""))
        arrays = tuple(b.array if isinstance(b, Tensor) else np.asarray(b) for b in batch)
        yield arrays, len(arrays[0])


def _checked_data(x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    """x and y as arrays of as many samples."""
    from graphnn.errors import InputError

    if y is None:
        raise TypeError("y (the targets) is needed unless x is a graphnn.utils.data.DataLoader")
    x, y = np.asarray(x), np.asarray(y)
    if len(x) != len(y):
        raise InputError(f"x has {len(x)} samples but y has {len(y)}")
    return x, y


def _loader_alone(loader: Any, y: Any) -> None:
    if y is not None:
        raise TypeError("x is a DataLoader, whose batches hold the targets: pass y=None")


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


def evaluate(program: Any, x, y=None, batch_size: int = 256) -> tuple[float, float | None]:
    """(mean loss, accuracy or None) over a data set, in batches, with the model in eval mode.
    ``x`` may be a DataLoader (with ``y=None``), whose batches are then used as they come."""
    check_count("batch_size", batch_size)
    if _is_loader(x):
        _loader_alone(x, y)
        batches = _loader_batches(x)
    else:
        batches = _array_batches(*_checked_data(x, y), batch_size)
    model = program.model
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    reduction = getattr(program.loss_fn, "reduction", "mean")
    total, correct, count = 0.0, 0.0, 0
    accuracy_known = True
    try:
        for arrays, n in batches:
            loss, output = program.loss_and_output(*arrays)
            total += loss * (n if reduction == "mean" else 1)
            accuracy = classification_accuracy(program.loss_fn, output, arrays[-1])
            if accuracy is None:
                accuracy_known = False
            else:
                correct += accuracy * n
            count += n
    finally:
        set_modes(flags)
    return (total / count if reduction == "mean" else total), (correct / count if accuracy_known else None)


def fit(program: Any, x, y=None, batch_size: int = 64, epochs: int = 1, shuffle: bool = True,
        validation_data: Any = None, seed: int = 0, verbose: int = 1, scheduler: Any = None,
        checkpoint=None, checkpoint_every: int = 1, resume=None, stop_on_nan: bool = False,
        scheduler_interval: str = "epoch") -> History:
    """Train until ``epochs`` passes over (x, y) are done; returns the History.

    ``x`` may be a DataLoader (graphnn.utils.data) with ``y=None``: each epoch then runs on its
    batches, each a list or tuple (inputs..., target), in the loader's order and sizes
    (``batch_size``, ``shuffle`` and ``seed`` do not apply to it). ``validation_data``: (x, y) or
    a DataLoader. A distributed program needs arrays.

    ``scheduler``: any of graphnn.optim.lr_scheduler's, stepped after each epoch, or after each
    batch with ``scheduler_interval="batch"`` (which OneCycleLR needs); ReduceLROnPlateau is
    stepped at each epoch's end with the validation loss, or the training loss when there is no
    validation data. History's "lr" is group 0's learning rate at the epoch's last batch.

    ``checkpoint``: a path written (atomically) every ``checkpoint_every`` epochs with everything
    the run depends on. ``resume``: such a path to continue from; the run then goes on from the
    epoch after the saved one, with the same data order and dropout draws as a run that was never
    stopped, so its final parameters are the same bit for bit. A checkpoint that does not fit the
    run raises CheckpointError before anything is loaded. Checkpoints are taken at epoch ends
    only, so a run resumes at an epoch's start. With a DataLoader, the resumed data order is the
    same when the loader shuffles from the global generator or from its sampler's ``generator``
    (both are in the checkpoint); other random state of a custom dataset or sampler is not saved.

    A batch whose loss is NaN or infinite is stepped like any other, as in a PyTorch loop (its
    update may make parameters NaN). ``stop_on_nan=True`` raises NonFiniteLossError, naming the
    epoch and batch, right after the first such step: parameters and optimizer state then include
    that step's update."""
    check_count("batch_size", batch_size)
    check_count("epochs", epochs, minimum=0)
    check_count("checkpoint_every", checkpoint_every)
    per_batch = _check_scheduler(program, scheduler, scheduler_interval)
    loader = x if _is_loader(x) else None
    if loader is not None:
        _loader_alone(loader, y)
        empty = "a DataLoader of no batches" if len(loader) == 0 else None
    else:
        x, y = _checked_data(x, y)
        empty = "an empty x" if len(x) == 0 else None
    if empty:
        from graphnn.errors import InputError

        raise InputError(f"fit needs at least one sample, got {empty}")
    rng = _shuffle_generator(loader, seed)
    history = History(loss=[], val_loss=[], val_accuracy=[], lr=[], epoch_time=[])
    rank, ranks = 0, 1
    if getattr(program, "distributed", False):  # each global batch: batch_size samples per rank
        from graphnn import distributed

        if loader is not None:
            raise NotImplementedError("fit does not split a DataLoader's batches among ranks: give a distributed "
                                      "program arrays x and y (each global batch is batch_size samples per rank)")
        rank, ranks = distributed.rank(), distributed.world_size()
        verbose = verbose if rank == 0 else 0
        checkpoint = checkpoint if rank == 0 else None
    first = 1
    if resume is not None:
        first = _collective(program, _restore, program, scheduler, rng, history, resume) + 1
    batches = len(loader) if loader is not None else -(-len(x) // (batch_size * ranks))
    if per_batch and resume is None:
        _check_total_steps(scheduler, (epochs - first + 1) * batches)
    for epoch in range(first, epochs + 1):
        start = time.perf_counter()
        if loader is not None:
            epoch_batches = _loader_batches(loader)
        else:
            order = rng.permutation(len(x)) if shuffle else None
            epoch_batches = _array_batches(x, y, batch_size, order, rank, ranks)
        bar = _progress(batches, epoch, epochs, verbose)
        total, samples = 0.0, 0
        for batch, (arrays, n) in enumerate(epoch_batches, 1):
            loss = program.step(*arrays)  # distributed: the mean over the whole batch
            if per_batch:
                lr = program.optimizer.param_groups[0]["lr"]
                scheduler.step()
            if stop_on_nan and not math.isfinite(loss):  # (distributed: the same loss on every rank)
                if bar is not None:
                    bar.close()
                raise NonFiniteLossError(epoch, batch, batches, loss)
            total, samples = total + loss * n, samples + n
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.4f}")
        history["loss"].append(total / samples)
        history["lr"].append(lr if per_batch else program.optimizer.param_groups[0]["lr"])
        if validation_data is not None:
            data = (validation_data,) if _is_loader(validation_data) else validation_data
            val_loss, val_accuracy = evaluate(program, *data, batch_size=max(batch_size, 256))
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
        if scheduler is not None and not per_batch:
            if _is_plateau(scheduler):
                scheduler.step(history["val_loss"][-1] if validation_data is not None else history["loss"][-1])
            else:
                scheduler.step()
        if checkpoint is not None and (epoch % checkpoint_every == 0 or epoch == epochs):
            _collective(program, _save, program, scheduler, rng, history, epoch, checkpoint)
    return history


def _shuffle_generator(loader: Any, seed: int) -> np.random.Generator:
    """What checkpoints save as "shuffle": fit's own seeded generator for arrays, or the one a
    DataLoader's sampler draws from when it has its own (otherwise the loader shuffles from the
    global generator, saved as "random")."""
    generator = getattr(getattr(loader, "sampler", None), "generator", None)
    return np.random.default_rng(seed) if generator is None else generator.numpy


def _is_plateau(scheduler: Any) -> bool:
    from graphnn.optim.lr_scheduler import ReduceLROnPlateau

    return isinstance(scheduler, ReduceLROnPlateau)


def _check_scheduler(program: Any, scheduler: Any, interval: str) -> bool:
    """Raise ValueError for a scheduler fit cannot step as asked; True when it steps per batch."""
    from graphnn.optim.lr_scheduler import OneCycleLR

    if interval not in ("epoch", "batch"):
        raise ValueError(f"scheduler_interval should be 'epoch' or 'batch', but got {interval!r}")
    if scheduler is None:
        return False
    if getattr(scheduler, "optimizer", program.optimizer) is not program.optimizer:
        raise ValueError(f"the {type(scheduler).__name__} given to fit schedules another optimizer than the "
                         "program's: build it on the optimizer passed to gn.compile")
    if isinstance(scheduler, OneCycleLR) and interval == "epoch":
        raise ValueError("OneCycleLR changes the learning rate after every batch: pass "
                         "scheduler_interval=\"batch\" to fit (and total_steps=epochs * batches per epoch)")
    if _is_plateau(scheduler) and interval == "batch":
        raise ValueError("ReduceLROnPlateau is stepped with each epoch's (validation) loss: pass "
                         "scheduler_interval=\"epoch\" to fit")
    return interval == "batch"


def _check_total_steps(scheduler: Any, steps: int) -> None:
    """A OneCycleLR stepped ``steps`` more times must not pass its total_steps (PyTorch's scheduler
    would raise at the first step too many, in the middle of the run)."""
    total = getattr(scheduler, "total_steps", None)
    if total is not None and scheduler.last_epoch + steps > total:
        raise ValueError(f"this fit steps the {type(scheduler).__name__} after each of {steps} batches, past its "
                         f"total_steps={total} (it is at step {scheduler.last_epoch}): build it with "
                         f"total_steps={scheduler.last_epoch + steps}, or epochs and steps_per_epoch")


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
    """Load a fit checkpoint into the run's objects; returns the epoch it was saved after. All of
    it is checked before anything is loaded: a checkpoint that does not fit raises CheckpointError
    naming the entry, and changes nothing."""
    from graphnn import checkpoint, random
    from graphnn.checkpoint import CheckpointError, StateDictError

    state = checkpoint.load(path)
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: not a fit checkpoint: expected a dict of {list(RUN_KEYS)}, "
                              f"got a {type(state).__name__}")
    missing = [key for key in RUN_KEYS if key not in state]
    if missing:
        raise CheckpointError(f"{path}: not a fit checkpoint: missing {missing} (expected {list(RUN_KEYS)})")

    def refuse(key: str, problem: Any) -> CheckpointError:
        return CheckpointError(f"{path}: {key!r} does not fit this run: {problem}")

    epoch, counters, saved_history = state["epoch"], state["program"], state["history"]
    if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0:
        raise refuse("epoch", f"expected a non-negative integer, got {epoch!r}")
    if not (isinstance(counters, dict) and all(isinstance(counters.get(k), int) for k in ("seed", "calls"))):
        raise refuse("program", f"expected {{'seed': int, 'calls': int}}, got {counters!r}")
    if not (isinstance(saved_history, dict) and all(isinstance(v, list) for v in saved_history.values())):
        raise refuse("history", "expected a dict of per-epoch lists")
    for key, generator in (("shuffle", shuffle), ("random", random.generator())):
        try:  # a bit generator's state setter checks the state completely
            type(generator.bit_generator)().state = state[key]
        except (TypeError, ValueError, KeyError) as error:
            raise refuse(key, f"not a {type(generator.bit_generator).__name__} state ({error})") from None
    for key in ("model", "optimizer"):
        if not isinstance(state[key], dict):
            raise refuse(key, f"expected a state dict, got a {type(state[key]).__name__}")
    try:
        load_optimizer = program.optimizer.prepare_load(state["optimizer"])
    except StateDictError as error:
        raise refuse("optimizer", error) from None
    load_scheduler = None
    if scheduler is not None and state["scheduler"] is not None:
        try:
            load_scheduler = scheduler.prepare_load(state["scheduler"])
        except StateDictError as error:
            raise refuse("scheduler", error) from None
    try:  # checks everything before it writes anything, and is the first write
        program.model.load_state_dict(state["model"])
    except StateDictError as error:
        raise refuse("model", error) from None
    load_optimizer()
    if load_scheduler is not None:
        load_scheduler()
    program.seed, program.calls = counters["seed"], counters["calls"]
    shuffle.bit_generator.state = state["shuffle"]
    random.generator().bit_generator.state = state["random"]
    history.update({k: list(v) for k, v in saved_history.items()})
    return epoch


def predict(program: Any, x, batch_size: int | None = None) -> np.ndarray:
    """The model's outputs for every sample of x, computed in batches of ``batch_size``."""
    if batch_size is not None:
        check_count("batch_size", batch_size)
    x = np.asarray(x)
    if batch_size is None or batch_size >= len(x):
        return program(x)
    return np.concatenate([program(x[index]) for index in _batches(len(x), batch_size, None)])
