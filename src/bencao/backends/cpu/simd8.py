"""Eight-element vector moves for the pair kernel's gather and scatter, as Numba intrinsics.

A cluster has 8 slots, so the pair kernel copies partner data and adds partner forces in runs
of 8 contiguous elements.  LLVM does not vectorise these short loops itself (it cannot prove
that the source and destination arrays do not overlap), so each run is written here as one
``<8 x T>`` load and store.  The arithmetic is exactly that of the scalar code it replaces
(an IEEE add; :func:`bencao.backends.common.fixed_point.to_fixed`'s clamp and truncation), so the
results do not change, only the instruction count.

All arrays must be C-contiguous and 1-D; indices are element indices.  There is no bounds
check: the callers index within arrays whose sizes are multiples of 8.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from bencao.constants import FORCE_CLAMP, FORCE_SCALE

LANES = 8


def _pointer(context, builder, array_type, array, index, index_type):
    """Pointer to ``array[index]`` as a pointer to an 8-lane vector of the array's dtype."""
    index = context.cast(builder, index, index_type, types.intp)
    data = context.make_array(array_type)(context, builder, array).data
    element = context.get_data_type(array_type.dtype)
    return builder.bitcast(builder.gep(data, [index]), ir.VectorType(element, LANES).as_pointer())


def _splat(value, element_type):
    return ir.Constant(ir.VectorType(element_type, LANES), [value] * LANES)


