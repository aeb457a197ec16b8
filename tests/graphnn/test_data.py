"""graphnn.utils.data against torch.utils.data on the same data: batches, lengths, shuffling,
splits, collation, errors; and fit() reading a DataLoader."""
from __future__ import annotations

import collections
import warnings

import numpy as np
import pytest
import torch
import torch.utils.data as td

import graphnn as gn
import graphnn.utils.data as gd
from graphnn import nn, optim
from graphnn.training import evaluate, fit

N, FEATURES = 10, 3


def arrays(n: int = N):
    x = np.arange(n * FEATURES, dtype=np.float32).reshape(n, FEATURES) / 7
    return x, np.arange(n, dtype=np.int64) % 4


def datasets(n: int = N):
    """The same TensorDataset in both libraries."""
    x, y = arrays(n)
    return (gd.TensorDataset(gn.from_numpy(x), gn.from_numpy(y)),
            td.TensorDataset(torch.from_numpy(x), torch.from_numpy(y)))


def plain(value):
    """A batch as comparable Python data: tensors as (dtype name, shape, values), containers
    by their type."""
    if isinstance(value, (gn.Tensor, torch.Tensor)):
        return ("tensor", str(value.dtype), tuple(value.shape), np.asarray(value).tolist())
    if isinstance(value, dict):
        return ("dict", {k: plain(v) for k, v in value.items()})
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return (type(value).__name__, [plain(v) for v in value])
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, [plain(v) for v in value])
    return value


def ids(loader) -> list[int]:
    """The sample ids (the y of an arange dataset) of one epoch, in order."""
    return [int(i) for _, y in loader for i in np.asarray(y)]


# -- batching -------------------------------------------------------------------------------------
@pytest.mark.parametrize("batch_size", [1, 3, 4, 10, 64])
@pytest.mark.parametrize("drop_last", [False, True])
def test_batches_and_lengths_match_torch(batch_size, drop_last):
    ours, theirs = datasets()
    loader = gd.DataLoader(ours, batch_size=batch_size, drop_last=drop_last)
    reference = td.DataLoader(theirs, batch_size=batch_size, drop_last=drop_last)
    assert len(loader) == len(reference) and len(loader.dataset) == len(reference.dataset) == N
    batches = list(loader)
    assert [plain(b) for b in batches] == [plain(b) for b in reference]
    assert len(batches) == len(loader)
    assert all(type(b) is list for b in batches)  # torch collates a tuple sample into a list


def test_a_batch_is_a_copy_not_a_view_of_the_dataset():
    x, y = arrays()
    loader = gd.DataLoader(gd.TensorDataset(gn.from_numpy(x), gn.from_numpy(y)), batch_size=4)
    first, _ = next(iter(loader))
    first.array[...] = -1
    assert (x >= 0).all()


def test_a_loader_is_iterated_afresh_each_time_and_next_works():
    ours, _ = datasets()
    loader = gd.DataLoader(ours, batch_size=4)
    assert ids(loader) == ids(loader) == list(np.arange(N) % 4)
    x, y = next(iter(loader))
    assert tuple(x.shape) == (4, FEATURES)


def test_samplers_and_batch_sampler_match_torch():
    ours, theirs = datasets()
    cases = [dict(sampler=[9, 0, 3]), dict(batch_sampler=[[1, 2], [8], [0, 5, 6]]),
             dict(sampler="sequential", batch_size=3), dict(batch_size=None)]
    for case in cases:
        mine, ref = dict(case), dict(case)
        if case.get("sampler") == "sequential":
            mine["sampler"], ref["sampler"] = gd.SequentialSampler(ours), td.SequentialSampler(theirs)
        loader, reference = gd.DataLoader(ours, **mine), td.DataLoader(theirs, **ref)
        assert len(loader) == len(reference), case
        assert [plain(b) for b in loader] == [plain(b) for b in reference], case
    assert list(gd.BatchSampler(range(7), 3, False)) == list(td.BatchSampler(range(7), 3, False))
    assert list(gd.BatchSampler(range(7), 3, True)) == list(td.BatchSampler(range(7), 3, True))
    assert len(gd.BatchSampler(range(7), 3, True)) == 2 and len(gd.BatchSampler(range(7), 3, False)) == 3


