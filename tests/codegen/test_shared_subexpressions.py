"""Common subexpressions inside kernels (graphnn/passes/cse.py): a part of a kernel's expressions
that costs a math call, a division or a few operations is computed once, in the C and Triton
sources and in the plan interpreter alike, and training still matches PyTorch."""
from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pytest
import sympy
import torch

import graphnn as gn
from graphnn import backends, nn, optim
from graphnn import pointwise as pw
from graphnn.ir import B
from graphnn.passes.cse import share_subexpressions
from graphnn.passes.plan import ACC, Assign, Kernel, KernelPlan, Load
from graphnn.tensors import unary
from tests.conftest import assert_state_close, copy_torch_weights
from tests.graphnn.test_parity_torch import torch_steps

MISH = pw.fn("mish", pw.x0 * sympy.tanh(pw.log1p(sympy.exp(pw.x0))))


class Mish(nn.Module):
    """torch.nn.Mish as one pointwise op differentiated by sympy, as graphnn defines its
    activations: the derivative has tanh(log1p(exp(x))) three times and exp(x) five times."""

    def forward(self, x):
        return unary(x, MISH, "MishBackward0")


ACTIVATIONS = {"mish": (Mish, torch.nn.Mish), "silu": (nn.SiLU, torch.nn.SiLU),
               "gelu": (nn.GELU, torch.nn.GELU),
               "gelu_tanh": (lambda: nn.GELU("tanh"), lambda: torch.nn.GELU("tanh"))}
MATH_CALLS = {"c": r"\b(?:expf|logf|tanhf|log1pf|expm1f|erff|erfcf|powf|sqrtf)\(",
              "triton": r"(?:\btl\.(?:exp|log|erf|sqrt|rsqrt)|\b_tanh|\b_log1p|\b_expm1)\("}
ASSIGNMENT = {"c": r"\s*const \w+ \w+ = ", "triton": r"\s*\w+ = "}


def nets(activation: str):
    """An MLP with the activation in graphnn and in torch, torch's initial weights in both."""
    ours, theirs = ACTIVATIONS[activation]
    torch.manual_seed(0)
    ref = torch.nn.Sequential(torch.nn.Linear(5, 7), theirs(), torch.nn.Linear(7, 7), theirs(), torch.nn.Linear(7, 3))
    model = nn.Sequential(nn.Linear(5, 7), ours(), nn.Linear(7, 7), ours(), nn.Linear(7, 3))
    copy_torch_weights(model, ref)
    return ref, model


def batches(count: int = 4):
    rng = np.random.default_rng(0)
    sizes = [9, 1] * (count // 2)
    return [(rng.standard_normal((n, 5)).astype(np.float32) * 2, rng.integers(0, 3, n)) for n in sizes]


def step_plan(activation: str):
    """(KernelPlan, MemoryPlan) of the MLP's train step, as every plan-based backend gets them."""
    _, model = nets(activation)
    program = gn.compile(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1), backend="plan")
    program.step(*batches(2)[0])
    return next(iter(program.executables.values())).plans["train_step"]


def source(backend: str, activation: str) -> str:
    return backends.get(backend).source("train_step", *step_plan(activation))


def calls(line: str, backend: str) -> list[str]:
    """The math calls of a line of source, each with its argument's text (comments left out)."""
    line = line.split("/*" if backend == "c" else "#")[0]
    found = []
    for match in re.finditer(MATH_CALLS[backend], line):
        depth, end = 1, match.end()
        while depth:
            depth += {"(": 1, ")": -1}.get(line[end], 0)
            end += 1
        found.append(line[match.start():end])
    return found


def loop_bodies(text: str, backend: str) -> list[list[str]]:
    """Runs of consecutive assignment lines: the bodies a kernel computes per element."""
    bodies, current = [], []
    for line in text.splitlines() + [""]:
        if re.match(ASSIGNMENT[backend], line):
            current.append(line)
        elif current:
            bodies.append(current)
            current = []
    return bodies


@pytest.mark.parametrize("backend", ["c", "triton"])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_each_math_call_on_a_value_is_computed_once_per_loop_body(activation, backend):
    text = source(backend, activation)
    bodies = loop_bodies(text, backend)
    assert any(calls(line, backend) for body in bodies for line in body), "no math call found: the pattern is stale"
    for body in bodies:
        repeated = {call: n for call, n in Counter(c for line in body for c in calls(line, backend)).items() if n > 1}
        assert not repeated, f"computed more than once in one loop body: {repeated}\n" + "\n".join(body)


def test_mish_backward_calls_exp_log1p_and_tanh_once():
    plan, memory = step_plan("mish")
    backward = [k for k in plan.kernels if any(a.comment.startswith("mish_grad") for a in k.body)]
    assert len(backward) == 2  # one per Mish layer
    for kernel in backward:  # the plan: what every backend prints, and what the interpreter runs
        found = Counter(type(e).__name__ for a in kernel.body for e in sympy.preorder_traversal(a.expr)
                        if isinstance(e, (sympy.exp, sympy.tanh, pw.log1p)))
        assert found == {"exp": 1, "log1p": 1, "tanh": 1}, "\n" + str(kernel)
        shared = [a for a in kernel.body if a.name.startswith("cse")]
        assert [(a.name, a.dtype, a.stage) for a in shared] == [("cse0", "f32", "epilogue"),
                                                                ("cse1", "f32", "epilogue")]
        assert isinstance(shared[0].expr, sympy.exp)
        assert shared[1].expr == sympy.tanh(pw.log1p(sympy.Symbol("cse0", real=True)))
    text = backends.get("c").source("train_step", plan, memory)
    bodies = [body for body in loop_bodies(text, "c") if any("mish_grad" in line for line in body)]
    assert len(bodies) >= 2  # one per layer, each once or twice (with and without threads)
    for body in bodies:
        found = Counter(c.split("(")[0] for line in body for c in calls(line, "c"))
        assert found == {"expf": 1, "log1pf": 1, "tanhf": 1}, "\n".join(body)
    assert text == source("c", "mish"), "the same model gave different source"


