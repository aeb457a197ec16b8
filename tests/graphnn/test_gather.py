"""The gather primitive and its gradient, scatter_add: kernels on every backend, derivative rules
against float64 finite differences, and the front ends (nn.Embedding, F.embedding,
index_select, gather, take_along_dim, ``x[idx]``) against torch, eagerly, in the PyTorch loop and
compiled into a training step; index checks that leave parameters unchanged."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import sympy
import torch
from hypothesis import given
from hypothesis import strategies as st

import graphnn as gn
from graphnn import autodiff, nn
from graphnn import pointwise as pw
from graphnn.ir import B, Graph, evaluate_shape
from graphnn.ops import Builder, ShapeError
from graphnn.passes.fuse import build_plan
from graphnn.passes.simplify import simplify
from tests.codegen.test_kernels import KERNEL_SETTINGS, batches, run_backends, sizes
from tests.graphnn.test_autodiff import FD_SETTINGS, check_gradients

ROOT = Path(__file__).resolve().parents[2]


# -- kernels: every backend against the reference, the reference against torch ---------------------
def agree(build, leaves: dict, feeds: dict, batch: int, rtol=1e-6, atol=1e-6):
    """Run ``build(b, *leaf nodes) -> {name: node}`` on every backend with ``feeds``; every one
    agrees with the numpy reference. Returns (the reference's outputs, the fused plan)."""
    graph = Graph()
    b = Builder(graph)
    nodes = [b.leaf("input", name, shape, dtype) for name, (shape, dtype) in leaves.items()]
    graph.outputs.update(build(b, *nodes))
    results = run_backends({"forward": graph}, batch, [feeds[name] for name in leaves], {})
    expected = results.pop("numpy")
    for backend, got in results.items():
        for name in expected:
            np.testing.assert_allclose(got[name], expected[name], rtol=rtol, atol=atol, err_msg=f"{backend}: {name}")
    return expected, build_plan(simplify(graph))


def torch_gather(x: np.ndarray, index: np.ndarray, axis: int) -> np.ndarray:
    """The gather primitive's meaning from torch: negative indices counted from the end, 0 where an
    index is outside [-n, n)."""
    n = x.shape[axis]
    wrapped = np.where(index < 0, index + n, index)
    inside = (wrapped >= 0) & (wrapped < n)
    picked = torch.gather(torch.tensor(x), axis, torch.tensor(np.where(inside, wrapped, 0))).numpy()
    return np.where(inside, picked, 0)


@KERNEL_SETTINGS
@given(batch=batches, n=sizes, m=st.integers(1, 9), axis=st.sampled_from([0, 1, 2]), seed=st.integers(0, 99))
def test_gather_kernels_on_every_axis(batch, n, m, axis, seed):
    """An index smaller than the tensor on the other axes, negative indices and indices out of
    range (which read 0 and touch no memory outside the tensor)."""
    rng = np.random.default_rng(seed)
    x_shape = (B, n, 3)
    i_shape = [B, max(n - 1, 1), 3]
    i_shape[axis] = m
    size = evaluate_shape(x_shape, batch)[axis]
    x = rng.standard_normal(evaluate_shape(x_shape, batch)).astype(np.float32)
    index = rng.integers(-size - 2, size + 2, evaluate_shape(tuple(i_shape), batch))

    def build(b, x, index):
        return {"y": b.gather(x, index, axis), "z": b.pointwise(pw.tanh, b.gather(x, index, axis))}

    leaves = {"x": (x_shape, "f32"), "index": (tuple(i_shape), "i64")}
    expected, _ = agree(build, leaves, {"x": x, "index": index}, batch)
    np.testing.assert_array_equal(expected["y"], torch_gather(x, index, axis))


@KERNEL_SETTINGS
@given(batch=batches, n=sizes, axis=st.sampled_from([0, 1]), seed=st.integers(0, 99))
def test_scatter_add_kernels_accumulate_repeated_indices(batch, n, axis, seed):
    """Repeated indices add up; a target axis of size 1 sums the values along it (the gradient of
    a gather from a table broadcast along that axis); out-of-range indices add nothing."""
    rng = np.random.default_rng(seed)
    shape = (7, n) if axis == 0 else (1, n)  # axis 1: the target broadcast over the batch
    i_shape = (B, n)
    index = rng.integers(-shape[axis] - 1, shape[axis] + 1, evaluate_shape(i_shape, batch))
    values = rng.standard_normal(evaluate_shape(i_shape, batch)).astype(np.float32)

    def build(b, values, index):
        return {"sum": b.scatter_add(b.pointwise(pw.scale(2.0), values), index, axis, shape)}

    expected, plan = agree(build, {"values": (i_shape, "f32"), "index": (i_shape, "i64")},
                           {"values": values, "index": index}, batch, rtol=1e-5, atol=1e-5)
    want = torch.zeros(shape, dtype=torch.float64)
    wrapped = np.where(index < 0, index + shape[axis], index)
    inside = (wrapped >= 0) & (wrapped < shape[axis])
    rows, cols = np.indices(index.shape)
    place = (wrapped[inside], cols[inside]) if axis == 0 else (np.zeros(inside.sum(), np.int64), wrapped[inside])
    want.index_put_(tuple(torch.tensor(p) for p in place), torch.tensor(2.0 * values[inside], dtype=torch.float64),
                    accumulate=True)
    np.testing.assert_allclose(expected["sum"], want.numpy(), rtol=1e-5, atol=1e-5)
    assert [k.kind for k in plan.kernels] == ["scatter"]  # the doubling is the scatter's prologue


def test_a_lookup_is_an_indirect_load_in_its_consumers_kernel():
    """index_select -> tanh -> sum over T is one reduction reading the table through the index:
    no gathered copy, no one-hot."""
    def build(b, w, idx):
        rows = b.index_select(w, idx, 0)  # (B, 4, 6)
        return {"s": b.reduce("sum", b.pointwise(pw.tanh, rows), (1,))}

    rng = np.random.default_rng(0)
    feeds = {"w": rng.standard_normal((37, 6)).astype(np.float32), "idx": rng.integers(0, 37, (5, 4))}
    expected, plan = agree(build, {"w": ((37, 6), "f32"), "idx": ((B, 4), "i64")}, feeds, 5)
    np.testing.assert_allclose(expected["s"][:, 0], np.tanh(feeds["w"][feeds["idx"]]).sum(1), rtol=1e-6)
    (kernel,) = plan.kernels
    assert kernel.kind == "reduce"
    (gathered,) = [l for l in kernel.loads if l.indirect is not None]
    assert gathered.source == "input.w" and gathered.indirect.size == 37


@pytest.mark.parametrize("rows", [3, 70])  # the row loops, and the packed GEMM's epilogue function
def test_a_gather_in_a_matmul_epilogue(rows):
    """x @ w + table[idx]: the lookup is read in the matmul's epilogue, on every backend."""
    def build(b, x, w, table, idx):
        return {"y": b.pointwise(pw.add, b.matmul(x, w), b.index_select(table, idx, 0))}

    rng = np.random.default_rng(rows)
    feeds = {"x": rng.standard_normal((rows, 40)).astype(np.float32),
             "w": rng.standard_normal((40, 33)).astype(np.float32),
             "table": rng.standard_normal((11, 33)).astype(np.float32), "idx": rng.integers(-11, 11, rows)}
    leaves = {"x": ((B, 40), "f32"), "w": ((40, 33), "f32"), "table": ((11, 33), "f32"), "idx": ((B,), "i64")}
    expected, plan = agree(build, leaves, feeds, rows, rtol=2e-5, atol=2e-5)
    np.testing.assert_allclose(expected["y"], feeds["x"] @ feeds["w"] + feeds["table"][feeds["idx"]], rtol=1e-5,
                               atol=1e-5)
    (kernel,) = plan.kernels
    assert kernel.kind == "matmul" and any(l.indirect for l in kernel.loads)


def test_gradients_of_gathers_and_scatters_run_on_every_backend():
    """The backward of a scatter of a gather (each rule's result through the other rule), and a
    gather whose index is an iota, compiled and run like the reference."""
    graph = Graph()
    b = Builder(graph)
    x, v, idx = b.leaf("input", "x", (6, 3)), b.leaf("input", "v", (B, 3)), b.leaf("input", "idx", (B, 3), "i64")
    spread = b.scatter_add(b.pointwise(pw.mul, b.gather(x, idx, 0), v), idx, 0, (6, 3))
    diagonal = b.gather(spread, b.iota((3, 3), 0), 1)  # row i: spread[i, i], three times
    loss = b.reshape(b.reduce("sum", b.pointwise(pw.mul, diagonal, diagonal), (0, 1)), ())
    graph, grads = autodiff.gradients(graph, loss, [x, v])
    graph.outputs.update(loss=loss, gx=grads[x.id], gv=grads[v.id])
    rng = np.random.default_rng(5)
    feeds = [rng.standard_normal((6, 3)).astype(np.float32), rng.standard_normal((4, 3)).astype(np.float32),
             rng.integers(-6, 6, (4, 3))]
    results = run_backends({"forward": graph}, 4, feeds, {})
    expected = results.pop("numpy")
    for backend, got in results.items():
        for name in expected:
            np.testing.assert_allclose(got[name], expected[name], rtol=1e-5, atol=1e-5, err_msg=f"{backend}: {name}")
    xt, vt = torch.tensor(feeds[0], requires_grad=True), torch.tensor(feeds[1], requires_grad=True)
    it = torch.tensor(feeds[2] % 6)
    spread_t = torch.zeros(6, 3).scatter_add(0, it, xt.gather(0, it) * vt)
    diagonal_t = spread_t.gather(1, torch.arange(3).reshape(3, 1).expand(3, 3))
    (diagonal_t * diagonal_t).sum().backward()
    np.testing.assert_allclose(expected["gx"], xt.grad.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(expected["gv"], vt.grad.numpy(), rtol=1e-5, atol=1e-5)


def test_gather_shape_errors_name_the_shapes():
    graph = Graph()
    b = Builder(graph)
    x, idx = b.leaf("input", "x", (3, 4)), b.leaf("input", "idx", (2, 5), "i64")
    with pytest.raises(ShapeError, match=r"no larger than the tensor \[3,4\] apart from dimension 0.*\[2,5\]"):
        b.gather(x, idx, 0)
    with pytest.raises(ShapeError, match="int64 index, got f32"):
        b.gather(x, x, 0)
    with pytest.raises(ShapeError, match="values of the index's shape"):
        b.scatter_add(x, b.leaf("input", "i", (2, 4), "i64"), 0, (5, 4))


# -- derivative rules against float64 finite differences ------------------------------------------
def _index(b, shape, axis_size, salt=0):
    """A deterministic int64 index of ``shape`` with repeats (and one negative value per row):
    (3*i + 2*j + 5*k + salt) mod (axis_size + 1) - 1, from iotas."""
    terms = [b.iota(shape, k, "f32") for k in range(len(shape))]
    expr = sympy.Mod(sum((3, 2, 5)[k] * pw.X[k] for k in range(len(shape))) + salt, axis_size + 1) - 1
    return b.pointwise(pw.fn("index", expr, nargs=len(shape)), *terms, dtype="i64")


@FD_SETTINGS
@given(batch=st.sampled_from([1, 3]), axis=st.sampled_from([0, 1, 2]), data=st.data())
def test_gather_vjp(batch, axis, data):
    rng = np.random.default_rng(data.draw(st.integers(0, 99)))
    x_shape = (4, 5, 3)
    i_shape = [3, 5, 2]
    i_shape[axis] = data.draw(st.integers(1, 6))
    check_gradients(lambda b, x: b.gather(x, _index(b, tuple(i_shape), x_shape[axis]), axis), [x_shape], batch, rng)


def test_scatter_add_vjp_and_double_use():
    """scatter_add's rule (a gather), a gather broadcast from a size-1 axis, and a scatter of a
    gather (each rule's result run through the other rule)."""
    rng = np.random.default_rng(1)
    check_gradients(lambda b, v: b.scatter_add(v, _index(b, (B, 3), 4), 1, (B, 4)), [(B, 3)], 3, rng)
    check_gradients(lambda b, t: b.gather(t, _index(b, (B, 2, 3), 5), 1), [(1, 5, 3)], 2, rng)

    def twice(b, x, v):
        index = _index(b, (4, 3), 6, salt=1)
        spread = b.scatter_add(b.pointwise(pw.mul, b.gather(x, index, 0), v), index, 0, (6, 3))
        return b.pointwise(pw.mul, spread, spread)

    check_gradients(twice, [(6, 3), (4, 3)], 1, rng)


# -- front ends against torch --------------------------------------------------------------------
EMBEDDINGS = [  # (vocabulary, width, index shape, padding_idx)
    (10, 3, (4, 7), None),
    (37, 5, (1, 9), 3),  # batch 1, odd sizes
    (1025, 7, (3,), -1),  # a vocabulary past a block of 1024
    (5, 1, (2, 2, 3), 0),
]


@pytest.mark.parametrize("vocab,width,shape,padding", EMBEDDINGS)
def test_embedding_output_and_weight_gradient_match_torch(vocab, width, shape, padding):
    rng = np.random.default_rng(vocab)
    idx = rng.integers(0, vocab, shape)
    idx.flat[:2] = [vocab - 1, vocab - 1]  # a repeated index, the last row
    if padding is not None:
        idx.flat[2] = padding % vocab
    theirs = torch.nn.Embedding(vocab, width, padding_idx=padding)
    ours = nn.Embedding(vocab, width, padding_idx=padding)
    ours.load_state_dict({"weight": theirs.weight.detach().numpy()})
    weights = rng.standard_normal(shape + (width,)).astype(np.float32)
    out = ours(gn.tensor(idx))
    (out * gn.tensor(weights)).sum().backward()
    expected = theirs(torch.tensor(idx))
    (expected * torch.tensor(weights)).sum().backward()
    assert out.grad_fn.name() == "EmbeddingBackward0"
    np.testing.assert_array_equal(out.detach().numpy(), expected.detach().numpy())
    np.testing.assert_allclose(ours.weight.grad.numpy(), theirs.weight.grad.numpy(), rtol=1e-5, atol=1e-6)
    if padding is not None:
        assert not ours.weight.grad.numpy()[padding].any()
    with gn.no_grad():  # concrete: evaluated op by op
        np.testing.assert_array_equal(gn.nn.functional.embedding(gn.tensor(idx), ours.weight).numpy(),
                                      expected.detach().numpy())


def test_embedding_module_as_torchs():
    gn.manual_seed(0)
    e = nn.Embedding(6, 4, padding_idx=-2)
    assert repr(e) == repr(torch.nn.Embedding(6, 4, padding_idx=-2)) == "Embedding(6, 4, padding_idx=4)"
    assert e.padding_idx == 4 and not e.weight.detach().numpy()[4].any() and e.weight.detach().numpy().std() > 0.3
    assert list(e.state_dict()) == ["weight"]
    for bad in (6, -7):
        with pytest.raises(AssertionError, match="Padding_idx must be within num_embeddings"):
            nn.Embedding(6, 4, padding_idx=bad)
    table = np.arange(6.0, dtype=np.float32).reshape(3, 2)
    frozen = nn.Embedding.from_pretrained(gn.tensor(table))
    assert not frozen.weight.requires_grad and nn.Embedding.from_pretrained(table, freeze=False).weight.requires_grad
    np.testing.assert_array_equal(frozen(gn.tensor([2, 0])).numpy(), table[[2, 0]])
    for option in ({"max_norm": 1.0}, {"sparse": True}, {"scale_grad_by_freq": True}):
        with pytest.raises(NotImplementedError):
            nn.Embedding(6, 4, **option)
    with pytest.raises(RuntimeError, match="'indices' to have one of the following scalar types: Long, Int"):
        e(gn.tensor([1.0]))
    with pytest.raises(RuntimeError, match="'weight' must be 2-D"):
        gn.nn.functional.embedding(gn.tensor([1]), gn.zeros(3))
    np.testing.assert_array_equal(e(gn.tensor([3], dtype=gn.int32)).detach().numpy(), e.weight.detach().numpy()[[3]])


def _pair(values: np.ndarray):
    """The same leaf tensor requiring grad in graphnn and torch."""
    return gn.tensor(values, requires_grad=True), torch.tensor(values, requires_grad=True)


def _same_with_gradient(ours, theirs, x, y, grad_fn: str | None = None):
    """Outputs equal, and the gradients of a weighted sum (the weights random) agree."""
    np.testing.assert_array_equal(ours.detach().numpy(), theirs.detach().numpy())
    if grad_fn is not None:
        assert ours.grad_fn.name() == theirs.grad_fn.name() == grad_fn
    weights = np.random.default_rng(0).standard_normal(tuple(theirs.shape)).astype(np.float32)
    (ours * gn.tensor(weights)).sum().backward()
    (theirs * torch.tensor(weights)).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), y.grad.numpy(), rtol=1e-5, atol=1e-6)


