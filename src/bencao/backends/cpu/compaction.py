"""Compaction of a pair row: keep the partners inside the cutoff, then spread their forces back.

The cluster pair kernel gathers, for each i cluster, the 8 atoms of every listed partner
cluster into contiguous float32 rows.  Only about 30% of those lanes are inside the cutoff
(DHFR: 3.5M of 11.9M), so evaluating the force law on every lane, masked, spends two thirds
of the arithmetic on pairs that contribute nothing.  These intrinsics split one i atom's row
into three passes around a dense law:

1. :func:`compact16` -- per block of 16 lanes: the displacement, r^2 and the interaction mask;
   the kept lanes' dx, dy, dz and partner parameters are packed, in lane order, into dense
   rows (``llvm.masked.compressstore``: one ``vcompressps`` per row on AVX-512), and the
   block's 16-bit mask is returned;
2. the force law on the dense rows (ordinary Numba code that LLVM vectorises);
3. :func:`expand_subtract16` -- per block, the dense pair forces are unpacked to the lanes
   they came from (``llvm.masked.expandload``, zero elsewhere) and subtracted from the
   partners' accumulators.

Every lane does the IEEE operations of the scalar code (explicit ``llvm.fma``), and packing
keeps lane order, so results do not depend on the vector instructions LLVM picks.  On a CPU
without AVX-512, LLVM turns the compress and expand operations into per-lane branches: correct
but slower than evaluating every lane, so the kernel then does not pack (:func:`packing_pays`).  Indices are element indices; arrays are C-contiguous and sized for whole
blocks (a packed row has 16 spare elements: a block's store may write that far).
"""

from __future__ import annotations

import functools

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

#: Lanes of a block: one AVX-512 register of float32.
BLOCK = 16
#: Rows of the packed array :func:`compact16` fills: dx, dy, dz, charge, sigma/2, sqrt(4 eps).
PACKED_ROWS = 6

_FLOAT = ir.FloatType()
_I32 = ir.IntType(32)
_FLOATS = ir.VectorType(_FLOAT, BLOCK)
_INTS = ir.VectorType(_I32, BLOCK)
_BITS = ir.VectorType(ir.IntType(1), BLOCK)
_ZEROS = ir.Constant(_FLOATS, [0.0] * BLOCK)


@functools.cache
def packing_pays() -> bool:
    """True if the CPU Numba compiles for has AVX-512 (``vcompressps``, ``vexpandps``)."""
    import os

    from numba.core.codegen import get_host_cpu_features

    features = os.environ.get("NUMBA_CPU_FEATURES") or get_host_cpu_features()
    return "+avx512f" in features.split(",")


def _function(builder, name, result, arguments):
    return cgutils.get_or_insert_function(builder.module, ir.FunctionType(result, arguments),
                                          name)


def _block_pointer(context, builder, array_type, array, index, vector):
    """``&array[index]`` as a pointer to a block (``vector``) of the array's elements."""
    data = context.make_array(array_type)(context, builder, array).data
    return builder.bitcast(builder.gep(data, [index]), vector.as_pointer())


def _splat(builder, value, vector):
    lane0 = builder.insert_element(ir.Constant(vector, ir.Undefined), value,
                                   ir.Constant(_I32, 0))
    return builder.shuffle_vector(lane0, lane0, ir.Constant(_INTS, [0] * BLOCK))


def _row_pointers(context, builder, array_type, array, rows, column):
    """``&array[r, column]`` for r < rows of a C-contiguous 2-D float32 array."""
    packed = context.make_array(array_type)(context, builder, array)
    stride = builder.extract_value(packed.strides, 0)
    row_elements = builder.sdiv(stride, ir.Constant(stride.type, 4))
    return [builder.gep(packed.data, [builder.add(
        builder.mul(row_elements, ir.Constant(stride.type, r)), column)]) for r in range(rows)]


