"""Eight-lane SIMD for the CPU kernels, as Numba intrinsics (LLVM vector instructions).

Why this exists: Numba runs LLVM's loop vectorizer but not its SLP vectorizer, and the loop
vectorizer gives up on the kernels' short fixed loops (it cannot prove that source and
destination arrays do not overlap; a 5-point B-spline loop is too short to be worth it).  So
the kernels say "8 lanes at once" themselves, with the intrinsics below.  Each one is a
single LLVM vector operation whose lanes do exactly the IEEE operations of the scalar code
(explicit ``llvm.fma`` included, no fast-math flags), so results do not depend on how lanes,
tasks or threads are arranged, nor on the code LLVM generates -- only the instruction count
changes.

Two families share the lane count and the address arithmetic:

* **Eight-element moves on arrays** (``copy8``, ``copy8_shifted``, ``zero8``, ``add_fixed8``,
  ``sum_blocks8``, ``gather_rows8_transposed``): the cluster pair kernel's gather and
  scatter.  A cluster has 8 slots, so it copies partner data and adds partner forces in runs
  of 8 contiguous float32 / int64 elements; ``add_fixed8`` repeats
  :func:`bencao.backends.common.fixed_point.to_fixed`'s clamp and truncation lane by lane.
  A cluster's bounding box is a row of 8 values, and ``gather_rows8_transposed`` moves 8
  partners' boxes at once into the near test's rows.
* **An 8-lane float64 value type** (``f64x8``, LLVM ``<8 x double>``: one AVX-512 register,
  two AVX2 ones) for the PME kernels, the energy pass and the exceptions' series: loads and
  stores (``vload``, ``vstore``), lane-wise arithmetic (``vadd``, ``vsub``, ``vmul``,
  ``vfma``, ``vfms``), broadcasts and lanes (``vsplat``, ``vzero``, ``vlane``), a lane sum
  in a fixed order (``vsum``) and an 8 x 8 transpose in registers (``transpose8``).  The FFT
  works on raw addresses instead of arrays (``address``, ``pload``, ``pstore``, ``pget``,
  ``pgeti``; see :mod:`bencao.backends.cpu.fft` for why).  An ``f64x8`` never crosses to Python.

Beside them, two scalar helpers that LLVM's loop vectorizer widens: ``fma32`` (a fused
multiply-add written out) and ``float32_from_bits`` (a bit cast, for exact powers of two).

Arrays must be C-contiguous; indices are element indices into the flat array (``pload`` &
co.: double-sized steps from the address).  There is no bounds check: the callers index within
arrays sized for whole-vector access.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, models, register_model

from bencao.constants import FORCE_CLAMP, FORCE_SCALE

#: Lanes of every vector here: a cluster's 8 slots; the PME_ORDER points of an atom's B-spline
#: support along z; the 8 lines an FFT call transforms at once.
LANES = 8

_I32 = ir.IntType(32)
_DOUBLE_VECTOR = ir.VectorType(ir.DoubleType(), LANES)


def _pointer(context, builder, array_type, array, index, index_type):
    """Pointer to ``array[index]`` as a pointer to an 8-lane vector of the array's dtype."""
    index = context.cast(builder, index, index_type, types.intp)
    data = context.make_array(array_type)(context, builder, array).data
    element = context.get_data_type(array_type.dtype)
    return builder.bitcast(builder.gep(data, [index]), ir.VectorType(element, LANES).as_pointer())


def _splat(value, element_type):
    """A constant vector with every lane equal to the Python number ``value``."""
    return ir.Constant(ir.VectorType(element_type, LANES), [value] * LANES)


def _broadcast(builder, value, vector_type):
    """A vector with every lane equal to the run-time scalar ``value`` (insert + shuffle)."""
    lane0 = builder.insert_element(ir.Constant(vector_type, ir.Undefined), value,
                                   ir.Constant(_I32, 0))
    return builder.shuffle_vector(lane0, lane0,
                                  ir.Constant(ir.VectorType(_I32, LANES), [0] * LANES))


