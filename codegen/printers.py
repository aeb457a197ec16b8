"""sympy printers shared by the backends: float32 C expressions and integer index expressions."""
from __future__ import annotations

import sympy
from sympy.codegen.ast import float32, real
from sympy.printing.c import C99CodePrinter

BATCH = "B"


class FloatPrinter(C99CodePrinter):
    """Float32 C: ``expf``/``tanhf``..., ``F``-suffixed literals, no promotion to double.

    The batch symbol is an int64 variable, printed as a float inside value expressions so that
    ``B/(B - 1)`` is not an integer division. Piecewise becomes nested conditional expressions.
    """

    def __init__(self) -> None:
        super().__init__(settings={"type_aliases": {real: float32}, "math_macros": {}})

    def _print_Symbol(self, expr):
        if expr.name == BATCH:
            return f"((float){BATCH})"
        return super()._print_Symbol(expr)

    def _print_Piecewise(self, expr):
        if expr.args[-1].cond != True:  # noqa: E712 - sympy's true
            raise ValueError("Piecewise needs a final True branch to print as C")
        text = self._print(expr.args[-1].expr)
        for value, cond in reversed(expr.args[:-1]):
            text = f"(({self._print(cond)}) ? ({self._print(value)}) : ({text}))"
        return text

    def _print_Pow(self, expr):
        base, exponent = expr.args
        if exponent.is_Integer and 1 <= abs(int(exponent)) <= 4:
            product = "*".join([f"({self._print(base)})"] * abs(int(exponent)))
            return f"({product})" if exponent > 0 else f"(1.0F/({product}))"
        if exponent == sympy.Rational(1, 2):
            return f"sqrtf({self._print(base)})"
        if exponent == -sympy.Rational(1, 2):
            return f"(1.0F/sqrtf({self._print(base)}))"
        return f"powf({self._print(base)}, {self._print(exponent)})"

    def _print_NumberSymbol(self, expr):
        return self._print(sympy.Float(expr.evalf(17), 17))

    def _print_Float(self, expr):
        return repr(float(expr)) + "F"

    def _print_Integer(self, expr):
        return str(int(expr))

    def _print_BooleanTrue(self, expr):
        return "1"

    def _print_BooleanFalse(self, expr):
        return "0"


class IndexPrinter(C99CodePrinter):
    """Integer C for offsets, strides and loop bounds (the batch symbol is an int64_t)."""

    def _print_Symbol(self, expr):
        return expr.name

    def _print_Pow(self, expr):
        base, exponent = expr.args
        if exponent.is_Integer and exponent > 0:
            return "(" + "*".join([f"({self._print(base)})"] * int(exponent)) + ")"
        raise ValueError(f"index expression {expr} is not a polynomial in the batch size")


_float = FloatPrinter()
_index = IndexPrinter()


def c_value(expr: sympy.Expr) -> str:
    return _float.doprint(sympy.sympify(expr))


def c_index(expr) -> str:
    expr = sympy.sympify(expr)
    if expr.is_Integer:
        return str(int(expr))
    return f"({_index.doprint(expr)})"
