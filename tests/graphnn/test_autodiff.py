"""Every primitive's derivative rule against float64 central finite differences, and the
pointwise conventions PyTorch uses at kinks."""
from __future__ import annotations

import numpy as np
import pytest
import sympy
from hypothesis import given, settings
from hypothesis import strategies as st

from graphnn import autodiff
from graphnn import pointwise as pw
from graphnn.ir import B, Graph, evaluate_shape
from graphnn.ops import Builder
from runtime import reference

FD_SETTINGS = settings(max_examples=8, deadline=None)


def gradient_graph(build, shapes):
    graph = Graph()
    b = Builder(graph)
    leaves = [b.leaf("param", f"p{k}", shape) for k, shape in enumerate(shapes)]
    out = build(b, *leaves)
    weights = b.leaf("input", "w", out.shape)
    weighted = b.pointwise(pw.mul, out, weights)
    loss = b.reshape(b.reduce("sum", weighted, range(len(out.shape))), ())
    graph, grads = autodiff.gradients(graph, loss, leaves)
    graph.outputs["loss"] = loss
    for k, leaf in enumerate(leaves):
        if leaf.id in grads:
            graph.outputs[f"g{k}"] = grads[leaf.id]
    return graph, leaves, weights


def check_gradients(build, shapes, batch, rng, sample=None, eps=1e-6, rtol=1e-5, atol=1e-7):
    """Compare autodiff gradients of sum(build(*params) * w) with central differences."""
    graph, leaves, weights = gradient_graph(build, shapes)
    sample = sample or (lambda shape: rng.standard_normal(shape))
    feeds = {leaf.attrs["name"]: sample(evaluate_shape(leaf.shape, batch)) for leaf in leaves}
    feeds["w"] = rng.standard_normal(evaluate_shape(weights.shape, batch))
    outputs, _ = reference.run(graph, feeds, batch, precision=np.float64)
    loss_only = graph.variant({"loss": graph.outputs["loss"]}, {})

    def loss_at(values):
        return float(reference.run(loss_only, values, batch, precision=np.float64)[0]["loss"])

    for k, leaf in enumerate(leaves):
        name = leaf.attrs["name"]
        numeric = np.zeros_like(feeds[name])
        for index in np.ndindex(numeric.shape):
            plus, minus = dict(feeds), dict(feeds)
            plus[name], minus[name] = feeds[name].copy(), feeds[name].copy()
            plus[name][index] += eps
            minus[name][index] -= eps
            numeric[index] = (loss_at(plus) - loss_at(minus)) / (2 * eps)
        analytic = outputs.get(f"g{k}", np.zeros_like(numeric))
        np.testing.assert_allclose(analytic, numeric, rtol=rtol, atol=atol, err_msg=f"d loss / d {name}")


def away_from(kinks, scale=2.0):
    """A sampler whose values stay at least 1e-2 from each kink (finite differences straddle none)."""
    def sample(shape, rng=np.random.default_rng(7)):
        x = rng.standard_normal(shape) * scale
        for k in kinks:
            near = np.abs(x - k) < 1e-2
            x[near] = k + 0.1
        return x
    return sample


UNARY = {
    "exp": (pw.exp, None), "log": (pw.log, "positive"), "sqrt": (pw.sqrt, "positive"), "rsqrt": (pw.rsqrt, "positive"),
    "abs": (pw.abs_, [0.0]), "neg": (pw.neg, None), "relu": (pw.relu, [0.0]), "tanh": (pw.tanh, None),
    "sigmoid": (pw.sigmoid, None), "silu": (pw.silu, None), "hardtanh": (pw.hardtanh(-0.5, 1.5), [-0.5, 1.5]),
    "leaky_relu": (pw.leaky_relu(0.1), [0.0]), "elu": (pw.elu(0.7), [0.0]), "softplus": (pw.softplus(), None),
    "softplus_threshold": (pw.softplus(2.0, 1.0), [0.5]), "gelu": (pw.gelu("none"), None),
    "gelu_tanh": (pw.gelu("tanh"), None), "pow3": (pw.pow_(3), None), "rdiv": (pw.scalar_op("div", 2.0, True), [0.0]),
    "mean_scale": (pw.scale(1 / B), None),
}


