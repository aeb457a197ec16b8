"""The plan backend: each entry point's fused KernelPlan run kernel by kernel with numpy, with its
arena laid out by the memory plan. Its results must be the reference interpreter's on the models
the suite trains (an MLP with BatchNorm and dropout, the convolutional network, the thermometer
network), so fusion and memory planning are checked apart from any code generator; and a memory
plan that puts two live values in the same place must give wrong numbers (the check can fail)."""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import replace

import numpy as np
import pytest

import graphnn as gn
from graphnn import backends, nn, optim
from graphnn.ir import evaluate_dim
from graphnn.passes.memory import MemoryPlan
from runtime import interpreter

from tests.conftest import T_C, T_U, TRAIN_INDICES


def mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(20, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Dropout(0.25),
                         nn.Linear(32, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 4))


def cnn() -> nn.Module:  # examples/digits_cnn.py's network, narrower
    return nn.Sequential(OrderedDict([
        ("block1", nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2))),
        ("block2", nn.Sequential(nn.Conv2d(4, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AvgPool2d(2))),
        ("flatten", nn.Flatten()),
        ("classifier", nn.Linear(8 * 2 * 2, 3)),
    ]))


def thermometer() -> nn.Module:  # examples/thermometer.py's network
    return nn.Sequential(OrderedDict([("hidden_linear", nn.Linear(1, 8)), ("hidden_activation", nn.Tanh()),
                                      ("output_linear", nn.Linear(8, 1))]))


def classes(rng, shape, count):
    return rng.standard_normal(shape).astype(np.float32), rng.integers(0, count, shape[0])


def thermometer_batch(rng, size):
    picks = rng.choice(TRAIN_INDICES, size)
    return T_U[picks] * 0.1, T_C[picks]


CASES = {
    "mlp": (mlp, nn.CrossEntropyLoss, lambda rng, size: classes(rng, (size, 20), 4)),
    "cnn": (cnn, nn.CrossEntropyLoss, lambda rng, size: classes(rng, (size, 1, 8, 8), 3)),
    "thermometer": (thermometer, nn.MSELoss, thermometer_batch),
}


def twins(case: str, backends_=("plan", "numpy")):
    """The case's model, loss and SGD-with-momentum program, once per backend, from one seed."""
    make, loss, _ = CASES[case]
    out = []
    for backend in backends_:
        gn.manual_seed(7)
        model = make()
        sgd = optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
        out.append((model, gn.compile(model, loss(), sgd, backend=backend)))
    return out


def test_the_plan_backend_is_registered_and_runs_everywhere():
    assert "plan" in backends.names() and backends.get("plan").unavailable() is None
    assert gn.api.resolve_backend("plan") == "plan"
    assert gn.api.resolve_backend("auto") != "plan"  # a checking tool, never chosen for speed


@pytest.mark.parametrize("case", sorted(CASES))
def test_training_steps_match_the_reference(case):
    """Steps (several batch sizes, a repeated one), then eval-mode inference, then grad(): losses,
    parameters, running statistics and outputs as the reference computes them."""
    (model, plan), (reference_model, reference) = twins(case)
    rng = np.random.default_rng(0)
    for size in (8, 8, 5, 8):
        x, y = CASES[case][2](rng, size)
        np.testing.assert_allclose(plan.step(x, y), reference.step(x, y), rtol=1e-5)
    for (name, got), expected in zip(model.state_dict().items(), reference_model.state_dict().values()):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6, err_msg=name)
    x, y = CASES[case][2](rng, 6)
    np.testing.assert_allclose(plan.grad(x, y), reference.grad(x, y), rtol=1e-5)
    for p, q in zip(model.parameters(), reference_model.parameters()):
        np.testing.assert_allclose(p.grad, q.grad, rtol=1e-4, atol=1e-6)
    model.eval()
    reference_model.eval()
    np.testing.assert_allclose(gn.compile(model, backend="plan")(x), gn.compile(reference_model, backend="numpy")(x),
                               rtol=1e-5, atol=1e-6)


