"""Forces from expressions: OpenMM's expression language (Lepton syntax), parsed into SymPy,
differentiated analytically and printed as Python source that Numba compiles for the CPU and
CUDA backends.

- :mod:`.parser`: the grammar, Lepton's functions, ``;`` definitions, errors naming the force
  and the offending text;
- :mod:`.functions`: Lepton's piecewise functions with their derivatives, and the printer;
- :mod:`.codegen`: shared subexpressions, and generated modules cached on disk by source.

This layer knows nothing of backends; the laws built from it live in
``bencao.backends.common.laws.custom``.
"""

from bencao.expressions.parser import (
    FUNCTIONS,
    ExpressionError,
    Parsed,
    parse,
    rename_variables,
)

__all__ = ["FUNCTIONS", "ExpressionError", "Parsed", "parse", "rename_variables"]