def _fma(builder, a, b, c):
    """``llvm.fma`` on three double vectors: ``a * b + c`` with a single rounding."""
    fma = cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(_DOUBLE_VECTOR, [_DOUBLE_VECTOR] * 3),
        f"llvm.fma.v{LANES}f64")
    return builder.call(fma, [a, b, c])


# ---------------------------------------------------------------------------------------------
# Eight-element moves on arrays (the cluster pair kernel).


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
        splat = _broadcast(builder, args[4], ir.VectorType(ir.FloatType(), LANES))
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


def fixed_point_vector(builder, value):
    """Code for a float32 vector (kJ/mol/nm) -> the int64 vector of ``to_fixed``: clamped to
    +-FORCE_CLAMP (a NaN stays NaN), scaled by FORCE_SCALE and truncated, all in float32, which
    is exact (FORCE_CLAMP is a float32 and FORCE_SCALE a power of two)."""
    vector = value.type
    low = ir.Constant(vector, [-FORCE_CLAMP] * vector.count)
    high = ir.Constant(vector, [FORCE_CLAMP] * vector.count)
    value = builder.select(builder.fcmp_ordered("<", value, low), low, value)
    value = builder.select(builder.fcmp_ordered(">", value, high), high, value)
    scaled = builder.fmul(value, ir.Constant(vector, [FORCE_SCALE] * vector.count))
    return builder.fptosi(scaled, ir.VectorType(ir.IntType(64), vector.count))


@intrinsic
def add_fixed8(typingctx, acc, acc_index, values, values_index):
    """``acc[acc_index:acc_index + 8] += to_fixed(values[values_index:values_index + 8])``.

    ``acc`` int64, ``values`` float32 (kJ/mol/nm).  Each value is clamped to +-FORCE_CLAMP (a
    NaN stays NaN, as in ``to_fixed``), scaled by FORCE_SCALE and truncated, all in float32:
    FORCE_CLAMP is a float32 and FORCE_SCALE a power of two, so every step is exact and the
    result is ``to_fixed``'s on the value widened to float64 (one ``vcvttps2qq`` on AVX-512).
    """
    if acc.dtype != types.int64 or values.dtype != types.float32:
        return None
    sig = types.void(acc, acc_index, values, values_index)

    def codegen(context, builder, signature, args):
        a_type, a_index_type, v_type, v_index_type = signature.args
        source = _pointer(context, builder, v_type, args[2], args[3], v_index_type)
        target = _pointer(context, builder, a_type, args[0], args[1], a_index_type)
        fixed = fixed_point_vector(builder, builder.load(source, align=1))
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
        lane = [builder.extract_element(total, ir.Constant(_I32, k)) for k in range(LANES)]
        pairs = [builder.fadd(lane[2 * k], lane[2 * k + 1]) for k in range(4)]
        return builder.fadd(builder.fadd(pairs[0], pairs[1]), builder.fadd(pairs[2], pairs[3]))

    return sig, codegen


@intrinsic
def float32_from_bits(typingctx, bits):
    """The float32 whose IEEE bits are the int32 ``bits`` (a scalar bit cast, which LLVM's loop
    vectorizer widens like any other operation): builds exact powers of two in the kernels."""
    if bits != types.int32:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())

    return types.float32(types.int32), codegen


@intrinsic
def fma32(typingctx, a, b, c):
    """``a * b + c`` in float32 with a single rounding (``llvm.fma.f32``, which the loop
    vectorizer widens).  The pair kernel writes its fused multiply-adds out rather than let
    LLVM choose which products to fuse: its choice differed between a fresh compile and
    Numba's cached code."""
    if not (a == b == c == types.float32):
        return None

    def codegen(context, builder, signature, args):
        fma = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.FloatType(), [ir.FloatType()] * 3), "llvm.fma.f32")
        return builder.call(fma, args)

    return types.float32(types.float32, types.float32, types.float32), codegen