def test_random_sampler_lengths_with_replacement_and_num_samples():
    ours, theirs = datasets()
    for kwargs in [dict(), dict(num_samples=25), dict(num_samples=4), dict(replacement=True, num_samples=33)]:
        drawn = list(gd.RandomSampler(ours, **kwargs))
        assert len(drawn) == len(gd.RandomSampler(ours, **kwargs)) == len(list(td.RandomSampler(theirs, **kwargs)))
        assert all(isinstance(i, int) and 0 <= i < N for i in drawn)
    drawn = list(gd.RandomSampler(ours, num_samples=25))
    assert sorted(drawn[:10]) == sorted(drawn[10:20]) == list(range(N))  # whole permutations first
    assert sorted(gd.SubsetRandomSampler([2, 4, 6])) == [2, 4, 6]


# -- shuffling ------------------------------------------------------------------------------------
def test_shuffle_covers_the_data_once_per_epoch_with_a_new_order():
    ours, _ = datasets(50)
    ours = gd.TensorDataset(ours.tensors[0], gn.arange(50))
    loader = gd.DataLoader(ours, batch_size=8, shuffle=True)
    epochs = [ids(loader) for _ in range(3)]
    assert all(sorted(e) == list(range(50)) for e in epochs)
    assert epochs[0] != epochs[1] != epochs[2]
    x, _ = arrays(50)
    for xb, yb in loader:  # each row stays with its label
        np.testing.assert_array_equal(np.asarray(xb), x[np.asarray(yb)])


def test_shuffle_is_reproducible_from_manual_seed_and_from_a_generator():
    ours = gd.TensorDataset(gn.arange(30))
    loader = gd.DataLoader(ours, batch_size=4, shuffle=True)

    def run():
        return [int(i) for (b,) in loader for i in np.asarray(b)]

    gn.manual_seed(3)
    first = run(), run()
    gn.manual_seed(3)
    assert (run(), run()) == first
    own = gd.DataLoader(ours, batch_size=4, shuffle=True, generator=gn.Generator().manual_seed(5))
    orders = [int(i) for (b,) in own for i in np.asarray(b)]
    again = gd.DataLoader(ours, batch_size=4, shuffle=True, generator=gn.Generator().manual_seed(5))
    gn.manual_seed(99)  # the global generator does not enter a loader with its own
    assert [int(i) for (b,) in again for i in np.asarray(b)] == orders
    assert sorted(orders) == list(range(30))


def test_gathered_batches_equal_sample_by_sample_collation():
    """The one-take path gives what indexing and default_collate give (a collate_fn that is not
    default_collate itself takes the general path)."""
    ours, _ = datasets(23)
    for shuffle in (False, True):
        for drop_last in (False, True):
            fast = gd.DataLoader(ours, batch_size=5, shuffle=shuffle, drop_last=drop_last,
                                 generator=gn.Generator().manual_seed(1))
            slow = gd.DataLoader(ours, batch_size=5, shuffle=shuffle, drop_last=drop_last,
                                 generator=gn.Generator().manual_seed(1), collate_fn=lambda b: gd.default_collate(b))
            assert [plain(b) for b in fast] == [plain(b) for b in slow]


# -- datasets -------------------------------------------------------------------------------------
@pytest.mark.parametrize("lengths", [[3, 7], [0.3, 0.7], [0.5, 0.25, 0.25], [1, 2, 7], [0.34, 0.33, 0.33]])
def test_random_split_sizes_and_disjointness_as_torch(lengths):
    ours, theirs = datasets()
    splits = gd.random_split(ours, lengths, generator=gn.Generator().manual_seed(0))
    reference = td.random_split(theirs, lengths, generator=torch.Generator().manual_seed(0))
    assert [len(s) for s in splits] == [len(s) for s in reference]
    every = [i for s in splits for i in s.indices]
    assert sorted(every) == list(range(N)) and all(isinstance(i, int) for i in every)
    again = gd.random_split(ours, lengths, generator=gn.Generator().manual_seed(0))
    assert [s.indices for s in again] == [s.indices for s in splits]
    gn.manual_seed(4)
    default = gd.random_split(ours, lengths)
    gn.manual_seed(4)
    assert [s.indices for s in gd.random_split(ours, lengths)] == [s.indices for s in default]


def test_random_split_errors_and_warning_as_torch():
    ours, theirs = datasets()
    for lengths, error in [([3, 3], ValueError), ([1.2, -0.2], ValueError)]:
        with pytest.raises(error) as expected:
            td.random_split(theirs, lengths)
        with pytest.raises(error, match=str(expected.value)):
            gd.random_split(ours, lengths)
    with pytest.warns(UserWarning, match="Length of split at index 1 is 0"):
        splits = gd.random_split(ours, [1.0, 0.0])
    assert [len(s) for s in splits] == [N, 0]


