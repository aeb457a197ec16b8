"""What a Transformer model file uses around attention, against torch: LayerNorm and RMSNorm,
softmax over any axis with masked (-inf) entries, the classification losses over (N, C, d1, ...),
GELU, Dropout, weight tying, nn.init, buffers and tensors made inside forward.

Each is compared on values, input gradients and parameter gradients: eagerly on tensors, in
compiled programs on every backend (numpy reference, C, Triton in its interpreter, the plan
interpreter), and in the literal training loop (recorded, then compiled for the backend).
"""
from __future__ import annotations

import math
import sys
from functools import partial

import numpy as np
import pytest
import torch

import graphnn as gn
from graphnn import nn
from tests.graphnn.torch_oracle import In, check, run
from tests.graphnn.torch_oracle import pair as same_weights

RNG = np.random.default_rng(0)
NINF = float("-inf")


pair = partial(same_weights, modules=False)  # builders take the library, not its nn


def torch_grad(theirs, loss_fn, x, y):
    """torch's loss and parameter gradients (by name) for one batch."""
    theirs.zero_grad()
    loss = loss_fn(theirs(torch.from_numpy(x)), torch.from_numpy(y))
    loss.backward()
    return loss.item(), {n: p.grad.numpy().copy() for n, p in theirs.named_parameters()}


def assert_grads(ours, expected: dict, rtol=1e-4, atol=1e-5) -> None:
    names = [n for n, _ in ours.named_parameters()]
    assert names == list(expected)
    for name, p in ours.named_parameters():
        np.testing.assert_allclose(np.asarray(p.grad), expected[name], rtol=rtol, atol=atol, err_msg=name)


def table(name, fn, *inputs):
    return pytest.param(fn, inputs, id=name)


# -- 1. LayerNorm and RMSNorm --------------------------------------------------------------------
def _affine(norm, lib):
    """Weights away from their initial 1 and 0, so a swapped or missing term shows."""
    for p in norm.parameters():
        lib.nn.init.normal_(p, 0.5, 0.4)
    return norm


NORMS = {
    "LayerNorm": lambda L: L.nn.LayerNorm(7),
    "LayerNorm-2d": lambda L: L.nn.LayerNorm((3, 7)),
    "LayerNorm-eps-no-bias": lambda L: L.nn.LayerNorm(7, eps=1e-3, bias=False),
    "LayerNorm-no-affine": lambda L: L.nn.LayerNorm([3, 7], elementwise_affine=False),
    "RMSNorm": lambda L: L.nn.RMSNorm(7),
    "RMSNorm-2d-eps": lambda L: L.nn.RMSNorm((3, 7), eps=1e-6),
    "RMSNorm-no-affine": lambda L: L.nn.RMSNorm(7, elementwise_affine=False),
}
X_NORM = (RNG.standard_normal((5, 3, 7)) * 2 + 3).astype(np.float32)  # mean 3: the centring matters


def norm_net(name):
    return lambda L: L.nn.Sequential(L.nn.Linear(7, 7), _affine(NORMS[name](L), L), L.nn.Linear(7, 4))


@pytest.mark.parametrize("name", list(NORMS))
def test_norms_in_compiled_programs_match_torch(name, backend):
    """Outputs, loss and every parameter's gradient (the first Linear's is the norm's input
    gradient times the data), for a batch of 5 and a batch of 1 on one program."""
    ours, theirs = pair(norm_net(name))
    assert repr(ours) == repr(theirs)
    y = RNG.standard_normal((5, 3, 4)).astype(np.float32)
    predict = gn.compile(ours, backend=backend)
    train = gn.compile(ours, nn.MSELoss(), backend=backend)
    for batch in (slice(0, 5), slice(2, 3)):
        x = X_NORM[batch]
        expected = theirs(torch.from_numpy(x)).detach().numpy()
        np.testing.assert_allclose(predict(x), expected, rtol=1e-5, atol=1e-5)
        loss, grads = torch_grad(theirs, torch.nn.MSELoss(), x, y[batch])
        ours.zero_grad()
        np.testing.assert_allclose(train.grad(x, y[batch]), loss, rtol=1e-5)
        assert_grads(ours, grads)