VALUES = np.random.default_rng(3).standard_normal((4, 5, 3)).astype(np.float32)


@pytest.mark.parametrize("dim", [0, 1, 2, -1])
def test_index_select_matches_torch(dim):
    index = np.array([2, 0, 2, 1])
    x, y = _pair(VALUES)
    _same_with_gradient(x.index_select(dim, gn.tensor(index)), y.index_select(dim, torch.tensor(index)), x, y,
                        "IndexSelectBackward0")
    np.testing.assert_array_equal(gn.index_select(gn.tensor(VALUES), dim, gn.tensor(index)).numpy(),
                                  torch.index_select(torch.tensor(VALUES), dim, torch.tensor(index)).numpy())


@pytest.mark.parametrize("dim", [0, 1, 2])
def test_gather_matches_torch(dim):
    rng = np.random.default_rng(dim)
    shape = [3, 4, 2]
    shape[dim] = 6
    index = rng.integers(0, VALUES.shape[dim], shape)
    x, y = _pair(VALUES)
    _same_with_gradient(x.gather(dim, gn.tensor(index)), y.gather(dim, torch.tensor(index)), x, y, "GatherBackward0")
    np.testing.assert_array_equal(gn.gather(gn.tensor(VALUES), dim, gn.tensor(index, dtype=gn.int32)).numpy(),
                                  torch.gather(torch.tensor(VALUES), dim, torch.tensor(index)).numpy())
    integers = (VALUES * 10).astype(np.int64)  # any dtype gathers
    np.testing.assert_array_equal(gn.tensor(integers).gather(dim, gn.tensor(index)).numpy(),
                                  torch.tensor(integers).gather(dim, torch.tensor(index)).numpy())


