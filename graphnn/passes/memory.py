"""Memory planning: one arena for a plan's intermediates, offsets assigned by liveness.

Sizes are expressions of the batch symbol B. Values whose size is a multiple of B share the
first part of the arena (offsets are multiples of B, so the layout holds for every batch size);
values of constant size share the second part. Within each part a value reuses the space of
values whose last reader ran before it was written (first fit, in kernel order).
"""
from __future__ import annotations

from dataclasses import dataclass

import sympy

from graphnn.ir import B, Dim
from graphnn.passes.plan import KernelPlan

ALIGN = 16  # elements: 64 bytes for float32


@dataclass
class MemoryPlan:
    """Arena offsets (in 4-byte units, expressions of B) for each arena buffer, and the arena size."""

    offsets: dict
    size: Dim
    itemsize: int = 4

    def __str__(self) -> str:
        lines = [f"arena {name} @ {offset}" for name, offset in self.offsets.items()]
        return "\n".join(lines + [f"arena size {self.size} elements of {self.itemsize} bytes"])


def _split(size: Dim) -> tuple[int, int] | None:
    """size = a*B + c with integers a, c >= 0, or None when the size is not linear in B."""
    poly = sympy.Poly(sympy.sympify(size), B)
    if poly.degree() > 1:
        return None
    a = int(poly.coeff_monomial(B)) if poly.degree() == 1 else 0
    c = int(poly.coeff_monomial(1))
    return a, c


def _round(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


def plan_memory(plan: KernelPlan) -> MemoryPlan:
    """Place every arena buffer of ``plan``, in 4-byte units (an int64 value takes two)."""
    first, last = {}, {}
    for k, kernel in enumerate(plan.kernels):
        for name in kernel.buffers():
            if name in plan.buffers and plan.buffers[name].kind == "arena":
                first.setdefault(name, k)
                last[name] = k
    regions: dict[str, list] = {"batch": [], "fixed": []}  # (start, end, last use) per region
    placed: dict[str, tuple[str, int]] = {}
    other: list[tuple[str, Dim]] = []  # sizes like B**2: each its own space after the rest
    for name in sorted(first, key=lambda n: (first[n], n)):
        split = _split(plan.buffers[name].size)
        width = 2 if plan.buffers[name].dtype in ("i64", "f64") else 1
        if split is None:
            other.append((name, width * plan.buffers[name].size))
            continue
        a, c = width * split[0], width * split[1]
        region, length = ("batch", _round(a + c)) if a else ("fixed", _round(c))
        live = [(s, e) for s, e, end in regions[region] if end >= first[name]]
        start = 0
        for s, e in sorted(live):
            if start + length <= s:
                break
            start = max(start, e)
        regions[region].append((start, start + length, last[name]))
        placed[name] = (region, start)
    batch_size = max((e for _, e, _ in regions["batch"]), default=0)
    fixed_size = max((e for _, e, _ in regions["fixed"]), default=0)
    offsets = {name: (start * B if region == "batch" else batch_size * B + start) for name, (region, start) in placed.items()}
    end = batch_size * B + fixed_size
    for name, size in other:
        offsets[name] = end
        end = sympy.expand(end + _round_expr(size))
    return MemoryPlan(offsets, end)


def _round_expr(size: Dim) -> Dim:
    """An upper bound of ``size`` that keeps the next offset aligned: each coefficient rounded up."""
    poly = sympy.Poly(sympy.sympify(size), B)
    return sum((_round(int(c)) * B**m for (m,), c in poly.terms()), sympy.Integer(0))
