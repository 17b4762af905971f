"""Packed pair rows: keep the pairs inside the cutoff, run the law on them, spread them back.

The cluster pair kernel gathers, for each i cluster, the 8 atoms of every listed partner
cluster into contiguous rows.  Only about 30% of those lanes are pairs inside the cutoff
(DHFR: 3.5M of 11.9M), so evaluating the force law on every lane, masked, spends two thirds
of the arithmetic on pairs that contribute nothing.  These intrinsics put three cheap passes
around a dense law instead:

1. :func:`compact_rows16` -- per block of 16 lanes, for each of the 8 atoms of cluster i: the
   displacement, r^2 and the interaction mask; the kept lanes' dx, dy, dz and partner
   parameters are packed, in lane order, into that atom's dense rows
   (``llvm.masked.compressstore``: a ``vcompressps`` on AVX-512), and the block's 16-bit
   mask is kept.  The block's partner data is loaded once for the 8 atoms;
2. the force law on each atom's dense rows (ordinary Numba code that LLVM vectorises);
3. :func:`spread_rows16` -- per block, each atom's pair forces are unpacked to the lanes they
   came from (``llvm.masked.expandload``, zero elsewhere) and their sum over the 8 atoms is
   stored as the block's partner forces.

The energy pass packs the same way in float64, one partner (8 lanes) at a time
(:func:`compact_rows8_energy`).  Every lane does the IEEE operations of the scalar code
(explicit ``llvm.fma``), and packing keeps lane order, so results do not depend on the vector
instructions LLVM picks.  On a CPU without AVX-512, LLVM turns compress and expand into
per-lane branches: correct, but slower than evaluating every lane, so the kernels then do not
pack (:func:`packing_pays`).  Indices are element indices; arrays are C-contiguous and sized
for whole blocks (a packed row has a spare block: a block's store may write that far).
"""

from __future__ import annotations

import functools

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

#: Lanes of a block: one AVX-512 register of float32.
BLOCK = 16
#: Rows of each atom's packed array (:func:`compact_rows16`): dx, dy, dz, charge, sigma/2,
#: sqrt(4 eps).
PACKED_ROWS = 6

_FLOAT = ir.FloatType()
_I32 = ir.IntType(32)
_FLOATS = ir.VectorType(_FLOAT, BLOCK)
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
    """A vector with every lane equal to the run-time scalar ``value``."""
    lane0 = builder.insert_element(ir.Constant(vector, ir.Undefined), value,
                                   ir.Constant(_I32, 0))
    mask = ir.Constant(ir.VectorType(_I32, vector.count), [0] * vector.count)
    return builder.shuffle_vector(lane0, lane0, mask)


def _element(context, builder, array_type, array, indices):
    """Pointer to ``array[indices]`` (a C-contiguous array, intp indices), by its strides."""
    view = context.make_array(array_type)(context, builder, array)
    strides = cgutils.unpack_tuple(builder, view.strides)
    offset = ir.Constant(strides[0].type, 0)
    for index, stride in zip(indices, strides):
        offset = builder.add(offset, builder.mul(index, stride))
    byte = builder.gep(builder.bitcast(view.data, ir.IntType(8).as_pointer()), [offset])
    return builder.bitcast(byte, view.data.type)


