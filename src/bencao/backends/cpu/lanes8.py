"""Python's operators on 8-lane float64 vectors, so that a scalar law compiles for 8 items at once.

A law written with ``+ - * /``, unary minus, ``abs``, ``math.sqrt``, ``max(x, constant)``,
comparisons and ``&`` on their results (no ``if`` on values) compiles, unchanged,
for float64 scalars (the CUDA backend, through ``device_version``) and here for
:data:`~bencao.backends.cpu.simd8.f64x8` vectors, one item per lane: SETTLE runs 8 waters at a
time this way (:mod:`bencao.backends.cpu.settle8`).  Each operation is one LLVM vector
instruction doing, per lane, the IEEE operation the scalar code does (no fast-math flags, no
fused multiply-adds), so every lane is bit-identical to the scalar law on the same inputs.

A scalar operand of a vector operation is broadcast to all lanes.  Comparisons give a
:data:`mask8` (LLVM ``<8 x i1>``); :func:`mask_bits` turns one into an integer with bit p for
lane p, for the scalar code that stores the lanes.
"""

from __future__ import annotations

import math
import operator

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, models, overload, register_model

from bencao.backends.cpu.simd8 import LANES, F64x8Type, f64x8

_DOUBLES = ir.VectorType(ir.DoubleType(), LANES)
_BITS = ir.VectorType(ir.IntType(1), LANES)
_I32 = ir.IntType(32)


class Mask8Type(types.Type):
    """Numba type of 8 lane booleans (kernel-internal, never crosses to Python)."""

    def __init__(self):
        super().__init__(name="Mask8")


#: The Numba type of the result of comparing 8-lane vectors.
mask8 = Mask8Type()


@register_model(Mask8Type)
class _Mask8Model(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, _BITS)


def _vector(context, builder, value, value_type):
    """``value`` as a double vector: itself, or a number broadcast to every lane."""
    if isinstance(value_type, F64x8Type):
        return value
    scalar = context.cast(builder, value, value_type, types.float64)
    lane0 = builder.insert_element(ir.Constant(_DOUBLES, ir.Undefined), scalar,
                                   ir.Constant(_I32, 0))
    return builder.shuffle_vector(lane0, lane0, ir.Constant(ir.VectorType(_I32, LANES),
                                                            [0] * LANES))


def _operands(a, b):
    """True if (a, b) is a vector operation: a vector and a vector or a real number."""
    kinds = (F64x8Type, types.Float, types.Integer)
    return (isinstance(a, kinds) and isinstance(b, kinds)
            and (isinstance(a, F64x8Type) or isinstance(b, F64x8Type)))


def _binary_intrinsic(build):
    @intrinsic
    def binary(typingctx, a, b):
        if not _operands(a, b):
            return None
        result = mask8 if build.__name__ == "compare" else f64x8

        def codegen(context, builder, signature, args):
            left, right = (_vector(context, builder, v, t) for v, t in zip(args, signature.args))
            return build(builder, left, right)

        return result(a, b), codegen

    return binary


def _arithmetic(name):
    def arithmetic(builder, left, right):
        return getattr(builder, name)(left, right)

    return arithmetic


def _comparison(predicate):
    def compare(builder, left, right):
        return builder.fcmp_ordered(predicate, left, right)

    return compare


def _register_binary(python_operator, build):
    kernel = _binary_intrinsic(build)

    @overload(python_operator)
    def _vector_operator(a, b):
        if _operands(a, b):
            return lambda a, b: kernel(a, b)
        return None


# ``x += y`` on a vector makes a new vector (as on a float), so the in-place operators are the
# plain ones
for _operators, _build in (((operator.add, operator.iadd), _arithmetic("fadd")),
                           ((operator.sub, operator.isub), _arithmetic("fsub")),
                           ((operator.mul, operator.imul), _arithmetic("fmul")),
                           ((operator.truediv, operator.itruediv), _arithmetic("fdiv")),
                           ((operator.lt,), _comparison("<")), ((operator.le,), _comparison("<=")),
                           ((operator.gt,), _comparison(">")), ((operator.ge,), _comparison(">="))):
    for _operator in _operators:
        _register_binary(_operator, _build)


def _unary_intrinsic(build):
    @intrinsic
    def unary(typingctx, a):
        if not isinstance(a, F64x8Type):
            return None

        def codegen(context, builder, signature, args):
            return build(builder, args[0])

        return f64x8(a), codegen

    return unary


def _llvm_function(name):
    def call(builder, value):
        function = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(_DOUBLES, [_DOUBLES]), f"{name}.v{LANES}f64")
        return builder.call(function, [value])

    return call


_negate = _unary_intrinsic(lambda builder, value: builder.fneg(value))
_sqrt = _unary_intrinsic(_llvm_function("llvm.sqrt"))
_fabs = _unary_intrinsic(_llvm_function("llvm.fabs"))


@overload(operator.neg)
def _vector_negate(a):
    if isinstance(a, F64x8Type):
        return lambda a: _negate(a)
    return None


@overload(math.sqrt)
def _vector_sqrt(a):
    if isinstance(a, F64x8Type):
        return lambda a: _sqrt(a)
    return None


@overload(abs)
def _vector_abs(a):
    if isinstance(a, F64x8Type):
        return lambda a: _fabs(a)
    return None


@intrinsic
def _vector_max(typingctx, a, b):
    """Lane-wise max(a, b) as Python's ``max`` picks: b only where b > a (NaN in a stays)."""
    if not _operands(a, b):
        return None

    def codegen(context, builder, signature, args):
        left, right = (_vector(context, builder, v, t) for v, t in zip(args, signature.args))
        return builder.select(builder.fcmp_ordered(">", right, left), right, left)

    return f64x8(a, b), codegen


@overload(max)
def _max(a, b):
    if _operands(a, b):
        return lambda a, b: _vector_max(a, b)
    return None


@intrinsic
def _mask_and(typingctx, a, b):
    if not (isinstance(a, Mask8Type) and isinstance(b, Mask8Type)):
        return None

    def codegen(context, builder, signature, args):
        return builder.and_(args[0], args[1])

    return mask8(a, b), codegen


@overload(operator.and_)
def _vector_and(a, b):
    if isinstance(a, Mask8Type) and isinstance(b, Mask8Type):
        return lambda a, b: _mask_and(a, b)
    return None


@intrinsic
def mask_bits(typingctx, mask):
    """The lanes of ``mask`` as an integer: bit p set where lane p is true."""
    if not isinstance(mask, Mask8Type):
        return None

    def codegen(context, builder, signature, args):
        bits = builder.bitcast(args[0], ir.IntType(LANES))
        return builder.zext(bits, context.get_value_type(types.intp))

    return types.intp(mask), codegen