def test_take_along_dim_matches_torch():
    x, y = _pair(VALUES)
    index = np.random.default_rng(4).integers(0, 3, (4, 1, 6))  # broadcast over dimension 1
    _same_with_gradient(gn.take_along_dim(x, gn.tensor(index), 2), torch.take_along_dim(y, torch.tensor(index), 2),
                        x, y)
    flat = np.array([[59, 0], [7, 7]])
    x, y = _pair(VALUES)
    _same_with_gradient(x.take_along_dim(gn.tensor(flat)), y.take_along_dim(torch.tensor(flat)), x, y)


INDICES = {
    "x[idx]": lambda lib, i: (i(np.array([[2, 0], [3, 3]])),),
    "x[:, idx]": lambda lib, i: (slice(None), i(np.array([4, -1, 0, 4]))),
    "x[..., idx]": lambda lib, i: (Ellipsis, i(np.array([2, 2, -3]))),
    "x[idx, :, :]": lambda lib, i: (i(np.array([1])), slice(None), slice(None)),
    "x[list]": lambda lib, i: ([0, 3, 3],),
    "x[idx, idx]": lambda lib, i: (i(np.array([0, 3, 3])), i(np.array([1, 4, 4]))),
    "x[1:3, idx]": lambda lib, i: (slice(1, 3), i(np.array([[0], [2]]))),
}