def test_subset_and_concat_datasets_match_torch():
    ours, theirs = datasets()
    for a, b in [(gd.Subset(ours, [7, 2, 2, -1]), td.Subset(theirs, [7, 2, 2, -1])),
                 (gd.ConcatDataset([ours, ours]), td.ConcatDataset([theirs, theirs])),
                 (ours + gd.Subset(ours, [0, 1]), theirs + td.Subset(theirs, [0, 1]))]:
        assert len(a) == len(b)
        assert [plain(a[i]) for i in range(-len(a), len(a))] == [plain(b[i]) for i in range(-len(b), len(b))]
        for batch_size in (1, 3):
            assert [plain(x) for x in gd.DataLoader(a, batch_size=batch_size)] == \
                   [plain(x) for x in td.DataLoader(b, batch_size=batch_size)]
    concat = gd.ConcatDataset([ours, gd.Subset(ours, [0])])
    assert isinstance(ours + ours, gd.ConcatDataset) and concat.cumulative_sizes == [N, N + 1]
    with pytest.raises(ValueError, match="absolute value of index"):
        concat[-N - 2]
    with pytest.raises(AssertionError, match="datasets should not be an empty iterable"):
        gd.ConcatDataset([])
    with pytest.raises(AssertionError, match="Size mismatch between tensors"):
        gd.TensorDataset(gn.zeros(3, 2), gn.zeros(4))


def test_a_loader_over_a_split_of_a_tensor_dataset_gathers_its_rows():
    ours, _ = datasets(40)
    train, _ = gd.random_split(ours, [0.75, 0.25], generator=gn.Generator().manual_seed(2))
    x, y = arrays(40)
    rows = [i for i in train.indices]
    got = list(gd.DataLoader(train, batch_size=7))
    np.testing.assert_array_equal(np.concatenate([np.asarray(b[0]) for b in got]), x[rows])
    np.testing.assert_array_equal(np.concatenate([np.asarray(b[1]) for b in got]), y[rows])


class Squares(gd.Dataset):
    """A custom dataset: (a float32 tensor, a Python int) per sample."""

    def __init__(self, lib, n: int = 9) -> None:
        self.lib, self.n = lib, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i):
        return self.lib.tensor([float(i), float(i * i)]), i % 3


class TorchSquares(td.Dataset):
    def __init__(self, n: int = 9) -> None:
        self.inner = Squares(torch, n)

    def __len__(self) -> int:
        return len(self.inner)

    def __getitem__(self, i):
        return self.inner[i]


def test_a_custom_dataset_is_collated_as_torch_collates_it():
    loader, reference = gd.DataLoader(Squares(gn), batch_size=4), td.DataLoader(TorchSquares(), batch_size=4)
    batches = list(loader)
    assert [plain(b) for b in batches] == [plain(b) for b in reference]
    assert str(batches[0][0].dtype) == "torch.float32" and str(batches[0][1].dtype) == "torch.int64"
    assert len(loader) == 3


def stream(base):
    """An iterable dataset of 0..n-1 on either library's base class."""

    class Stream(base):
        def __init__(self, n: int) -> None:
            self.n = n

        def __iter__(self):
            return iter(range(self.n))

        def __len__(self) -> int:
            return self.n

    return Stream


Stream, TorchStream = stream(gd.IterableDataset), stream(td.IterableDataset)


@pytest.mark.parametrize("kwargs", [dict(batch_size=3), dict(batch_size=3, drop_last=True), dict(batch_size=None)])
def test_an_iterable_dataset_is_batched_in_order_as_torch(kwargs):
    loader, reference = gd.DataLoader(Stream(7), **kwargs), td.DataLoader(TorchStream(7), **kwargs)
    assert len(loader) == len(reference)
    assert [plain(b) for b in loader] == [plain(b) for b in reference]


# -- collation ------------------------------------------------------------------------------------
Point = collections.namedtuple("Point", ["x", "y"])


def collate_cases(lib):
    """Batches whose collation is compared: each entry builds the batch with ``lib``'s tensors."""
    return [
        [lib.tensor([1.0, 2.0]), lib.tensor([3.0, 4.0])],
        [lib.tensor(1), lib.tensor(2)],
        [lib.tensor([1.0], dtype=lib.float64), lib.tensor([2.0], dtype=lib.float64)],
        [1.5, 2.5], [1, 2], [True, False], [1, 2.5],
        [np.float64(1.0), np.float64(2.0)], [np.float32(1.0)], [np.int32(3), np.int32(4)],
        [np.ones((2, 3), np.float32), np.zeros((2, 3), np.float32)], [np.arange(3), np.arange(3)],
        ["a", "b"], [b"a", b"b"],
        [(1, 2.0, "s"), (3, 4.0, "t")], [[1, 2], [3, 4]],
        [{"a": 1, "b": np.ones(2)}, {"a": 2, "b": np.zeros(2)}],
        [Point(1, 2.0), Point(3, 4.0)],
        [(lib.tensor([1.0, 2.0]), 0), (lib.tensor([3.0, 4.0]), 1)],
        [{"x": (lib.tensor([1.0]), [1, 2])}, {"x": (lib.tensor([2.0]), [3, 4])}],
    ]