# ---------------------------------------------------------------------------------------------
# An 8-lane float64 value (the PME kernels).


class F64x8Type(types.Type):
    """Numba type of an 8-lane float64 SIMD value (kernel-internal, never crosses to Python)."""

    def __init__(self):
        super().__init__(name="F64x8")


#: The Numba type of an 8-lane float64 vector.
f64x8 = F64x8Type()


@register_model(F64x8Type)
class _F64x8Model(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, _DOUBLE_VECTOR)


@intrinsic
def vload(typingctx, array, index):
    """``array.flat[index:index + 8]`` as a vector (C-contiguous float64 array)."""
    if array.dtype != types.float64:
        return None
    sig = f64x8(array, types.intp)

    def codegen(context, builder, signature, args):
        pointer = _pointer(context, builder, signature.args[0], args[0], args[1],
                           signature.args[1])
        return builder.load(pointer, align=8)

    return sig, codegen


@intrinsic
def vstore(typingctx, array, index, value):
    """``array.flat[index:index + 8] = value`` (C-contiguous float64 array)."""
    if array.dtype != types.float64:
        return None
    sig = types.void(array, types.intp, f64x8)

    def codegen(context, builder, signature, args):
        pointer = _pointer(context, builder, signature.args[0], args[0], args[1],
                           signature.args[1])
        builder.store(args[2], pointer, align=8)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def vzero(typingctx):
    """The all-zero vector."""
    sig = f64x8()

    def codegen(context, builder, signature, args):
        return _splat(0.0, ir.DoubleType())

    return sig, codegen


@intrinsic
def vsplat(typingctx, x):
    """A vector with every lane equal to the float64 ``x``."""
    sig = f64x8(types.float64)

    def codegen(context, builder, signature, args):
        return _broadcast(builder, args[0], _DOUBLE_VECTOR)

    return sig, codegen


@intrinsic
def vlane(typingctx, a, k):
    """Lane k of the vector a (a float64)."""
    sig = types.float64(f64x8, types.intp)

    def codegen(context, builder, signature, args):
        k = context.cast(builder, args[1], signature.args[1], types.intp)
        return builder.extract_element(args[0], k)

    return sig, codegen


def _lanewise(operation):
    @intrinsic
    def binary(typingctx, a, b):
        sig = f64x8(f64x8, f64x8)

        def codegen(context, builder, signature, args):
            return getattr(builder, operation)(args[0], args[1])

        return sig, codegen

    symbol = {"fadd": "+", "fsub": "-", "fmul": "*"}[operation]
    binary.__doc__ = f"``a {symbol} b`` lane by lane (one IEEE operation per lane)."
    return binary


vadd = _lanewise("fadd")
vsub = _lanewise("fsub")
vmul = _lanewise("fmul")


@intrinsic
def vfma(typingctx, a, b, c):
    """``a * b + c`` lane by lane with a single rounding (``llvm.fma``: one instruction with
    FMA3 or AVX-512, a correctly rounded library call without; the same bits either way)."""
    sig = f64x8(f64x8, f64x8, f64x8)

    def codegen(context, builder, signature, args):
        return _fma(builder, args[0], args[1], args[2])

    return sig, codegen


@intrinsic
def vfms(typingctx, a, b, c):
    """``a * b - c`` lane by lane with a single rounding (see ``vfma``)."""
    sig = f64x8(f64x8, f64x8, f64x8)

    def codegen(context, builder, signature, args):
        return _fma(builder, args[0], args[1], builder.fneg(args[2]))

    return sig, codegen


