"""Pointwise ops, each defined once as a sympy expression.

A ``PointwiseFn`` is an expression of the argument symbols ``x0, x1, ...`` (and possibly the
batch symbol ``B``), plus its PyTorch name. Its derivative with respect to each argument is
``sympy.diff``; where PyTorch computes a backward formula from the saved forward output
(tanh' = 1 - y*y, sigmoid' = y*(1 - y)), the definition carries that form in terms of the output
symbol ``y``, and a test checks it equals ``sympy.diff``. Kinks follow PyTorch, pinned by writing
the definitions as Piecewise expressions whose branches give PyTorch's one-sided derivatives.

Every backend prints these expressions; nothing else defines pointwise math. The parametrised
ones (``scalar_op(name, value)``, ``clamp(lo, hi)``...) are built once per argument: traces and
recorded training loops ask for them again and again. This module imports nothing of graphnn's.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np
import sympy
from sympy.codegen.cfunctions import expm1, log1p

X = sympy.symbols("x0:16", real=True)
"""The argument symbols of pointwise expressions."""
Y = sympy.Symbol("y", real=True)
"""Stands for the op's own output in ``grad_from_output`` forms."""
G = sympy.Symbol("g", real=True)
"""Stands for the incoming gradient in vector-Jacobian products."""

x0, x1 = X[0], X[1]


@dataclass(frozen=True)
class PointwiseFn:
    """An elementwise function: a sympy expression of ``x0..x{n-1}`` and its PyTorch name."""

    name: str
    expr: sympy.Expr
    nargs: int
    grad_from_output: tuple = field(default=())
    """Pairs (argument index, derivative in terms of ``y`` and the arguments) for the arguments
    whose derivative PyTorch computes from the forward output."""

    def derivative(self, i: int) -> sympy.Expr:
        """d expr / d x_i, in the form PyTorch computes it (possibly using ``y``)."""
        for index, form in self.grad_from_output:
            if index == i:
                return form
        return _diff(self.expr, i)


@functools.lru_cache(maxsize=None)
def _diff(expr: sympy.Expr, i: int) -> sympy.Expr:
    d = sympy.diff(expr, X[i])
    if isinstance(d, sympy.Piecewise):
        d = sympy.piecewise_fold(d)
    return d


def vjp_expr(fn: PointwiseFn, i: int) -> sympy.Expr:
    """The vector-Jacobian product for argument ``i``: g * d fn / d x_i.

    A derivative that is a mask (a Piecewise of 0s and 1s: relu, clamp, a select such as a
    class pick or masked_fill) selects g rather than multiplying it, as PyTorch's backward
    kernels do (``where(mask, grad, 0)``): an infinite or NaN g where the mask is 0 gives 0, not
    NaN (the gradient of a mean over no elements, an all-ignored batch, is then 0 as in torch)."""
    d = fn.derivative(i)
    if isinstance(d, sympy.Piecewise) and all(value in (0, 1) for value, _ in d.args):
        return sympy.piecewise_fold(G * d)
    return G * d


def fn(name: str, expr, nargs: int | None = None, **grad_from_output) -> PointwiseFn:
    expr = sympy.sympify(expr)
    if nargs is None:
        used = [k for k, s in enumerate(X) if s in expr.free_symbols]
        nargs = (max(used) + 1) if used else 0
    forms = tuple(sorted((int(k[1:]), sympy.sympify(v)) for k, v in grad_from_output.items()))
    return PointwiseFn(name, expr, nargs, forms)


def _f(value: float) -> sympy.Expr:
    """A float hyperparameter as an exact sympy number (integers stay integers)."""
    value = float(value)
    return sympy.Integer(int(value)) if value.is_integer() else sympy.Float(value)


# -- arithmetic --------------------------------------------------------------------------
add = fn("add", x0 + x1)
sub = fn("sub", x0 - x1)
mul = fn("mul", x0 * x1)
div = fn("div", x0 / x1)
neg = fn("neg", -x0)
identity = fn("identity", x0)


power = fn("pow", x0**x1)
floor_divide = fn("floor_divide", sympy.floor(x0 / x1))
remainder = fn("remainder", sympy.Mod(x0, x1))


@functools.lru_cache(maxsize=4096)
def pow_(exponent: float) -> PointwiseFn:
    return fn("pow", x0 ** _f(exponent))