@pytest.mark.parametrize("activation", ["mish", "gelu_tanh"])
def test_training_matches_torch(activation, backend):
    ref, model = nets(activation)
    data = batches(2 if backend == "triton" else 6)
    ref_losses = torch_steps(ref, torch.nn.CrossEntropyLoss(), torch.optim.SGD(ref.parameters(), lr=0.1), data)
    program = gn.compile(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1), backend=backend)
    losses = [program.step(x, y) for x, y in data]
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-5, atol=1e-6)
    assert_state_close(model, ref, rtol=1e-5)


# -- the rules, on hand-made kernels ------------------------------------------------------------
X, Y = sympy.symbols("l0 l1", real=True)
N = sympy.Symbol("l2", real=True)  # an int64 load


def shared(*assigns: Assign, kind: str = "pointwise") -> list[tuple]:
    """(name, expression, stage) of each assignment of a kernel over f32 loads l0, l1 and i64
    load l2 with ``assigns`` as its body, after sharing."""
    loads = [Load(name, "in", 0, (1,), dtype) for name, dtype in (("l0", "f32"), ("l1", "f32"), ("l2", "i64"))]
    kernel = Kernel("k0", kind, (B,), loads=loads, body=list(assigns))
    (out,) = share_subexpressions(KernelPlan([kernel], {}, {})).kernels
    return [(a.name, a.expr, a.stage) for a in out.body]


def f32(name: str, expr, stage: str = "epilogue") -> Assign:
    return Assign(name, sympy.sympify(expr), "f32", stage, "")


def test_nested_parts_are_named_in_order_before_their_first_use():
    c0, c1 = sympy.symbols("cse0 cse1", real=True)
    inner = pw.log1p(sympy.exp(X))
    assert shared(f32("t1", Y + 1), f32("t2", sympy.tanh(inner) ** 2 + sympy.exp(X) * sympy.tanh(inner))) == [
        ("t1", Y + 1, "epilogue"),
        ("cse0", sympy.exp(X), "epilogue"),
        ("cse1", sympy.tanh(pw.log1p(c0)), "epilogue"),
        ("t2", c1 ** 2 + c0 * c1, "epilogue")]


def test_a_value_an_assignment_already_holds_is_read_by_its_name():
    t1 = sympy.Symbol("t1", real=True)
    assert shared(f32("t1", sympy.exp(X)), f32("t2", sympy.exp(X) * Y + sympy.exp(X))) == [
        ("t1", sympy.exp(X), "epilogue"), ("t2", t1 * Y + t1, "epilogue")]


@pytest.mark.parametrize("expr", [
    sympy.Max(-X, Y) + sympy.Min(-X, 0),                    # a negation
    2 * X + sympy.sin(2 * X) + 2 * X * Y,                   # a constant multiple (the sin is once)
    X * Y + sympy.Max(X * Y, 0),                            # a product of two names
    sympy.exp(X) * B / (B - 1) + Y * B / (B - 1),           # the batch size alone
    sympy.Max(X, Y) + sympy.Abs(sympy.Max(X, Y)),           # instructions, not calls
], ids=["negation", "constant multiple", "product", "batch size", "max"])
def test_cheap_parts_stay_inline(expr):
    assert shared(f32("t1", expr)) == [("t1", expr, "epilogue")]


def test_only_float32_values_of_float32_names_are_named():
    c0 = sympy.Symbol("cse0", real=True)
    integer = sympy.floor(sympy.exp(N) / 3) + sympy.floor(sympy.exp(N) / 3) * N
    over_integer = sympy.exp(N) * X + sympy.exp(N)
    part = sympy.sqrt(X * Y) + Y
    body = [Assign("t1", integer, "i64", "epilogue", ""), f32("t2", over_integer),
            f32("t3", sympy.Piecewise((X, part > 1), (Y, True))), f32("t4", sympy.Piecewise((Y, part > 1), (X, True)))]
    assert shared(*body) == [
        ("t1", integer, "epilogue"),
        ("t2", over_integer, "epilogue"),
        ("cse0", part, "epilogue"),  # the condition stays a condition: only the value in it is named
        ("t3", sympy.Piecewise((X, c0 > 1), (Y, True)), "epilogue"),
        ("t4", sympy.Piecewise((Y, c0 > 1), (X, True)), "epilogue")]


def test_a_reductions_prologue_and_epilogue_share_within_themselves():
    c0, c1 = sympy.symbols("cse0 cse1", real=True)
    out = shared(f32("t1", sympy.exp(X) * Y + sympy.exp(X), "prologue"),
                 f32("t2", sympy.exp(X) * ACC + sympy.exp(X), "epilogue"), kind="reduce")
    assert out == [("cse0", sympy.exp(X), "prologue"), ("t1", c0 * Y + c0, "prologue"),
                   ("cse1", sympy.exp(X), "epilogue"), ("t2", c1 * ACC + c1, "epilogue")]