@pytest.mark.parametrize("case", range(len(collate_cases(torch))))
def test_default_collate_structures_types_dtypes_and_shapes_match_torch(case):
    ours = gd.default_collate(collate_cases(gn)[case])
    theirs = td.default_collate(collate_cases(torch)[case])
    assert plain(ours) == plain(theirs)


@pytest.mark.parametrize("data", [np.array([1, 2]), np.float64(2.5), (1, np.int64(2)), {"a": np.ones(2)}, "s", 3,
                                  [np.array(["a"]), 1.5], Point(np.int64(1), 2)])
def test_default_convert_matches_torch(data):
    assert plain(gd.default_convert(data)) == plain(td.default_convert(data))


@pytest.mark.parametrize("batch", [[object(), object()], [np.array(["a"]), np.array(["b"])],
                                   [[1, 2], [3]], [gn.zeros(2), gn.zeros(3)]])
def test_default_collate_errors_as_torch(batch):
    reference = [torch.zeros(2), torch.zeros(3)] if isinstance(batch[0], gn.Tensor) else batch
    with pytest.raises(Exception) as expected:
        td.default_collate(reference)
    with pytest.raises(type(expected.value)):
        gd.default_collate(batch)


# -- errors ---------------------------------------------------------------------------------------
def bad_loaders(lib, dataset):
    data = lib.utils.data
    return {
        "batch_size=0": lambda: data.DataLoader(dataset, batch_size=0),
        "batch_size=-1": lambda: data.DataLoader(dataset, batch_size=-1),
        "batch_size=True": lambda: data.DataLoader(dataset, batch_size=True),
        "batch_size=2.0": lambda: data.DataLoader(dataset, batch_size=2.0),
        "drop_last=1": lambda: data.DataLoader(dataset, batch_size=2, drop_last=1),
        "shuffle and sampler": lambda: data.DataLoader(dataset, shuffle=True, sampler=[0, 1]),
        "batch_sampler and batch_size": lambda: data.DataLoader(dataset, batch_size=2, batch_sampler=[[0]]),
        "batch_sampler and shuffle": lambda: data.DataLoader(dataset, shuffle=True, batch_sampler=[[0]]),
        "batch_size=None and drop_last": lambda: data.DataLoader(dataset, batch_size=None, drop_last=True),
        "num_workers=-1": lambda: data.DataLoader(dataset, num_workers=-1),
        "timeout=-1": lambda: data.DataLoader(dataset, timeout=-1),
        "prefetch_factor without workers": lambda: data.DataLoader(dataset, prefetch_factor=2),
        "persistent_workers without workers": lambda: data.DataLoader(dataset, persistent_workers=True),
        "shuffle an empty dataset": lambda: data.DataLoader(data.Subset(dataset, []), shuffle=True),
        "replacement='yes'": lambda: data.RandomSampler(dataset, replacement="yes"),
        "num_samples=0": lambda: data.RandomSampler(dataset, num_samples=0),
        "set batch_size": lambda: setattr(data.DataLoader(dataset), "batch_size", 3),
        "Dataset()[0]": lambda: data.Dataset()[0],
        "shuffle an iterable dataset": lambda: data.DataLoader((Stream if lib is gn else TorchStream)(3), shuffle=True),
    }


@pytest.mark.parametrize("case", list(bad_loaders(gn, None)))
def test_bad_arguments_raise_torch_exceptions_and_messages(case):
    ours, theirs = datasets()
    with pytest.raises(Exception) as expected:
        bad_loaders(torch, theirs)[case]()
    with pytest.raises(type(expected.value)) as got:
        bad_loaders(gn, ours)[case]()
    assert str(got.value) == str(expected.value)


def test_workers_and_pinning_are_accepted_and_loading_stays_in_process():
    ours, _ = datasets()
    loader = gd.DataLoader(ours, batch_size=4, num_workers=2, pin_memory=True, timeout=5, prefetch_factor=4,
                           persistent_workers=True, worker_init_fn=lambda worker: None)
    assert ids(loader) == list(np.arange(N) % 4) and loader.num_workers == 2