@pytest.mark.parametrize("case", INDICES)
def test_integer_tensor_indexing_matches_torch(case):
    """Recorded (the leaf requires grad): one gather; concrete: numpy's indexing."""
    ours_index, theirs_index = INDICES[case](gn, gn.tensor), INDICES[case](torch, torch.tensor)
    x, y = _pair(VALUES)
    _same_with_gradient(x[ours_index], y[theirs_index], x, y, "IndexBackward0")
    np.testing.assert_array_equal(gn.tensor(VALUES)[ours_index].numpy(), torch.tensor(VALUES)[theirs_index].numpy())


def _raises_as_torch(ours, theirs, words: int | None = None):
    """Both raise the same exception type, and graphnn's message starts with torch's (its first
    ``words`` words)."""
    with pytest.raises(Exception) as expected:
        theirs()
    with pytest.raises(type(expected.value)) as got:
        ours()
    start = " ".join(str(expected.value).split("\n")[0].split(" ")[:words])
    assert str(got.value).startswith(start), (str(got.value), str(expected.value))


@pytest.mark.parametrize("grad", [False, True])
def test_index_errors_are_torchs(grad):
    """Out-of-range and badly typed indices, eagerly and recorded: torch's exception and words."""
    x, y = gn.tensor(VALUES, requires_grad=grad), torch.tensor(VALUES, requires_grad=grad)
    table, weight = gn.tensor(VALUES[0], requires_grad=grad), torch.tensor(VALUES[0], requires_grad=grad)
    cases = [
        (lambda lib, t: t.gather(1, lib.tensor([[[5]]]))),
        (lambda lib, t: t.gather(0, lib.tensor([[[-1]]]))),
        (lambda lib, t: t.gather(0, lib.tensor([[[1.0]]]))),
        (lambda lib, t: t.gather(0, lib.tensor([1]))),
        (lambda lib, t: t.gather(0, lib.tensor(np.zeros((2, 6, 1), np.int64)))),
        (lambda lib, t: t.index_select(2, lib.tensor([3]))),
        (lambda lib, t: t.index_select(0, lib.tensor([-1]))),
        (lambda lib, t: t.index_select(0, lib.tensor([[1]]))),
        (lambda lib, t: t.index_select(0, lib.tensor([1.0]))),
        (lambda lib, t: t[lib.tensor([4])]),
        (lambda lib, t: lib.take_along_dim(t, lib.tensor([[[1]]], dtype=lib.int32), 0)),
    ]
    for case in cases:
        _raises_as_torch(lambda: case(gn, x), lambda: case(torch, y))
    # torch names dimension 0 whatever the dimension indexed; graphnn names it (as numpy does)
    _raises_as_torch(lambda: x[:, gn.tensor([1, -6])], lambda: y[:, torch.tensor([1, -6])], words=6)
    with pytest.raises(IndexError, match="index -6 is out of bounds for dimension 1 with size 5"):
        x[:, gn.tensor([1, -6])]
    for index in ([5], [-6], [[0, 7]]):
        _raises_as_torch(lambda: gn.nn.functional.embedding(gn.tensor(index), table),
                         lambda: torch.nn.functional.embedding(torch.tensor(index), weight))


