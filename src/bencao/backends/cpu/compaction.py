"""Packed pair rows: keep the pairs inside the cutoff, run the law on them, spread them back.

For each i cluster the pair kernel visits the 8 atoms of every listed partner cluster; only
about 30% of those lanes are pairs inside the cutoff (DHFR: 3.5M of 11.9M), so evaluating the
force law on every lane, masked, spends two thirds of the arithmetic on pairs that contribute
nothing.  These intrinsics put two passes around a dense law instead, each working on two
partner clusters (16 lanes, one AVX-512 register) read straight from the slot arrays:

1. :func:`compact_partners16` -- for each of the 8 atoms of cluster i: the displacement, r^2
   and the interaction mask; the kept lanes' r^2 and partner parameters are compressed, in
   lane order, into that atom's dense rows (``llvm.experimental.vector.compress``: a
   ``vcompressps`` between registers, then a plain store), and the block's 16-bit mask is
   kept;
2. the force law on each atom's dense rows, -dE/dr / r (ordinary Numba code that LLVM
   vectorises);
3. :func:`spread_partners16` -- each atom's scalars are unpacked to the lanes they came from
   (a block load and ``vexpandps``, zero elsewhere) and times the displacement, recomputed, give
   the pair forces: the i atom's accumulate lane by lane, the partners' sum over the 8 atoms
   goes to their fixed-point forces.  Only the atoms that kept a lane of the block are visited
   (about two thirds on DHFR): 0.3 ms of DHFR's 5.0 ms pair kernel on two threads.

Packing four rows (r^2 and three parameters) instead of six (the displacement instead of
r^2) and making the forces in the spread is what pays: a compressed row costs about as much
as the law on it (DHFR, one thread: 0.75 ms per packed row, 4 ms for the law).

The energy pass packs the same way in float64, one partner (8 lanes) at a time, from gathered
rows (:func:`compact_rows8_energy`).  Every lane does the IEEE operations of the scalar code
(explicit ``llvm.fma``), and packing keeps lane order, so results do not depend on the vector
instructions LLVM picks.  Only CPUs with AVX-512 pack (:func:`packing_pays`), and code that
packs must never be built for others: there compress and expand would become per-lane code,
slower than evaluating every lane, and LLVM 20 does not even compile
``llvm.experimental.vector.compress`` of floats for an AVX2 target (an assertion fails).
Indices are element indices; arrays are C-contiguous and sized for whole blocks (a packed row
has a spare block: a block's store may write that far, and the spread loads that far).
"""

from __future__ import annotations

import functools

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from bencao.backends.cpu.simd8 import fixed_point_vector

#: Lanes of a block: one AVX-512 register of float32.
BLOCK = 16
#: Rows of each atom's packed array (:func:`compact_partners16`): r^2, charge, sigma/2,
#: sqrt(4 eps).
PACKED_ROWS = 4

_FLOAT = ir.FloatType()
_I32 = ir.IntType(32)
_FLOATS = ir.VectorType(_FLOAT, BLOCK)
_BITS = ir.VectorType(ir.IntType(1), BLOCK)
_ZEROS = ir.Constant(_FLOATS, [0.0] * BLOCK)


@functools.cache
def packing_pays() -> bool:
    """True if the CPU Numba compiles for has AVX-512 (``vcompressps``, ``vexpandps``).

    The features are those Numba gives LLVM: ``NUMBA_CPU_FEATURES`` when set, even empty (as
    ``NUMBA_CPU_NAME=generic`` sets it; the CPU name alone then decides, and this says False),
    else the host's."""
    from numba.core import config
    from numba.core.codegen import get_host_cpu_features

    features = config.CPU_FEATURES
    if features is None:
        features = get_host_cpu_features()
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