@functools.lru_cache(maxsize=4096)
def scalar_op(name: str, value: float, reverse: bool = False) -> PointwiseFn:
    """``x op c`` (or ``c op x`` when reverse) with a Python number folded into the expression."""
    c = _f(value)
    a, b = (c, x0) if reverse else (x0, c)
    expr = {"add": a + b, "sub": a - b, "mul": a * b, "div": a / b, "pow": a**b}[name]
    return fn(name, expr, nargs=1)


@functools.lru_cache(maxsize=4096)
def scale(factor) -> PointwiseFn:
    """x * factor, where factor may be an expression of B (1/B for a mean over the batch)."""
    return fn("mul", x0 * sympy.sympify(factor), nargs=1)


# -- unary math --------------------------------------------------------------------------
exp = fn("exp", sympy.exp(x0), x0=Y)
log = fn("log", sympy.log(x0))
sqrt = fn("sqrt", sympy.sqrt(x0), x0=1 / (2 * Y))
rsqrt = fn("rsqrt", 1 / sympy.sqrt(x0))
abs_ = fn("abs", sympy.Abs(x0))
sin = fn("sin", sympy.sin(x0))
cos = fn("cos", sympy.cos(x0))
log1p_ = fn("log1p", log1p(x0))
expm1_ = fn("expm1", expm1(x0))
log2 = fn("log2", sympy.log(x0) / sympy.log(2))
log10 = fn("log10", sympy.log(x0) / sympy.log(10))
floor = fn("floor", sympy.floor(x0))
ceil = fn("ceil", sympy.ceiling(x0))
sign = fn("sign", sympy.sign(x0))
reciprocal = fn("reciprocal", 1 / x0)
erf = fn("erf", sympy.erf(x0))
erfc = fn("erfc", sympy.erfc(x0))

# -- activations (kinks pinned to PyTorch's one-sided derivatives) ------------------------
# Branch conditions are written so that NaN, for which every comparison is false, falls to a
# branch that returns x0 itself: NaN propagates as in PyTorch (relu(NaN) = NaN, not 0), and the
# derivative at NaN is the one PyTorch's backward gives there (its vectorised kernels, which
# every tensor of more than a few elements takes, where its scalar tail loop differs).
relu = fn("relu", sympy.Piecewise((0, x0 <= 0), (x0, True)), x0=sympy.Piecewise((0, Y <= 0), (1, True)))
tanh = fn("tanh", sympy.tanh(x0), x0=1 - Y**2)
sigmoid = fn("sigmoid", 1 / (1 + sympy.exp(-x0)), x0=Y * (1 - Y))
silu = fn("silu", x0 / (1 + sympy.exp(-x0)))


@functools.lru_cache(maxsize=4096)
def hardtanh(min_val: float = -1.0, max_val: float = 1.0) -> PointwiseFn:
    lo, hi = _f(min_val), _f(max_val)
    # NaN stays NaN; the derivative is 1 strictly inside the bounds, 0 at and beyond them and at
    # NaN (PyTorch's vectorised backward tests lo < x < hi)
    return fn("hardtanh", sympy.Piecewise((lo, x0 <= lo), (hi, x0 >= hi), (x0, True)),
              x0=sympy.Piecewise((1, (x0 > lo) & (x0 < hi)), (0, True)))


@functools.lru_cache(maxsize=4096)
def leaky_relu(negative_slope: float = 0.01) -> PointwiseFn:
    return fn("leaky_relu", sympy.Piecewise((x0, x0 > 0), (_f(negative_slope) * x0, True)))


@functools.lru_cache(maxsize=4096)
def elu(alpha: float = 1.0) -> PointwiseFn:
    # elu'(0) = alpha: the x <= 0 branch owns zero; NaN takes the exponential branch, so its
    # derivative there is NaN, as PyTorch's vectorised backward gives
    return fn("elu", sympy.Piecewise((x0, x0 > 0), (_f(alpha) * expm1(x0), True)))


@functools.lru_cache(maxsize=4096)
def softplus(beta: float = 1.0, threshold: float = 20.0) -> PointwiseFn:
    b = _f(beta)
    return fn("softplus", sympy.Piecewise((x0, b * x0 > _f(threshold)), (log1p(sympy.exp(b * x0)) / b, True)))


