"""Parts, joins and masks of tensors (indexing, narrow, select, split, chunk, unbind, cat, stack,
tril, triu, masked_fill, where) inside traced forwards (``gn.compile``) and in the literal PyTorch
loop (``loss.backward()``), against torch from the same weights: values, the gradients of the
parameters and inputs, the errors, and that a part is a view in the generated code."""
from __future__ import annotations

import math
from functools import partial
import re

import numpy as np
import pytest
import torch

import graphnn as gn
from graphnn import nn
from graphnn.ir import B
from tests.graphnn.torch_oracle import In, check
from tests.graphnn.torch_oracle import pair as same_weights

RNG = np.random.default_rng(0)
X = RNG.standard_normal((3, 5, 4)).astype(np.float32)
"""Inputs (batch, time, features): a Linear makes them (batch, 5, 6) activations."""


def scores(L, h):
    """(B, 5, 5) attention-like scores of the activations."""
    return h @ h.transpose(1, 2) * 0.25


FORMS = {
    "int": lambda L, h: h[:, -1, :],
    "int-list": lambda L, h: h[:, [-1], :],
    "range": lambda L, h: h[:, 1:4],
    "step": lambda L, h: h[..., ::2],
    "clamped": lambda L, h: h[:, -100:100, 2:],
    "none": lambda L, h: h[:, None, 2],
    "progression": lambda L, h: h[:, :, [0, 2, 4]],
    "int-tensor": lambda L, h: h[:, L.tensor([1, 3])],
    "ellipsis": lambda L, h: h[..., 0] + h[..., -1, :].sum(1, keepdim=True),
    "mixed": lambda L, h: h[:, 1::2, None, -2:],
    "batch-rows": lambda L, h: h[1:].sum(0) - h[:-1].sum(0) + h,
    "batch-last": lambda L, h: h[-1] * h,
    "narrow": lambda L, h: h.narrow(2, 1, 3) + L.narrow(h, 2, -3, 3),
    "select": lambda L, h: h.select(1, -2)[:, :5] * L.select(h, 2, 0),
    "split": lambda L, h: L.cat([p * (k + 1) for k, p in enumerate(h.split(2, 1))], 1),
    "split-sizes": lambda L, h: (lambda a, b: a[..., :2] * b)(*L.split(h, [4, 2], 2)),
    "chunk": lambda L, h: L.cat(h.chunk(3, -1)[::-1], -1) * L.chunk(h, 2, 1)[1][:, 1:],
    "unbind": lambda L, h: L.stack(L.unbind(h, 1)[::2], 1),
    "cat": lambda L, h: L.cat([h, h.tanh(), h[:, :2]], 1),
    "cat-batch": lambda L, h: L.cat((h, h * h), 0).reshape(2, -1, 5, 6).sum(0),
    "stack": lambda L, h: L.stack([h[:, 0], h[:, 3], h[:, -1]], -1),
    "tril-triu": lambda L, h: scores(L, h).tril() + L.triu(scores(L, h), 1) * 3 + scores(L, h).tril(-2),
    "masked-fill": lambda L, h: h.masked_fill(h > 0.1, -1.5) + L.masked_fill(h, h < -0.2, 2),
    "masked-fill-int": lambda L, h: h + (h * 4).long().masked_fill(h > 0, 2.7).tril().float(),
    "casts": lambda L, h: h + (h * 4).long().float() + (h.relu() * 3).bool().float(),
    "causal-softmax": lambda L, h: scores(L, h).masked_fill(scores(L, h).triu(1) != 0, float("-inf")).softmax(-1),
    "where": lambda L, h: L.where(h > 0, h, h * 0.1) + L.where(h > 0.5, 0.0, h) + L.where(h < 0, 1, h),
    "size-view": lambda L, h: (lambda b, t, c: h.view(b, t, 2, c // 2).transpose(1, 2).reshape(b, 2, t * 3).tanh())(
        *h.size()),
}


def module(L, form):
    class Sliced(L.nn.Module):
        def __init__(self):
            super().__init__()
            self.l = L.nn.Linear(4, 6)

        def forward(self, x):
            return FORMS[form](L, self.l(x))

    return Sliced()


pair = partial(same_weights, modules=False)  # builders take the library, not its nn


def torch_grads(model, x, target):
    model.zero_grad()
    loss = torch.nn.functional.mse_loss(model(torch.from_numpy(x)), torch.from_numpy(target))
    loss.backward()
    return loss.item(), {name: p.grad.numpy().copy() for name, p in model.named_parameters()}


def assert_grads(model, expected, rtol=2e-4, atol=1e-5):
    for name, p in model.named_parameters():
        np.testing.assert_allclose(np.asarray(p.grad), expected[name], rtol=rtol, atol=atol, err_msg=name)


@pytest.mark.parametrize("backend", ["numpy", "c"])
@pytest.mark.parametrize("form", FORMS)
def test_traced_forms_give_torchs_values_and_gradients(form, backend):
    """Each form inside a compiled Module: outputs at batch 3 and batch 1 (one program for both),
    and the parameter gradients of an MSE loss on them."""
    ours, theirs = pair(lambda L: module(L, form))
    inference = gn.compile(ours, backend=backend)
    train = gn.compile(ours, nn.MSELoss(), backend=backend)
    for batch in (3, 1):
        x = X[:batch]
        expected = theirs(torch.from_numpy(x)).detach().numpy()
        np.testing.assert_allclose(inference(x), expected, rtol=1e-5, atol=1e-6)
        target = np.random.default_rng(batch).standard_normal(expected.shape).astype(np.float32)
        loss, grads = torch_grads(theirs, x, target)
        ours.zero_grad()
        assert train.grad(x, target) == pytest.approx(loss, rel=1e-5, abs=1e-7)
        assert_grads(ours, grads)


def every_form(L):
    """One Module computing every form, flattened and joined: one compile per backend."""
    class Every(L.nn.Module):
        def __init__(self):
            super().__init__()
            self.l = L.nn.Linear(4, 6)

        def forward(self, x):
            h = self.l(x)
            parts = [FORMS[f](L, h) for f in FORMS]
            return L.cat([p.reshape(h.shape[0], -1) for p in parts], 1)

    return Every()


def test_every_form_on_every_backend(backend):
    """All the forms in one model through the backend (Triton under its interpreter without a GPU,
    the plan interpreter too): outputs and gradients."""
    ours, theirs = pair(every_form)
    expected = theirs(torch.from_numpy(X)).detach().numpy()
    np.testing.assert_allclose(gn.compile(ours, backend=backend)(X), expected, rtol=1e-5, atol=1e-5)
    target = np.random.default_rng(1).standard_normal(expected.shape).astype(np.float32)
    loss, grads = torch_grads(theirs, X, target)
    assert gn.compile(ours, nn.MSELoss(), backend=backend).grad(X, target) == pytest.approx(loss, rel=1e-5)
    assert_grads(ours, grads)


# -- the literal loop: recorded tensors ------------------------------------------------------------
@pytest.mark.parametrize("form", FORMS)
def test_recorded_forms_give_torchs_values_names_and_input_gradients(form):
    """Each form on a tensor that requires grad: the result (values, dtype, shape and repr with its
    grad_fn) as torch's, then ``(y * w).sum().backward()`` gives the input torch's gradient."""
    h = In(RNG.standard_normal((3, 5, 6)).astype(np.float32), grad=True)
    check(lambda x: FORMS[form](gn, x), lambda x: FORMS[form](torch, x), h)
    grads = []
    for L in (gn, torch):
        x = h.build(L)
        y = FORMS[form](L, x)
        w = np.random.default_rng(2).standard_normal(tuple(y.shape)).astype(np.float32)
        (y * L.from_numpy(w)).sum().backward()
        grads.append(np.asarray(x.grad.numpy()))
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-5, atol=1e-6)


