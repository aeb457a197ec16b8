"""Generated C and generated Triton (in the interpreter) against the numpy reference, kernel
kind by kernel kind, on random shapes (batch 1, odd sizes, sizes that are not multiples of any
vector width or block size)."""
from __future__ import annotations

import numpy as np
import pytest
import sympy
from hypothesis import example, given, settings
from hypothesis import strategies as st

from graphnn import backends
from graphnn import pointwise as pw
from graphnn.executable import scalar_storage
from graphnn.ir import B, Graph, evaluate_shape
from graphnn.ops import Builder
from graphnn.passes.fuse import build_plan
from graphnn.passes.simplify import simplify

KERNEL_SETTINGS = settings(max_examples=6, deadline=None)
sizes = st.integers(1, 37)
batches = st.sampled_from([1, 2, 5, 17, 64])


def compare(build, leaves: dict, batch: int, kinds: set | None = None, seed: int = 0, rtol=1e-5, atol=1e-5):
    """Build a graph with ``build(b, *leaf nodes) -> {output: node}``; run it through generated C
    and the reference on the same random inputs; return the C plan for inspection."""
    graph = Graph()
    b = Builder(graph)
    nodes = [b.leaf("input", name, shape, dtype) for name, (shape, dtype) in leaves.items()]
    graph.outputs.update(build(b, *nodes))
    rng = np.random.default_rng(seed)
    feeds = {}
    for name, (shape, dtype) in leaves.items():
        concrete = evaluate_shape(shape, batch)
        feeds[name] = (rng.integers(0, 3, concrete) if dtype == "i64" else rng.standard_normal(concrete)).astype(
            np.int64 if dtype == "i64" else np.float32)
    inputs = [feeds[name] for name in leaves]
    results = run_backends({"forward": graph}, batch, inputs, {})
    expected = results.pop("numpy")
    for backend, got in results.items():
        for name in expected:
            np.testing.assert_allclose(got[name], expected[name], rtol=rtol, atol=atol, err_msg=f"{backend}: {name}")
    plan = build_plan(simplify(graph))
    if kinds is not None:
        assert {k.kind for k in plan.kernels} == kinds, str(plan)
    return plan


def run_backends(graphs, batch, inputs, scalars):
    """The forward entry through every registered backend (the reference first)."""
    names = ["numpy"] + [name for name in backends.names() if name != "numpy"]
    return {name: backends.get(name).executable(graphs, scalar_storage(graphs), {}).run("forward", batch, inputs, scalars)
            for name in names}



@KERNEL_SETTINGS
@given(batch=batches, n=sizes)
def test_pointwise_chain_with_broadcast_is_one_kernel(batch, n):
    def build(b, x, bias, scale):
        y = b.apply(pw.add, x, bias)
        y = b.pointwise(pw.tanh, y)
        y = b.pointwise(pw.mul, y, b.expand(b.reshape(scale, (1, 1)), (B, n)))
        return {"y": b.pointwise(pw.gelu("none"), y)}

    plan = compare(build, {"x": ((B, n), "f32"), "bias": ((n,), "f32"), "scale": ((1,), "f32")}, batch, {"pointwise"})
    assert len(plan.kernels) == 1


@KERNEL_SETTINGS
@given(batch=batches, n=sizes, axis=st.sampled_from([0, 1, (0, 1)]))
def test_reduction_with_prologue_and_epilogue(batch, n, axis):
    axes = axis if isinstance(axis, tuple) else (axis,)

    def build(b, x):
        m = b.reduce("max", x, axes)
        shifted = b.pointwise(pw.sub, x, b.expand(m, x.shape))
        total = b.reduce("sum", b.pointwise(pw.exp, shifted), axes)
        return {"lse": b.pointwise(pw.log, total), "max": m}

    # (a sum or max over one element is that element: the simplifier leaves no reduction)
    compare(build, {"x": ((B, n), "f32")}, batch, {"pointwise"} if axes == (1,) and n == 1 else {"reduce"})