@intrinsic
def vsum(typingctx, a):
    """Sum of the 8 lanes in a fixed order: ((a0 + a4) + (a2 + a6)) + ((a1 + a5) + (a3 + a7))."""
    sig = types.float64(f64x8)

    def codegen(context, builder, signature, args):
        v = args[0]
        half = builder.fadd(
            builder.shuffle_vector(v, v, ir.Constant(ir.VectorType(_I32, 4), [0, 1, 2, 3])),
            builder.shuffle_vector(v, v, ir.Constant(ir.VectorType(_I32, 4), [4, 5, 6, 7])))
        quarter = builder.fadd(
            builder.shuffle_vector(half, half, ir.Constant(ir.VectorType(_I32, 2), [0, 1])),
            builder.shuffle_vector(half, half, ir.Constant(ir.VectorType(_I32, 2), [2, 3])))
        return builder.fadd(builder.extract_element(quarter, ir.Constant(_I32, 0)),
                            builder.extract_element(quarter, ir.Constant(_I32, 1)))

    return sig, codegen


def _transpose_rows(builder, rows):
    """The 8 columns of 8 row vectors: three rounds of lane shuffles (pairs, quads, halves)."""
    for masks, width in (
            (([0, 8, 2, 10, 4, 12, 6, 14], [1, 9, 3, 11, 5, 13, 7, 15]), 1),
            (([0, 1, 8, 9, 4, 5, 12, 13], [2, 3, 10, 11, 6, 7, 14, 15]), 2),
            (([0, 1, 2, 3, 8, 9, 10, 11], [4, 5, 6, 7, 12, 13, 14, 15]), 4)):
        out = [None] * LANES
        for a in range(LANES):
            if a & width:
                continue
            for k in range(2):
                out[a + k * width] = builder.shuffle_vector(
                    rows[a], rows[a + width], ir.Constant(ir.VectorType(_I32, LANES), masks[k]))
        rows = out
    return rows


def _store_columns(context, builder, dst_type, dst, d_off, d_stride, columns):
    """``dst[d_off + c d_stride:][:8] = columns[c]`` for c < 8 (intp offsets)."""
    for c, column in enumerate(columns):
        index = builder.add(d_off, builder.mul(d_stride, ir.Constant(d_stride.type, c)))
        builder.store(column, _pointer(context, builder, dst_type, dst, index, types.intp),
                      align=1)


def _float_arrays(*arrays):
    """True if the arrays share a float32 or float64 dtype."""
    return (len({a.dtype for a in arrays}) == 1
            and arrays[0].dtype in (types.float32, types.float64))


@intrinsic
def transpose8(typingctx, src, s_off, s_stride, dst, d_off, d_stride):
    """``dst[d_off + c d_stride + r] = src[s_off + r s_stride + c]`` for r, c < 8 (flat
    float64 or float32 arrays, both the same).

    An 8 x 8 block transpose in registers: three rounds of lane shuffles (pairs, quads,
    halves) instead of 64 scalar loads and stores.
    """
    if not _float_arrays(src, dst):
        return None
    sig = types.void(src, types.intp, types.intp, dst, types.intp, types.intp)

    def codegen(context, builder, signature, args):
        src_type, _, _, dst_type, _, _ = signature.args
        s_off, s_stride, d_off, d_stride = (context.cast(builder, args[k], signature.args[k],
                                                         types.intp) for k in (1, 2, 4, 5))
        rows = []
        for r in range(LANES):
            index = builder.add(s_off, builder.mul(s_stride, ir.Constant(s_stride.type, r)))
            rows.append(builder.load(
                _pointer(context, builder, src_type, args[0], index, types.intp), align=1))
        _store_columns(context, builder, dst_type, args[3], d_off, d_stride,
                       _transpose_rows(builder, rows))
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def gather_rows8_transposed(typingctx, a, a_rows, b, b_rows, first, count, dst, d_off,
                            d_stride):
    """Rows of 8 gathered, summed and transposed: for p < 8, row p is ``a[8 ia:8 ia + 8] +
    b[8 ib:8 ib + 8]`` with ``ia = a_rows[first + p]``, ``ib = b_rows[first + p]``, and
    ``dst[d_off + c d_stride + p]`` receives its element c (c < 8).

    Rows p >= ``count`` (>= 1) repeat row 0, so that no index past ``first + count`` is read.
    ``a``, ``b``, ``dst``: flat float32 or float64 arrays, all the same; ``a_rows``,
    ``b_rows``: flat integer arrays.  The cluster kernels' partner boxes: a partner's box plus
    its box shift, for 8 partners at once, into the rows of the near test.
    """
    if not _float_arrays(a, b, dst):
        return None
    intp = types.intp
    sig = types.void(a, a_rows, b, b_rows, intp, intp, dst, intp, intp)

    def codegen(context, builder, signature, args):
        t = signature.args
        first, count, d_off, d_stride = (context.cast(builder, args[k], t[k], intp)
                                         for k in (4, 5, 7, 8))
        ll_intp = first.type
        eight = ir.Constant(ll_intp, LANES)
        rows = []
        for p in range(LANES):
            inside = builder.icmp_signed("<", ir.Constant(ll_intp, p), count)
            index = builder.select(inside, builder.add(first, ir.Constant(ll_intp, p)), first)
            halves = []
            for k in (0, 2):
                row_pointer = _pointer(context, builder, t[k + 1], args[k + 1], index, intp)
                row = builder.load(builder.bitcast(row_pointer,
                                                   row_pointer.type.pointee.element.as_pointer()))
                row = context.cast(builder, row, t[k + 1].dtype, intp)
                halves.append(builder.load(_pointer(context, builder, t[k], args[k],
                                                    builder.mul(row, eight), intp), align=1))
            rows.append(builder.fadd(halves[0], halves[1]))
        _store_columns(context, builder, t[6], args[6], d_off, d_stride,
                       _transpose_rows(builder, rows))
        return context.get_dummy_value()

    return sig, codegen


