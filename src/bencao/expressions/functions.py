"""The functions of OpenMM's expression language that SymPy lacks or defines differently.

Lepton (OpenMM's expression library) gives ``step``, ``delta``, ``select``, ``min``, ``max``,
``abs``, ``floor`` and ``ceil`` plain floating-point meanings and simple derivatives; SymPy's own
``Heaviside``, ``Min`` or ``Abs`` would rewrite themselves and differentiate into distributions.
Each is a SymPy function here with Lepton's value and derivative:

===========  =============================  ==========================================
function     value                          derivative
===========  =============================  ==========================================
step(x)      1 if x >= 0 else 0             0
delta(x)     1 if x == 0 else 0             0
select(c,a,b) a if c != 0 else b            select(c, da, db)
min(a, b)    a if a <= b else b             select(step(b - a), da, db)
max(a, b)    a if a >= b else b             select(step(a - b), da, db)
abs(x)       |x|                            2 step(x) - 1
floor(x)     largest integer <= x           0
ceil(x)      smallest integer >= x          0
===========  =============================  ==========================================

:class:`PythonLawPrinter` prints expressions made of them as Python source that Numba compiles
for the CPU and for CUDA.
"""

from __future__ import annotations

import sympy
from sympy.printing.pycode import PythonCodePrinter


class _Constant(sympy.Function):
    """A piecewise-constant function: its derivative is 0, not 0 times the argument's (which
    is NaN where that derivative is infinite)."""

    def fdiff(self, argindex=1):
        return sympy.Integer(0)

    def _eval_derivative(self, symbol):
        return sympy.Integer(0)


class Step(_Constant):
    """Lepton's step(x): 1 for x >= 0, else 0; derivative 0."""

    nargs = 1


class Delta(_Constant):
    """Lepton's delta(x): 1 for x == 0, else 0; derivative 0."""

    nargs = 1


class Select(sympy.Function):
    """Lepton's select(c, a, b): a if c != 0, else b.

    Its derivative is select(c, da, db), as Lepton's: only the chosen branch is evaluated, so a
    branch that is infinite or NaN where it is not chosen (a log of a negative number ...)
    cannot leak into the derivative through 0 * inf.
    """

    nargs = 3

    def _eval_derivative(self, symbol):
        condition, first, second = self.args
        return Select(condition, first.diff(symbol), second.diff(symbol))


class Min2(sympy.Function):
    """Lepton's min(a, b); derivative select(step(b - a), da, db), the chosen branch's."""

    nargs = 2

    def _eval_derivative(self, symbol):
        a, b = self.args
        return Select(Step(b - a), a.diff(symbol), b.diff(symbol))


class Max2(sympy.Function):
    """Lepton's max(a, b); derivative select(step(a - b), da, db), the chosen branch's."""

    nargs = 2

    def _eval_derivative(self, symbol):
        a, b = self.args
        return Select(Step(a - b), a.diff(symbol), b.diff(symbol))


class AbsValue(sympy.Function):
    """Lepton's abs(x); derivative 2 step(x) - 1."""

    nargs = 1

    def fdiff(self, argindex=1):
        return 2 * Step(self.args[0]) - 1


class Floor(_Constant):
    """Lepton's floor(x); derivative 0."""

    nargs = 1


class Ceil(_Constant):
    """Lepton's ceil(x); derivative 0."""

    nargs = 1


def _squaring(base: str, n: int) -> str:
    """``base``^n as a product by exponentiation by squaring (n >= 1)."""
    if n == 1:
        return base
    if n % 2:
        return f"{_squaring(base, n - 1)}*{base}"
    half = _squaring(base, n // 2)
    return f"{half}*{half}" if n == 2 else f"({half})*({half})"


class PythonLawPrinter(PythonCodePrinter):
    """Python source for Numba (CPU and CUDA): ``math`` functions, exact float literals and
    conditional expressions for Lepton's piecewise functions.

    Symbols print as the names given in ``names`` (generated identifiers, so expression
    variables such as ``lambda`` never collide with Python keywords).
    """

    def __init__(self, names: dict):
        super().__init__({"fully_qualified_modules": True, "standard": "python3"})
        self._names = names

    def _print_Symbol(self, expr):
        return self._names.get(expr, expr.name)

    def _print_Function(self, expr):
        # A force's own functions (tabulated functions) print themselves.
        if hasattr(expr, "_pythoncode"):
            return expr._pythoncode(self)
        return super()._print_Function(expr)

    def _print_Float(self, expr):
        # repr of the double: exactly the value SymPy holds, read back bit for bit.
        return repr(float(expr))

    def _print_Rational(self, expr):
        return repr(float(expr))

    def _print_Integer(self, expr):
        return repr(float(expr))

    def _print_Pow(self, expr, rational=False):
        base, exponent = expr.args
        if exponent == -1:
            return f"(1.0/{self.parenthesize(base, 100)})"
        if exponent.is_Integer and abs(int(exponent)) >= 2:
            # Integer powers as products (exponentiation by squaring, as compilers do for
            # pow(x, n)), written out: Numba's own x**n calls a loop that keeps LLVM from
            # vectorising the law's loop.  The repeated square is one value to LLVM (CSE).
            power = _squaring(self.parenthesize(base, 100), abs(int(exponent)))
            return f"({power})" if exponent > 0 else f"(1.0/({power}))"
        return super()._print_Pow(expr, rational=rational)

    def _print_Step(self, expr):
        return f"(1.0 if {self._print(expr.args[0])} >= 0.0 else 0.0)"

    def _print_Delta(self, expr):
        return f"(1.0 if {self._print(expr.args[0])} == 0.0 else 0.0)"

    def _print_Select(self, expr):
        condition, first, second = (self._print(a) for a in expr.args)
        return f"(({first}) if {condition} != 0.0 else ({second}))"

    def _print_Min2(self, expr):
        a, b = (self._print(x) for x in expr.args)
        return f"min({a}, {b})"

    def _print_Max2(self, expr):
        a, b = (self._print(x) for x in expr.args)
        return f"max({a}, {b})"

    def _print_AbsValue(self, expr):
        return f"abs({self._print(expr.args[0])})"

    def _print_Floor(self, expr):
        return f"float(math.floor({self._print(expr.args[0])}))"

    def _print_Ceil(self, expr):
        return f"float(math.ceil({self._print(expr.args[0])}))"