@KERNEL_SETTINGS
@given(batch=batches, n=sizes)
def test_log_softmax_nll_and_mean(batch, n):
    def build(b, x, labels):
        shifted = b.pointwise(pw.sub, x, b.expand(b.reduce("max", x, (1,)), x.shape))
        lse = b.pointwise(pw.log, b.reduce("sum", b.pointwise(pw.exp, shifted), (1,)))
        logp = b.pointwise(pw.sub, shifted, b.expand(lse, x.shape))
        onehot = b.pointwise(pw.eq, b.expand(b.reshape(labels, (B, 1)), x.shape), b.iota(x.shape, 1), dtype="f32")
        picked = b.reduce("sum", b.pointwise(pw.mul, logp, onehot), (0, 1))
        return {"loss": b.pointwise(pw.scale(-1 / B), b.reshape(picked, ()))}

    compare(build, {"x": ((B, n), "f32"), "labels": ((B,), "i64")}, batch)


@KERNEL_SETTINGS
@given(batch=batches, k=sizes, n=sizes, transpose_a=st.booleans(), transpose_b=st.booleans())
def test_matmul_with_epilogue_and_transposed_operands(batch, k, n, transpose_a, transpose_b):
    def build(b, x, w, bias):
        a = b.permute(x, (1, 0)) if transpose_a else x
        wt = b.permute(w, (1, 0)) if transpose_b else w
        y = b.apply(pw.add, b.matmul(a, wt), bias)
        return {"y": b.pointwise(pw.relu, y)}

    x_shape = (k, B) if transpose_a else (B, k)
    w_shape = (n, k) if transpose_b else (k, n)
    plan = compare(build, {"x": (x_shape, "f32"), "w": (w_shape, "f32"), "bias": ((n,), "f32")}, batch, {"matmul"})
    assert len(plan.kernels) == 1


@KERNEL_SETTINGS
@given(batch=batches, m=sizes, k=sizes, n=sizes)
def test_batched_matmul(batch, m, k, n):
    compare(lambda b, x, y: {"z": b.matmul(x, y)}, {"x": ((B, m, k), "f32"), "y": ((B, k, n), "f32")}, batch, {"matmul"})


def test_dropout_masks_are_identical_to_the_reference():
    def build(b, x):
        seed = b.leaf("hyper", "rng.seed", (), "i64")
        step = b.leaf("hyper", "rng.step", (), "i64")
        return {"y": b.pointwise(pw.dropout(0.3), x, b.rand(x.shape, seed, step, 2))}

    graph = Graph()
    b = Builder(graph)
    graph.outputs.update(build(b, b.leaf("input", "x", (B, 33), "f32")))
    results = run_backends({"forward": graph}, 50, [np.ones((50, 33), np.float32)],
                           {"rng.seed": 2**40 + 12345, "rng.step": 2**33 + 7})
    expected = results.pop("numpy")["y"]
    for backend, got in results.items():  # Philox with the same counter and key everywhere
        np.testing.assert_array_equal(got["y"], expected, err_msg=backend)
    assert 0.25 < (expected == 0).mean() < 0.35