# -- fit ------------------------------------------------------------------------------------------
def classification(n: int = 40, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 5)).astype(np.float32)
    return x, np.argmax(x[:, :3] + 0.1 * rng.standard_normal((n, 3)), 1)


def compiled(seed: int = 0, backend: str = "numpy"):
    gn.manual_seed(seed)
    model = nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 3))
    program = gn.compile(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1, momentum=0.9),
                         backend=backend)
    return model, program


def weights(model) -> list[np.ndarray]:
    return [p.array.copy() for p in model.parameters()]


@pytest.mark.parametrize("backend", ["numpy", "c"])
def test_fit_on_a_loader_equals_fit_on_the_arrays_without_shuffling(backend):
    x, y = classification()
    model, program = compiled(backend=backend)
    expected = program.fit(x, y, batch_size=16, epochs=3, shuffle=False, verbose=0, validation_data=(x[:10], y[:10]))
    reference = weights(model)
    model, program = compiled(backend=backend)
    loader = gd.DataLoader(gd.TensorDataset(gn.from_numpy(x), gn.from_numpy(y)), batch_size=16)
    validation = gd.DataLoader(gd.TensorDataset(gn.from_numpy(x[:10]), gn.from_numpy(y[:10])), batch_size=4)
    history = program.fit(loader, None, epochs=3, verbose=0, validation_data=validation)
    for ours, theirs in zip(weights(model), reference):
        np.testing.assert_array_equal(ours, theirs)
    assert history["loss"] == expected["loss"] and history.epochs == 3
    np.testing.assert_allclose(history["val_loss"], expected["val_loss"], rtol=1e-6)
    assert history["val_accuracy"] == expected["val_accuracy"]
    loss, accuracy = evaluate(program, loader)
    assert (loss, accuracy) == pytest.approx(program.evaluate(x, y, batch_size=7), rel=1e-6)


def test_fit_on_a_shuffled_loader_of_a_custom_dataset_trains_reproducibly():
    x, y = classification(60)

    class Pairs(gd.Dataset):
        def __len__(self):
            return len(x)

        def __getitem__(self, i):
            return gn.from_numpy(x[i]), int(y[i])

    def run():
        model, program = compiled()
        loader = gd.DataLoader(Pairs(), batch_size=8, shuffle=True, drop_last=True)
        return model, fit(program, loader, epochs=4, verbose=0)

    model, history = run()
    assert history["loss"][-1] < history["loss"][0]
    again, repeated = run()
    assert repeated["loss"] == history["loss"]
    for ours, theirs in zip(weights(again), weights(model)):
        np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("own_generator", [False, True])
def test_fit_on_a_shuffled_loader_resumes_bit_for_bit(tmp_path, own_generator):
    """The loader's order after a resume is the straight run's: the generator it draws from (the
    global one, or its own) is in the checkpoint."""
    x, y = classification(50)

    def run(epochs, **kwargs):
        model, program = compiled()
        generator = gn.Generator().manual_seed(7) if own_generator else None
        loader = gd.DataLoader(gd.TensorDataset(gn.from_numpy(x), gn.from_numpy(y)), batch_size=8, shuffle=True,
                               generator=generator)
        return model, fit(program, loader, epochs=epochs, verbose=0, **kwargs)

    model, history = run(5)
    run(2, checkpoint=tmp_path / "run.ckpt")
    resumed, resumed_history = run(5, resume=tmp_path / "run.ckpt")
    assert resumed_history["loss"] == history["loss"]
    for ours, theirs in zip(weights(resumed), weights(model)):
        np.testing.assert_array_equal(ours, theirs)


def test_fit_refuses_a_loader_with_targets_or_bad_batches():
    x, y = classification()
    _, program = compiled()
    loader = gd.DataLoader(gd.TensorDataset(gn.from_numpy(x), gn.from_numpy(y)), batch_size=8)
    with pytest.raises(TypeError, match="pass y=None"):
        fit(program, loader, y, verbose=0)
    with pytest.raises(TypeError, match="y \\(the targets\\) is needed"):
        fit(program, x, verbose=0)
    with pytest.raises(TypeError, match="at least 2, but got a list of 1"):
        fit(program, gd.DataLoader(gd.TensorDataset(gn.from_numpy(x)), batch_size=8), verbose=0)
    with pytest.raises(gn.InputError, match="a DataLoader of no batches"):
        fit(program, gd.DataLoader(gd.Subset(loader.dataset, []), batch_size=8), verbose=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert fit(program, loader, epochs=0, verbose=0).epochs == 0
    assert program.calls == 0