@pytest.mark.parametrize("name", list(NORMS))
def test_norm_input_gradients_in_the_loop(name, backend, monkeypatch):
    """x.requires_grad, the module, a weighted sum, backward: x.grad and the parameters'
    gradients as torch's (the second time compiled for the backend)."""
    monkeypatch.setenv("GRAPHNN_BACKEND", backend)
    ours, theirs = pair(lambda L: _affine(NORMS[name](L), L))
    w = RNG.standard_normal(X_NORM.shape).astype(np.float32)
    for _ in range(2):  # the first iteration runs in the reference, the second compiled
        results = []
        for lib, model in ((gn, ours), (torch, theirs)):
            model.zero_grad()
            x = lib.tensor(X_NORM, requires_grad=True)
            out = model(x)
            (out * lib.tensor(w)).sum().backward()
            grads = [np.asarray(p.grad) if lib is gn else p.grad.numpy() for p in model.parameters()]
            results.append((np.asarray(out.detach()), np.asarray(x.grad), grads))
        (out, x_grad, grads), (ref_out, ref_x_grad, ref_grads) = results
        np.testing.assert_allclose(out, ref_out, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(x_grad, ref_x_grad, rtol=1e-4, atol=1e-5)
        for got, want in zip(grads, ref_grads):
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


X37 = (RNG.standard_normal((2, 3, 7)) + 1).astype(np.float32)
W37 = RNG.standard_normal((3, 7)).astype(np.float32)
W7 = RNG.standard_normal(7).astype(np.float32)
NORM_CALLS = [
    table("layer_norm", lambda L, x: L.nn.functional.layer_norm(x, (7,)), In(X37)),
    table("layer_norm-2d-weight-bias", lambda L, x, w, b: L.nn.functional.layer_norm(x, [3, 7], w, b, 1e-3),
          In(X37), In(W37), In(W37[::-1].copy())),
    table("layer_norm-grad", lambda L, x, w: L.nn.functional.layer_norm(x, L.Size([7]), w), In(X37, grad=True), In(W7)),
    table("layer_norm-float64", lambda L, x: L.nn.functional.layer_norm(x, (3, 7)), In(X37, "float64")),
    table("layer_norm-batch-1", lambda L, x: L.nn.functional.layer_norm(x, (7,)), In(X37[:1, :1])),
    table("rms_norm", lambda L, x: L.nn.functional.rms_norm(x, (7,)), In(X37)),
    table("rms_norm-2d-weight-eps", lambda L, x, w: L.nn.functional.rms_norm(x, (3, 7), w, 1e-2), In(X37), In(W37)),
    table("rms_norm-grad", lambda L, x, w: L.nn.functional.rms_norm(x, (7,), w), In(X37, grad=True), In(W7)),
    table("rms_norm-float64-eps", lambda L, x: L.nn.functional.rms_norm(x * 1e-6, (7,)), In(X37, "float64")),
    table("rms_norm-whole-tensor", lambda L, x: L.nn.functional.rms_norm(x, (2, 3, 7)), In(X37)),
    table("LayerNorm-module", lambda L, x: L.nn.LayerNorm(7)(x), In(X37)),
    table("RMSNorm-module", lambda L, x: L.nn.RMSNorm([3, 7])(x), In(X37)),
]
NORM_ERRORS = [
    table("layer_norm-input-shape-error", lambda L, x: L.nn.functional.layer_norm(x, (4,)), In(X37)),
    table("layer_norm-too-many-axes-error", lambda L, x: L.nn.functional.layer_norm(x, (1, 2, 3, 7)), In(X37)),
    table("layer_norm-int-shape-error", lambda L, x: L.nn.functional.layer_norm(x, 7), In(X37)),
    table("layer_norm-weight-shape-error", lambda L, x, w: L.nn.functional.layer_norm(x, (7,), w), In(X37), In(W37)),
    table("layer_norm-bias-shape-error", lambda L, x, b: L.nn.functional.layer_norm(x, (7,), None, b), In(X37),
          In(W37)),
    table("layer_norm-empty-shape-error", lambda L, x: L.nn.functional.layer_norm(x, ()), In(X37)),
    table("layer_norm-long-error", lambda L, x: L.nn.functional.layer_norm(x, (3,)), In([[1, 2, 3]])),
    table("LayerNorm-long-error", lambda L, x: L.nn.LayerNorm(3)(x), In([[1, 2, 3]])),
    table("layer_norm-mixed-dtype-error", lambda L, x, w: L.nn.functional.layer_norm(x, (7,), w),
          In(X37, "float64"), In(W7)),
    table("rms_norm-input-shape-error", lambda L, x: L.nn.functional.rms_norm(x, (3, 4)), In(X37)),
    table("rms_norm-weight-shape-error", lambda L, x, w: L.nn.functional.rms_norm(x, (7,), w), In(X37), In(W37)),
    table("rms_norm-empty-shape-error", lambda L, x: L.nn.functional.rms_norm(x, []), In(X37)),
    table("rms_norm-long-error", lambda L, x: L.nn.functional.rms_norm(x, (3,)), In([[1, 2, 3]])),
    table("RMSNorm-input-shape-error", lambda L, x: L.nn.RMSNorm(5)(x), In(X37)),
]


def assert_close_results(fn, inputs, rtol=1e-5, atol=1e-6) -> None:
    """``fn`` in both libraries: the same dtype, shape, requires_grad and grad_fn, values to
    float32 rounding (an element near 0 that torch computes in another order may differ in the
    last printed digit, so reprs are not compared)."""
    (ours, g_err), (theirs, t_err) = (run(partial(fn, lib), lib, inputs) for lib in (gn, torch))
    assert g_err is None and t_err is None, (g_err, t_err)
    assert repr(ours.dtype) == repr(theirs.dtype) and tuple(ours.shape) == tuple(theirs.shape)
    assert ours.requires_grad == theirs.requires_grad
    assert (ours.grad_fn and ours.grad_fn.name()) == (theirs.grad_fn and type(theirs.grad_fn).__name__)
    np.testing.assert_allclose(np.asarray(ours.detach()), theirs.detach().numpy(), rtol=rtol, atol=atol,
                               equal_nan=True)


@pytest.mark.parametrize("fn, inputs", NORM_CALLS)
def test_functional_norms_on_tensors_match_torch(fn, inputs):
    assert_close_results(fn, inputs)


@pytest.mark.parametrize("fn, inputs", NORM_ERRORS)
def test_norm_errors_are_torchs(fn, inputs):
    check(partial(fn, gn), partial(fn, torch), *inputs)


@pytest.mark.parametrize("fn, inputs", NORM_ERRORS)
def test_norm_errors_say_what_torch_says(fn, inputs):
    (_, t_err), (_, g_err) = (run(partial(fn, lib), lib, inputs) for lib in (torch, gn))
    assert type(t_err).__name__ in ("RuntimeError", "TypeError", "NotImplementedError")
    assert str(g_err).endswith(str(t_err))  # (a module's error starts with its path)


def test_norm_modules_start_as_torchs_and_print_the_same():
    for build in NORMS.values():
        ours, theirs = build(gn), build(torch)
        assert repr(ours) == repr(theirs)
        assert list(ours.state_dict()) == list(theirs.state_dict())
        for (name, p), (_, q) in zip(ours.named_parameters(), theirs.named_parameters()):
            np.testing.assert_array_equal(np.asarray(p.data), q.detach().numpy(), err_msg=name)
            assert p.shape == tuple(q.shape)
    assert nn.LayerNorm(7).normalized_shape == torch.nn.LayerNorm(7).normalized_shape == (7,)
    assert nn.RMSNorm([3, 7]).eps is None
    assert repr(nn.LayerNorm((2, 3), 1e-6, False)) == repr(torch.nn.LayerNorm((2, 3), 1e-6, False))


def test_a_traced_layer_norm_fails_on_the_wrong_trailing_shape():
    model = nn.Sequential(nn.Linear(4, 6), nn.LayerNorm(5))
    with pytest.raises(RuntimeError, match=r"1 \(LayerNorm\): Given normalized_shape=\[5\], expected input with "
                                           r"shape \[\*, 5\], but got input of size\[B, 6\]"):
        gn.compile(model, backend="numpy")(np.zeros((2, 4), np.float32))


# -- 2. softmax over any axis, with masks -----------------------------------------------------------
def _masked_scores():
    """(2, 3, 4, 5) scores with a causal-style -inf pattern on the last two axes and one row
    that is -inf throughout (its softmax is NaN in torch)."""
    x = RNG.standard_normal((2, 3, 4, 5)).astype(np.float32) * 3
    x[..., np.triu(np.ones((4, 5), bool), 1)] = NINF
    x[1, 2, 0, :] = NINF
    return x


SCORES = In(_masked_scores())
SCORES_GRAD = In(np.where(np.isinf(_masked_scores()), 0.5, _masked_scores()), grad=True)
SOFTMAX_CALLS = [
    table(f"{fn}-dim{dim}", lambda L, x, fn=fn, dim=dim: getattr(L.nn.functional, fn)(x, dim=dim), SCORES)
    for fn in ("softmax", "log_softmax") for dim in (-1, 0, 1, 2, 3)
] + [
    table("softmax-3d-last", lambda L, x: L.nn.functional.softmax(x[0], -1), SCORES),
    table("softmax-3d-dim1", lambda L, x: L.nn.functional.softmax(x[:, 1], 1), SCORES),
    table("method-softmax", lambda L, x: x.softmax(-1), SCORES),
    table("method-log_softmax-dtype", lambda L, x: x.log_softmax(1, dtype=L.float64), SCORES),
    table("function-softmax", lambda L, x: L.softmax(x, 3), SCORES),
    table("function-log_softmax", lambda L, x: L.log_softmax(x, dim=-2), SCORES),
    table("softmax-dtype-keyword", lambda L, x: L.nn.functional.softmax(x, -1, dtype=L.float64), SCORES),
    table("Softmax-module", lambda L, x: L.nn.Softmax(dim=-1)(x), SCORES),
    table("LogSoftmax-module", lambda L, x: L.nn.LogSoftmax(2)(x), SCORES),
    table("softmax-grad", lambda L, x: L.nn.functional.softmax(x, -1), SCORES_GRAD),
    table("log_softmax-grad", lambda L, x: x.log_softmax(2), SCORES_GRAD),
    table("softmax-of-ints-to-float", lambda L, x: L.nn.functional.softmax(x, 1, dtype=L.float32),
          In([[1, 2, 3], [4, 5, 7]])),
]
SOFTMAX_ERRORS = [
    table("softmax-of-ints-error", lambda L, x: L.nn.functional.softmax(x, 1), In([[1, 2, 3], [4, 5, 7]])),
    table("log_softmax-of-ints-dim0-error", lambda L, x: x.log_softmax(0), In([[1, 2, 3], [4, 5, 7]])),
    table("method-softmax-none-error", lambda L, x: x.softmax(None), SCORES),
    table("softmax-dim-error", lambda L, x: L.nn.functional.softmax(x, 4), SCORES),
]


@pytest.mark.parametrize("fn, inputs", SOFTMAX_CALLS)
def test_softmax_over_any_dim_matches_torch(fn, inputs):
    assert_close_results(fn, inputs)


@pytest.mark.parametrize("fn, inputs", SOFTMAX_ERRORS)
def test_softmax_errors_are_torchs(fn, inputs):
    check(partial(fn, gn), partial(fn, torch), *inputs)


def attention_scores(dim: int = -1, diagonal: int = 0, log: bool = False, heads: int = 2, width: int = 3):
    """Causal attention probabilities (B, heads, T, T) of a (B, T, 4) input: per-head queries and
    keys, scaled products, a mask made inside forward with tril (``diagonal`` -1 masks the whole
    first row), softmax (or log_softmax) over ``dim``."""
    def build(L):
        F = L.nn.functional

        class Scores(L.nn.Module):
            def __init__(self):
                super().__init__()
                self.q = L.nn.Linear(4, heads * width)
                self.k = L.nn.Linear(4, heads * width, bias=False)  # a key bias cannot change softmax

            def forward(self, x):
                B, T, _ = x.size()
                q = self.q(x).view(B, T, heads, width).transpose(1, 2)
                k = self.k(x).view(B, T, heads, width).transpose(1, 2)
                att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(width))
                if log:
                    return F.log_softmax(att, dim=dim)
                mask = L.tril(L.ones(T, T), diagonal=diagonal)
                return F.softmax(att.masked_fill(mask == 0, NINF), dim=dim)

        return Scores()
    return build


