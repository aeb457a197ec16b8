"""``graphnn.utils.data``: datasets, samplers, ``default_collate`` and the ``DataLoader``, as
``torch.utils.data``: a script's data pipeline runs unchanged after ``import graphnn as torch``.

Batches are built in the calling process (``num_workers`` and the other multiprocessing and
pinning options are accepted and ignored). Shuffling draws one permutation per epoch from the
loader's ``generator=`` or from graphnn's global generator, which ``graphnn.manual_seed`` resets.

The common case is fast: a DataLoader over a ``TensorDataset`` (or a ``Subset`` of one, as
``random_split`` makes) with the default sampler and collate function gathers each batch with one
numpy take per tensor, instead of indexing and stacking sample by sample as the general path
(any Dataset, sampler or ``collate_fn``) does. Both give the same batches.
"""
from __future__ import annotations

import bisect
import collections.abc
import copy
import itertools
import math
import warnings
from typing import Any, Callable, Generic, Iterable, Iterator, Sequence, TypeVar

import numpy as np

from graphnn import dtypes, random
from graphnn.eager import constant
from graphnn.tensors import Tensor

__all__ = [
    "Dataset", "IterableDataset", "TensorDataset", "ConcatDataset", "Subset", "random_split", "Sampler",
    "SequentialSampler", "RandomSampler", "SubsetRandomSampler", "BatchSampler", "default_collate",
    "default_convert", "DataLoader",
]

T_co = TypeVar("T_co", covariant=True)


# -- datasets ----------------------------------------------------------------------------------
class Dataset(Generic[T_co]):
    """A map-style dataset: subclasses define ``__getitem__`` (a sample per index) and usually
    ``__len__``; ``a + b`` concatenates two."""

    def __getitem__(self, index) -> T_co:
        raise NotImplementedError("Subclasses of Dataset should implement __getitem__.")

    def __add__(self, other: "Dataset") -> "ConcatDataset":
        return ConcatDataset([self, other])


class IterableDataset(Dataset[T_co]):
    """A dataset that is a stream of samples: subclasses define ``__iter__``; a DataLoader batches
    the stream in order (no sampler, no shuffling)."""

    def __iter__(self) -> Iterator[T_co]:
        raise NotImplementedError("Subclasses of IterableDataset should implement __iter__.")


class TensorDataset(Dataset):
    """Samples ``(t[i] for t in tensors)`` of tensors sharing their first dimension."""

    def __init__(self, *tensors: Tensor) -> None:
        if any(t.shape[0] != tensors[0].shape[0] for t in tensors):
            raise AssertionError("Size mismatch between tensors")
        self.tensors = tensors

    def __getitem__(self, index) -> tuple:
        return tuple(t[index] for t in self.tensors)

    def __len__(self) -> int:
        return self.tensors[0].shape[0]


class ConcatDataset(Dataset):
    """The samples of several datasets, one after the other."""

    def __init__(self, datasets: Iterable[Dataset]) -> None:
        self.datasets = list(datasets)
        if not self.datasets:
            raise AssertionError("datasets should not be an empty iterable")
        if any(isinstance(d, IterableDataset) for d in self.datasets):
            raise AssertionError("ConcatDataset does not support IterableDataset")
        self.cumulative_sizes = list(itertools.accumulate(len(d) for d in self.datasets))

    def __len__(self) -> int:
        return self.cumulative_sizes[-1]

    def __getitem__(self, index: int):
        if index < 0:
            if -index > len(self):
                raise ValueError("absolute value of index should not exceed dataset length")
            index += len(self)
        which = bisect.bisect_right(self.cumulative_sizes, index)
        offset = self.cumulative_sizes[which - 1] if which else 0
        return self.datasets[which][index - offset]