def test_recorded_gathers_of_other_index_tensors_still_work():
    """Lists that are not evenly spaced and masks index a recorded tensor through a selection
    matrix, with gradients."""
    for index in ([2, 0, 2], "mask", ([0, 1], [1, 2])):
        grads = []
        for L in (gn, torch):
            x = L.from_numpy(np.arange(12, dtype=np.float32).reshape(3, 4)).requires_grad_()
            y = x[x > 4] if index == "mask" else x[index]
            (y * y).sum().backward()
            grads.append((y.detach().numpy(), x.grad.numpy()))
        for ours, theirs in zip(*grads):
            np.testing.assert_allclose(ours, theirs)


# -- a causal self-attention block with a registered mask buffer -------------------------------------
def attention(L, n_embd=6, n_head=2, block=7):
    class CausalSelfAttention(L.nn.Module):
        def __init__(self):
            super().__init__()
            self.c_attn = L.nn.Linear(n_embd, 3 * n_embd)
            self.c_proj = L.nn.Linear(n_embd, n_embd)
            self.register_buffer("bias", L.tril(L.ones(block, block)).view(1, 1, block, block))

        def forward(self, x):
            B, T, C = x.size()
            q, k, v = self.c_attn(x).split(n_embd, dim=2)
            k = k.view(B, T, n_head, C // n_head).transpose(1, 2)
            q = q.view(B, T, n_head, C // n_head).transpose(1, 2)
            v = v.view(B, T, n_head, C // n_head).transpose(1, 2)
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
            att = att.masked_fill(self.bias[:, :, :T, :T] == 0, float("-inf"))
            y = L.nn.functional.softmax(att, dim=-1) @ v
            y = y.transpose(1, 2).contiguous().view(B, T, C)
            return self.c_proj(y)[:, -1, :]

    return CausalSelfAttention()


ATTENTION_X = RNG.standard_normal((5, 5, 6)).astype(np.float32)
ATTENTION_Y = RNG.standard_normal((5, 6)).astype(np.float32)


def literal_training(lib, model, steps):
    """The five steps of the books with ``lib`` (torch or graphnn), batches of 5 and 1 by turns."""
    optimizer = lib.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    losses = []
    for k in range(steps):
        batch = slice(0, 5 if k % 2 == 0 else 1)
        optimizer.zero_grad()
        loss = lib.nn.functional.mse_loss(model(lib.tensor(ATTENTION_X[batch])), lib.tensor(ATTENTION_Y[batch]))
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def test_causal_attention_with_a_sliced_mask_buffer_trains_as_torch(backend):
    """A GPT block's attention: split into q, k, v, heads by view, the registered causal mask
    sliced to the sequence length and compared, masked_fill with -inf, the last position; batch
    sizes 5 and 1 by turns through one compiled step."""
    ours, theirs = pair(attention)
    expected = theirs(torch.from_numpy(ATTENTION_X)).detach().numpy()
    np.testing.assert_allclose(gn.compile(ours, backend=backend)(ATTENTION_X), expected, rtol=1e-5, atol=1e-6)
    reference = literal_training(torch, theirs, 4)
    step = gn.compile(ours, nn.MSELoss(), gn.optim.SGD(ours.parameters(), lr=0.1, momentum=0.9), backend=backend)
    losses = [step.step(ATTENTION_X[:5 if k % 2 == 0 else 1], ATTENTION_Y[:5 if k % 2 == 0 else 1]) for k in range(4)]
    np.testing.assert_allclose(losses, reference, rtol=1e-5, atol=1e-6)
    for (name, a), (_, b) in zip(ours.state_dict().items(), theirs.state_dict().items()):
        np.testing.assert_allclose(np.asarray(a), b.numpy(), rtol=1e-4, atol=1e-6, err_msg=name)


def test_causal_attention_in_the_literal_loop():
    ours, theirs = pair(attention)
    np.testing.assert_allclose(literal_training(gn, ours, 4), literal_training(torch, theirs, 4), rtol=1e-5, atol=1e-6)
    for (name, a), (_, b) in zip(ours.state_dict().items(), theirs.state_dict().items()):
        np.testing.assert_allclose(np.asarray(a), b.numpy(), rtol=1e-4, atol=1e-6, err_msg=name)


def bool_masked(L):
    class BoolMasked(L.nn.Module):
        def __init__(self):
            super().__init__()
            self.l = L.nn.Linear(4, 6)
            self.register_buffer("mask", L.ones(7, 7).tril().bool())

        def forward(self, x):
            s = scores(L, self.l(x))
            T = s.size(-1)
            return s.masked_fill(~self.mask[:T, :T], float("-inf")).softmax(-1)

    return BoolMasked()


def test_a_bool_mask_buffer_is_read_as_bools_in_the_forward():
    """A mask registered from bools (stored as int64) reads as bools inside the traced forward and
    in the literal loop, so ``masked_fill`` takes it as PyTorch does."""
    ours, theirs = pair(bool_masked)
    expected = theirs(torch.from_numpy(X)).detach().numpy()
    np.testing.assert_allclose(gn.compile(ours, backend="c")(X), expected, rtol=1e-5, atol=1e-6)
    target = np.random.default_rng(4).standard_normal(expected.shape).astype(np.float32)
    loss, grads = torch_grads(theirs, X, target)
    recorded = gn.nn.functional.mse_loss(ours(gn.tensor(X)), gn.tensor(target))
    recorded.backward()
    assert recorded.item() == pytest.approx(loss, rel=1e-5)
    assert_grads(ours, grads)


def test_sizes_read_in_forward_keep_the_batch_symbolic():
    """``B, T, C = x.size()`` and ``view(B, T, ...)``: the traced graph's shapes hold the batch
    symbol, the mask buffer is a leaf read through a slice, and one program runs every batch size."""
    ours, _ = pair(attention)
    graph = gn.trace(ours, ATTENTION_X)
    assert graph.outputs["output"].shape == (B, 6)
    assert [n.op for n in graph.nodes if n.inputs and n.inputs[0].op == "buffer"] == ["slice"]


def sliced_parameters(L):
    class SlicedParameters(L.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = L.nn.Parameter(L.arange(28.0).reshape(4, 7) * 0.01 + 0.1)
            self.b = L.nn.Parameter(L.zeros(5))

        def forward(self, x):
            return (x @ self.w[:, 1:6:2]).tanh() @ self.w[:3, ::3] + self.b[-3:] + self.w[-1, :3]

    return SlicedParameters()


def test_parameters_sliced_in_forward_train_as_torch(backend):
    """Parts of one parameter read in three places: its gradient is the sum of three pads, written
    into the flat gradient buffer, and the fused step updates it as torch's SGD does."""
    ours, theirs = pair(sliced_parameters)
    x, y = RNG.standard_normal((5, 4)).astype(np.float32), RNG.standard_normal((5, 3)).astype(np.float32)
    optimizer = torch.optim.SGD(theirs.parameters(), lr=0.1, momentum=0.9)
    reference = []
    for _ in range(3):
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(theirs(torch.from_numpy(x)), torch.from_numpy(y))
        loss.backward()
        optimizer.step()
        reference.append(loss.item())
    step = gn.compile(ours, nn.MSELoss(), gn.optim.SGD(ours.parameters(), lr=0.1, momentum=0.9), backend=backend)
    np.testing.assert_allclose([step.step(x, y) for _ in range(3)], reference, rtol=1e-5)
    for (name, a), (_, b) in zip(ours.state_dict().items(), theirs.state_dict().items()):
        np.testing.assert_allclose(np.asarray(a), b.numpy(), rtol=1e-5, atol=1e-6, err_msg=name)


# -- errors ----------------------------------------------------------------------------------------
class Forward(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


@pytest.mark.parametrize("fn, words", [
    (lambda x: x[x > 0], "a boolean mask computed in the forward.*masked_fill or torch.where.*x.detach()"),
    (lambda x: x[:, x[0, 0].long()], "an integer tensor computed in the forward.*gather or index_select"),
    (lambda x: x[[0, 1], [1, 2]], "one at a time after full slices"),
])
def test_an_index_a_traced_forward_cannot_take_is_a_clear_error(fn, words):
    with pytest.raises(gn.TraceError, match=words):
        gn.compile(Forward(fn), backend="numpy")(X[:, 0])


def test_an_index_list_that_is_not_a_strided_part_is_a_gather():
    out = gn.compile(Forward(lambda x: x[:, gn.tensor([2, 0])]), backend="numpy")(X[:, 0])
    np.testing.assert_array_equal(out, X[:, 0][:, [2, 0]])


@pytest.mark.parametrize("fn, error, words", [
    (lambda x: x[::2], gn.ShapeError, "by a fraction of the batch size"),
    (lambda x: x[-2:1], gn.ShapeError, "against the batch size"),
    (lambda x: x.chunk(2, 0), gn.ShapeError, "chunk of dimension 0, whose size B depends on the batch size"),
    (lambda x: x.split(1), gn.ShapeError, "split of dimension 0"),
    (lambda x: x.unbind(0), gn.ShapeError, "unbind of dimension 0"),
    (lambda x: x.narrow(0, -2, 3), RuntimeError, r"start \(B-2\) \+ length \(3\) exceeds dimension size \(B\)"),
    (lambda x: x[:, 7], IndexError, "index 7 is out of bounds for dimension 1 with size 4"),
])
def test_bounds_that_depend_on_the_batch_or_do_not_fit_are_errors(fn, error, words):
    with pytest.raises(error, match=words):
        gn.compile(Forward(fn), backend="numpy")(X[:, 0])


def test_bounds_on_the_batch_axis_are_checked_before_a_run():
    """``x[:3]`` needs 3 rows: a program run with 2 says so (PyTorch would return 2 rows)."""
    program = gn.compile(Forward(lambda x: x[:3] * 2), backend="c")
    np.testing.assert_allclose(program(X[:, 0]), X[:3, 0] * 2)
    with pytest.raises(gn.InputError, match=r"indexing dimension 0 of size B with \[:3\] needs B >= 3"):
        program(X[:2, 0])


IDX = In(np.arange(24, dtype=np.float32).reshape(2, 3, 4) - 11.5)
IDXG = In(np.arange(24, dtype=np.float32).reshape(2, 3, 4) - 11.5, grad=True)
MASK = In(np.array([[True, False, True, False]] * 3))


@pytest.mark.parametrize("x", [IDX, IDXG], ids=["concrete", "recorded"])
@pytest.mark.parametrize("fn", [
    lambda L, x: x.narrow(1, 4, 1), lambda L, x: x.narrow(1, -4, 1), lambda L, x: x.narrow(1, 2, 2),
    lambda L, x: x.narrow(1, 0, -1), lambda L, x: x.narrow(2, L.tensor(1), 2), lambda L, x: x.narrow(1, 3, 0),
    lambda L, x: x.select(0, 5), lambda L, x: x.select(-1, -4), lambda L, x: L.tensor(1.0).select(0, 0),
    lambda L, x: x.chunk(0), lambda L, x: x.chunk(5, 2), lambda L, x: x.chunk(2, 1),
    lambda L, x: x.split([1, 1], 1), lambda L, x: x.split([-1, 4], 1), lambda L, x: x.split(0, 1),
    lambda L, x: x.split(-1, 1), lambda L, x: x.split(5, 2), lambda L, x: L.ones(0).split(2),
    lambda L, x: x[0].tril(5), lambda L, x: x.triu(-1), lambda L, x: x[0, 0].tril(),
    lambda L, x: x.masked_fill(x > 0, L.ones(2)), lambda L, x: x.masked_fill((x > 0).float(), 1.0),
    lambda L, x: x[0].masked_fill(L.tensor([True, False, True, False]), 2.5),
    lambda L, x: x[0, 0].masked_fill(L.ones(3, 4) > 0, 1.0),
    lambda L, x: x.masked_fill(x > 0, L.tensor(-2.0)),
    lambda L, x: L.cat([x, x[:, :1]], 1), lambda L, x: L.stack([x[0], x[1]], 2),
    lambda L, x: x[None, ..., None, -1, 1:3], lambda L, x: x[1, :, [0, 2]], lambda L, x: x[:, 3:1],
])
def test_parts_and_masks_match_torch(fn, x):
    """Values, dtypes, shapes, reprs (grad_fn included) or the type of torch's error, on a concrete
    tensor and on one that requires grad (recorded)."""
    check(lambda t: fn(gn, t), lambda t: fn(torch, t), x)


@pytest.mark.parametrize("fn", [
    lambda L, x: x.long().masked_fill(x > 0, 2.7), lambda L, x: x.long().masked_fill(x > 0, float("-inf")),
    lambda L, x: (x > 0).masked_fill(x < -5, True), lambda L, x: x.long().tril(), lambda L, x: (x > 0).triu(1),
    lambda L, x: L.where(x > 0, x.long(), 0.5), lambda L, x: L.cat([x > 0, x < -3], 2),
    lambda L, x: L.cat([x.long(), x], 0),
])
def test_masks_and_joins_of_other_dtypes_match_torch(fn):
    check(lambda t: fn(gn, t), lambda t: fn(torch, t), IDX)


@pytest.mark.parametrize("name", ["narrow-start", "narrow-length", "select", "chunk", "split-sizes", "split-zero",
                                  "tril", "mask-dtype", "value-rank"])
def test_error_messages_are_torchs(name):
    fn = {"narrow-start": lambda L, x: x.narrow(1, 4, 1), "narrow-length": lambda L, x: x.narrow(1, 2, 2),
          "select": lambda L, x: x.select(0, 5), "chunk": lambda L, x: x.chunk(0),
          "split-sizes": lambda L, x: x.split([1, 1], 1), "split-zero": lambda L, x: x.split(0, 1),
          "tril": lambda L, x: x[0, 0].tril(), "mask-dtype": lambda L, x: x.masked_fill(x.long(), 1.0),
          "value-rank": lambda L, x: x.masked_fill(x > 0, L.ones(2))}[name]
    errors = []
    for L in (gn, torch):
        with pytest.raises(Exception) as caught:
            fn(L, IDX.build(L))
        errors.append(caught.value)
    assert type(errors[0]) is type(errors[1]) or isinstance(errors[0], type(errors[1]))
    assert str(errors[0]) == str(errors[1])


# -- a part is a view in the generated code --------------------------------------------------------
def test_a_slice_feeding_pointwise_ops_is_read_in_place_by_one_kernel():
    """The generated C of ``tanh(h[:, 1:4, ::2]) * 2`` is one loop reading the Linear's output at an
    offset and strides: no kernel copies the part first."""
    from codegen import c
    from graphnn.passes.fuse import build_plan
    from graphnn.passes.memory import plan_memory
    from graphnn.passes.simplify import simplify
    from tests.codegen.test_printed_source import check_c

    class Part(nn.Module):
        def forward(self, x):
            return (x[:, 1:4, ::2].tanh() * 2).exp()

    plan = build_plan(simplify(gn.trace(Part(), X)))
    assert [k.kind for k in plan.kernels] == ["pointwise"], str(plan)
    (load,) = plan.kernels[0].loads
    assert load.source == "input.x" and load.offset == 4 and load.strides == (20, 4, 2)
    source = c.generate({"forward": (plan, plan_memory(plan))})
    check_c(source)
    kernels = re.findall(r"^static void (\w+_k\d+\w*)\(", source, re.M)
    assert kernels == ["forward_k0_pointwise"], kernels
    # (rows of 3 positions 2 apart and rows of 2 run as 6 positions 2 apart: 4 = 2 x 2)
    assert "= p_input_x[4 + i0*20 + i1*2];" in source, source


@pytest.mark.parametrize("op", ["__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__"])
@pytest.mark.parametrize("bound", [float("-inf"), float("inf")])
def test_comparisons_with_an_infinity_in_every_state(op, bound):
    """``scores == float('-inf')`` (a fully masked row): an infinite number is not folded into the
    comparison's expression, where sympy's finite symbols would make it a constant."""
    values = np.array([[1.0, -np.inf, np.inf, np.nan]], np.float32)
    expected = getattr(torch.tensor(values), op)(bound).numpy()
    recorded = getattr(gn.tensor(values, requires_grad=True) * 1, op)(bound)
    np.testing.assert_array_equal(recorded.numpy(), expected)
    for backend in ("numpy", "c"):
        traced = gn.compile(Forward(lambda x: getattr(x, op)(bound).float()), backend=backend)(values)
        np.testing.assert_array_equal(traced, expected.astype(np.float32))


@pytest.mark.parametrize("index", [
    (1, slice(None), [2, 0]), (slice(None), 1, [3, 0, 1]), (1, [2, 0]), (0, np.array([[1, 0], [2, 2]]), slice(None)),
    (1, np.arange(12).reshape(3, 4) > 5),
], ids=["int-slice-list", "slice-int-list", "int-list", "int-array-slice", "int-mask"])
def test_an_int_with_an_index_list_on_a_recorded_tensor_indexes_as_torch(index):
    """PyTorch applies ints first, so an index list's axis stays in place (numpy would move it to
    the front): the recorded gather finds its positions in torch's order, values and gradient."""
    a = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    results = []
    for lib in (gn, torch):
        x = lib.tensor(a, requires_grad=True)
        y = x[tuple(lib.tensor(i) if isinstance(i, np.ndarray) else i for i in index)]
        weights = np.linspace(-1, 1, y.numel(), dtype=np.float32).reshape(tuple(y.shape))
        (y * lib.tensor(weights)).sum().backward()
        results.append((y.detach().numpy(), x.grad.numpy()))
    for ours, theirs in zip(*results):
        np.testing.assert_array_equal(ours, theirs)
