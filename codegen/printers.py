"""sympy printers shared by the backends: float32 C expressions and integer index expressions;
and the C text of an address or index built from terms (``c_plus``, ``c_term``)."""
from __future__ import annotations

import sympy
from sympy.codegen.ast import float32, real
from sympy.printing.c import C99CodePrinter

BATCH = "B"


class ValuePrinting:
    """What the float32 value printers of every backend share: the batch size read as a float,
    Piecewise as nested conditionals, small integer powers as products, square roots, numbers as
    float literals. A backend's printer mixes this in and gives the spelling."""

    FLOAT_SUFFIX = ""
    BATCH_AS_FLOAT = BATCH
    PRODUCT_POWERS = 4
    """Integer powers up to this are printed as products."""

    def conditional(self, cond: str, then: str, otherwise: str) -> str:
        raise NotImplementedError

    def sqrt(self, x: str) -> str:
        raise NotImplementedError

    def rsqrt(self, x: str) -> str:
        raise NotImplementedError

    def power(self, base: str, exponent: str) -> str:
        raise NotImplementedError

    def _print_Symbol(self, expr):
        return self.BATCH_AS_FLOAT if expr.name == BATCH else super()._print_Symbol(expr)

    def _print_Piecewise(self, expr):
        if expr.args[-1].cond != True:  # noqa: E712 - sympy's true
            raise ValueError("Piecewise needs a final True branch to print")
        text = self._print(expr.args[-1].expr)
        for value, cond in reversed(expr.args[:-1]):
            text = self.conditional(self._print(cond), self._print(value), text)
        return text

    def _print_Pow(self, expr, rational=False):
        base, exponent = expr.args
        if expr.is_number:  # a constant such as sqrt(2): its value
            return self._print(sympy.Float(expr.evalf(17), 17))
        if exponent.is_Integer and 1 <= abs(int(exponent)) <= self.PRODUCT_POWERS:
            product = "*".join([f"({self._print(base)})"] * abs(int(exponent)))
            return f"({product})" if exponent > 0 else f"(1.0{self.FLOAT_SUFFIX}/({product}))"
        if exponent == sympy.Rational(1, 2):
            return self.sqrt(self._print(base))
        if exponent == -sympy.Rational(1, 2):
            return self.rsqrt(self._print(base))
        return self.power(self._print(base), self._print(exponent))

    def _print_NumberSymbol(self, expr):
        return self._print(sympy.Float(expr.evalf(17), 17))

    _print_Pi = _print_Exp1 = _print_NumberSymbol

    def _print_Float(self, expr):
        return repr(float(expr)) + self.FLOAT_SUFFIX


class FloatPrinter(ValuePrinting, C99CodePrinter):
    """Float32 C: ``expf``/``tanhf``..., ``F``-suffixed literals, no promotion to double.

    The batch symbol is an int64 variable, printed as a float inside value expressions so that
    ``B/(B - 1)`` is not an integer division. Piecewise becomes nested conditional expressions.
    """

    FLOAT_SUFFIX = "F"
    BATCH_AS_FLOAT = f"((float){BATCH})"

    def __init__(self) -> None:
        super().__init__(settings={"type_aliases": {real: float32}, "math_macros": {}})

    def conditional(self, cond: str, then: str, otherwise: str) -> str:
        return f"(({cond}) ? ({then}) : ({otherwise}))"

    def sqrt(self, x: str) -> str:
        return f"sqrtf({x})"

    def rsqrt(self, x: str) -> str:
        return f"(1.0F/sqrtf({x}))"

    def power(self, base: str, exponent: str) -> str:
        return f"powf({base}, {exponent})"

    def _print_Integer(self, expr):
        return str(int(expr))

    def _print_isnan(self, expr):
        return f"(isnan({self._print(expr.args[0])}) ? 1.0F : 0.0F)"

    def _print_Mod(self, expr):
        return f"graphnn_remainder({self._print(expr.args[0])}, {self._print(expr.args[1])})"

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


def c_term(variable, coefficient) -> str | None:
    """``variable * coefficient`` as C: None when either is 0, the bare variable for a
    coefficient of 1, the product's value for a constant variable."""
    coefficient = sympy.sympify(coefficient)
    if coefficient == 0 or variable == 0:
        return None
    if isinstance(variable, int):
        return c_index(variable * coefficient)
    if coefficient == 1:
        return variable
    return f"({variable})*{c_index(coefficient)}" if " " in variable else f"{variable}*{c_index(coefficient)}"


def c_plus(base: str, *terms) -> str:
    """``base + terms...``, leaving out absent terms and a term "0"."""
    return " + ".join([base] + [t for t in terms if t is not None and t != "0"])