def test_train_step_plan_fuses_epilogues_and_updates_where_gradients_are_computed():
    import graphnn as gn
    from graphnn import nn, optim

    model = nn.Sequential(nn.Linear(12, 7), nn.ReLU(), nn.Linear(7, 5), nn.ReLU(), nn.Linear(5, 3))
    train = gn.compile(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1, momentum=0.9), backend="c")
    x = np.random.default_rng(0).standard_normal((9, 12)).astype(np.float32)
    train.step(x, np.arange(9) % 3)
    plan, _ = next(iter(train.executables.values())).plans["train_step"]
    ops = [[op for _, op, _ in k.sources] for k in plan.kernels]
    # forward: matmul + bias + relu in one kernel; backward: matmul + the relu derivative mask
    assert any(k.kind == "matmul" and {"add", "relu"} <= set(o) for k, o in zip(plan.kernels, ops))
    assert any(k.kind == "matmul" and "relu_grad" in o for k, o in zip(plan.kernels, ops))
    # each parameter's SGD update runs in the kernel that computes its gradient: a weight's in
    # the weight-gradient matmul's epilogue, a bias's in the sum over the batch
    sgd = [(k, o) for k, o in zip(plan.kernels, ops) if "sgd_param" in o]
    assert sorted(k.kind for k, _ in sgd) == ["matmul"] * 3 + ["reduce"] * 3
    for k, o in sgd:
        assert o[-2:] == ["sgd_momentum_buffer", "sgd_param"]
        # the gradient, momentum and parameter; besides them only a value the kernel computes
        # first for itself and for later kernels (the output bias's sum computes the logits'
        # gradient in its prologue, which the output weight's gradient matmul also reads)
        stores = {s.buffer for s in k.stores}
        assert {"flat.params", "flat.momentum_buffer", "flat.step_grads"} <= stores
        assert all(b.startswith("tmp.") for b in stores - {"flat.params", "flat.momentum_buffer", "flat.step_grads"})
    assert "/* k" in next(iter(train.executables.values())).source


@settings(max_examples=4, deadline=None)
@given(m=st.integers(97, 200), n=st.integers(33, 100), k=st.integers(257, 600), transpose_a=st.booleans(),
       transpose_b=st.booleans())