X_ATT = RNG.standard_normal((3, 5, 4)).astype(np.float32)
ATTENTION = {
    "softmax-last-masked": dict(),
    "softmax-dim2-masked": dict(dim=2),
    "log_softmax-heads": dict(dim=1, log=True),
}


@pytest.mark.parametrize("case", list(ATTENTION))
def test_attention_softmax_in_compiled_programs(case, backend):
    ours, theirs = pair(attention_scores(**ATTENTION[case]))
    y = RNG.standard_normal((3, 2, 5, 5)).astype(np.float32)
    expected = theirs(torch.from_numpy(X_ATT)).detach().numpy()
    np.testing.assert_allclose(gn.compile(ours, backend=backend)(X_ATT), expected, rtol=1e-5, atol=1e-6)
    for batch in (slice(0, 3), slice(1, 2)):
        loss, grads = torch_grad(theirs, torch.nn.MSELoss(), X_ATT[batch], y[batch])
        ours.zero_grad()
        np.testing.assert_allclose(gn.compile(ours, nn.MSELoss(), backend=backend).grad(X_ATT[batch], y[batch]),
                                   loss, rtol=1e-5)
        assert_grads(ours, grads)


def test_a_fully_masked_row_is_nan_in_compiled_programs(backend):
    ours, theirs = pair(attention_scores(diagonal=-1))
    expected = theirs(torch.from_numpy(X_ATT)).detach().numpy()
    got = gn.compile(ours, backend=backend)(X_ATT)
    assert np.isnan(expected[:, :, 0]).all() and not np.isnan(expected[:, :, 1:]).any()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6, equal_nan=True)


def test_masked_softmax_in_the_loop(backend, monkeypatch):
    monkeypatch.setenv("GRAPHNN_BACKEND", backend)
    ours, theirs = pair(attention_scores())
    w = RNG.standard_normal((3, 2, 5, 5)).astype(np.float32)
    for _ in range(2):
        results = []
        for lib, model in ((gn, ours), (torch, theirs)):
            model.zero_grad()
            x = lib.tensor(X_ATT, requires_grad=True)
            out = model(x)
            (out * lib.tensor(w)).sum().backward()
            results.append((np.asarray(out.detach()), np.asarray(x.grad),
                            [np.asarray(p.grad) if lib is gn else p.grad.numpy() for p in model.parameters()]))
        (out, x_grad, grads), (ref_out, ref_x_grad, ref_grads) = results
        np.testing.assert_allclose(out, ref_out, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(x_grad, ref_x_grad, rtol=1e-4, atol=1e-5)
        for got, want in zip(grads, ref_grads):
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


# -- 3. cross_entropy and nll_loss ---------------------------------------------------------------
CLASSES = 4
SHAPES = {"(N,C)": ((5, CLASSES), (5,)), "(N,C,d)": ((3, CLASSES, 5), (3, 5)),
          "(N,C,d1,d2)": ((2, CLASSES, 3, 2), (2, 3, 2)), "(C)": ((CLASSES,), ())}
CLASS_WEIGHT = np.array([0.5, 2.0, 1.0, 0.25], np.float32)


def _scores_and_labels(shape_name: str, ignore: int = -100, seed: int = 1):
    x_shape, t_shape = SHAPES[shape_name]
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(x_shape) * 2).astype(np.float32)
    t = rng.integers(0, CLASSES, t_shape)
    if t.ndim:
        t.reshape(-1)[1] = ignore
    return x, np.asarray(t)


