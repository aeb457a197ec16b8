"""Common subexpressions inside each kernel: a costly part of a kernel's expressions (a math
function, a division, a square root, a few operations) that they compute more than once is
computed once, into a local ``cse<k>`` assigned just before its first use.

The graph's own CSE (``passes/simplify.py``) merges whole nodes; it cannot see what is shared
inside one node's expression or between the expressions fused into one kernel. Derivatives from
``sympy.diff`` repeat their function's value (SiLU's has exp(-x) three times; that of Mish,
x*tanh(log1p(exp(x))), has the tanh three times and exp(x) five times), and a small integer
power is printed as a product that repeats its base. Every backend prints the plan, so the C and
Triton sources and the plan interpreter all compute each shared part once. The operations are
the same (sympy may order the factors of a product differently once a part of it is a name).

Only float32 values over float32 names are shared: an int64 assignment truncates where it is
assigned, and a boolean condition is no value to name. A part over the batch size alone stays
inline (the backends read it as a constant). A reduction's prologue (per reduced element) and
epilogue (per kept position) share within themselves, never with each other.
"""
from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import replace
from typing import Iterator

import sympy

from graphnn import pointwise as pw
from graphnn.ir import B
from graphnn.passes.plan import ACC, Assign, Kernel, KernelPlan

PREFIX = "cse"
"""Shared parts are named ``cse0``, ``cse1``... in each kernel, in the order they are computed."""
WORTH = 4
"""The least work (``work``) a part must cost to be shared: a math function, a division or a
square root, or four arithmetic operations. A negation, a constant multiple or a product of two
names costs less than the line that would name it."""
CALL = 16
"""The work of a math function call (exp, tanh, erf, pow...)."""
DIVISION = 4
"""The work of a division or a square root."""
CHEAP_FUNCTIONS = (sympy.Max, sympy.Min, sympy.Abs, sympy.sign, sympy.floor, sympy.ceiling, pw.isnan)
"""Functions the backends print as an instruction or a comparison or two, not a call."""


def share_subexpressions(plan: KernelPlan) -> KernelPlan:
    """The plan with each kernel's repeated costly subexpressions computed once (see the module
    docstring)."""
    return replace(plan, kernels=[_kernel(kernel) for kernel in plan.kernels])


def work(expr: sympy.Basic, memo: dict | None = None) -> int:
    """A rough cost of evaluating ``expr`` once as printed (an integer power as a product of
    its base): 1 per arithmetic operation or comparison, DIVISION per division or square root,
    CALL per math function; names and numbers cost nothing."""
    memo = {} if memo is None else memo
    if not expr.args or expr.is_number:
        return 0
    if expr in memo:
        return memo[expr]
    if expr.is_Pow:
        base, exponent = expr.args
        if exponent.is_Integer:
            factors = abs(int(exponent))
            own = (factors - 1) + (DIVISION if exponent < 0 else 0)
            cost = own + factors * work(base, memo)
        else:
            own = DIVISION if abs(exponent) == sympy.Rational(1, 2) else CALL
            cost = own + work(base, memo) + work(exponent, memo)
    else:
        if isinstance(expr, sympy.Function) and not isinstance(expr, CHEAP_FUNCTIONS):
            own = CALL
        elif expr.is_Mul:
            own = max(sum(1 for a in expr.args if a != -1) - 1, 0)
        else:
            own = max(len(expr.args) - 1, 1)
        cost = own + sum(work(a, memo) for a in expr.args)
    memo[expr] = cost
    return cost


def _kernel(kernel: Kernel) -> Kernel:
    if kernel.kind == "loop":
        return replace(kernel, kernels=[_kernel(k) for k in kernel.kernels])
    floats = {l.name for l in kernel.loads if l.dtype == "f32"}
    floats |= {a.name for a in kernel.body if a.dtype == "f32"} | {ACC.name}
    names = (f"{PREFIX}{k}" for k in itertools.count())
    stages = {stage: _Stage(stage, floats, [a for a in kernel.body if a.stage == stage and a.dtype == "f32"], names)
              for stage in dict.fromkeys(a.stage for a in kernel.body)}
    body = []
    for a in kernel.body:
        body += stages[a.stage].rewrite(a) if a.dtype == "f32" else [a]
    return replace(kernel, body=body)


class _Stage:
    """The sharing among the float32 assignments of one stage of a kernel: which parts occur more
    than once (counted as tree CSE counts: a part seen again is not looked into again), and the
    rewriting of each assignment in order, with the shared parts it computes first."""

    def __init__(self, stage: str, floats: set, assigns: list, names: Iterator[str]) -> None:
        self.stage, self.floats, self.names = stage, floats, names
        self.work: dict = {}
        self.only_floats: dict = {}
        self.count: Counter = Counter()
        self.users: dict = {}
        for a in assigns:
            self._visit(a.expr, 1, a.name)
        self.shared = {e for e, n in self.count.items() if n > 1 and work(e, self.work) >= WORTH}
        self.done: dict = {}
        """A part already rewritten -> what stands for it now (a shared part's name)."""

    def candidate(self, expr: sympy.Basic) -> bool:
        """Whether ``expr`` is a part that may be named: a float32 value of float32 names, not
        of the batch size alone."""
        if not isinstance(expr, sympy.Expr) or not expr.args or expr.is_number:
            return False
        found = self.only_floats.get(expr)
        if found is None:
            names = {s.name for s in expr.free_symbols} - {B.name}
            found = self.only_floats[expr] = bool(names) and names <= self.floats
        return found

    def _visit(self, expr: sympy.Basic, times: int, user: str) -> None:
        if not expr.args:
            return
        if self.candidate(expr):
            seen = expr in self.count
            self.count[expr] += times
            self.users.setdefault(expr, []).append(user)
            if seen:  # what it holds is counted already
                return
            times = 1  # computed once if it is named
        if expr.is_Pow and expr.exp.is_Integer and abs(expr.exp) > 1:  # a product of the base
            self._visit(expr.base, 2 * times, user)
            return
        for arg in expr.args:
            self._visit(arg, times, user)

    def rewrite(self, assign: Assign) -> list[Assign]:
        """The assignment with its shared parts replaced by names, after the assignments of the
        parts it computes first. Its own value, where shared, is read by later ones by its name."""
        made: list[Assign] = []
        top = assign.expr
        expr = self.done.get(top) or self._args_rewritten(top, made)
        if top in self.shared and top not in self.done:
            self.done[top] = sympy.Symbol(assign.name, real=True)
        return made + [assign if expr == top else replace(assign, expr=expr)]

    def _args_rewritten(self, expr: sympy.Basic, made: list) -> sympy.Basic:
        args = [self._rewritten(a, made) for a in expr.args]
        return expr if all(a is b for a, b in zip(args, expr.args)) else expr.func(*args)

    def _rewritten(self, expr: sympy.Basic, made: list) -> sympy.Basic:
        if not expr.args:
            return expr
        if expr in self.done:
            return self.done[expr]
        new = self._args_rewritten(expr, made)
        if expr in self.shared and work(new, self.work) >= WORTH:
            name = next(self.names)
            users = ", ".join(dict.fromkeys(self.users[expr]))
            made.append(Assign(name, new, "f32", self.stage, f"common subexpression of {users}"))
            new = sympy.Symbol(name, real=True)
        self.done[expr] = new
        return new