class Subset(Dataset):
    """The samples of ``dataset`` at ``indices``, in that order."""

    def __init__(self, dataset: Dataset, indices: Sequence[int]) -> None:
        self.dataset = dataset
        self.indices = indices

    def __getitem__(self, index):
        if isinstance(index, list):
            return self.dataset[[self.indices[i] for i in index]]
        return self.dataset[self.indices[index]]

    def __getitems__(self, indices: list) -> list:
        inner = getattr(self.dataset, "__getitems__", None)
        if callable(inner):  # the wrapped dataset fetches whole batches itself
            return inner([self.indices[i] for i in indices])
        return [self.dataset[self.indices[i]] for i in indices]

    def __len__(self) -> int:
        return len(self.indices)


def random_split(dataset: Dataset, lengths: Sequence[int | float], generator: random.Generator | None = None
                 ) -> list[Subset]:
    """Split ``dataset`` at random into non-overlapping Subsets of the given lengths, or of the
    given fractions of it (summing to 1; remainders go one each to the first splits)."""
    if math.isclose(sum(lengths), 1) and sum(lengths) <= 1:
        lengths = _lengths_of_fractions(len(dataset), lengths)
    if sum(lengths) != len(dataset):
        raise ValueError("Sum of input lengths does not equal the length of the input dataset!")
    order = _numpy_generator(generator).permutation(sum(lengths)).tolist()
    ends = list(itertools.accumulate(lengths))
    return [Subset(dataset, order[end - length:end]) for end, length in zip(ends, lengths)]


def _lengths_of_fractions(total: int, fractions: Sequence[float]) -> list[int]:
    for i, fraction in enumerate(fractions):
        if not 0 <= fraction <= 1:
            raise ValueError(f"Fraction at index {i} is not between 0 and 1")
    lengths = [math.floor(total * f) for f in fractions]
    for i in range(total - sum(lengths)):  # round robin, as torch
        lengths[i % len(lengths)] += 1
    for i, length in enumerate(lengths):
        if length == 0:
            warnings.warn(f"Length of split at index {i} is 0. This might result in an empty dataset.",
                          stacklevel=3)
    return lengths


# -- samplers ----------------------------------------------------------------------------------
def _numpy_generator(generator: random.Generator | None) -> np.random.Generator:
    # read at each draw: manual_seed replaces the global numpy generator
    return random.generator() if generator is None else generator.numpy


class Sampler(Generic[T_co]):
    """The order a DataLoader reads a dataset in: subclasses define ``__iter__`` (indices, or
    lists of indices for a batch sampler) and usually ``__len__``."""

    def __init__(self, data_source: Any = None) -> None:
        pass

    def __iter__(self) -> Iterator[T_co]:
        raise NotImplementedError


class SequentialSampler(Sampler[int]):
    """0, 1, ..., len(data_source) - 1."""

    def __init__(self, data_source: collections.abc.Sized) -> None:
        self.data_source = data_source

    def __iter__(self) -> Iterator[int]:
        return iter(range(len(self.data_source)))

    def __len__(self) -> int:
        return len(self.data_source)


class RandomSampler(Sampler[int]):
    """A fresh random permutation of the indices each epoch (``num_samples`` of them, repeating
    permutations past the dataset's length), or draws with ``replacement``."""

    def __init__(self, data_source: collections.abc.Sized, replacement: bool = False,
                 num_samples: int | None = None, generator: random.Generator | None = None) -> None:
        self.data_source = data_source
        self.replacement = replacement
        self._num_samples = num_samples
        self.generator = generator
        if not isinstance(replacement, bool):
            raise TypeError(f"replacement should be a boolean value, but got replacement={replacement}")
        if not isinstance(self.num_samples, int) or self.num_samples <= 0:
            raise ValueError(f"num_samples should be a positive integer value, but got num_samples={self.num_samples}")

    @property
    def num_samples(self) -> int:
        return len(self.data_source) if self._num_samples is None else self._num_samples

    def _draw(self) -> np.ndarray:
        """One epoch's indices (int64), drawn from the generator."""
        n, rng = len(self.data_source), _numpy_generator(self.generator)
        if self.replacement:
            return rng.integers(0, n, self.num_samples, dtype=np.int64)
        whole, rest = divmod(self.num_samples, n)
        parts = [rng.permutation(n) for _ in range(whole)] + ([rng.permutation(n)[:rest]] if rest else [])
        return np.concatenate(parts) if len(parts) > 1 else parts[0]

    def __iter__(self) -> Iterator[int]:
        yield from self._draw().tolist()

    def __len__(self) -> int:
        return self.num_samples