# -- training: the PyTorch loop and compiled steps ---------------------------------------------------
class Bag:
    """Embedding (with a padding row) -> mean over the sequence -> Linear, in either library."""

    @staticmethod
    def build(m):
        class Net(m.Module):
            def __init__(self):
                super().__init__()
                self.embed = m.Embedding(13, 6, padding_idx=0)
                self.fc = m.Linear(6, 3)

            def forward(self, tokens):
                return self.fc(self.embed(tokens).mean(1))

        return Net()


class Picker:
    """Parameters read in forward through ``x[idx]``, index_select and gather, then Linear."""

    @staticmethod
    def build(m):
        class Net(m.Module):
            def __init__(self):
                super().__init__()
                lib = torch if m is torch.nn else gn
                self.table = m.Parameter(lib.linspace(-1, 1, 13 * 4).reshape(13, 4))
                self.scale = m.Parameter(lib.linspace(0.5, 1.5, 13 * 4).reshape(13, 4))
                self.fc = m.Linear(4, 3)

            def forward(self, tokens):
                rows = self.table.index_select(0, tokens.flatten()).reshape(tokens.shape[0], 4, 4)
                picked = self.table[tokens] * rows + self.scale.gather(0, tokens).unsqueeze(2)
                return self.fc(picked.sum(1))

        return Net()