def live_ranges(plan) -> dict:
    """Arena buffer -> (kernel that first writes it, last kernel that reads it)."""
    first, last = {}, {}
    for k, kernel in enumerate(plan.kernels):
        reads = [load.source for load in kernel.loads] + [op.source for op in (kernel.a, kernel.b) if op is not None]
        for name in reads:
            last[name] = k
        for store in kernel.stores:
            first.setdefault(store.buffer, k)
    return {name: (first[name], last[name]) for name, b in plan.buffers.items()
            if b.kind == "arena" and name in first and name in last}


def overlapping(plan) -> tuple[str, str]:
    """Two arena buffers live at once: ``b`` is written after ``a`` and before ``a``'s last read."""
    ranges = live_ranges(plan)
    for a, (a_first, a_last) in sorted(ranges.items(), key=lambda item: item[1]):
        for b, (b_first, _) in sorted(ranges.items(), key=lambda item: item[1]):
            if a_first < b_first < a_last:
                return a, b
    raise AssertionError("no two arena buffers are live at once")


@pytest.mark.parametrize("case", ["mlp", "cnn"])
def test_the_memory_plan_is_what_the_interpreter_runs(case):
    """The same grad plan under its own memory plan gives the reference's numbers; under one that
    places a buffer written while another is still live on top of it, it does not."""
    (model, plan), (_, reference) = twins(case)
    rng = np.random.default_rng(1)
    x, y = CASES[case][2](rng, 8)
    plan.grad(x, y)
    reference.grad(x, y)  # the same call count, so the same dropout masks below
    executable = next(iter(plan.executables.values()))
    binding = executable.bindings["grad"]
    kernels, memory = binding.plan, binding.memory
    sizes = {name: evaluate_dim(b.size, 8) for name, b in kernels.buffers.items() if b.kind == "arena"}
    assert sum(sizes.values()) > evaluate_dim(memory.size, 8)  # the plan does share the arena

    def outputs(memory_plan):
        state = {k: np.array(v, copy=True) for k, v in model.state_dict().items()}  # BatchNorm updates
        run = interpreter.Binding(kernels, memory_plan, executable.array_getters())
        result = run(8, [x, y], copy=True)
        model.load_state_dict(state)
        return result

    reference_outputs = next(iter(reference.executables.values())).run("grad", 8, [x, y], {
        "rng.seed": (plan.seed + plan.stream) % 2**63, "rng.step": plan.calls - 1})
    for name, value in outputs(memory).items():
        np.testing.assert_allclose(value, reference_outputs[name], rtol=1e-4, atol=1e-6, err_msg=name)

    a, b = overlapping(kernels)
    offsets = dict(memory.offsets, **{b: memory.offsets[a]})
    broken = MemoryPlan(offsets, memory.size + kernels.buffers[b].size * 2)
    wrong = outputs(broken)
    assert any(not np.allclose(wrong[name], reference_outputs[name], rtol=1e-4, atol=1e-6, equal_nan=False)
               for name in reference_outputs), f"{b} written over {a} while it is live went unnoticed"


def test_an_arena_value_read_before_it_is_written_shows_as_nan():
    """The binding fills the arena with NaN before each call: a kernel reading a value no kernel
    of this call wrote (here: the plan with the kernel that writes one intermediate left out)."""
    (model, plan), = twins("thermometer", ("plan",))
    x, y = thermometer_batch(np.random.default_rng(2), 4)
    model.eval()
    predict = gn.compile(model, backend="plan")
    expected = predict(x)
    binding = next(iter(predict.executables.values())).bindings["forward"]
    arena_writers = [k for k, kernel in enumerate(binding.plan.kernels)
                     if any(binding.plan.buffers[s.buffer].kind == "arena" for s in kernel.stores)]
    assert arena_writers
    dropped = replace(binding.plan, kernels=[kernel for k, kernel in enumerate(binding.plan.kernels)
                                             if k != arena_writers[0]])
    run = interpreter.Binding(dropped, binding.memory, next(iter(predict.executables.values())).array_getters())
    assert np.isfinite(expected).all() and np.isnan(run(4, [x], copy=True)["output"]).all()
