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


def _element(context, builder, array_type, array, indices):
    """Pointer to ``array[indices]`` (a C-contiguous array, intp indices), by its strides."""
    view = context.make_array(array_type)(context, builder, array)
    strides = cgutils.unpack_tuple(builder, view.strides)
    offset = ir.Constant(strides[0].type, 0)
    for index, stride in zip(indices, strides):
        offset = builder.add(offset, builder.mul(index, stride))
    byte = builder.gep(builder.bitcast(view.data, ir.IntType(8).as_pointer()), [offset])
    return builder.bitcast(byte, view.data.type)


def _intp(context, builder, value, value_type):
    return context.cast(builder, value, value_type, types.intp)


@intrinsic
def compact_rows16(typingctx, xs, ys, zs, qs, hss, e4s, masks, m, xi, yi, zi, i0, cut2, packed,
                   counts, kept, b):
    """Pack the lanes ``m .. m + 15`` of a gathered row that interact with each of the 8 atoms
    of cluster i (slots ``i0 .. i0 + 7`` of ``xi``, ``yi``, ``zi``).

    For atom a, a lane is kept if bit a of ``masks[lane]`` is set (the interaction mask) and
    r^2 < ``cut2``, where dx = xi[i0 + a] - xs[lane] (likewise y, z) and r^2 = fma(dz, dz,
    fma(dy, dy, dx * dx)), as the law computes it.  The kept lanes' dx, dy, dz, charge,
    sigma/2 and sqrt(4 eps) go, in lane order, to ``packed[a, 0..5, counts[a]:]``; ``counts[a]``
    grows by their number and ``kept[a, b]`` receives the block's mask (bit k: lane m + k).
    The block's partner data is loaded once for all 8 atoms.

    Parameters
    ----------
    packed : (8, PACKED_ROWS, L) float32 array
    counts : (8,) int64 array
    kept : (8, B) int32 array
    """
    sig = types.void(xs, ys, zs, qs, hss, e4s, masks, types.intp, xi, yi, zi, types.intp,
                     types.float32, packed, counts, kept, types.intp)

    def codegen(context, builder, signature, args):
        t = signature.args
        m, i0, cut2, b = args[7], args[11], args[12], args[16]

        def load(k, vector=_FLOATS):
            pointer = _block_pointer(context, builder, t[k], args[k], m, vector)
            return builder.load(pointer, align=4)

        xj, yj, zj = load(0), load(1), load(2)
        parameters = (load(3), load(4), load(5))
        listed = load(6, _INTS)
        limit = _splat(builder, cut2, _FLOATS)
        fma = _function(builder, "llvm.fma.v16f32", _FLOATS, [_FLOATS] * 3)
        store = _function(builder, "llvm.masked.compressstore.v16f32", ir.VoidType(),
                          [_FLOATS, _FLOAT.as_pointer(), _BITS])
        ctpop = _function(builder, "llvm.ctpop.i16", ir.IntType(BLOCK), [ir.IntType(BLOCK)])
        intp = context.get_value_type(types.intp)
        for a in range(8):
            slot = builder.add(i0, ir.Constant(intp, a))
            centre = [builder.load(_element(context, builder, t[8 + k], args[8 + k], [slot]))
                      for k in range(3)]
            dx, dy, dz = (builder.fsub(_splat(builder, c, _FLOATS), j)
                          for c, j in zip(centre, (xj, yj, zj)))
            r2 = builder.call(fma, [dz, dz, builder.call(fma, [dy, dy, builder.fmul(dx, dx)])])
            bit = ir.Constant(_INTS, [1 << a] * BLOCK)
            keep = builder.and_(
                builder.icmp_unsigned("!=", builder.and_(listed, bit),
                                      ir.Constant(_INTS, [0] * BLOCK)),
                builder.fcmp_ordered("<", r2, limit))
            row = ir.Constant(intp, a)
            count_pointer = _element(context, builder, t[14], args[14], [row])
            count = builder.load(count_pointer)
            for k, value in enumerate((dx, dy, dz) + parameters):
                target = _element(context, builder, t[13], args[13],
                                  [row, ir.Constant(intp, k), count])
                builder.call(store, [value, target, keep])
            bits = builder.bitcast(keep, ir.IntType(BLOCK))
            added = builder.zext(builder.call(ctpop, [bits]), intp)
            builder.store(builder.add(count, added), count_pointer)
            builder.store(builder.zext(bits, _I32),
                          _element(context, builder, t[15], args[15], [row, b]))
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def spread_rows16(typingctx, fxs, fys, fzs, m, forces, offsets, kept, b):
    """``f?s[m:m + 16] = -`` the sum over the 8 atoms a of cluster i, in order, of their packed
    pair forces ``forces[a, 0..2, offsets[a]:]`` unpacked to the lanes set in ``kept[a, b]``
    (zero elsewhere); ``offsets[a]`` grows by their number.  The inverse of
    :func:`compact_rows16`; each lane's sum is ((0 - f_0) - f_1) - ... in float32.

    Parameters
    ----------
    forces : (8, 3, L) float32 array
    offsets : (8,) int64 array
    kept : (8, B) int32 array
    """
    sig = types.void(fxs, fys, fzs, types.intp, forces, offsets, kept, types.intp)

    def codegen(context, builder, signature, args):
        t = signature.args
        m, b = args[3], args[7]
        load = _function(builder, "llvm.masked.expandload.v16f32", _FLOATS,
                         [_FLOAT.as_pointer(), _BITS, _FLOATS])
        ctpop = _function(builder, "llvm.ctpop.i16", ir.IntType(BLOCK), [ir.IntType(BLOCK)])
        intp = context.get_value_type(types.intp)
        sums = [_ZEROS] * 3
        for a in range(8):
            row = ir.Constant(intp, a)
            bits = builder.trunc(builder.load(_element(context, builder, t[6], args[6],
                                                       [row, b])), ir.IntType(BLOCK))
            mask = builder.bitcast(bits, _BITS)
            offset_pointer = _element(context, builder, t[5], args[5], [row])
            offset = builder.load(offset_pointer)
            for k in range(3):
                source = _element(context, builder, t[4], args[4],
                                  [row, ir.Constant(intp, k), offset])
                sums[k] = builder.fsub(sums[k], builder.call(load, [source, mask, _ZEROS]))
            added = builder.zext(builder.call(ctpop, [bits]), intp)
            builder.store(builder.add(offset, added), offset_pointer)
        for k in range(3):
            target = _block_pointer(context, builder, t[k], args[k], m, _FLOATS)
            builder.store(sums[k], target, align=4)
        return context.get_dummy_value()

    return sig, codegen