def _models(kind):
    torch.manual_seed(0)
    theirs = kind.build(torch.nn)
    ours = kind.build(nn)
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    return ours, theirs


def _batches(steps: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    for step in range(steps):
        size = (5, 1, 7)[step % 3]  # batch 1 among them
        tokens = rng.integers(0, 13, (size, 4))
        tokens[0, :2] = 0  # the padding row, repeated
        yield tokens, rng.integers(0, 3, size)


def _same_parameters(ours, theirs, rtol=1e-4, atol=1e-6):
    for (name, a), (_, b) in zip(ours.state_dict().items(), theirs.state_dict().items()):
        np.testing.assert_allclose(np.asarray(a), b.detach().numpy(), rtol=rtol, atol=atol, err_msg=name)


@pytest.mark.parametrize("kind,optimizer,kwargs", [(Bag, "SGD", {"lr": 0.5, "momentum": 0.9}),
                                                   (Bag, "AdamW", {"lr": 0.05}),
                                                   (Picker, "SGD", {"lr": 0.1})],
                         ids=["Bag-SGD", "Bag-AdamW", "Picker-SGD"])
def test_a_compiled_step_trains_as_torch(backend, kind, optimizer, kwargs):
    ours, theirs = _models(kind)
    train = gn.compile(ours, nn.CrossEntropyLoss(), getattr(gn.optim, optimizer)(ours.parameters(), **kwargs),
                       backend=backend)
    opt = getattr(torch.optim, optimizer)(theirs.parameters(), **kwargs)
    for tokens, labels in _batches(20):
        loss = train.step(tokens, labels)
        opt.zero_grad()
        expected = torch.nn.functional.cross_entropy(theirs(torch.tensor(tokens)), torch.tensor(labels))
        expected.backward()
        opt.step()
        np.testing.assert_allclose(loss, expected.item(), rtol=1e-5, atol=1e-6)
    _same_parameters(ours, theirs)
    if kind is Bag:
        assert not ours.embed.weight.detach().numpy()[0].any()  # the padding row never moved


@pytest.mark.parametrize("kind", [Bag, Picker], ids=["Bag", "Picker"])
def test_the_pytorch_loop_trains_as_torch(backend, kind, monkeypatch):
    monkeypatch.setenv("GRAPHNN_BACKEND", backend)
    ours, theirs = _models(kind)
    results = []
    for lib, model in ((gn, ours), (torch, theirs)):
        criterion, optimizer = lib.nn.CrossEntropyLoss(), lib.optim.SGD(model.parameters(), lr=0.3, momentum=0.9)
        losses = []
        for tokens, labels in _batches(6):
            out = model(lib.tensor(tokens))
            loss = criterion(out, lib.tensor(labels))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        results.append(losses)
    np.testing.assert_allclose(results[0], results[1], rtol=1e-5, atol=1e-6)
    _same_parameters(ours, theirs)


def test_a_compiled_step_with_a_bad_index_changes_nothing():
    ours, _ = _models(Bag)
    train = gn.compile(ours, nn.CrossEntropyLoss(), gn.optim.SGD(ours.parameters(), lr=0.5, momentum=0.9),
                       backend="c")
    tokens, labels = next(_batches(1))
    for _ in range(2):  # the second call takes the repeated-call path
        train.step(tokens, labels)
    before = {k: np.array(v, copy=True) for k, v in ours.state_dict().items()}
    momentum = train.optimizer.state_dict()
    for bad in (13, -1):
        wrong = tokens.copy()
        wrong[1, 2] = bad
        with pytest.raises(IndexError, match=rf"index out of range in self: index {bad} is not in \[0, 13\) "
                                             r"\(at \(1, 2\) of tokens\)"):
            train.step(wrong, labels)
    for k, v in ours.state_dict().items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)
    assert str(train.optimizer.state_dict()) == str(momentum)
    predict = gn.compile(ours, backend="c")
    with pytest.raises(IndexError, match="index out of range in self"):
        predict(np.array([[0, 1, 2, 99]]))