def _pack_block(context, builder, types_, args, lanes, element, packed_values):
    """Code of the packing intrinsics, whose first 15 arguments are (xs, ys, zs, qs, hss, e4s,
    masks, m, xi, yi, zi, i0, cut2, packed, counts); see :func:`compact_rows16`.

    ``packed_values(dx, dy, dz, r2, (q, sigma/2, sqrt(4 eps)))`` names the vectors packed, in
    row order.  Returns each atom's mask of kept lanes (an i``lanes`` integer).
    """
    m, i0, cut2 = args[7], args[11], args[12]
    values = ir.VectorType(element, lanes)
    ints = ir.VectorType(_I32, lanes)
    bits_type = ir.IntType(lanes)
    suffix = f"v{lanes}{'f32' if element == _FLOAT else 'f64'}"

    def load(k, vector=values):
        pointer = _block_pointer(context, builder, types_[k], args[k], m, vector)
        return builder.load(pointer, align=4)

    xj, yj, zj = load(0), load(1), load(2)
    parameters = (load(3), load(4), load(5))
    listed = load(6, ints)
    limit = _splat(builder, cut2, values)
    fma = _function(builder, f"llvm.fma.{suffix}", values, [values] * 3)
    store = _function(builder, f"llvm.masked.compressstore.{suffix}", ir.VoidType(),
                      [values, element.as_pointer(), ir.VectorType(ir.IntType(1), lanes)])
    ctpop = _function(builder, f"llvm.ctpop.i{lanes}", bits_type, [bits_type])
    intp = context.get_value_type(types.intp)
    masks = []
    for a in range(8):
        slot = builder.add(i0, ir.Constant(intp, a))
        centre = [builder.load(_element(context, builder, types_[8 + k], args[8 + k], [slot]))
                  for k in range(3)]
        dx, dy, dz = (builder.fsub(_splat(builder, c, values), j)
                      for c, j in zip(centre, (xj, yj, zj)))
        r2 = builder.call(fma, [dz, dz, builder.call(fma, [dy, dy, builder.fmul(dx, dx)])])
        keep = builder.and_(
            builder.icmp_unsigned("!=", builder.and_(listed, ir.Constant(ints, [1 << a] * lanes)),
                                  ir.Constant(ints, [0] * lanes)),
            builder.fcmp_ordered("<", r2, limit))
        row = ir.Constant(intp, a)
        count_pointer = _element(context, builder, types_[14], args[14], [row])
        count = builder.load(count_pointer)
        for k, value in enumerate(packed_values(dx, dy, dz, r2, parameters)):
            target = _element(context, builder, types_[13], args[13],
                              [row, ir.Constant(intp, k), count])
            builder.call(store, [value, target, keep])
        bits = builder.bitcast(keep, bits_type)
        builder.store(builder.add(count, builder.zext(builder.call(ctpop, [bits]), intp)),
                      count_pointer)
        masks.append(bits)
    return masks


@intrinsic
def compact_rows16(typingctx, xs, ys, zs, qs, hss, e4s, masks, m, xi, yi, zi, i0, cut2, packed,
                   counts, kept, b):
    """Pack the lanes ``m .. m + 15`` of a gathered row that interact with each of the 8 atoms
    of cluster i (slots ``i0 .. i0 + 7`` of ``xi``, ``yi``, ``zi``; float32).

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
        masks = _pack_block(context, builder, signature.args, args, BLOCK, _FLOAT,
                            lambda dx, dy, dz, r2, parameters: (dx, dy, dz) + parameters)
        intp = context.get_value_type(types.intp)
        for a, bits in enumerate(masks):
            builder.store(builder.zext(bits, _I32), _element(
                context, builder, signature.args[15], args[15], [ir.Constant(intp, a), args[16]]))
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

@intrinsic
def compact_rows8_energy(typingctx, xs, ys, zs, qs, hss, e4s, masks, m, xi, yi, zi, i0, cut2,
                         packed, counts):
    """The energy pass's :func:`compact_rows16`: float64, one partner (8 lanes) at a time,
    packing r^2, charge, sigma/2 and sqrt(4 eps) into ``packed[a, 0..3, counts[a]:]``.

    Parameters
    ----------
    packed : (8, ENERGY_ROWS, L) float64 array
    counts : (8,) int64 array
    """
    sig = types.void(xs, ys, zs, qs, hss, e4s, masks, types.intp, xi, yi, zi, types.intp,
                     types.float64, packed, counts)

    def codegen(context, builder, signature, args):
        _pack_block(context, builder, signature.args, args, 8, ir.DoubleType(),
                    lambda dx, dy, dz, r2, parameters: (r2,) + parameters)
        return context.get_dummy_value()

    return sig, codegen