# ---------------------------------------------------------------------------------------------
# Raw addresses (the FFT: passing integers instead of arrays avoids Numba's reference counts).


@intrinsic
def address(typingctx, array):
    """Address of ``array``'s first element, an int64 (the caller keeps the array alive)."""
    sig = types.intp(array)

    def codegen(context, builder, signature, args):
        data = context.make_array(signature.args[0])(context, builder, args[0]).data
        return builder.ptrtoint(data, ir.IntType(64))

    return sig, codegen


def _double_pointer(context, builder, signature, args):
    """``(double*) address + index`` from the (address, index) arguments of an intrinsic."""
    base = context.cast(builder, args[0], signature.args[0], types.intp)
    index = context.cast(builder, args[1], signature.args[1], types.intp)
    return builder.gep(builder.inttoptr(base, ir.DoubleType().as_pointer()), [index])


@intrinsic
def pload(typingctx, base, index):
    """The 8 doubles at ``base`` + 8 ``index`` bytes, as a vector."""
    sig = f64x8(types.intp, types.intp)

    def codegen(context, builder, signature, args):
        pointer = _double_pointer(context, builder, signature, args)
        return builder.load(builder.bitcast(pointer, _DOUBLE_VECTOR.as_pointer()), align=8)

    return sig, codegen


@intrinsic
def pstore(typingctx, base, index, value):
    """Store a vector at ``base`` + 8 ``index`` bytes."""
    sig = types.void(types.intp, types.intp, f64x8)

    def codegen(context, builder, signature, args):
        pointer = _double_pointer(context, builder, signature, args)
        builder.store(args[2], builder.bitcast(pointer, _DOUBLE_VECTOR.as_pointer()), align=8)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def pget(typingctx, base, index):
    """The double at ``base`` + 8 ``index`` bytes."""
    sig = types.float64(types.intp, types.intp)

    def codegen(context, builder, signature, args):
        return builder.load(_double_pointer(context, builder, signature, args), align=8)

    return sig, codegen


@intrinsic
def pgeti(typingctx, base, index):
    """The int64 at ``base`` + 8 ``index`` bytes."""
    sig = types.int64(types.intp, types.intp)

    def codegen(context, builder, signature, args):
        pointer = builder.bitcast(_double_pointer(context, builder, signature, args),
                                  ir.IntType(64).as_pointer())
        return builder.load(pointer, align=8)

    return sig, codegen