def test_the_loop_checks_indices_and_labels_of_every_iteration(monkeypatch):
    """A later iteration that takes the module calls over from the one before (without running
    their forwards) still checks its indices and class labels, before anything runs."""
    monkeypatch.setenv("GRAPHNN_BACKEND", "c")
    ours, _ = _models(Bag)
    criterion, optimizer = nn.CrossEntropyLoss(), gn.optim.SGD(ours.parameters(), lr=0.3)
    tokens, labels = next(_batches(1))
    forwards = []
    original = type(ours).forward
    monkeypatch.setattr(type(ours), "forward", lambda self, t: forwards.append(1) or original(self, t))

    def iteration(tokens, labels):
        loss = criterion(ours(gn.tensor(tokens)), gn.tensor(labels))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    wrong_tokens, wrong_labels = tokens.copy(), np.full_like(labels, 3)
    wrong_tokens[0, 3] = 13
    for wrong, error in (((wrong_tokens, labels), "index out of range in self"),
                         ((tokens, wrong_labels), "Target 3 is out of bounds")):
        for _ in range(3):
            iteration(tokens, labels)
        before = {k: np.array(v, copy=True) for k, v in ours.state_dict().items()}
        forwards.clear()
        with pytest.raises(IndexError, match=error):
            iteration(*wrong)
        assert not forwards  # the calls were taken over, not traced
        for k, v in ours.state_dict().items():
            np.testing.assert_array_equal(v, before[k], err_msg=k)


