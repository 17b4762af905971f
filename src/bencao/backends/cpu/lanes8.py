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
lane p, for the scalar code that stores the lanes, and :func:`where` picks lane by lane (in
CPU code only: a shared law has no ``where``).

Items reach the lanes and leave them through the movers at the end: ``gather_rows8`` and
``scatter_rows8`` for rows of a table (item p is row ``first + p``), ``gather_atoms8`` and
``scatter_atoms8`` for coordinates of the items' atoms.  A block of 8 items whose last ones are
missing (the tail of a list) repeats its first item in the spare lanes: the same inputs give
the same results, which the scatters either skip or store again.
"""

from __future__ import annotations

import math
import operator

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba import njit
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


def _binary_intrinsic(build, result):
    """An intrinsic ``(a, b) -> result`` (a vector or a mask) doing ``build(builder, left,
    right)`` on the two operands as vectors."""

    @intrinsic
    def binary(typingctx, a, b):
        if not _operands(a, b):
            return None

        def codegen(context, builder, signature, args):
            left, right = (_vector(context, builder, v, t) for v, t in zip(args, signature.args))
            return build(builder, left, right)

        return result(a, b), codegen

    return binary


def _register_binary(python_operator, build, result):
    kernel = _binary_intrinsic(build, result)

    @overload(python_operator)
    def _vector_operator(a, b):
        if _operands(a, b):
            return lambda a, b: kernel(a, b)
        return None


def _arithmetic(name):
    return lambda builder, left, right: getattr(builder, name)(left, right)


def _comparison(predicate):
    return lambda builder, left, right: builder.fcmp_ordered(predicate, left, right)


# ``x += y`` on a vector makes a new vector (as on a float), so the in-place operators are the
# plain ones
for _operators, _name in (((operator.add, operator.iadd), "fadd"),
                          ((operator.sub, operator.isub), "fsub"),
                          ((operator.mul, operator.imul), "fmul"),
                          ((operator.truediv, operator.itruediv), "fdiv")):
    for _operator in _operators:
        _register_binary(_operator, _arithmetic(_name), f64x8)
for _operator, _predicate in ((operator.lt, "<"), (operator.le, "<="), (operator.gt, ">"),
                              (operator.ge, ">=")):
    _register_binary(_operator, _comparison(_predicate), mask8)


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


# lane-wise max(a, b) as Python's ``max`` picks: b only where b > a (NaN in a stays)
_vector_max = _binary_intrinsic(
    lambda builder, left, right: builder.select(builder.fcmp_ordered(">", right, left), right,
                                                left), f64x8)


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


@intrinsic
def where(typingctx, condition, if_true, if_false):
    """``if_true`` where ``condition`` (a :data:`mask8`) holds, else ``if_false``, lane by
    lane (numbers are broadcast)."""
    if not (isinstance(condition, Mask8Type) and _operands(if_true, if_false)):
        return None

    def codegen(context, builder, signature, args):
        values = [_vector(context, builder, v, t) for v, t in zip(args[1:], signature.args[1:])]
        return builder.select(args[0], values[0], values[1])

    return f64x8(condition, if_true, if_false), codegen


# ---------------------------------------------------------------------------------------------
# Moving items into lanes and back


def _lane_rows(builder, first, count):
    """Row of each lane: first + p, or first for the spare lanes p >= count."""
    rows = []
    for p in range(LANES):
        inside = builder.icmp_signed("<", ir.Constant(first.type, p), count)
        rows.append(builder.select(inside, builder.add(first, ir.Constant(first.type, p)), first))
    return rows


def _row_pointers(context, builder, array_type, array, rows, column):
    """Pointers to ``array[row, column]`` for each row (a C-contiguous 2-D array)."""
    view = context.make_array(array_type)(context, builder, array)
    width = cgutils.unpack_tuple(builder, view.shape)[1]
    return [builder.gep(view.data, [builder.add(builder.mul(row, width), column)])
            for row in rows]


def _atom_rows(context, builder, items_type, items, first, count, which):
    """The atom ``which`` of each lane's item (``items[first + p, which]``), as intp."""
    pointers = _row_pointers(context, builder, items_type, items,
                             _lane_rows(builder, first, count), which)
    return [context.cast(builder, builder.load(pointer), items_type.dtype, types.intp)
            for pointer in pointers]


def _gather(builder, pointers):
    vector = ir.Constant(_DOUBLES, ir.Undefined)
    for p, pointer in enumerate(pointers):
        vector = builder.insert_element(vector, builder.load(pointer), ir.Constant(_I32, p))
    return vector