def _pack_atoms(context, builder, rows, centres, i0, cut2, packed, counts, packed_values):
    """Code that packs one block of partner lanes for each of the 8 atoms of cluster i.

    ``rows``: the block's partner vectors (x, y, z, charge, sigma/2, sqrt(4 eps), interaction
    mask), already loaded and shifted into place; ``centres``: the (type, value) of the x, y, z
    arrays that hold the i atoms (slots ``i0 .. i0 + 7``); ``packed``, ``counts``: (type,
    value) of the packed rows and their counts (see :func:`compact_partners16`).
    ``packed_values(dx, dy, dz, r2, (q, sigma/2, sqrt(4 eps)))`` names the vectors packed, in
    row order.  Returns each atom's mask of kept lanes (an integer of one bit per lane).
    """
    xj, yj, zj = rows[0:3]
    parameters = tuple(rows[3:6])
    listed = rows[6]
    values = xj.type
    lanes = values.count
    element = values.element
    ints = listed.type
    bits_type = ir.IntType(lanes)
    suffix = f"v{lanes}{'f32' if element == _FLOAT else 'f64'}"
    limit = _splat(builder, cut2, values)
    fma = _function(builder, f"llvm.fma.{suffix}", values, [values] * 3)
    compress = _function(builder, f"llvm.experimental.vector.compress.{suffix}", values,
                         [values, ir.VectorType(ir.IntType(1), lanes), values])
    ctpop = _function(builder, f"llvm.ctpop.i{lanes}", bits_type, [bits_type])
    intp = context.get_value_type(types.intp)
    masks = []
    for a in range(8):
        slot = builder.add(i0, ir.Constant(intp, a))
        centre = [builder.load(_element(context, builder, t, v, [slot])) for t, v in centres]
        dx, dy, dz = (builder.fsub(_splat(builder, c, values), j)
                      for c, j in zip(centre, (xj, yj, zj)))
        r2 = builder.call(fma, [dz, dz, builder.call(fma, [dy, dy, builder.fmul(dx, dx)])])
        keep = builder.and_(
            builder.icmp_unsigned("!=", builder.and_(listed, ir.Constant(ints, [1 << a] * lanes)),
                                  ir.Constant(ints, [0] * lanes)),
            builder.fcmp_ordered("<", r2, limit))
        row = ir.Constant(intp, a)
        count_pointer = _element(context, builder, counts[0], counts[1], [row])
        count = builder.load(count_pointer)
        for k, value in enumerate(packed_values(dx, dy, dz, r2, parameters)):
            target = _element(context, builder, packed[0], packed[1],
                              [row, ir.Constant(intp, k), count])
            # compressed in a register, then stored whole: the lanes past the kept ones land
            # in the row's spare block and are overwritten by the next block's (as fast as
            # a compressing store on the Intel and AMD CPUs measured, and the same on both)
            builder.store(builder.call(compress, [value, keep, ir.Constant(values, None)]),
                          builder.bitcast(target, values.as_pointer()), align=4)
        bits = builder.bitcast(keep, bits_type)
        builder.store(builder.add(count, builder.zext(builder.call(ctpop, [bits]), intp)),
                      count_pointer)
        masks.append(bits)
    return masks


def _over_atoms(context, builder, atoms, carried, body):
    """Code that runs ``body(a, values)`` for each set bit a of ``atoms`` (an i32 value), in
    increasing order, and returns the values it carries: ``carried`` (LLVM values) on entry,
    then what each ``body`` returns (the same types), ``carried`` itself if no bit is set.

    One loop with a data-dependent trip count: its exit is mispredicted about once per call,
    where a branch per atom would be about once per skipped atom."""
    intp = context.get_value_type(types.intp)
    cttz = _function(builder, "llvm.cttz.i32", _I32, [_I32, ir.IntType(1)])
    entry = builder.basic_block
    loop = builder.append_basic_block("atom")
    done = builder.append_basic_block("atoms_done")
    builder.cbranch(builder.icmp_unsigned("!=", atoms, ir.Constant(_I32, 0)), loop, done)
    builder.position_at_end(loop)
    remaining = builder.phi(_I32)
    values = [builder.phi(value.type) for value in carried]
    a = builder.zext(builder.call(cttz, [remaining, ir.Constant(ir.IntType(1), 1)]), intp)
    results = body(a, values)
    rest = builder.and_(remaining, builder.sub(remaining, ir.Constant(_I32, 1)))
    last = builder.basic_block
    remaining.add_incoming(atoms, entry)
    remaining.add_incoming(rest, last)
    for phi, start, result in zip(values, carried, results):
        phi.add_incoming(start, entry)
        phi.add_incoming(result, last)
    builder.cbranch(builder.icmp_unsigned("!=", rest, ir.Constant(_I32, 0)), loop, done)
    builder.position_at_end(done)
    final = []
    for start, result in zip(carried, results):
        phi = builder.phi(start.type)
        phi.add_incoming(start, entry)
        phi.add_incoming(result, last)
        final.append(phi)
    return final