# -- generated code ---------------------------------------------------------------------------------
def _embedding_step(vocab: int):
    model = nn.Sequential(nn.Embedding(vocab, 4), nn.Flatten(), nn.Linear(12, 2))
    train = gn.compile(model, nn.CrossEntropyLoss(), gn.optim.SGD(model.parameters(), lr=0.1), backend="c")
    tokens = np.random.default_rng(0).integers(0, vocab, (5, 3))
    train.step(tokens, np.array([0, 1, 1, 0, 1]))
    return train, tokens


def test_generated_c_looks_rows_up_without_a_one_hot():
    """No buffer of the step is as large as a one-hot of the vocabulary (B*T x V), no matmul reads
    the table, and the C reads the table at the loaded index."""
    vocab = 1000
    train, tokens = _embedding_step(vocab)
    (executable,) = train.executables.values()
    _, plan, _ = executable.plan("step")
    for buffer in plan.buffers.values():
        assert sympy.Poly(sympy.sympify(buffer.size), B).coeff_monomial(B) < vocab, buffer
    assert not any(k.kind == "matmul" and vocab in (k.k, *k.domain) for k in plan.kernels)
    kinds = [k.kind for k in plan.kernels if any(l.indirect for l in k.loads) or any(s.indirect for s in k.stores)]
    assert sorted(kinds) == ["pointwise", "scatter"], str(plan)
    source = executable.source
    assert re.search(r"const int64_t (l\d+)_at = (l\d+) < 0 \? \2 \+ 1000 : \2;", source)
    assert "memset(" in source and "+= (float)(" in source


def test_triton_kernels_of_an_embedding_compile_for_the_gpu(tmp_path):
    """The scatter, its zeroing kernel and the indirect loads compile ahead of time for sm_90
    (no GPU needed; see tests/codegen/test_triton_aot.py)."""
    ours, _ = _models(Bag)
    train = gn.compile(ours, nn.CrossEntropyLoss(), gn.optim.AdamW(ours.parameters(), lr=0.1), backend="triton")
    tokens, labels = next(_batches(1))
    train.step(tokens, labels)
    paths = [str(m.path) for e in train.executables.values() for m in e.modules.values()]
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_CACHE_DIR"] = str(tmp_path / "triton-cache")
    script = ("import json, sys\nfrom runtime.gpu import compile_ahead\n"
              "print(json.dumps([compile_ahead(p, 90) for p in sys.argv[1:]]))")
    result = subprocess.run([sys.executable, "-c", script, *paths], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    kernels = [k for module in json.loads(result.stdout.splitlines()[-1]) for k in module]
    assert {"scatter", "pointwise", "reduce", "matmul"} <= {k["kind"] for k in kernels}
    assert any(k["name"].endswith("_zero") for k in kernels)
    assert all(k["cubin"] > 0 for k in kernels)


# -- graphnn dump -----------------------------------------------------------------------------------
def test_dump_shows_gathers_and_scatters(tmp_path, monkeypatch):
    from graphnn import cli

    monkeypatch.chdir(ROOT)
    out = tmp_path / "dump.txt"
    assert cli.main(["dump", "tests/data/embedding_net.py:Bag", "--stage", "all", "-o", str(out)]) == 0
    text = out.read_text()
    assert "gather{axis=1} %0 %2" in text and "scatter_add{axis=1, shape=(1,50,8)}" in text
    assert "check %tokens in [0,50) (embedding along axis 0)" in text
    assert "kernel k11_embed: scatter[B,5,8]" in text
    assert "store flat.step_grads[0 + i.(0,0,1) + l1*8 if l1 in [-50,50)] += t" in text
    out = tmp_path / "graph.txt"
    assert cli.main(["dump", "tests/data/embedding_net.py:Bag", "--input-dtype", "float32", "-o", str(out)]) == 1