def loss_both(call, x, t, weight=None):
    """``call(lib, input, target, weight)`` in both libraries with input requiring grad: (value,
    input gradient, grad_fn name) for each, the gradient of the loss summed."""
    out = []
    for lib in (gn, torch):
        xx = lib.tensor(x, requires_grad=True)
        loss = call(lib, xx, lib.tensor(t), None if weight is None else lib.tensor(weight))
        name = loss.grad_fn.name() if lib is gn else type(loss.grad_fn).__name__
        value = np.asarray(loss.detach())
        loss.sum().backward()
        out.append((value, np.asarray(xx.grad), name))
    return out


def assert_losses(ours, theirs, rtol=1e-5, atol=1e-6):
    np.testing.assert_allclose(ours[0], theirs[0], rtol=rtol, atol=atol, equal_nan=True)
    assert ours[0].shape == theirs[0].shape
    np.testing.assert_allclose(ours[1], theirs[1], rtol=1e-4, atol=1e-6)
    assert ours[2] == theirs[2]


@pytest.mark.parametrize("smoothing", [0.0, 0.25])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("shape", list(SHAPES))
def test_cross_entropy_with_class_indices(shape, reduction, weighted, smoothing):
    x, t = _scores_and_labels(shape)
    ours, theirs = loss_both(lambda L, a, b, w: L.nn.functional.cross_entropy(
        a, b, w, reduction=reduction, label_smoothing=smoothing), x, t, CLASS_WEIGHT if weighted else None)
    assert_losses(ours, theirs)


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("shape", list(SHAPES))
def test_nll_loss_with_class_indices(shape, reduction, weighted):
    x, t = _scores_and_labels(shape, ignore=2)
    ours, theirs = loss_both(lambda L, a, b, w: L.nn.functional.nll_loss(
        L.log_softmax(a, 0 if a.ndim == 1 else 1), b, w, ignore_index=2, reduction=reduction),
        x, t, CLASS_WEIGHT if weighted else None)
    assert_losses(ours, theirs)


@pytest.mark.parametrize("smoothing", [0.0, 0.3])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("shape", ["(N,C)", "(N,C,d1,d2)", "(C)"])
def test_cross_entropy_with_class_probabilities(shape, reduction, weighted, smoothing):
    x, _ = _scores_and_labels(shape)
    p = np.random.default_rng(2).random(x.shape).astype(np.float32)
    p /= p.sum(0 if p.ndim == 1 else 1, keepdims=True)
    ours, theirs = loss_both(lambda L, a, b, w: L.nn.functional.cross_entropy(
        a, b, w, reduction=reduction, label_smoothing=smoothing), x, p, CLASS_WEIGHT if weighted else None)
    assert_losses(ours, theirs)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_an_all_ignored_mean_is_nan_with_zero_gradients(weighted, smoothing):
    x, t = _scores_and_labels("(N,C,d)")
    t[...] = -1
    ours, theirs = loss_both(lambda L, a, b, w: L.nn.functional.cross_entropy(
        a, b, w, ignore_index=-1, label_smoothing=smoothing), x, t, CLASS_WEIGHT if weighted else None)
    assert np.isnan(ours[0]) and np.isnan(theirs[0])
    assert_losses(ours, theirs)
    assert not ours[1].any()


def test_masked_logits_and_the_gpt_call():
    """``F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1), ignore_index=-1)``,
    with -inf logits in classes that are not the target."""
    logits = RNG.standard_normal((2, 3, 5)).astype(np.float32)
    logits[0, 0, 4] = logits[1, 2, 0] = NINF
    targets = np.array([[1, 2, -1], [4, -1, 3]])
    ours, theirs = loss_both(lambda L, a, b, w: L.nn.functional.cross_entropy(
        a.view(-1, a.size(-1)), b.view(-1), ignore_index=-1), logits, targets)
    assert_losses(ours, theirs)


LOSS_MODULES = [
    ("CrossEntropyLoss", {}),
    ("CrossEntropyLoss", {"weight": CLASS_WEIGHT, "label_smoothing": 0.2}),
    ("CrossEntropyLoss", {"ignore_index": 3, "reduction": "sum"}),
    ("CrossEntropyLoss", {"size_average": False}),
    ("CrossEntropyLoss", {"reduce": False}),
    ("NLLLoss", {"weight": CLASS_WEIGHT, "reduction": "none"}),
    ("NLLLoss", {"reduce": True, "size_average": True}),
]