@example(m=101, n=70, k=300, transpose_a=False, transpose_b=True)  # a Linear layer: 16 x 16 transposes and edges
def test_packed_gemm_across_block_edges(m, n, k, transpose_a, transpose_b):
    """Sizes past the GEMM's blocks (MC=96 rows, KC=256 deep, NR=32 columns) and not multiples
    of them, with either operand transposed and an epilogue."""
    def build(b, x, w):
        a = b.permute(x, (1, 0)) if transpose_a else x
        wt = b.permute(w, (1, 0)) if transpose_b else w
        return {"y": b.pointwise(pw.tanh, b.matmul(a, wt)), "raw": b.matmul(a, wt)}

    x_shape = (k, B) if transpose_a else (B, k)
    w_shape = (n, k) if transpose_b else (k, n)
    compare(build, {"x": (x_shape, "f32"), "w": (w_shape, "f32")}, m, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("batch", [5, 37])
def test_batched_gemm_epilogues_and_absorbed_consumers(batch):
    """A matmul batched over 3 groups, large enough for the packed GEMM at batch 37: its epilogue
    (per-group bias, tanh) runs as the GEMM's callback with the group index in its context, and
    a second consumer of the product that reads only leaves joins the same kernel."""
    def build(b, x, w, bias, scale):
        raw = b.matmul(x, w)
        bias = b.expand(bias, (3, B, 40))
        return {"y": b.pointwise(pw.tanh, b.pointwise(pw.add, raw, bias)), "z": b.pointwise(pw.mul, raw, scale)}

    plan = compare(build, {"x": ((3, B, 24), "f32"), "w": ((3, 24, 40), "f32"), "bias": ((3, 1, 40), "f32"),
                           "scale": ((3, B, 40), "f32")}, batch, rtol=1e-4, atol=1e-5)
    assert [k.kind for k in plan.kernels] == ["matmul"]
    assert [op for _, op, _ in plan.kernels[0].sources] == ["matmul", "add", "tanh", "mul"]


@pytest.mark.parametrize("batch", [1, 6, 37])
def test_shared_values_are_computed_in_their_first_consumer_where_no_cycle_forms(batch):
    """exp(x) feeds a sum and a later product: it is computed in the sum's prologue and stored for
    the product. 2x feeds a pointwise chain (first) and a sum the chain's end also reads: fusing
    it into the chain would make the chain's kernel and the sum's need each other, so it stays a
    kernel of its own, and the first sharing still happens (it would not if the whole plan fell
    back to fusing less)."""
    def build(b, x):
        e = b.pointwise(pw.exp, x)
        total = b.reduce("sum", e, (1,))
        scaled = b.pointwise(pw.mul, e, b.expand(total, x.shape))
        doubled = b.pointwise(pw.add, x, x)
        shifted = b.pointwise(pw.tanh, doubled)
        squares = b.reduce("sum", b.pointwise(pw.mul, doubled, doubled), (1,))
        return {"scaled": scaled, "mixed": b.pointwise(pw.mul, shifted, b.expand(squares, x.shape))}

    plan = compare(build, {"x": ((B, 7), "f32")}, batch, rtol=1e-5, atol=1e-5)
    ops = [[op for _, op, _ in k.sources] for k in plan.kernels]
    assert any(k.kind == "reduce" and o[:2] == ["exp", "reduce"] for k, o in zip(plan.kernels, ops)), ops
    assert ["add"] in ops, ops  # the doubled value: not fused into the chain that needs its sum


def test_update_reading_its_own_matmul_operand_stays_apart():
    """An in-place update of a leaf that the matmul reads must not run in the GEMM's epilogue
    (it would overwrite rows the GEMM has yet to read): it stays a kernel of its own, after it."""
    graph = Graph()
    b = Builder(graph)
    x = b.leaf("input", "x", (40, 40))
    w = b.leaf("param", "w", (40, 40))
    product = b.matmul(x, w)
    graph.outputs["y"] = product
    graph.updates["w"] = b.pointwise(pw.add, w, product)
    plan = build_plan(simplify(graph))
    assert [k.kind for k in plan.kernels] == ["matmul", "pointwise"], str(plan)


def _update_reading_a_product() -> Graph:
    """A leaf's update that reads a matmul's product, and a sum over the old leaf times it."""
    graph = Graph()
    b = Builder(graph)
    x, y = b.leaf("input", "x", (40, 40)), b.leaf("input", "y", (40, 40))
    state = b.leaf("buffer", "state", (40, 40))
    product = b.matmul(x, y)
    graph.outputs["total"] = b.reduce("sum", b.pointwise(pw.mul, state, product), (0, 1))
    graph.updates["state"] = b.pointwise(pw.add, state, product)
    return graph


def test_absorbed_update_that_would_form_a_cycle_stays_apart():
    """An update of leaf L that reads a matmul's product would join the matmul's kernel, but a
    sum over L * product must read the old L first, and that sum needs the product: together they
    would form a cycle, so the update stays a kernel of its own, after the sum."""
    plan = build_plan(simplify(_update_reading_a_product()))
    kinds = [k.kind for k in plan.kernels]
    assert kinds == ["matmul", "reduce", "pointwise"], str(plan)
    assert [op for _, op, _ in plan.kernels[2].sources] == ["add"]


def test_fusion_falls_back_by_its_cycle_check_and_lets_bugs_raise(monkeypatch):
    """The grouping that fuses less is chosen because ``order`` finds the kernels of the ones
    before it need each other, not because something raised; an error inside grouping is a bug
    and reaches the caller."""
    from graphnn.passes.fuse import Fusion

    graph = simplify(_update_reading_a_product())
    fusion = Fusion(graph, {})
    fusion.analyse()
    assert [fusion.order(fusion.group(absorb, share)) is None for absorb, share in Fusion.GROUPINGS] == [True, True, False]
    assert fusion.grouping()[0] == (False, False)

    def broken(*args, **kwargs):
        raise RuntimeError("a bug in grouping")

    monkeypatch.setattr(Fusion, "_absorb_consumers", broken)
    with pytest.raises(RuntimeError, match="a bug in grouping"):
        build_plan(graph)


@pytest.mark.parametrize("sgd", [dict(momentum=0.9), dict(momentum=0.0), dict(momentum=0.5, nesterov=True, maximize=True)])
def test_generated_source_compiles_without_warnings(tmp_path, sgd):
    """Generated code is a product: it compiles cleanly under -Wall -Wextra -Werror, whichever
    optimizer structure is folded into it (arguments an update ignores are not loaded)."""
    import subprocess

    import graphnn as gn
    from graphnn import nn, optim
    from runtime.cpu import compiler

    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 40), nn.BatchNorm1d(40), nn.ReLU(), nn.Dropout(0.2),
                          nn.Linear(40, 10))
    train = gn.compile(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1, **sgd), backend="c")
    train.step(np.zeros((20, 1, 8, 8), np.float32), np.arange(20) % 10)
    source = tmp_path / "step.c"
    source.write_text(next(iter(train.executables.values())).source)
    path, _, flags = compiler()
    result = subprocess.run([path, *flags, "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC", str(source),
                             "-o", str(tmp_path / "step.so"), "-lm"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]


def test_split_source_compiles_in_parallel_units_and_steps_the_same(monkeypatch, tmp_path):
    """A source past SPLIT_LINES is written as translation units (kernels dealt in turn, then the
    entry points) that are compiled side by side and linked; the steps equal the one-unit build's
    bit for bit, and the whole source is still one valid translation unit for the dump."""
    import subprocess

    import graphnn as gn
    from codegen import c
    from graphnn import nn, optim
    from runtime.cpu import compiler

    def steps(split: bool):
        monkeypatch.setattr(c, "SPLIT_LINES", 0 if split else 10 ** 9)
        gn.manual_seed(0)
        model = nn.Sequential(nn.Linear(20, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 4))
        train = gn.compile(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1, momentum=0.9), backend="c")
        rng = np.random.default_rng(1)
        losses = [train.step(rng.standard_normal((24, 20)).astype(np.float32), rng.integers(0, 4, 24)) for _ in range(3)]
        return losses, [p.data.clone() for p in model.parameters()], next(iter(train.executables.values())).source

    losses, params, source = steps(split=True)
    assert source.count(c.UNIT_MARKER) == c.UNITS + 1 and len(c.units(source)) == c.UNITS + 1
    expected_losses, expected_params, single = steps(split=False)
    assert c.UNIT_MARKER not in single
    assert losses == expected_losses
    for got, want in zip(params, expected_params):
        np.testing.assert_array_equal(got, want)
    path, _, flags = compiler()
    whole = tmp_path / "whole.c"
    whole.write_text(source)
    result = subprocess.run([path, *flags, "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC", str(whole),
                             "-o", str(tmp_path / "whole.so"), "-lm"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]


# -- slices and pads: views, read through offsets, strides and guards ------------------------------
@KERNEL_SETTINGS
@given(batch=batches, n=st.integers(3, 23), start=st.integers(0, 2), step=st.integers(1, 3), data=st.data())
def test_slices_and_pads_are_read_as_views(batch, n, start, step, data):
    """A slice (offset and strides), a pad (guards, its step through a dividing guard), their
    compositions (a pad of a pad and of a permuted pad, a slice of a pad), a pad along the batch
    axis (a guard bounded by B) and a slice from the end of it, all read by pointwise, reduce and
    output kernels, without a kernel of their own."""
    count = data.draw(st.integers(1, (n - 1 - start) // step + 1))
    wide = start + (count - 1) * step + 1 + data.draw(st.integers(0, 2))

    def build(b, x):
        part = b.slice(x, (0, start), (1, step), (B, count))
        placed = b.pad(part, (0, start), (1, step), (B, wide))
        twice = b.pad(placed, (1, 2), (1, 2), (B + 2, 2 * wide + 1))  # a stepped pad of a pad
        turned = b.pad(b.permute(placed, (1, 0)), (1, 0), (1, 1), (wide + 1, B))
        return {"tanh": b.pointwise(pw.tanh, part), "placed": b.pointwise(pw.exp, placed), "twice": twice,
                "turned_sum": b.reduce("sum", turned, (1,)), "back": b.slice(twice, (1, 2), (1, 2), (B, wide)),
                "last": b.slice(x, (B - 1, start), (1, step), (1, count))}

    plan = compare(build, {"x": ((B, n), "f32")}, batch)
    assert not [name for k in plan.kernels for _, name, _ in k.sources if name in ("slice", "pad")], str(plan)


@pytest.mark.parametrize("batch", [1, 6])
def test_a_matmul_reads_a_padded_operand_from_a_buffer_of_its_own(batch):
    """The GEMM reads plain strides: a pad it multiplies is computed first (once), and a pad of a
    value padded with another fill (a -inf pooling window) too."""
    def build(b, x, w):
        g = b.pad(b.pointwise(pw.tanh, x), (0, 1), (1, 2), (B, 9))
        window = b.window(b.reshape(x, (B, 1, 1, 4)), (1, 2), (1, 1), (0, 1), (1, 1), float("-inf"))
        return {"product": b.matmul(g, w), "weight_grad": b.matmul(b.permute(g, (1, 0)), b.pad(x, (0, 0), (1, 1), (B, 4))),
                "pooled_pad": b.pad(window, (0, 0, 0, 0, 0, 1), (1,) * 6, (B, 1, 5, 1, 1, 3))}

    plan = compare(build, {"x": ((B, 4), "f32"), "w": ((9, 3), "f32")}, batch)
    assert sum(1 for k in plan.kernels if k.kind == "matmul") == 2


@pytest.mark.parametrize("batch", [1, 5])
def test_integer_and_bool_pieces_pad_with_zero(batch):
    """Integer and boolean values are padded with 0 whatever the fill, printed in their own type
    (an int64 load stays exact past 2**24)."""
    def build(b, i, x):
        big = b.pointwise(pw.scalar_op("add", 2**40), i, dtype="i64")
        placed = b.pad(big, (1, 0), (1, 1), (B + 1, 3), fill=-0.0)
        positive = b.pointwise(pw.fn("gt0", sympy.Piecewise((1, pw.x0 > 0), (0, True))), x, dtype="bool")
        return {"ints": placed, "ints_plus": b.pointwise(pw.scalar_op("add", 1), placed, dtype="i64"),
                "mask": b.pointwise(pw.logical_not, b.pad(positive, (0, 2), (1, 1), (B, 5)), dtype="bool")}

    compare(build, {"i": ((B, 3), "i64"), "x": ((B, 3), "f32")}, batch)


@pytest.mark.parametrize("batch", [1, 4])
def test_reshapes_of_strided_slices_stay_views(batch):
    """PyTorch's view rule: (B, T, 3C)[..., C:2C] viewed as (B, T, H, C/H) or (B*T, C) splits or
    merges runs of contiguous axes; a reshape across a gap is computed into a buffer first."""
    def build(b, x, w):
        k = b.slice(x, (0, 0, 6), (1, 1, 1), (B, 4, 6))
        heads = b.permute(b.reshape(k, (B, 4, 2, 3)), (0, 2, 1, 3))
        rows = b.reshape(k, (B * 4, 6))
        across = b.reshape(b.slice(x, (0, 0, 0), (1, 1, 1), (B, 4, 6)), (B, 24))
        return {"scores": b.matmul(heads, b.permute(heads, (0, 1, 3, 2))), "rows": b.matmul(rows, w),
                "across": b.pointwise(pw.tanh, across)}

    plan = compare(build, {"x": ((B, 4, 18), "f32"), "w": ((6, 5), "f32")}, batch)
    assert [k.kind for k in plan.kernels].count("pointwise") == 2  # the gap's copy and its tanh