@functools.lru_cache(maxsize=4096)
def gelu(approximate: str = "none") -> PointwiseFn:
    if approximate == "none":
        return fn("gelu", x0 * (1 + sympy.erf(x0 / sympy.sqrt(2))) / 2)
    if approximate == "tanh":
        inner = sympy.sqrt(2 / sympy.pi) * (x0 + sympy.Float(0.044715) * x0**3)
        return fn("gelu", x0 * (1 + sympy.tanh(inner)) / 2)
    raise ValueError(f"GELU approximate must be 'none' or 'tanh', got {approximate!r}")


@functools.lru_cache(maxsize=4096)
def clamp(min_val: float | None = None, max_val: float | None = None) -> PointwiseFn:
    """x limited to [min_val, max_val]; NaN stays NaN. The gradient passes at the bounds and is
    0 outside them and at NaN (PyTorch's choice: its backward tests ``min <= x <= max``)."""
    branches, inside = [], sympy.true
    if min_val is not None:
        branches.append((_f(min_val), x0 < _f(min_val)))
        inside = inside & (x0 >= _f(min_val))
    if max_val is not None:
        branches.append((_f(max_val), x0 > _f(max_val)))
        inside = inside & (x0 <= _f(max_val))
    return fn("clamp", sympy.Piecewise(*branches, (x0, True)), nargs=1,
              x0=sympy.Piecewise((1, inside), (0, True)))


@functools.lru_cache(maxsize=4096)
def dropout(p: float) -> PointwiseFn:
    """x0 is the input, x1 a uniform [0, 1) draw: keep with probability 1 - p, scaled by 1/(1-p).
    The input is multiplied by the mask, as in PyTorch, so a dropped NaN or infinity gives NaN."""
    if p >= 1:  # drop everything: a mask that is never 1 (x1 < 0 cannot hold), kept as a product
        return fn("dropout", x0 * sympy.Piecewise((1, x1 < 0), (0, True)), nargs=2)
    keep = 1 - _f(p)
    return fn("dropout", x0 * sympy.Piecewise((1 / keep, x1 < keep), (0, True)), nargs=2)


# -- comparisons (outputs 0/1, no gradient flows through the condition) -------------------
class isnan(sympy.Function):
    """1 where the argument is NaN, else 0: sympy folds ``Ne(x, x)`` to False, so the test
    needs a function of its own. Each backend prints it (C ``isnan``, Triton ``x != x``)."""

    @classmethod
    def eval(cls, x):
        if x.is_number:
            return sympy.Integer(1) if x is sympy.nan else sympy.Integer(0)
        return None

    def fdiff(self, argindex=1):
        return sympy.Integer(0)


eq = fn("eq", sympy.Piecewise((1, sympy.Eq(x0, x1)), (0, True)), nargs=2)
# x0 is a maximum x1 of its values: equal to it, or NaN (NaN is the maximum wherever one occurs)
at_max = fn("at_max", sympy.Piecewise((1, sympy.Eq(x0, x1)), (1, isnan(x0) > 0), (0, True)), nargs=2)
ne = fn("ne", sympy.Piecewise((0, sympy.Eq(x0, x1)), (1, True)), nargs=2)
lt = fn("lt", sympy.Piecewise((1, x0 < x1), (0, True)), nargs=2)
le = fn("le", sympy.Piecewise((1, x0 <= x1), (0, True)), nargs=2)
gt = fn("gt", sympy.Piecewise((1, x0 > x1), (0, True)), nargs=2)
ge = fn("ge", sympy.Piecewise((1, x0 >= x1), (0, True)), nargs=2)
logical_and = fn("logical_and", sympy.Piecewise((1, sympy.Ne(x0, 0) & sympy.Ne(x1, 0)), (0, True)), nargs=2)
logical_or = fn("logical_or", sympy.Piecewise((1, sympy.Ne(x0, 0) | sympy.Ne(x1, 0)), (0, True)), nargs=2)
logical_xor = fn("logical_xor", sympy.Piecewise((1, sympy.Xor(sympy.Ne(x0, 0), sympy.Ne(x1, 0))), (0, True)), nargs=2)
logical_not = fn("logical_not", sympy.Piecewise((1, sympy.Eq(x0, 0)), (0, True)), nargs=1)
maximum = fn("maximum", sympy.Piecewise((x0, (x0 >= x1) | (isnan(x0) > 0)), (x1, True)), nargs=2)  # NaN wins, as torch.maximum
minimum = fn("minimum", sympy.Piecewise((x0, (x0 <= x1) | (isnan(x0) > 0)), (x1, True)), nargs=2)
where = fn("where", sympy.Piecewise((x1, sympy.Ne(x0, 0)), (X[2], True)), nargs=3)
cast = fn("cast", x0)
# a conversion to bool is 1 for every nonzero value (NaN included), as bool() is: the backends
# store bools in float slots, where a plain cast would keep the value
to_bool = fn("bool", sympy.Piecewise((1, sympy.Ne(x0, 0)), (0, True)), nargs=1)