@intrinsic
def compact16(typingctx, xs, ys, zs, qs, hss, e4s, masks, m, xa, ya, za, bit, cut2, packed, n):
    """Pack the lanes ``m .. m + 15`` of a gathered row that interact with the i atom at
    (xa, ya, za) into ``packed[:, n:]``.

    A lane is kept if ``masks[lane] & bit`` (the interaction mask) and r^2 < ``cut2``, where
    dx = xa - xs[lane] (likewise y, z) and r^2 = fma(dz, dz, fma(dy, dy, dx * dx)), as the law
    computes it.  The kept lanes' dx, dy, dz, charge, sigma/2 and sqrt(4 eps) go, in lane
    order, to rows 0-5 of ``packed`` (a (PACKED_ROWS, L) float32 array).

    Returns the block's mask, an int32 (bit k: lane m + k kept); the number kept is its
    population count (:func:`popcount32`).
    """
    sig = types.int32(xs, ys, zs, qs, hss, e4s, masks, types.intp, types.float32,
                      types.float32, types.float32, types.int32, types.float32, packed,
                      types.intp)

    def codegen(context, builder, signature, args):
        array_types = signature.args[:7]
        (m, xa, ya, za, bit, cut2, packed_value, n) = args[7:]

        def load(k, vector=_FLOATS):
            pointer = _block_pointer(context, builder, array_types[k], args[k], m, vector)
            return builder.load(pointer, align=4)

        dx = builder.fsub(_splat(builder, xa, _FLOATS), load(0))
        dy = builder.fsub(_splat(builder, ya, _FLOATS), load(1))
        dz = builder.fsub(_splat(builder, za, _FLOATS), load(2))
        fma = _function(builder, "llvm.fma.v16f32", _FLOATS, [_FLOATS] * 3)
        r2 = builder.call(fma, [dz, dz, builder.call(fma, [dy, dy, builder.fmul(dx, dx)])])
        listed = builder.icmp_unsigned("!=", builder.and_(load(6, _INTS),
                                                          _splat(builder, bit, _INTS)),
                                       ir.Constant(_INTS, [0] * BLOCK))
        keep = builder.and_(listed, builder.fcmp_ordered("<", r2, _splat(builder, cut2,
                                                                         _FLOATS)))
        store = _function(builder, "llvm.masked.compressstore.v16f32", ir.VoidType(),
                          [_FLOATS, _FLOAT.as_pointer(), _BITS])
        rows = _row_pointers(context, builder, signature.args[13], packed_value, PACKED_ROWS, n)
        for value, pointer in zip((dx, dy, dz, load(3), load(4), load(5)), rows):
            builder.call(store, [value, pointer, keep])
        return builder.zext(builder.bitcast(keep, ir.IntType(BLOCK)), _I32)

    return sig, codegen


@intrinsic
def expand_subtract16(typingctx, fxs, fys, fzs, m, dense, n, keep):
    """``f?s[m:m + 16] -=`` the dense pair forces ``dense[0..2, n:]`` unpacked to the lanes
    set in the block mask ``keep`` (an int32 from :func:`compact16`); other lanes subtract 0."""
    sig = types.void(fxs, fys, fzs, types.intp, dense, types.intp, types.int32)

    def codegen(context, builder, signature, args):
        m, dense_value, n, keep = args[3:]
        mask = builder.bitcast(builder.trunc(keep, ir.IntType(BLOCK)), _BITS)
        load = _function(builder, "llvm.masked.expandload.v16f32", _FLOATS,
                         [_FLOAT.as_pointer(), _BITS, _FLOATS])
        sources = _row_pointers(context, builder, signature.args[4], dense_value, 3, n)
        for k, source in enumerate(sources):
            spread = builder.call(load, [source, mask, _ZEROS])
            target = _block_pointer(context, builder, signature.args[k], args[k], m, _FLOATS)
            builder.store(builder.fsub(builder.load(target, align=4), spread), target, align=4)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def popcount32(typingctx, value):
    """Number of set bits of an int32 (``llvm.ctpop``: one ``popcnt``)."""
    if value != types.int32:
        return None

    def codegen(context, builder, signature, args):
        return builder.call(_function(builder, "llvm.ctpop.i32", _I32, [_I32]), [args[0]])

    return types.int32(types.int32), codegen