@pytest.mark.parametrize("name", sorted(UNARY))
@FD_SETTINGS
@given(batch=st.integers(1, 4), width=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_unary_pointwise_vjp(name, batch, width, seed):
    fn, domain = UNARY[name]
    rng = np.random.default_rng(seed)
    if domain == "positive":
        sample = lambda shape: rng.uniform(0.2, 3.0, shape)  # noqa: E731
    else:
        sample = away_from(domain or [], 2.0)
    check_gradients(lambda b, x: b.pointwise(fn, x), [(B, width)], batch, rng, sample)


BINARY = {
    "add": pw.add, "sub": pw.sub, "mul": pw.mul, "div": pw.div, "squared_error": pw.squared_error,
    "bce_with_logits": pw.bce_with_logits,
}


@pytest.mark.parametrize("name", sorted(BINARY))
@FD_SETTINGS
@given(batch=st.integers(1, 4), width=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_binary_pointwise_vjp(name, batch, width, seed):
    rng = np.random.default_rng(seed)
    sample = (lambda shape: rng.uniform(0.5, 2.0, shape) * rng.choice([-1, 1], shape)) if name == "div" else None
    check_gradients(lambda b, x, y: b.pointwise(BINARY[name], x, y), [(B, width), (B, width)], batch, rng, sample)


def test_absolute_error_and_dropout_vjp():
    rng = np.random.default_rng(0)
    check_gradients(lambda b, x, y: b.pointwise(pw.absolute_error, x, y), [(3, 4), (3, 4)], 1, rng)
    mask = rng.random((3, 4))
    graph, leaves, _ = gradient_graph(lambda b, x, u: b.pointwise(pw.dropout(0.25), x, u), [(3, 4), (3, 4)])
    out, _ = reference.run(graph, {"p0": rng.standard_normal((3, 4)), "p1": mask, "w": np.ones((3, 4))}, 1, np.float64)
    np.testing.assert_allclose(out["g0"], np.where(mask < 0.75, 1 / 0.75, 0.0))


def test_scalar_input_gets_summed_gradient():
    rng = np.random.default_rng(1)
    check_gradients(lambda b, x, s: b.pointwise(pw.mul, x, s), [(B, 3), ()], 3, rng)


@FD_SETTINGS
@given(batch=st.integers(1, 3), shape=st.lists(st.integers(1, 3), min_size=1, max_size=2), data=st.data())
def test_reduce_sum_and_max_vjp(batch, shape, data):
    full = (B, *shape)
    axes = data.draw(st.lists(st.integers(0, len(full) - 1), min_size=1, unique=True))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    distinct = lambda s: rng.permutation(int(np.prod(s))).reshape(s) * 0.1 + rng.random(s) * 0.01  # noqa: E731
    check_gradients(lambda b, x: b.reduce("sum", x, axes), [full], batch, rng)
    check_gradients(lambda b, x: b.reduce("max", x, axes), [full], batch, rng, distinct)
    check_gradients(lambda b, x: b.reduce("max", x, axes[:1], ties="first"), [full], batch, rng, distinct)


def test_max_ties_follow_pytorch():
    """amax shares the gradient between equal maxima; max(dim) gives it to the first one."""
    x = np.array([[1.0, 3.0, 3.0, 0.0], [2.0, 2.0, 2.0, 2.0]])
    for ties, expected in [("split", [[0, 0.5, 0.5, 0], [0.25] * 4]), ("first", [[0, 1, 0, 0], [1, 0, 0, 0]])]:
        graph, _, _ = gradient_graph(lambda b, p: b.reduce("max", p, (1,), ties=ties), [(2, 4)])
        out, _ = reference.run(graph, {"p0": x, "w": np.ones((2, 1))}, 1, np.float64)
        np.testing.assert_allclose(out["g0"], expected)


@FD_SETTINGS
@given(batch=st.integers(1, 3), m=st.integers(1, 3), k=st.integers(1, 3), n=st.integers(1, 3), seed=st.integers(0, 999))
def test_matmul_vjp(batch, m, k, n, seed):
    rng = np.random.default_rng(seed)
    check_gradients(lambda b, x, y: b.matmul(x, y), [(B, k), (k, n)], batch, rng)
    check_gradients(lambda b, x, y: b.matmul(x, y), [(B, m, k), (B, k, n)], batch, rng)


@FD_SETTINGS
@given(batch=st.integers(1, 3), a=st.integers(1, 3), c=st.integers(1, 3), seed=st.integers(0, 999))
def test_movement_vjp(batch, a, c, seed):
    rng = np.random.default_rng(seed)
    check_gradients(lambda b, x: b.reshape(x, (a * B * c,)), [(B, a, c)], batch, rng)
    check_gradients(lambda b, x: b.permute(x, (2, 0, 1)), [(B, a, c)], batch, rng)
    check_gradients(lambda b, x: b.expand(x, (B, a, c)), [(1, a, 1)], batch, rng)
    check_gradients(lambda b, x: b.broadcast(x, (B, c)), [(c,)], batch, rng)


@FD_SETTINGS
@given(batch=st.integers(1, 2), kernel=st.tuples(st.integers(1, 3), st.integers(1, 3)),
       stride=st.tuples(st.integers(1, 3), st.integers(1, 3)), padding=st.tuples(st.integers(0, 2), st.integers(0, 2)),
       dilation=st.tuples(st.integers(1, 2), st.integers(1, 2)), seed=st.integers(0, 999))
def test_window_vjp(batch, kernel, stride, padding, dilation, seed):
    """The patches' gradient (unwindow and a sum) against finite differences, padding included;
    a max over each window routes the gradient to its maximum (values are apart, so no ties)."""
    rng = np.random.default_rng(seed)
    spatial = tuple(d * (k - 1) + 1 + s for k, d, s in zip(kernel, dilation, (1, 2)))
    check_gradients(lambda b, x: b.window(x, kernel, stride, padding, dilation), [(B, 2) + spatial], batch, rng)
    inside = tuple(min(p, k // 2) for p, k in zip(padding, kernel))  # no window of padding only
    check_gradients(lambda b, x: b.reduce("max", b.window(x, kernel, stride, inside, (1, 1), float("-inf")),
                                          (4, 5), ties="first"), [(B, 2) + spatial], batch, rng)


def test_detach_iota_and_comparisons_pass_no_gradient():
    graph = Graph()
    b = Builder(graph)
    x = b.leaf("param", "x", (3,))
    y = b.pointwise(pw.mul, b.detach(x), b.pointwise(pw.eq, x, b.iota((3,), 0, "f32"), dtype="f32"))
    loss = b.reshape(b.reduce("sum", y, (0,)), ())
    assert autodiff.gradients(graph, loss, [x])[1] == {}


# -- conventions at kinks and forms from the output --------------------------------------------
def derivative_at(fn, value):
    graph, _, _ = gradient_graph(lambda b, x: b.pointwise(fn, x), [(1,)])
    out, _ = reference.run(graph, {"p0": np.array([value]), "w": np.ones(1)}, 1, np.float64)
    return float(out["g0"][0])


@pytest.mark.parametrize("fn,point,expected", [
    (pw.relu, 0.0, 0.0), (pw.abs_, 0.0, 0.0), (pw.hardtanh(), -1.0, 0.0), (pw.hardtanh(), 1.0, 0.0),
    (pw.hardtanh(), 0.999, 1.0), (pw.leaky_relu(0.2), 0.0, 0.2), (pw.elu(0.5), 0.0, 0.5),
    (pw.softplus(1.0, 20.0), 25.0, 1.0), (pw.bce_with_logits, 0.0, None),
])
def test_pytorch_conventions_at_kinks(fn, point, expected):
    if fn is pw.bce_with_logits:  # d/dx at x = 0 with target y: sigmoid(0) - y
        graph, _, _ = gradient_graph(lambda b, x, y: b.pointwise(fn, x, y), [(1,), (1,)])
        out, _ = reference.run(graph, {"p0": np.zeros(1), "p1": np.full(1, 0.3), "w": np.ones(1)}, 1, np.float64)
        assert float(out["g0"][0]) == pytest.approx(0.5 - 0.3)
        return
    assert derivative_at(fn, point) == pytest.approx(expected)


@pytest.mark.parametrize("fn", [pw.tanh, pw.sigmoid, pw.exp, pw.sqrt, pw.relu], ids=lambda f: f.name)
def test_forms_from_the_output_equal_sympy_diff(fn):
    """Each derivative written in terms of the output equals sympy.diff of the definition (at
    points away from kinks, where sympy's own derivative is defined)."""
    for index, form in fn.grad_from_output:
        through_output = form.subs(pw.Y, fn.expr)
        derivative = sympy.diff(fn.expr, pw.X[index])
        for point in (-2.5, -0.3, 0.7, 3.1):
            if fn is pw.sqrt and point <= 0:
                continue
            at = {pw.X[index]: point}
            assert float(through_output.subs(at)) == pytest.approx(float(derivative.subs(at)), rel=1e-12)


@FD_SETTINGS
@given(batch=st.integers(1, 3), n=st.integers(2, 7), start=st.integers(0, 2), step=st.integers(1, 3),
       extra=st.integers(0, 2), seed=st.integers(0, 999))
def test_slice_and_pad_vjp(batch, n, start, step, extra, seed):
    """A slice's gradient is a pad into zeros and a pad's a slice: against finite differences,
    with steps, a start from the end of the batch axis and a pad along it."""
    rng = np.random.default_rng(seed)
    start = min(start, n - 1)
    count = (n - 1 - start) // step + 1
    check_gradients(lambda b, x: b.slice(x, (0, start), (1, step), (B, count)), [(B, n)], batch, rng)
    check_gradients(lambda b, x: b.slice(x, (B - 1, start), (1, step), (1, count)), [(B, n)], batch, rng)
    wide = start + (n - 1) * step + 1 + extra
    check_gradients(lambda b, x: b.pad(x, (1, start), (1, step), (B + 1, wide)), [(B, n)], batch, rng)
    check_gradients(lambda b, x: b.pad(x, (0, start), (1, step), (B, wide), fill=-0.0), [(B, n)], batch, rng)
    check_gradients(lambda b, x: b.pointwise(pw.mul, b.pad(b.slice(x, (0, start), (1, step), (B, count)), (0, 0),
                                                           (1, 1), (B, count + extra)),
                                             b.pad(b.slice(x, (0, start), (1, step), (B, count)), (0, extra),
                                                   (1, 1), (B, count + extra))), [(B, n)], batch, rng)