def _two_partners(context, builder, array, slots, shift=None):
    """One row of two partner clusters' 16 lanes: slots ``slots[0] .. + 7`` then ``slots[1]
    .. + 7`` of ``array`` ((type, value), float32).  Coordinates pass ``shift`` = (the shift
    vectors as (type, value), the two shift codes, the axis): each partner is moved into place
    by its box shift."""
    half = ir.VectorType(_FLOAT, BLOCK // 2)
    halves = [builder.load(_block_pointer(context, builder, array[0], array[1], slot, half),
                           align=4) for slot in slots]
    if shift is not None:
        (shifts_type, shifts), codes, axis = shift
        axis = ir.Constant(context.get_value_type(types.intp), axis)
        halves = [builder.fadd(h, _splat(builder, builder.load(_element(
            context, builder, shifts_type, shifts, [code, axis])), half))
            for h, code in zip(halves, codes)]
    return builder.shuffle_vector(halves[0], halves[1], ir.Constant(ir.VectorType(_I32, BLOCK),
                                                                    list(range(BLOCK))))


def _partner_rows(context, builder, t, args):
    """The 16 lanes of two partner clusters (:func:`compact_partners16`'s arguments 0-13):
    x, y, z shifted into place, charge, sigma/2, sqrt(4 eps) and the interaction masks, each
    the first partner's 8 slots followed by the second's.  A negative mask offset gives the
    second partner no interactions (the spare partner of an odd count)."""
    intp = context.get_value_type(types.intp)
    half_ints = ir.VectorType(_I32, BLOCK // 2)
    half_bytes = ir.VectorType(ir.IntType(8), BLOCK // 2)
    slots = [args[7], args[8]]
    columns = [args[9], args[10]]
    shifts = ((t[11], args[11]), [args[12], args[13]])
    rows = [_two_partners(context, builder, (t[k], args[k]), slots, shifts + (k,))
            for k in range(3)]
    rows += [_two_partners(context, builder, (t[k], args[k]), slots) for k in range(3, 6)]
    spare = builder.icmp_signed("<", columns[1], ir.Constant(intp, 0))
    safe = builder.select(spare, columns[0], columns[1])
    # the masks are stored a byte per column (uint8) and widened here
    masks = [builder.zext(builder.load(_block_pointer(context, builder, t[6], args[6], column,
                                                      half_bytes), align=1), half_ints)
             for column in (columns[0], safe)]
    masks[1] = builder.select(spare, ir.Constant(half_ints, [0] * (BLOCK // 2)), masks[1])
    rows.append(builder.shuffle_vector(masks[0], masks[1], ir.Constant(
        ir.VectorType(_I32, BLOCK), list(range(BLOCK)))))
    return rows


@intrinsic
def compact_partners16(typingctx, x, y, z, q, hs, e4, columns, ja, jb, ca, cb, shifts, code_a,
                       code_b, i0, cut2, packed, counts, kept, filled, b):
    """Pack the pairs of two partner clusters (16 lanes) that interact with each of the 8
    atoms of cluster i, read straight from the slot arrays.

    The block's lanes are slots ``ja .. ja + 7`` then ``jb .. jb + 7`` of ``x``, ``y``, ``z``
    (moved by ``shifts[code_a]``, ``shifts[code_b]``), ``q``, ``hs`` (sigma/2) and ``e4``
    (sqrt(4 eps)), with interaction masks ``columns[ca .. ca + 7]`` and ``columns[cb ..
    cb + 7]`` (bit a: atom a of i; ``cb < 0``: none, for a spare partner).  For atom a (slot
    i0 + a of ``x``, ``y``, ``z``), a lane is kept if its mask bit is set and r^2 < ``cut2``,
    where dx = x[i0 + a] - x_lane (likewise y, z) and r^2 = fma(dz, dz, fma(dy, dy, dx * dx)),
    as the law computes it.  The kept lanes' r^2, charge, sigma/2 and sqrt(4 eps) go, in lane
    order, to ``packed[a, 0..3, counts[a]:]``; ``counts[a]`` grows by their number and
    ``kept[a, b]`` receives the block's mask (bit k: lane k).  ``filled[b]`` receives the atoms
    that kept a lane (bit a: atom a), the ones :func:`spread_partners16` visits.

    Parameters
    ----------
    x, y, z, q, hs, e4 : (S,) float32 arrays
    columns : (P * 8,) uint8 array
    shifts : (27, 3) float32 array
    packed : (8, PACKED_ROWS, L) float32 array
    counts : (8,) int64 array
    kept : (8, B) int32 array
    filled : (B,) int32 array
    """
    intp = types.intp
    sig = types.void(x, y, z, q, hs, e4, columns, intp, intp, intp, intp, shifts, intp, intp,
                     intp, types.float32, packed, counts, kept, filled, intp)

    def codegen(context, builder, signature, args):
        t = signature.args
        rows = _partner_rows(context, builder, t, args)
        masks = _pack_atoms(context, builder, rows, [(t[k], args[k]) for k in range(3)],
                            args[14], args[15], (t[16], args[16]), (t[17], args[17]),
                            lambda dx, dy, dz, r2, parameters: (r2,) + parameters)
        intp_ = context.get_value_type(types.intp)
        # every atom, unrolled: looping over only the atoms whose distance to the block's
        # boxes is under the cutoff (79% on DHFR) was no faster, its exit mispredicted
        atoms = ir.Constant(_I32, 0)
        for a, bits in enumerate(masks):
            builder.store(builder.zext(bits, _I32), _element(
                context, builder, t[18], args[18], [ir.Constant(intp_, a), args[20]]))
            nonzero = builder.zext(builder.icmp_unsigned("!=", bits, ir.Constant(bits.type, 0)),
                                   _I32)
            atoms = builder.or_(atoms, builder.shl(nonzero, ir.Constant(_I32, a)))
        builder.store(atoms, _element(context, builder, t[19], args[19], [args[20]]))
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def spread_partners16(typingctx, x, y, z, ja, jb, shifts, code_a, code_b, i0, scalars, offsets,
                      kept, filled, b, i_forces, fx, fy, fz):
    """The inverse of :func:`compact_partners16`: turn each packed pair's -dE/dr / r back into
    forces on the two partner clusters' lanes and on the atoms of cluster i.

    For each atom a of cluster i set in ``filled[b]`` (the others kept no lane of the block),
    its scalars ``scalars[a, offsets[a]:]`` are unpacked to the lanes set in ``kept[a, b]``
    (zero elsewhere; ``offsets[a]`` grows by their number), and times the displacement (dx =
    x[i0 + a] - x_lane, as :func:`compact_partners16` computes it) give the pair forces.
    ``i_forces[a, 0..2, :]`` (16 lanes) accumulate them lane by lane; the partners receive
    minus their sum over the atoms, in order (((0 - f_0) - f_1) - ... in float32), added to
    slots ``ja .. ja + 7`` and ``jb .. jb + 7`` of the int64 ``fx``, ``fy``, ``fz`` as
    ``add_fixed8`` converts (clamped, scaled, truncated: exact in float32).

    The atoms are visited in a loop over the set bits of ``filled[b]``: about a third of the
    (atom, block) pairs keep no lane (DHFR), and their zero forces change no sum (x - 0 = x,
    and no sum is ever -0), so skipping them gives the same bits.

    Parameters
    ----------
    x, y, z : (S,) float32 arrays
    shifts : (27, 3) float32 array
    scalars : (8, L) float32 array
        With a spare block past the last scalar (a whole block is loaded at each offset).
    offsets : (8,) int64 array
    kept : (8, B) int32 array
    filled : (B,) int32 array
    i_forces : (8, 3, 16) float32 array
    fx, fy, fz : (S,) int64 arrays
    """
    intp = types.intp
    sig = types.void(x, y, z, intp, intp, shifts, intp, intp, intp, scalars, offsets, kept,
                     filled, intp, i_forces, fx, fy, fz)

    def codegen(context, builder, signature, args):
        t = signature.args
        b = args[13]
        shifts = ((t[5], args[5]), [args[6], args[7]])
        coordinates = [_two_partners(context, builder, (t[k], args[k]), [args[3], args[4]],
                                     shifts + (k,)) for k in range(3)]
        # a plain load of a whole block, then vexpandps between registers: 1.5% faster than
        # an expanding load (llvm.masked.expandload) on AMD Zen 5
        expand = _function(builder, "llvm.x86.avx512.mask.expand.v16f32", _FLOATS,
                           [_FLOATS, _FLOATS, _BITS])
        ctpop = _function(builder, "llvm.ctpop.i16", ir.IntType(BLOCK), [ir.IntType(BLOCK)])
        intp_ = context.get_value_type(types.intp)
        atoms = builder.load(_element(context, builder, t[12], args[12], [b]))

        def spread(row, sums):
            bits = builder.trunc(builder.load(_element(context, builder, t[11], args[11],
                                                       [row, b])), ir.IntType(BLOCK))
            offset_pointer = _element(context, builder, t[10], args[10], [row])
            offset = builder.load(offset_pointer)
            source = _element(context, builder, t[9], args[9], [row, offset])
            block = builder.load(builder.bitcast(source, _FLOATS.as_pointer()), align=4)
            scalar = builder.call(expand, [block, _ZEROS, builder.bitcast(bits, _BITS)])
            builder.store(builder.add(offset, builder.zext(builder.call(ctpop, [bits]), intp_)),
                          offset_pointer)
            slot = builder.add(args[8], row)
            updated = []
            for k in range(3):
                centre = builder.load(_element(context, builder, t[k], args[k], [slot]))
                force = builder.fmul(scalar, builder.fsub(_splat(builder, centre, _FLOATS),
                                                          coordinates[k]))
                updated.append(builder.fsub(sums[k], force))
                target = builder.bitcast(_element(context, builder, t[14], args[14],
                                                  [row, ir.Constant(intp_, k),
                                                   ir.Constant(intp_, 0)]),
                                         _FLOATS.as_pointer())
                builder.store(builder.fadd(builder.load(target, align=4), force), target,
                              align=4)
            return updated

        sums = _over_atoms(context, builder, atoms, [_ZEROS] * 3, spread)
        longs = ir.VectorType(ir.IntType(64), BLOCK // 2)
        for k in range(3):
            fixed = fixed_point_vector(builder, sums[k])
            for half, slot in enumerate((args[3], args[4])):
                part = builder.shuffle_vector(fixed, fixed, ir.Constant(
                    ir.VectorType(_I32, BLOCK // 2), list(range(half * 8, half * 8 + 8))))
                target = _block_pointer(context, builder, t[15 + k], args[15 + k], slot, longs)
                builder.store(builder.add(builder.load(target, align=8), part), target, align=8)
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
        t = signature.args
        values = ir.VectorType(ir.DoubleType(), 8)
        rows = [builder.load(_block_pointer(context, builder, t[k], args[k], args[7],
                                            ir.VectorType(_I32, 8) if k == 6 else values),
                             align=4) for k in range(7)]
        _pack_atoms(context, builder, rows, [(t[8 + k], args[8 + k]) for k in range(3)],
                    args[11], args[12], (t[13], args[13]), (t[14], args[14]),
                    lambda dx, dy, dz, r2, parameters: (r2,) + parameters)
        return context.get_dummy_value()

    return sig, codegen
