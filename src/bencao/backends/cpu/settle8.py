"""SETTLE on the CPU, 8 waters at a time: the shared law on 8-lane vectors.

:func:`~bencao.backends.common.constraint_laws.settle_solution` and
:func:`~bencao.backends.common.constraint_laws.settle_velocity_impulses` are written with
operators alone, so they compile for :data:`~bencao.backends.cpu.simd8.f64x8` values
(:mod:`bencao.backends.cpu.lanes8`): each lane is one water, and gets the bits the scalar law
gives it.  What is here moves the waters' coordinates into lanes (``gather_atoms8``) and back
(``scatter_atoms8``).  One water at a time, the law's square roots and divisions waited on each
other; 8 at a time they overlap.  DHFR's 7,023 waters on one thread (AMD Zen 5): positions
439 -> 153 us, velocities 205 -> 67 us.

A block of 8 waters whose last ones are missing (the tail of the list) repeats its first water
in the spare lanes: the same inputs give the same results, so storing them again is harmless.
"""

from __future__ import annotations

from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

import bencao.backends.cpu.lanes8  # noqa: F401  (the operators the shared laws use on vectors)
from bencao.backends.common.constraint_laws import settle_solution, settle_velocity_impulses
from bencao.backends.cpu.lanes8 import mask_bits
from bencao.backends.cpu.simd8 import LANES, f64x8

_DOUBLES = ir.VectorType(ir.DoubleType(), LANES)
_I32 = ir.IntType(32)


def _flat_element(context, builder, array_type, array, index):
    """Pointer to ``array.flat[index]`` (a C-contiguous array, intp index)."""
    data = context.make_array(array_type)(context, builder, array).data
    return builder.gep(data, [index])


def _lane_rows(builder, first, count):
    """Row of each lane: first + p, or first for the spare lanes p >= count."""
    rows = []
    for p in range(LANES):
        inside = builder.icmp_signed("<", ir.Constant(first.type, p), count)
        rows.append(builder.select(inside, builder.add(first, ir.Constant(first.type, p)), first))
    return rows


def _atom_indices(context, builder, t, args, first, count, which):
    """The atom ``which`` (0 O, 1 H1, 2 H2) of each lane's water, as intp."""
    atoms_type, atoms = t, args
    intp = context.get_value_type(types.intp)
    width = ir.Constant(intp, 3)
    indices = []
    for row in _lane_rows(builder, first, count):
        pointer = _flat_element(context, builder, atoms_type, atoms,
                                builder.add(builder.mul(row, width), which))
        indices.append(context.cast(builder, builder.load(pointer), atoms_type.dtype, types.intp))
    return indices


@intrinsic
def gather_atoms8(typingctx, values, waters, first, count, which, column):
    """Lane p: ``values[waters[first + p, which], column]`` ((N, 3) float64 and (W, 3) int
    arrays, C-contiguous); lanes p >= ``count`` repeat lane 0."""
    if values.dtype != types.float64:
        return None
    intp = types.intp
    sig = f64x8(values, waters, intp, intp, intp, intp)

    def codegen(context, builder, signature, args):
        t = signature.args
        first, count, which, column = (context.cast(builder, args[k], t[k], intp)
                                       for k in (2, 3, 4, 5))
        vector = ir.Constant(_DOUBLES, ir.Undefined)
        three = ir.Constant(first.type, 3)
        for p, atom in enumerate(_atom_indices(context, builder, t[1], args[1], first, count,
                                               which)):
            pointer = _flat_element(context, builder, t[0], args[0],
                                    builder.add(builder.mul(atom, three), column))
            vector = builder.insert_element(vector, builder.load(pointer), ir.Constant(_I32, p))
        return vector

    return sig, codegen


@intrinsic
def scatter_atoms8(typingctx, values, waters, first, count, which, column, vector, lanes):
    """``values[waters[first + p, which], column] = vector[p]`` for the lanes p < ``count``
    whose bit is set in ``lanes`` (arrays as :func:`gather_atoms8`)."""
    if values.dtype != types.float64:
        return None
    intp = types.intp
    sig = types.void(values, waters, intp, intp, intp, intp, f64x8, intp)

    def codegen(context, builder, signature, args):
        t = signature.args
        first, count, which, column, lanes = (context.cast(builder, args[k], t[k], intp)
                                              for k in (2, 3, 4, 5, 7))
        three = ir.Constant(first.type, 3)
        for p, atom in enumerate(_atom_indices(context, builder, t[1], args[1], first, count,
                                               which)):
            bit = builder.and_(builder.lshr(lanes, ir.Constant(lanes.type, p)),
                               ir.Constant(lanes.type, 1))
            store = builder.and_(builder.icmp_signed("<", ir.Constant(count.type, p), count),
                                 builder.icmp_signed("!=", bit, ir.Constant(lanes.type, 0)))
            with builder.if_then(store):
                pointer = _flat_element(context, builder, t[0], args[0],
                                        builder.add(builder.mul(atom, three), column))
                builder.store(builder.extract_element(args[6], ir.Constant(_I32, p)), pointer)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def gather_rows8(typingctx, values, first, count, column):
    """Lane p: ``values[first + p, column]`` (a C-contiguous 2-D float64 array); lanes p >=
    ``count`` repeat lane 0."""
    if values.dtype != types.float64 or values.ndim != 2:
        return None
    intp = types.intp
    sig = f64x8(values, intp, intp, intp)

    def codegen(context, builder, signature, args):
        t = signature.args
        first, count, column = (context.cast(builder, args[k], t[k], intp) for k in (1, 2, 3))
        view = context.make_array(t[0])(context, builder, args[0])
        width = cgutils.unpack_tuple(builder, view.shape)[1]
        vector = ir.Constant(_DOUBLES, ir.Undefined)
        for p, row in enumerate(_lane_rows(builder, first, count)):
            pointer = builder.gep(view.data, [builder.add(builder.mul(row, width), column)])
            vector = builder.insert_element(vector, builder.load(pointer), ir.Constant(_I32, p))
        return vector

    return sig, codegen