@pytest.mark.filterwarnings("ignore:size_average and reduce args will be deprecated")
@pytest.mark.parametrize("name,kwargs", LOSS_MODULES, ids=[f"{n}{k}" for n, k in LOSS_MODULES])
def test_loss_modules_take_torchs_arguments(name, kwargs):
    x, t = _scores_and_labels("(N,C,d)")
    t[t == -100] = 3
    def build(lib):
        return getattr(lib.nn, name)(**{k: lib.tensor(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()})

    ours, theirs = build(gn), build(torch)
    assert (repr(ours), ours.reduction) == (repr(theirs), theirs.reduction)
    assert_losses(*loss_both(lambda L, a, b, w: build(L)(a, b), x, t))


def test_the_deprecated_reduction_flags_warn_as_torchs():
    for lib in (gn, torch):
        with pytest.warns(UserWarning, match=r"please use reduction='sum' instead"):
            assert lib.nn.NLLLoss(size_average=False).reduction == "sum"
        with pytest.warns(UserWarning, match=r"please use reduction='none' instead"):
            lib.nn.functional.cross_entropy(lib.zeros(2, 3), lib.zeros(2, dtype=lib.int64), reduce=False)


CE_ERRORS = [
    table("target-size-error", lambda L, x, t: L.nn.functional.cross_entropy(x, t), In(np.zeros((2, 3, 4))),
          In(np.zeros((2, 5), np.int64))),
    table("target-missing-axis-error", lambda L, x, t: L.nn.functional.cross_entropy(x, t), In(np.zeros((2, 3, 4))),
          In(np.zeros(2, np.int64))),
    table("batch-size-error", lambda L, x, t: L.nn.functional.cross_entropy(x, t), In(np.zeros((2, 3))),
          In(np.zeros(3, np.int64))),
    table("multi-target-error", lambda L, x, t: L.nn.functional.nll_loss(x, t), In(np.zeros((2, 3))),
          In(np.zeros((2, 3), np.int64))),
    table("weight-size-error", lambda L, x, t, w: L.nn.functional.cross_entropy(x, t, w), In(np.zeros((2, 3))),
          In(np.zeros(2, np.int64)), In(np.ones(4))),
    table("probability-weight-size-error", lambda L, x, t, w: L.nn.functional.cross_entropy(x, t, w),
          In(np.zeros((2, 3))), In(np.full((2, 3), 1 / 3)), In(np.ones(4))),
    table("label-smoothing-error", lambda L, x, t: L.nn.functional.cross_entropy(x, t, label_smoothing=1.5),
          In(np.zeros((2, 3))), In(np.zeros(2, np.int64))),
    table("reduction-error", lambda L, x, t: L.nn.functional.cross_entropy(x, t, reduction="avg"),
          In(np.zeros((2, 3))), In(np.zeros(2, np.int64))),
    table("float-target-error", lambda L, x, t: L.nn.functional.nll_loss(x, t), In(np.zeros((2, 3))),
          In(np.zeros(2, np.float32))),
    table("int32-target-error", lambda L, x, t: L.nn.functional.cross_entropy(x, t), In(np.zeros((2, 3))),
          In(np.zeros(2, np.int32))),
    table("probability-ignore-index-error", lambda L, x, t: L.nn.functional.cross_entropy(x, t, ignore_index=0),
          In(np.zeros((2, 3))), In(np.full((2, 3), 1 / 3))),
    table("integer-probabilities-error", lambda L, x, t: L.nn.functional.cross_entropy(x, t),
          In(np.zeros((2, 3))), In(np.zeros((2, 3), np.int64))),
    table("label-out-of-range-error", lambda L, x, t: L.nn.functional.cross_entropy(x, t),
          In(np.zeros((2, 3, 2))), In([[0, 5], [1, 1]])),
    table("negative-label-error", lambda L, x, t: L.nn.functional.nll_loss(x, t, ignore_index=-1),
          In(np.zeros((2, 3))), In([-1, -2])),
]


@pytest.mark.parametrize("fn, inputs", CE_ERRORS)
def test_loss_errors_are_torchs(fn, inputs):
    check(partial(fn, gn), partial(fn, torch), *inputs)
    (_, t_err), (_, g_err) = (run(partial(fn, lib), lib, inputs) for lib in (torch, gn))
    assert str(g_err).startswith(str(t_err))  # (graphnn may add the shapes that came)


def head(L):
    """Class scores (B, C, d) from (B, d, 6): the layout a sequence model's loss reads."""
    class Head(L.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = L.nn.Linear(6, CLASSES)

        def forward(self, x):
            return self.fc(x).transpose(1, 2)

    return Head()


def gpt_style_loss(lib):
    F = lib.nn.functional
    return lambda out, t: F.cross_entropy(out.transpose(1, 2).reshape(-1, out.size(1)), t.reshape(-1), ignore_index=-1)


COMPILED_LOSSES = {
    "mean-ignore": lambda L: L.nn.CrossEntropyLoss(),
    "weight-smoothing": lambda L: L.nn.CrossEntropyLoss(weight=L.tensor(CLASS_WEIGHT), label_smoothing=0.1),
    "sum-ignore-2": lambda L: L.nn.CrossEntropyLoss(reduction="sum", ignore_index=2),
    "none-summed": lambda L: (lambda out, t: L.nn.functional.cross_entropy(out, t, reduction="none").sum() * 0.1),
    "nll-weight": lambda L: (lambda out, t: L.nn.functional.nll_loss(L.log_softmax(out, 1), t, L.tensor(CLASS_WEIGHT))),
    "gpt-view": gpt_style_loss,
    "probabilities": lambda L: L.nn.CrossEntropyLoss(label_smoothing=0.2),
}


@pytest.mark.parametrize("case", list(COMPILED_LOSSES))
def test_classification_losses_in_compiled_programs(case, backend):
    x = RNG.standard_normal((4, 5, 6)).astype(np.float32)
    if case == "probabilities":
        t = np.random.default_rng(3).random((4, CLASSES, 5)).astype(np.float32)
    else:
        t = np.random.default_rng(3).integers(0, CLASSES, (4, 5))
        t[0, 1] = t[2, 4] = {"gpt-view": -1, "sum-ignore-2": 2}.get(case, -100)
        t[3, 0] = 2
    ours, theirs = pair(head)
    for batch in (slice(0, 4), slice(3, 4)):
        loss, grads = torch_grad(theirs, COMPILED_LOSSES[case](torch), x[batch], t[batch])
        ours.zero_grad()
        got = gn.compile(ours, COMPILED_LOSSES[case](gn), backend=backend).grad(x[batch], t[batch])
        np.testing.assert_allclose(got, loss, rtol=1e-5)
        assert_grads(ours, grads)


def test_a_compiled_loss_checks_labels_it_reads_through_a_view():
    ours, _ = pair(head)
    train = gn.compile(ours, gpt_style_loss(gn), gn.optim.SGD(ours.parameters(), lr=0.1), backend="numpy")
    x = RNG.standard_normal((2, 5, 6)).astype(np.float32)
    t = np.array([[0, 1, 2, 3, -1], [0, 1, 4, 3, 2]])
    before = ours.fc.weight.data.clone()
    with pytest.raises(gn.InputError, match=r"class labels must be in \[0, 4\) \(or ignore_index -1\), got 4"):
        train.step(x, t)
    np.testing.assert_array_equal(ours.fc.weight.data, before)


def test_an_all_ignored_batch_in_a_compiled_step(backend):
    ours, _ = pair(head)
    x = RNG.standard_normal((2, 5, 6)).astype(np.float32)
    loss = gn.compile(ours, gpt_style_loss(gn), backend=backend).grad(x, np.full((2, 5), -1))
    assert math.isnan(loss)
    assert all(not np.asarray(p.grad).any() for p in ours.parameters())


# -- 4. GELU, Dropout, weight tying, init, buffers, tensors made inside forward ---------------------
def test_gelu_checks_approximate_when_called_as_torch():
    check(lambda: repr(gn.nn.GELU("exact")), lambda: repr(torch.nn.GELU("exact")))
    for fn in (lambda L, x: L.nn.GELU("exact")(x), lambda L, x: L.nn.functional.gelu(x, approximate="x"),
               lambda L, x: L.nn.functional.gelu(x, approximate="tanh"), lambda L, x: L.nn.GELU()(x)):
        check(partial(fn, gn), partial(fn, torch), In(X37, grad=True))


def test_dropout_in_compiled_programs_trains_and_evaluates(backend):
    gn.manual_seed(0)
    model = nn.Sequential(nn.Linear(9, 33), nn.Dropout(0.4))
    x = RNG.standard_normal((64, 9)).astype(np.float32)
    plain = gn.compile(model[0], backend=backend)(x)
    out = gn.compile(model, backend=backend)(x)
    kept = out != 0
    np.testing.assert_allclose(out[kept], plain[kept] / 0.6, rtol=1e-5, atol=1e-6)
    assert 0.3 < 1 - kept.mean() < 0.5
    model.eval()
    np.testing.assert_allclose(gn.compile(model, backend=backend)(x), plain, rtol=1e-6, atol=1e-6)


def gpt(V: int = 7, C: int = 8, heads: int = 2, tie: bool = True):
    """A small GPT as a model file writes it: a token table tied to the output head, pre-norm
    blocks (LayerNorm, masked multi-head attention, RMSNorm, GELU MLP), Dropout, a final
    LayerNorm without bias, ``apply(_init_weights)`` with nn.init. Tokens come in one-hot (the
    table is a matrix product), so nothing here needs an embedding lookup."""
    def build(L):
        m, F = L.nn, L.nn.functional

        class Table(m.Module):
            def __init__(self):
                super().__init__()
                self.weight = m.Parameter(L.randn(V, C))

            def forward(self, x):
                return x @ self.weight

        class Block(m.Module):
            def __init__(self):
                super().__init__()
                self.ln_1 = m.LayerNorm(C)
                self.q, self.k, self.v = m.Linear(C, C), m.Linear(C, C, bias=False), m.Linear(C, C)
                self.proj = m.Linear(C, C)
                self.ln_2 = m.RMSNorm(C)
                self.fc = m.Linear(C, 3 * C)
                self.gelu = m.GELU(approximate="tanh")
                self.out = m.Linear(3 * C, C)
                self.drop = m.Dropout(0.0)

            def forward(self, x):
                B, T, _ = x.size()
                h = self.ln_1(x)
                q, k, v = (f(h).view(B, T, heads, C // heads).transpose(1, 2) for f in (self.q, self.k, self.v))
                att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(C // heads))
                att = att.masked_fill(L.tril(L.ones(T, T)) == 0, NINF)
                y = (F.softmax(att, dim=-1) @ v).transpose(1, 2).contiguous().view(B, T, C)
                x = x + self.drop(self.proj(y))
                return x + self.out(self.gelu(self.fc(self.ln_2(x))))

        class GPT(m.Module):
            def __init__(self):
                super().__init__()
                self.wte = Table()
                self.h = m.ModuleList([Block(), Block()])
                self.ln_f = m.LayerNorm(C, bias=False)
                self.lm_head = m.Linear(C, V, bias=False)
                if tie:
                    self.lm_head.weight = self.wte.weight
                self.apply(self._init_weights)
                for name, p in self.named_parameters():
                    if name.endswith("proj.weight"):
                        L.nn.init.trunc_normal_(p, std=0.02 / math.sqrt(4), a=-0.05, b=0.05)

            def _init_weights(self, module):
                if isinstance(module, m.Linear):
                    L.nn.init.normal_(module.weight, mean=0.0, std=0.2)
                    if module.bias is not None:
                        L.nn.init.zeros_(module.bias)

            def forward(self, x):
                x = self.wte(x)
                for block in self.h:
                    x = block(x)
                return self.lm_head(self.ln_f(x))

        return GPT()
    return build


TOKENS = np.random.default_rng(4).integers(0, 7, (3, 5))
ONE_HOT = np.eye(7, dtype=np.float32)[TOKENS]
NEXT = np.random.default_rng(5).integers(0, 7, (3, 5))
NEXT[0, 1] = NEXT[2, 3] = -1


def test_tied_weights_are_one_parameter_with_two_names():
    ours, theirs = pair(gpt())
    assert ours.lm_head.weight is ours.wte.weight
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    assert "lm_head.weight" not in dict(ours.named_parameters())
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert np.shares_memory(np.asarray(ours.state_dict()["lm_head.weight"]), np.asarray(ours.state_dict()["wte.weight"]))
    assert len(list(ours.parameters())) == len(list(theirs.parameters()))
    opt = gn.optim.AdamW(ours.parameters(), lr=0.1)
    assert len(opt.param_groups[0]["params"]) == len(list(theirs.parameters()))
    state = {k: v.detach().numpy() for k, v in theirs.state_dict().items()}
    state["lm_head.weight"] = state["wte.weight"] = state["wte.weight"] * 2
    assert repr(ours.load_state_dict(state)) == "<All keys matched successfully>"
    np.testing.assert_array_equal(ours.lm_head.weight.data, state["wte.weight"])


def test_gradients_of_both_uses_of_a_tied_weight_add_up(backend):
    ours, theirs = pair(gpt())
    loss_fn = gpt_style_loss
    loss, grads = torch_grad(theirs, lambda out, t: loss_fn(torch)(out.transpose(1, 2), t), ONE_HOT, NEXT)
    untied_head = theirs.lm_head.weight.grad  # the same tensor: both uses summed
    assert untied_head is theirs.wte.weight.grad
    got = gn.compile(ours, lambda out, t: loss_fn(gn)(out.transpose(1, 2), t), backend=backend).grad(ONE_HOT, NEXT)
    np.testing.assert_allclose(got, loss, rtol=1e-5)
    assert_grads(ours, grads)


def gpt_loss(lib):
    F = lib.nn.functional
    return lambda logits, targets: F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1), ignore_index=-1)


def test_a_small_gpt_trains_20_adamw_steps_as_torch(backend):
    ours, theirs = pair(gpt())
    opt = torch.optim.AdamW(theirs.parameters(), lr=1e-2, weight_decay=0.1)
    train = gn.compile(ours, gpt_loss(gn), gn.optim.AdamW(ours.parameters(), lr=1e-2, weight_decay=0.1), backend=backend)
    losses, ref_losses = [], []
    for _ in range(20):
        opt.zero_grad()
        loss = gpt_loss(torch)(theirs(torch.from_numpy(ONE_HOT)), torch.from_numpy(NEXT))
        loss.backward()
        opt.step()
        ref_losses.append(loss.item())
        losses.append(train.step(ONE_HOT, NEXT))
    np.testing.assert_allclose(losses, ref_losses, rtol=2e-5, atol=1e-6)
    assert ref_losses[-1] < 0.8 * ref_losses[0]
    for (name, a), (_, b) in zip(ours.state_dict().items(), theirs.state_dict().items()):
        np.testing.assert_allclose(np.asarray(a), b.numpy(), rtol=1e-4, atol=2e-5, err_msg=name)


@pytest.mark.parametrize("loop_backend", ["numpy", "c"])
def test_a_small_gpt_trains_in_the_literal_loop_as_torch(loop_backend, monkeypatch):
    monkeypatch.setenv("GRAPHNN_BACKEND", loop_backend)
    ours, theirs = pair(gpt())
    results = []
    for lib, model in ((gn, ours), (torch, theirs)):
        optimizer = lib.optim.AdamW(model.parameters(), lr=1e-2)
        losses = []
        for _ in range(5):
            logits = model(lib.tensor(ONE_HOT))
            loss = gpt_loss(lib)(logits, lib.tensor(NEXT))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        results.append(losses)
    np.testing.assert_allclose(results[0], results[1], rtol=2e-5, atol=1e-6)
    for (name, a), (_, b) in zip(ours.state_dict().items(), theirs.state_dict().items()):
        np.testing.assert_allclose(np.asarray(a), b.numpy(), rtol=1e-4, atol=2e-5, err_msg=name)
    for (name, p), (_, q) in zip(ours.named_parameters(), theirs.named_parameters()):
        np.testing.assert_allclose(np.asarray(p.grad), q.grad.numpy(), rtol=1e-4, atol=1e-5, err_msg=name)


INITS = [
    ("uniform_", dict(a=-0.5, b=2.0)), ("normal_", dict(mean=1.0, std=0.5)), ("zeros_", {}), ("ones_", {}),
    ("constant_", dict(val=0.75)), ("xavier_uniform_", dict(gain=2.0)), ("xavier_normal_", {}),
    ("kaiming_uniform_", dict(a=math.sqrt(5))), ("kaiming_normal_", dict(mode="fan_out", nonlinearity="relu")),
    ("trunc_normal_", {}), ("trunc_normal_", dict(mean=0.5, std=0.2, a=0.0, b=1.0)),
    ("trunc_normal_", dict(std=0.02, a=-0.03, b=0.05)),
]


@pytest.mark.parametrize("name,kwargs", INITS, ids=[f"{n}{k}" for n, k in INITS])
def test_init_returns_its_tensor_with_torchs_distribution(name, kwargs):
    """Moments of 120k draws against torch's, the bounds exactly; the tensor changed in place."""
    gn.manual_seed(0)
    torch.manual_seed(0)
    ours = nn.Parameter(np.full((300, 400), 9.0, np.float32))
    storage = ours.array
    theirs = torch.full((300, 400), 9.0)
    assert getattr(nn.init, name)(ours, **kwargs) is ours
    getattr(torch.nn.init, name)(theirs, **kwargs)
    a, b = np.asarray(ours.data, np.float64), theirs.numpy().astype(np.float64)
    assert ours.array is storage
    if "normal" not in name or name == "trunc_normal_":  # bounded: the same range
        np.testing.assert_allclose([a.min(), a.max()], [b.min(), b.max()], atol=0.01 * b.std() + 1e-9)
    if name == "trunc_normal_":
        assert a.min() >= kwargs.get("a", -2.0) and a.max() <= kwargs.get("b", 2.0)
    assert abs(a.mean() - b.mean()) <= 0.01 * (b.std() + abs(b.mean())) + 1e-6
    assert abs(a.std() - b.std()) <= 0.01 * b.std() + 1e-9
    plain = gn.zeros(3, 4)
    assert getattr(nn.init, name)(plain, **kwargs) is plain  # a tensor that is not a Parameter too


def test_init_draws_from_a_generator_when_given_one():
    first, second = gn.Generator().manual_seed(3), gn.Generator().manual_seed(3)
    a = nn.init.trunc_normal_(gn.empty(50), generator=first)
    b = nn.init.trunc_normal_(gn.empty(50), generator=second)
    assert a.equal(b)
    c = nn.init.kaiming_uniform_(gn.empty(4, 5), generator=first)
    d = nn.init.kaiming_uniform_(gn.empty(4, 5), generator=second)
    assert c.equal(d) and not c.equal(nn.init.kaiming_uniform_(gn.empty(4, 5)))


@pytest.mark.parametrize("fn", [
    lambda L: L.nn.init.trunc_normal_(L.empty(3), a=2.0, b=1.0),
    lambda L: L.nn.init.uniform_(L.empty(3), 1.0, 0.0),
    lambda L: L.nn.init.normal_(L.empty(3), std=-1.0),
    lambda L: L.nn.init.xavier_uniform_(L.empty(3)),
    lambda L: L.nn.init.kaiming_normal_(L.empty(3, 2), mode="fan_avg"),
])
def test_init_errors_are_torchs(fn):
    check(partial(fn, gn), partial(fn, torch))


def test_the_erfinv_used_without_scipy_is_accurate(monkeypatch):
    from scipy.special import erfinv

    monkeypatch.setitem(sys.modules, "scipy.special", None)  # import fails: the approximation
    y = np.linspace(-0.99999, 0.99999, 40001)
    np.testing.assert_allclose(nn.init._erfinv(y), erfinv(y), rtol=5e-7, atol=1e-7)


def buffered(L):
    class Scaled(L.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = L.nn.Linear(4, 3)
            self.register_buffer("scale", L.linspace(0.5, 2.0, 3))
            self.register_buffer("shift", L.full((3,), 0.25), persistent=False)

        def forward(self, x):
            return self.fc(x) * self.scale + self.shift

    return Scaled()


def test_buffers_registered_from_tensors_persistent_or_not(backend):
    ours, theirs = pair(buffered)
    assert list(ours.state_dict()) == list(theirs.state_dict()) == ["scale", "fc.weight", "fc.bias"]
    assert [n for n, _ in ours.named_buffers()] == [n for n, _ in theirs.named_buffers()] == ["scale", "shift"]
    x = RNG.standard_normal((3, 4)).astype(np.float32)
    predict = gn.compile(ours, backend=backend)
    np.testing.assert_allclose(predict(x), theirs(torch.from_numpy(x)).detach().numpy(), rtol=1e-6, atol=1e-6)
    ours.shift[...] = -1.0  # read at run time, not folded into the program
    with torch.no_grad():
        theirs.shift.fill_(-1.0)
    np.testing.assert_allclose(predict(x), theirs(torch.from_numpy(x)).detach().numpy(), rtol=1e-6, atol=1e-6)


def made_inside_forward(L):
    class Made(L.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = L.nn.Linear(5, 5)
            self.register_buffer("offsets", L.arange(5.0))

        def forward(self, x):
            T = x.size(1)
            pos = L.arange(T)  # int64
            ramp = L.arange(0.5, 3.0, 0.5)  # floats
            tri = L.tril(L.ones(T, T)) - L.triu(L.full((T, T), 0.5), diagonal=1)
            h = self.fc(x) @ tri * pos.float() + ramp + x @ L.full((T, T), 0.25)
            h = h + L.zeros(T, dtype=L.int64) + L.as_tensor(self.offsets)  # (the buffer itself, read when run)
            return h.maximum(L.full((T,), NINF)) + L.ones(1, T).sum(0)

    return Made()


def test_tensors_made_inside_forward_become_graph_constants(backend):
    ours, theirs = pair(made_inside_forward)
    x = RNG.standard_normal((3, 5)).astype(np.float32)
    predict = gn.compile(ours, backend=backend)
    np.testing.assert_allclose(predict(x), theirs(torch.from_numpy(x)).detach().numpy(), rtol=1e-5, atol=1e-5)
    graph = gn.trace(ours, x)
    assert "buffer %offsets" in str(graph) and "buffer %constant.0" in str(graph)
    ours.offsets[...] = 7.0
    with torch.no_grad():
        theirs.offsets.fill_(7.0)
    np.testing.assert_allclose(predict(x), theirs(torch.from_numpy(x)).detach().numpy(), rtol=1e-5, atol=1e-5)
    train = gn.compile(ours, nn.MSELoss(), backend=backend)
    y = RNG.standard_normal((3, 5)).astype(np.float32)
    loss, grads = torch_grad(theirs, torch.nn.MSELoss(), x, y)
    np.testing.assert_allclose(train.grad(x, y), loss, rtol=1e-5)
    assert_grads(ours, grads)


def test_what_cannot_be_a_graph_constant_is_refused():
    class Noisy(nn.Module):
        def forward(self, x):
            return x + gn.randn(x.size(1))

    with pytest.raises(RuntimeError, match="drew random numbers"):
        gn.compile(Noisy(), backend="numpy")(np.zeros((2, 3), np.float32))

    class Sliced(nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("table", np.arange(6, dtype=np.float32))

        def forward(self, x):
            return x + self.table[:3]  # a buffer read in a traced forward is a tensor of its leaf

    np.testing.assert_array_equal(gn.compile(Sliced(), backend="numpy")(np.zeros((2, 3), np.float32)),
                                  np.tile(np.arange(3, dtype=np.float32), (2, 1)))

    class Wrapped(Sliced):
        def forward(self, x):
            return x + gn.from_numpy(self.table[:3])  # as torch: from_numpy takes arrays, not tensors

    with pytest.raises(TypeError, match="expected np.ndarray"):
        gn.compile(Wrapped(), backend="numpy")(np.zeros((2, 3), np.float32))


TRIANGLES = [
    table("tril", lambda L, x: L.tril(x), In(np.arange(12.0).reshape(3, 4))),
    table("tril-diagonal", lambda L, x: x.tril(1), In(np.arange(12.0).reshape(3, 4))),
    table("triu-negative", lambda L, x: L.triu(x, diagonal=-1), In(np.arange(12.0).reshape(4, 3))),
    table("triu-batched", lambda L, x: x.triu(), In(np.arange(24).reshape(2, 3, 4))),
    table("tril-bool", lambda L, x: L.tril(x), In(np.ones((3, 3), bool))),
    table("tril-grad", lambda L, x: L.tril(x, -1), In(np.arange(9.0).reshape(3, 3), grad=True)),
    table("tril-nan-above", lambda L, x: L.tril(x), In([[1.0, float("nan")], [2.0, 3.0]])),
    table("tril-1d-error", lambda L, x: L.tril(x), In([1.0, 2.0])),
    table("masked_fill-inf", lambda L, x: x.masked_fill(L.tril(L.ones(3, 3)) == 0, NINF), In(np.ones((2, 3, 3)))),
    table("masked_fill-grad", lambda L, x: x.masked_fill(x > 4, 0.0) * 2, In(np.arange(9.0).reshape(3, 3), grad=True)),
    table("masked_fill-float-mask-error", lambda L, x: x.masked_fill(x, 0.0), In(np.ones((2, 2)))),
]


@pytest.mark.parametrize("fn, inputs", TRIANGLES)
def test_tril_triu_and_masked_fill_match_torch(fn, inputs):
    check(partial(fn, gn), partial(fn, torch), *inputs)


def triangles_of_values(L):
    class Triangles(L.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = L.nn.Linear(4, 12)

        def forward(self, x):
            h = self.fc(x).view(x.size(0), 3, 4)
            return h.tril() + 2 * L.triu(h, diagonal=2) + h.masked_fill(h > 0.3, -1.5)

    return Triangles()


def test_tril_triu_and_masked_fill_of_traced_tensors(backend):
    ours, theirs = pair(triangles_of_values)
    x = RNG.standard_normal((5, 4)).astype(np.float32)
    y = RNG.standard_normal((5, 3, 4)).astype(np.float32)
    np.testing.assert_allclose(gn.compile(ours, backend=backend)(x), theirs(torch.from_numpy(x)).detach().numpy(),
                               rtol=1e-6, atol=1e-6)
    loss, grads = torch_grad(theirs, torch.nn.MSELoss(), x, y)
    np.testing.assert_allclose(gn.compile(ours, nn.MSELoss(), backend=backend).grad(x, y), loss, rtol=1e-5)
    assert_grads(ours, grads)