#: Rows of the packed array :func:`compact_rows8_energy` fills: r^2, charge, sigma/2,
#: sqrt(4 eps).
ENERGY_ROWS = 4

_DOUBLE = ir.DoubleType()
_DOUBLES = ir.VectorType(_DOUBLE, 8)
_INTS8 = ir.VectorType(_I32, 8)
_BITS8 = ir.VectorType(ir.IntType(1), 8)


@intrinsic
def compact_rows8_energy(typingctx, xs, ys, zs, qs, hss, e4s, masks, m, xi, yi, zi, i0, cut2,
                         packed, counts):
    """The energy pass's :func:`compact_rows16`: float64, one partner (8 lanes) at a time.

    For atom a of cluster i (slot ``i0 + a``), lane ``m + k`` is kept if bit a of
    ``masks[m + k]`` is set and r^2 = dx^2 + dy^2 + dz^2 < ``cut2`` (dx = xi[i0 + a] -
    xs[m + k], ...).  The kept lanes' r^2, charge, sigma/2 and sqrt(4 eps) go, in lane order,
    to ``packed[a, 0..3, counts[a]:]`` and ``counts[a]`` grows by their number.

    Parameters
    ----------
    packed : (8, ENERGY_ROWS, L) float64 array
    counts : (8,) int64 array
    """
    sig = types.void(xs, ys, zs, qs, hss, e4s, masks, types.intp, xi, yi, zi, types.intp,
                     types.float64, packed, counts)

    def codegen(context, builder, signature, args):
        t = signature.args
        m, i0, cut2 = args[7], args[11], args[12]

        def load(k, vector=_DOUBLES):
            pointer = _element(context, builder, t[k], args[k], [m])
            return builder.load(builder.bitcast(pointer, vector.as_pointer()), align=8)

        xj, yj, zj = load(0), load(1), load(2)
        parameters = (load(3), load(4), load(5))
        listed = builder.load(builder.bitcast(_element(context, builder, t[6], args[6], [m]),
                                              _INTS8.as_pointer()), align=4)

        def splat(value, vector):
            lane0 = builder.insert_element(ir.Constant(vector, ir.Undefined), value,
                                           ir.Constant(_I32, 0))
            return builder.shuffle_vector(lane0, lane0, ir.Constant(_INTS8, [0] * 8))

        limit = splat(cut2, _DOUBLES)
        store = _function(builder, "llvm.masked.compressstore.v8f64", ir.VoidType(),
                          [_DOUBLES, _DOUBLE.as_pointer(), _BITS8])
        ctpop = _function(builder, "llvm.ctpop.i8", ir.IntType(8), [ir.IntType(8)])
        intp = context.get_value_type(types.intp)
        for a in range(8):
            slot = builder.add(i0, ir.Constant(intp, a))
            centre = [builder.load(_element(context, builder, t[8 + k], args[8 + k], [slot]))
                      for k in range(3)]
            dx, dy, dz = (builder.fsub(splat(c, _DOUBLES), j)
                          for c, j in zip(centre, (xj, yj, zj)))
            r2 = builder.fadd(builder.fadd(builder.fmul(dx, dx), builder.fmul(dy, dy)),
                              builder.fmul(dz, dz))
            keep = builder.and_(
                builder.icmp_unsigned("!=", builder.and_(listed, ir.Constant(_INTS8, [1 << a] * 8)),
                                      ir.Constant(_INTS8, [0] * 8)),
                builder.fcmp_ordered("<", r2, limit))
            row = ir.Constant(intp, a)
            count_pointer = _element(context, builder, t[14], args[14], [row])
            count = builder.load(count_pointer)
            for k, value in enumerate((r2,) + parameters):
                target = _element(context, builder, t[13], args[13],
                                  [row, ir.Constant(intp, k), count])
                builder.call(store, [value, target, keep])
            added = builder.zext(builder.call(ctpop, [builder.bitcast(keep, ir.IntType(8))]),
                                 intp)
            builder.store(builder.add(count, added), count_pointer)
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