@intrinsic
def copy8(typingctx, dst, dst_index, src, src_index):
    """``dst[dst_index:dst_index + 8] = src[src_index:src_index + 8]`` (same dtype)."""
    if dst.dtype != src.dtype:
        return None
    sig = types.void(dst, dst_index, src, src_index)

    def codegen(context, builder, signature, args):
        d_type, d_index_type, s_type, s_index_type = signature.args
        source = _pointer(context, builder, s_type, args[2], args[3], s_index_type)
        target = _pointer(context, builder, d_type, args[0], args[1], d_index_type)
        builder.store(builder.load(source, align=1), target, align=1)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def copy8_shifted(typingctx, dst, dst_index, src, src_index, shift):
    """``dst[dst_index:dst_index + 8] = src[src_index:src_index + 8] + shift`` (float32)."""
    if dst.dtype != types.float32 or src.dtype != types.float32:
        return None
    sig = types.void(dst, dst_index, src, src_index, types.float32)

    def codegen(context, builder, signature, args):
        d_type, d_index_type, s_type, s_index_type, _ = signature.args
        source = _pointer(context, builder, s_type, args[2], args[3], s_index_type)
        target = _pointer(context, builder, d_type, args[0], args[1], d_index_type)
        vector = ir.VectorType(ir.FloatType(), LANES)
        lane0 = builder.insert_element(ir.Constant(vector, None), args[4],
                                       ir.Constant(ir.IntType(32), 0))
        splat = builder.shuffle_vector(lane0, ir.Constant(vector, None),
                                       ir.Constant(ir.VectorType(ir.IntType(32), LANES),
                                                   [0] * LANES))
        builder.store(builder.fadd(builder.load(source, align=1), splat), target, align=1)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def zero8(typingctx, dst, dst_index):
    """``dst[dst_index:dst_index + 8] = 0`` (float32)."""
    if dst.dtype != types.float32:
        return None
    sig = types.void(dst, dst_index)

    def codegen(context, builder, signature, args):
        target = _pointer(context, builder, signature.args[0], args[0], args[1], signature.args[1])
        builder.store(_splat(0.0, ir.FloatType()), target, align=1)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def add_fixed8(typingctx, acc, acc_index, values, values_index):
    """``acc[acc_index:acc_index + 8] += to_fixed(values[values_index:values_index + 8])``.

    ``acc`` int64, ``values`` float32 (kJ/mol/nm).  Each value is widened to float64, clamped
    to +-FORCE_CLAMP (a NaN stays NaN, as in ``to_fixed``), scaled by FORCE_SCALE and truncated.
    """
    if acc.dtype != types.int64 or values.dtype != types.float32:
        return None
    sig = types.void(acc, acc_index, values, values_index)

    def codegen(context, builder, signature, args):
        a_type, a_index_type, v_type, v_index_type = signature.args
        source = _pointer(context, builder, v_type, args[2], args[3], v_index_type)
        target = _pointer(context, builder, a_type, args[0], args[1], a_index_type)
        double = ir.DoubleType()
        wide = builder.fpext(builder.load(source, align=1), ir.VectorType(double, LANES))
        low = _splat(-FORCE_CLAMP, double)
        high = _splat(FORCE_CLAMP, double)
        wide = builder.select(builder.fcmp_ordered("<", wide, low), low, wide)
        wide = builder.select(builder.fcmp_ordered(">", wide, high), high, wide)
        scaled = builder.fmul(wide, _splat(FORCE_SCALE, double))
        fixed = builder.fptosi(scaled, ir.VectorType(ir.IntType(64), LANES))
        builder.store(builder.add(builder.load(target, align=1), fixed), target, align=1)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def sum_blocks8(typingctx, values, start, count):
    """Sum of ``values[start:start + count]`` (float32, count a multiple of 8) in a fixed order.

    Four 8-lane running sums take the blocks of 8 in rotation (block k joins sum k mod 4; the
    last ``count mod 32`` elements all join sum 0), so four independent chains of adds overlap
    instead of one waiting on the latency of each add.  Then (s0 + s1) + (s2 + s3), and its
    lanes pairwise ((0+1)+(2+3))+((4+5)+(6+7)).  The order is written out here, not left to the
    compiler, so the result is the same whatever code LLVM generates (fresh or from Numba's
    cache).
    """
    if values.dtype != types.float32:
        return None
    sig = types.float32(values, start, count)

    def codegen(context, builder, signature, args):
        v_type, s_type, c_type = signature.args
        vector = ir.VectorType(ir.FloatType(), LANES)
        start_value = context.cast(builder, args[1], s_type, types.intp)
        count_value = context.cast(builder, args[2], c_type, types.intp)
        data = context.make_array(v_type)(context, builder, args[0]).data
        intp = context.get_value_type(types.intp)
        zero = _splat(0.0, ir.FloatType())
        sums = [cgutils.alloca_once_value(builder, zero) for _ in range(4)]

        def block(offset):
            index = builder.add(start_value, offset)
            pointer = builder.bitcast(builder.gep(data, [index]), vector.as_pointer())
            return builder.load(pointer, align=1)

        stride = 4 * LANES
        whole = builder.mul(builder.sdiv(count_value, ir.Constant(intp, stride)),
                            ir.Constant(intp, stride))
        with cgutils.for_range_slice(builder, ir.Constant(intp, 0), whole,
                                     ir.Constant(intp, stride)) as (offset, _):
            for k in range(4):
                value = block(builder.add(offset, ir.Constant(intp, k * LANES)))
                builder.store(builder.fadd(builder.load(sums[k]), value), sums[k])
        with cgutils.for_range_slice(builder, whole, count_value,
                                     ir.Constant(intp, LANES)) as (offset, _):
            builder.store(builder.fadd(builder.load(sums[0]), block(offset)), sums[0])
        total = builder.fadd(builder.fadd(builder.load(sums[0]), builder.load(sums[1])),
                             builder.fadd(builder.load(sums[2]), builder.load(sums[3])))
        lane = [builder.extract_element(total, ir.Constant(ir.IntType(32), k))
                for k in range(LANES)]
        pairs = [builder.fadd(lane[2 * k], lane[2 * k + 1]) for k in range(4)]
        return builder.fadd(builder.fadd(pairs[0], pairs[1]), builder.fadd(pairs[2], pairs[3]))

    return sig, codegen