@njit(cache=True, inline="always")
def _gather_position(array, waters, first, count, which):
    return (gather_atoms8(array, waters, first, count, which, 0),
            gather_atoms8(array, waters, first, count, which, 1),
            gather_atoms8(array, waters, first, count, which, 2))


@njit(cache=True, inline="always")
def _difference(a, b):
    return a[0] - b[0], a[1] - b[1], a[2] - b[2]


@njit(cache=True)
def settle_block(reference, positions, waters, water_masses, water_shape, first, count,
                 failed_waters):
    """SETTLE waters ``first .. first + count - 1`` (count <= 8) in place, as
    :func:`~bencao.backends.common.constraint_laws.settle_one` does each: a water without a
    solution is left untouched and flagged 1 in ``failed_waters`` (others 0)."""
    o_ref = _gather_position(reference, waters, first, count, 0)
    origin = _gather_position(positions, waters, first, count, 0)
    ok, new_o, new_h1, new_h2 = settle_solution(
        _difference(_gather_position(reference, waters, first, count, 1), o_ref),
        _difference(_gather_position(reference, waters, first, count, 2), o_ref),
        _difference(_gather_position(positions, waters, first, count, 1), origin),
        _difference(_gather_position(positions, waters, first, count, 2), origin),
        gather_rows8(water_masses, first, count, 0), gather_rows8(water_masses, first, count, 1),
        gather_rows8(water_shape, first, count, 0), gather_rows8(water_shape, first, count, 1),
        gather_rows8(water_shape, first, count, 2))
    lanes = mask_bits(ok)
    for which, p in ((0, new_o), (1, new_h1), (2, new_h2)):
        for k in range(3):
            scatter_atoms8(positions, waters, first, count, which, k, origin[k] + p[k], lanes)
    for p in range(count):
        failed_waters[first + p] = 1 - ((lanes >> p) & 1)


@njit(cache=True, inline="always")
def _kick(v_i, v_j, e, impulse, w_i, w_j):
    """:func:`~bencao.backends.common.constraint_laws._kick` on lane vectors: (v_i, v_j) after
    equal and opposite impulses along e."""
    return ((v_i[0] + impulse * w_i * e[0], v_i[1] + impulse * w_i * e[1],
             v_i[2] + impulse * w_i * e[2]),
            (v_j[0] - impulse * w_j * e[0], v_j[1] - impulse * w_j * e[1],
             v_j[2] - impulse * w_j * e[2]))


@njit(cache=True)
def settle_velocities_block(positions, velocities, waters, water_masses, first, count):
    """Velocity SETTLE of waters ``first .. first + count - 1`` (count <= 8) in place, as
    :func:`~bencao.backends.common.constraint_laws.settle_velocities_one` does each."""
    x_o = _gather_position(positions, waters, first, count, 0)
    x_h1 = _gather_position(positions, waters, first, count, 1)
    x_h2 = _gather_position(positions, waters, first, count, 2)
    v_o = _gather_position(velocities, waters, first, count, 0)
    v_h1 = _gather_position(velocities, waters, first, count, 1)
    v_h2 = _gather_position(velocities, waters, first, count, 2)
    w_o = 1.0 / gather_rows8(water_masses, first, count, 0)
    w_h = 1.0 / gather_rows8(water_masses, first, count, 1)
    e1, e2, e3, l1, l2, l3 = settle_velocity_impulses(
        _difference(x_h1, x_o), _difference(x_h2, x_o), _difference(x_h2, x_h1),
        _difference(v_h1, v_o), _difference(v_h2, v_o), _difference(v_h2, v_h1), w_o, w_h)
    # the scalar law's three kicks, in its order
    v_o, v_h1 = _kick(v_o, v_h1, e1, l1, w_o, w_h)
    v_o, v_h2 = _kick(v_o, v_h2, e2, l2, w_o, w_h)
    v_h1, v_h2 = _kick(v_h1, v_h2, e3, l3, w_h, w_h)
    every = (1 << LANES) - 1
    for which, v in ((0, v_o), (1, v_h1), (2, v_h2)):
        for k in range(3):
            scatter_atoms8(velocities, waters, first, count, which, k, v[k], every)