class SubsetRandomSampler(Sampler[int]):
    """The given indices in a fresh random order each epoch."""

    def __init__(self, indices: Sequence[int], generator: random.Generator | None = None) -> None:
        self.indices = indices
        self.generator = generator

    def __iter__(self) -> Iterator[int]:
        for i in _numpy_generator(self.generator).permutation(len(self.indices)).tolist():
            yield self.indices[i]

    def __len__(self) -> int:
        return len(self.indices)


class BatchSampler(Sampler[list]):
    """Lists of ``batch_size`` consecutive indices of ``sampler`` (the last one shorter, or
    dropped with ``drop_last``)."""

    def __init__(self, sampler: Sampler | Iterable, batch_size: int, drop_last: bool) -> None:
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size <= 0:
            raise ValueError(f"batch_size should be a positive integer value, but got batch_size={batch_size}")
        if not isinstance(drop_last, bool):
            raise ValueError(f"drop_last should be a boolean value, but got drop_last={drop_last}")
        self.sampler = sampler
        self.batch_size = batch_size
        self.drop_last = drop_last

    def __iter__(self) -> Iterator[list]:
        indices = iter(self.sampler)
        while batch := list(itertools.islice(indices, self.batch_size)):
            if self.drop_last and len(batch) < self.batch_size:
                return
            yield batch

    def __len__(self) -> int:
        if self.drop_last:
            return len(self.sampler) // self.batch_size
        return -(-len(self.sampler) // self.batch_size)


class _InfiniteConstantSampler(Sampler):
    """An IterableDataset's sampler: no indices, only a count."""

    def __iter__(self) -> Iterator[None]:
        return itertools.repeat(None)


# -- collation ---------------------------------------------------------------------------------
_COLLATE_ERROR = "default_collate: batch must contain tensors, numpy arrays, numbers, dicts or lists; found {}"


def _is_string_array(array: np.ndarray) -> bool:
    return array.dtype.kind in "SUO"


def _stack(batch: Sequence[Tensor]) -> Tensor:
    """The samples stacked along a new first dimension: one np.stack when they agree in shape
    and dtype and none requires grad; otherwise graphnn.stack (promotion, errors, grad)."""
    first = batch[0]
    if all(isinstance(t, Tensor) and t.shape == first.shape and t.dtype == first.dtype and not t.requires_grad
           for t in batch):
        return Tensor(constant(np.stack([t.array for t in batch]), first.dtype.ir))
    from graphnn.factories import stack

    return stack(batch)


def default_collate(batch: Sequence) -> Any:
    """Stack a list of samples into a batch, as torch's: tensors, numpy arrays and numbers become
    tensors with a new first dimension (Python floats float64, ints int64), strings stay a list,
    and dicts, tuples (into lists), namedtuples and lists are collated field by field."""
    from graphnn.factories import as_tensor_ as as_tensor
    from graphnn.factories import tensor

    elem = batch[0]
    if isinstance(elem, Tensor):
        return _stack(batch)
    if isinstance(elem, np.ndarray):
        if _is_string_array(elem):
            raise TypeError(_COLLATE_ERROR.format(elem.dtype))
        return _stack([as_tensor(b) for b in batch])
    if isinstance(elem, (np.bool_, np.number, np.object_)):
        return as_tensor(np.asarray(batch))
    if isinstance(elem, float):
        return tensor(batch, dtype=dtypes.float64)
    if isinstance(elem, int):
        return tensor(batch)
    if isinstance(elem, (str, bytes)):
        return batch
    if isinstance(elem, collections.abc.Mapping):
        return _rebuild_mapping(elem, {key: default_collate([d[key] for d in batch]) for key in elem})
    if isinstance(elem, tuple) and hasattr(elem, "_fields"):  # a namedtuple
        return type(elem)(*(default_collate(field) for field in zip(*batch)))
    if isinstance(elem, collections.abc.Sequence):
        if any(len(sample) != len(elem) for sample in batch):
            raise RuntimeError("each element in list of batch should be of equal size")
        # each field is the tuple zip makes (a field of strings stays one, as in torch); a tuple
        # sample gives a list of fields, as torch's does
        fields = [default_collate(field) for field in zip(*batch)]
        return fields if isinstance(elem, tuple) else _rebuild_sequence(elem, fields)
    raise TypeError(_COLLATE_ERROR.format(type(elem)))


def default_convert(data: Any) -> Any:
    """What a loader without batching (``batch_size=None``) yields for a sample: numpy arrays and
    scalars as tensors, inside dicts, tuples (into lists) and lists too; anything else unchanged."""
    from graphnn.factories import as_tensor_ as as_tensor

    if isinstance(data, Tensor):
        return data
    if isinstance(data, np.ndarray):
        return data if _is_string_array(data) else as_tensor(data)
    if isinstance(data, (np.bool_, np.number)):
        return as_tensor(np.asarray(data))
    if isinstance(data, collections.abc.Mapping):
        return _rebuild_mapping(data, {key: default_convert(data[key]) for key in data})
    if isinstance(data, tuple) and hasattr(data, "_fields"):
        return type(data)(*(default_convert(d) for d in data))
    if isinstance(data, tuple):
        return [default_convert(d) for d in data]
    if isinstance(data, collections.abc.Sequence) and not isinstance(data, (str, bytes)):
        return _rebuild_sequence(data, [default_convert(d) for d in data])
    return data


def _rebuild_mapping(like: collections.abc.Mapping, values: dict) -> collections.abc.Mapping:
    """``values`` in a mapping of ``like``'s type where that type can be built so, else a dict."""
    try:
        if isinstance(like, collections.abc.MutableMapping):
            clone = copy.copy(like)
            clone.update(values)
            return clone
        return type(like)(values)
    except TypeError:
        return values


def _rebuild_sequence(like: collections.abc.Sequence, values: list) -> collections.abc.Sequence:
    """``values`` in a sequence of ``like``'s type where that type can be built so, else a list."""
    try:
        if isinstance(like, collections.abc.MutableSequence):
            clone = copy.copy(like)
            for i, value in enumerate(values):
                clone[i] = value
            return clone
        return type(like)(values)
    except TypeError:
        return values


# -- the loader --------------------------------------------------------------------------------
class DataLoader:
    """Batches of a dataset, as torch's DataLoader: ``batch_size`` samples at a time (the last
    batch shorter unless ``drop_last``), in order or shuffled each epoch (``shuffle``, drawn from
    ``generator`` or the global generator), or in the order of a ``sampler`` or ``batch_sampler``,
    stacked by ``collate_fn`` (default_collate). ``batch_size=None`` yields single samples.

    Loading happens in the calling process: ``num_workers``, ``pin_memory``, ``timeout``,
    ``worker_init_fn``, ``multiprocessing_context``, ``prefetch_factor``, ``persistent_workers``,
    ``pin_memory_device`` and ``in_order`` are checked as torch checks them, and otherwise ignored.
    """

    _FROZEN = ("batch_size", "batch_sampler", "sampler", "drop_last", "dataset", "persistent_workers")

    def __init__(self, dataset: Dataset, batch_size: int | None = 1, shuffle: bool | None = None,
                 sampler: Sampler | Iterable | None = None, batch_sampler: Sampler | Iterable | None = None,
                 num_workers: int = 0, collate_fn: Callable | None = None, pin_memory: bool = False,
                 drop_last: bool = False, timeout: float = 0, worker_init_fn: Callable | None = None,
                 multiprocessing_context: Any = None, generator: random.Generator | None = None, *,
                 prefetch_factor: int | None = None, persistent_workers: bool = False, pin_memory_device: str = "",
                 in_order: bool = True) -> None:
        _check_worker_options(num_workers, timeout, prefetch_factor, persistent_workers)
        self.dataset = dataset
        self.num_workers, self.pin_memory, self.timeout = num_workers, pin_memory, timeout
        self.worker_init_fn, self.multiprocessing_context = worker_init_fn, multiprocessing_context
        self.prefetch_factor = 2 if num_workers > 0 and prefetch_factor is None else prefetch_factor
        self.persistent_workers, self.pin_memory_device, self.in_order = persistent_workers, pin_memory_device, in_order
        self._iterable = isinstance(dataset, IterableDataset)
        if self._iterable:
            _check_iterable_options(shuffle, sampler, batch_sampler)
        if sampler is not None and shuffle:
            raise ValueError("sampler option is mutually exclusive with shuffle")
        if batch_sampler is not None:
            if batch_size != 1 or shuffle or sampler is not None or drop_last:
                raise ValueError("batch_sampler option is mutually exclusive with batch_size, shuffle, sampler, "
                                 "and drop_last")
            batch_size, drop_last = None, False
        elif batch_size is None and drop_last:
            raise ValueError("batch_size=None option disables auto-batching and is mutually exclusive with drop_last")
        if sampler is None:
            sampler = _InfiniteConstantSampler() if self._iterable else (
                RandomSampler(dataset, generator=generator) if shuffle else SequentialSampler(dataset))
        if batch_size is not None and batch_sampler is None:
            batch_sampler = BatchSampler(sampler, batch_size, drop_last)
        self.batch_size, self.drop_last = batch_size, drop_last
        self.sampler, self.batch_sampler, self.generator = sampler, batch_sampler, generator
        if collate_fn is None:
            collate_fn = default_collate if batch_sampler is not None else default_convert
        self.collate_fn = collate_fn
        self._initialized = True

    def __setattr__(self, name: str, value: Any) -> None:
        if name in self._FROZEN and getattr(self, "_initialized", False):
            raise ValueError(f"{name} attribute should not be set after {type(self).__name__} is initialized")
        super().__setattr__(name, value)

    def __len__(self) -> int:
        if self._iterable:
            length = len(self.dataset)
            if self.batch_size is not None:
                length = length // self.batch_size if self.drop_last else -(-length // self.batch_size)
            return length
        return len(self.batch_sampler if self.batch_sampler is not None else self.sampler)

    def __iter__(self) -> Iterator:
        if self._iterable:
            return self._streamed()
        gather = _gatherer(self.dataset) if self._plain_batches() else None
        if gather is not None:
            return map(gather, _index_batches(self.batch_sampler))
        return self._fetched()

    def _plain_batches(self) -> bool:
        """Whether batches are default_collate's of a plain BatchSampler over the sequential or
        random sampler: then they can be gathered whole (subclasses may change any of it)."""
        batches = self.batch_sampler
        return (self.collate_fn is default_collate and type(batches) is BatchSampler
                and type(batches.sampler) in (SequentialSampler, RandomSampler))

    def _fetched(self) -> Iterator:
        """Each batch's samples read one by one (or by the dataset's ``__getitems__``), then collated."""
        dataset, collate = self.dataset, self.collate_fn
        if self.batch_sampler is None:
            for index in self.sampler:
                yield collate(dataset[index])
            return
        fetch = getattr(dataset, "__getitems__", None)
        for indices in self.batch_sampler:
            yield collate(fetch(indices) if fetch else [dataset[i] for i in indices])

    def _streamed(self) -> Iterator:
        """An IterableDataset's samples in order, ``batch_size`` at a time."""
        samples = iter(self.dataset)
        if self.batch_size is None:
            yield from map(self.collate_fn, samples)
            return
        while batch := list(itertools.islice(samples, self.batch_size)):
            if self.drop_last and len(batch) < self.batch_size:
                return
            yield self.collate_fn(batch)


def _check_worker_options(num_workers: int, timeout: float, prefetch_factor: int | None,
                          persistent_workers: bool) -> None:
    if num_workers < 0:
        raise ValueError("num_workers option should be non-negative; use num_workers=0 to disable multiprocessing.")
    if timeout < 0:
        raise ValueError("timeout option should be non-negative")
    if num_workers == 0 and prefetch_factor is not None:
        raise ValueError("prefetch_factor option could only be specified in multiprocessing.let num_workers > 0 to "
                         "enable multiprocessing, otherwise set prefetch_factor to None.")
    if prefetch_factor is not None and prefetch_factor < 0:
        raise ValueError("prefetch_factor option should be non-negative")
    if persistent_workers and num_workers == 0:
        raise ValueError("persistent_workers option needs num_workers > 0")


def _check_iterable_options(shuffle: Any, sampler: Any, batch_sampler: Any) -> None:
    if shuffle not in (False, None):
        raise ValueError(f"DataLoader with IterableDataset: expected unspecified shuffle option, but got "
                         f"shuffle={shuffle}")
    if sampler is not None:
        raise ValueError(f"DataLoader with IterableDataset: expected unspecified sampler option, but got "
                         f"sampler={sampler}")
    if batch_sampler is not None:
        raise ValueError(f"DataLoader with IterableDataset: expected unspecified batch_sampler option, but got "
                         f"batch_sampler={batch_sampler}")


# -- whole-batch gathering (the fast path) -----------------------------------------------------
def _index_batches(batches: BatchSampler) -> Iterator[slice | np.ndarray]:
    """A plain BatchSampler's batches as slices (sequential) or int64 arrays (shuffled); the
    permutation is drawn at the first batch, as torch's RandomSampler draws it."""
    order = batches.sampler._draw() if isinstance(batches.sampler, RandomSampler) else None
    count = len(batches.sampler) if order is None else len(order)
    stop = count - count % batches.batch_size if batches.drop_last else count
    for start in range(0, stop, batches.batch_size):
        index = slice(start, min(start + batches.batch_size, count))
        yield index if order is None else order[index]


def _gatherer(dataset: Dataset) -> Callable[[slice | np.ndarray], list] | None:
    """A function from a batch's indices to default_collate's batch of ``dataset``, computed with
    one numpy take per tensor; None for datasets it does not cover (they are read sample by sample)."""
    if isinstance(dataset, Subset) and _plain_subset(type(dataset)):
        inner = _gatherer(dataset.dataset)
        if inner is None:
            return None
        indices = dataset.indices
        indices = np.asarray(indices.array if isinstance(indices, Tensor) else indices, dtype=np.int64)
        return lambda index: inner(indices[index])
    if not isinstance(dataset, TensorDataset) or type(dataset).__getitem__ is not TensorDataset.__getitem__ \
            or hasattr(dataset, "__getitems__"):
        return None
    if not all(isinstance(t, Tensor) and not t.requires_grad for t in dataset.tensors):
        return None
    columns = [(t.array, t.dtype.ir) for t in dataset.tensors]

    def gather(index: slice | np.ndarray) -> list:
        # a slice is copied: torch's batch never shares memory with the dataset
        return [Tensor(constant(array[index].copy() if isinstance(index, slice) else array[index], ir))
                for array, ir in columns]

    return gather


def _plain_subset(kind: type) -> bool:
    return kind.__getitem__ is Subset.__getitem__ and kind.__getitems__ is Subset.__getitems__
