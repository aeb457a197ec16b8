"""What a compiled program keeps between calls: no input array (C and Triton), and an arena sized for the
current batch (a much smaller batch after a large one releases the large arena)."""
from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest

import graphnn as gn
from graphnn import nn, optim


@pytest.fixture(autouse=True)
def shared_arena(monkeypatch):
    """These tests are about the arena entry points share, which AddressSanitizer builds replace."""
    monkeypatch.delenv("GRAPHNN_SANITIZE", raising=False)


def twins(backends=("c", "numpy")):
    """The same small model and its SGD step, once per backend."""
    programs = []
    for backend in backends:
        gn.manual_seed(3)
        model = nn.Sequential(nn.Linear(5, 32), nn.ReLU(), nn.Linear(32, 3))
        sgd = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        programs.append((model, gn.compile(model, nn.CrossEntropyLoss(), sgd, backend=backend)))
    return programs


def batch(rng, size):
    return rng.standard_normal((size, 5)).astype(np.float32), rng.integers(0, 3, size)


@pytest.mark.parametrize("backend", ["c", "triton"])
def test_inputs_are_not_kept_alive_after_a_call(backend):
    (model, train), = twins((backend,))
    predict = gn.compile(model, backend=backend)
    rng = np.random.default_rng(0)
    for _ in range(3):  # the first call takes the general path, the others repeat it
        x, y = batch(rng, 16)
        refs = [weakref.ref(x), weakref.ref(y)]
        train.step(x, y)
        predict(x)
        del x, y
        gc.collect()
        assert [r() is None for r in refs] == [True, True]


def test_arena_shrinks_after_a_large_batch_and_results_stay_right():
    (native_model, native), (model, reference) = twins()
    rng = np.random.default_rng(1)
    sizes = []
    for size in (8, 4096, 8, 8, 4096, 100):
        x, y = batch(rng, size)
        np.testing.assert_allclose(native.step(x, y), reference.step(x, y), rtol=1e-5)
        sizes.append(next(iter(native.executables.values())).arena.size)
    assert sizes[1] > 4 * sizes[2]  # the large batch's arena is gone once a small batch follows
    assert sizes[2] == sizes[3] and sizes[4] == sizes[1]
    for p, q in zip(native_model.parameters(), model.parameters()):
        np.testing.assert_allclose(p.data, q.data, rtol=1e-4, atol=1e-5)


def test_entries_sharing_the_arena_regrow_it_after_a_shrink():
    """A small batch of one entry point shrinks the arena that another entry point's large batch
    needs: that entry's next call (same batch size as before) must get a large arena again."""
    (native_model, native), (model, reference) = twins()
    rng = np.random.default_rng(2)
    large, small = batch(rng, 4096), batch(rng, 8)
    for _ in range(3):
        np.testing.assert_allclose(native.loss(*large), reference.loss(*large), rtol=1e-5)
        np.testing.assert_allclose(native.step(*small), reference.step(*small), rtol=1e-5)
    executable = next(iter(native.executables.values()))
    assert executable.arena.size >= max(b.arena_size for b in executable.bindings.values())
    for p, q in zip(native_model.parameters(), model.parameters()):
        np.testing.assert_allclose(p.data, q.data, rtol=1e-4, atol=1e-5)