def _scatter(builder, pointers, vector, count, lanes):
    """Store lane p at ``pointers[p]`` for p < count whose bit is set in ``lanes``."""
    for p, pointer in enumerate(pointers):
        bit = builder.and_(builder.lshr(lanes, ir.Constant(lanes.type, p)),
                           ir.Constant(lanes.type, 1))
        store = builder.and_(builder.icmp_signed("<", ir.Constant(count.type, p), count),
                             builder.icmp_signed("!=", bit, ir.Constant(lanes.type, 0)))
        with builder.if_then(store):
            builder.store(builder.extract_element(vector, ir.Constant(_I32, p)), pointer)


def _two_dimensional(*arrays):
    return all(isinstance(a, types.Array) and a.ndim == 2 for a in arrays)


@intrinsic
def gather_rows8(typingctx, values, first, count, column):
    """Lane p: ``values[first + p, column]`` (a C-contiguous 2-D float64 array); lanes p >=
    ``count`` repeat lane 0."""
    if not (_two_dimensional(values) and values.dtype == types.float64):
        return None
    intp = types.intp
    sig = f64x8(values, intp, intp, intp)

    def codegen(context, builder, signature, args):
        t = signature.args
        first, count, column = (context.cast(builder, args[k], t[k], intp) for k in (1, 2, 3))
        return _gather(builder, _row_pointers(context, builder, t[0], args[0],
                                              _lane_rows(builder, first, count), column))

    return sig, codegen


@intrinsic
def scatter_rows8(typingctx, values, first, count, column, vector):
    """``values[first + p, column] = vector[p]`` for p < ``count`` (a C-contiguous 2-D
    float64 array)."""
    if not (_two_dimensional(values) and values.dtype == types.float64):
        return None
    intp = types.intp
    sig = types.void(values, intp, intp, intp, f64x8)

    def codegen(context, builder, signature, args):
        t = signature.args
        first, count, column = (context.cast(builder, args[k], t[k], intp) for k in (1, 2, 3))
        pointers = _row_pointers(context, builder, t[0], args[0],
                                 _lane_rows(builder, first, count), column)
        _scatter(builder, pointers, args[4], count, ir.Constant(count.type, (1 << LANES) - 1))
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def gather_atoms8(typingctx, values, items, first, count, which, column):
    """Lane p: ``values[items[first + p, which], column]`` (C-contiguous 2-D arrays: float64
    values, integer atom indices); lanes p >= ``count`` repeat lane 0."""
    if not (_two_dimensional(values, items) and values.dtype == types.float64):
        return None
    intp = types.intp
    sig = f64x8(values, items, intp, intp, intp, intp)

    def codegen(context, builder, signature, args):
        t = signature.args
        first, count, which, column = (context.cast(builder, args[k], t[k], intp)
                                       for k in (2, 3, 4, 5))
        atoms = _atom_rows(context, builder, t[1], args[1], first, count, which)
        return _gather(builder, _row_pointers(context, builder, t[0], args[0], atoms, column))

    return sig, codegen


@intrinsic
def scatter_atoms8(typingctx, values, items, first, count, which, column, vector, lanes):
    """``values[items[first + p, which], column] = vector[p]`` for the lanes p < ``count``
    whose bit is set in ``lanes`` (arrays as :func:`gather_atoms8`)."""
    if not (_two_dimensional(values, items) and values.dtype == types.float64):
        return None
    intp = types.intp
    sig = types.void(values, items, intp, intp, intp, intp, f64x8, intp)

    def codegen(context, builder, signature, args):
        t = signature.args
        first, count, which, column, lanes = (context.cast(builder, args[k], t[k], intp)
                                              for k in (2, 3, 4, 5, 7))
        atoms = _atom_rows(context, builder, t[1], args[1], first, count, which)
        _scatter(builder, _row_pointers(context, builder, t[0], args[0], atoms, column),
                 args[6], count, lanes)
        return context.get_dummy_value()

    return sig, codegen


@njit(cache=True, inline="always")
def gather_positions8(values, items, first, count, which):
    """The x, y, z lanes of atom ``which`` of each item (:func:`gather_atoms8`)."""
    return (gather_atoms8(values, items, first, count, which, 0),
            gather_atoms8(values, items, first, count, which, 1),
            gather_atoms8(values, items, first, count, which, 2))