@functools.lru_cache(maxsize=4096)
def pick_label(ignore_index: int) -> PointwiseFn:
    """x0 where the label x1 equals the class x2 (and is not ``ignore_index``), else 0: the
    log-probability NLL reads, selected rather than multiplied by a mask."""
    chosen = sympy.Eq(x1, X[2]) & sympy.Ne(x1, int(ignore_index))
    return fn("pick_label", sympy.Piecewise((x0, chosen), (0, True)), nargs=3)


@functools.lru_cache(maxsize=256)
def padding_row(padding_idx: int) -> PointwiseFn:
    """x0 (a looked-up row) where the index x1 is not ``padding_idx``, else x2 (the same row,
    detached): the value is the row either way, but the padding row gets no gradient, as in
    PyTorch's embedding."""
    return fn("padding_row", sympy.Piecewise((x0, sympy.Ne(x1, int(padding_idx))), (X[2], True)), nargs=3)


@functools.lru_cache(maxsize=4096)
def triangle(diagonal: int, upper: bool) -> PointwiseFn:
    """x0 on and below the ``diagonal``-th diagonal (tril), or on and above it (triu), else 0:
    x1 is the element's row index, x2 its column index."""
    offset = X[2] - x1
    keep = offset >= int(diagonal) if upper else offset <= int(diagonal)
    return fn("triu" if upper else "tril", sympy.Piecewise((x0, keep), (0, True)), nargs=3)


@functools.lru_cache(maxsize=4096)
def scalar_ne(value: float) -> PointwiseFn:
    """1 where x0 differs from a constant (labels that are not ``ignore_index``), else 0."""
    return fn("ne", sympy.Piecewise((0, sympy.Eq(x0, _f(value))), (1, True)), nargs=1)

# -- losses -----------------------------------------------------------------------------
squared_error = fn("squared_error", (x0 - x1) ** 2)
absolute_error = fn("absolute_error", sympy.Abs(x0 - x1))
# stable log(1 + exp(x)) - x*y with a continuous derivative (sigmoid(x) - y) everywhere
bce_with_logits = fn(
    "bce_with_logits",
    sympy.Piecewise((x0 + log1p(sympy.exp(-x0)), x0 > 0), (log1p(sympy.exp(x0)), True)) - x0 * x1,
)


# -- evaluation with numpy -----------------------------------------------------------------
def _erf(values, complement: bool = False):
    try:
        from scipy.special import erf, erfc
    except ImportError:  # pragma: no cover - scipy comes with the test extras
        return np.vectorize(math.erfc if complement else math.erf, otypes=[np.float64])(values)
    return (erfc if complement else erf)(values)


@functools.lru_cache(maxsize=None)
def numpy_function(expr: sympy.Expr, nargs: int):
    """A numpy function of (x0..x{nargs-1}, B, y) evaluating ``expr`` elementwise."""
    expr = expr.evalf() if expr.has(sympy.pi) else expr
    args = list(X[:nargs]) + [sympy.Symbol("B", integer=True, positive=True), Y]
    return sympy.lambdify(args, expr, modules=[NUMPY_FUNCTIONS, "numpy"])


def _remainder(a, b):
    """sympy's Mod as torch computes it: C's fmod moved to the divisor's sign, so a zero keeps
    the dividend's sign (-2.0 % 0.5 is -0.0); numpy.mod gives it the divisor's."""
    m = np.fmod(a, b)
    return np.where((m != 0) & ((b < 0) != (m < 0)), m + b, m)


NUMPY_FUNCTIONS = {
    "erf": _erf,
    "erfc": lambda v: _erf(v, complement=True),
    "mod": _remainder,
    "isnan": lambda v: np.isnan(v).astype(np.float64),
    # sign(NaN) is 0 in C's comparisons, Triton's and PyTorch's; numpy's is NaN
    "sign": lambda v: np.where(np.isnan(v), 0.0, np.sign(v)),
}
"""Where numpy's spelling of a function differs from the backends' (sympy.lambdify's names)."""
