"""SETTLE on the CPU, 8 waters at a time: the shared law on 8-lane vectors.

:func:`~bencao.backends.common.constraint_laws.settle_solution` and
:func:`~bencao.backends.common.constraint_laws.settle_velocity_impulses` are written with
operators alone, so they compile for :data:`~bencao.backends.cpu.simd8.f64x8` values
(:mod:`bencao.backends.cpu.lanes8`): each lane is one water, and gets the bits the scalar law
gives it.  What is here moves the waters' coordinates into lanes and back (with
``gather_atoms8`` and ``scatter_atoms8``; a partial last block repeats its first water).  One
water at a time, the law's square roots and divisions waited on each other; 8 at a time they
overlap.  DHFR's 7,023 waters on one thread (AMD Zen 5): positions 439 -> 153 us, velocities
205 -> 67 us.
"""

from __future__ import annotations

from numba import njit

from bencao.backends.common.constraint_laws import settle_solution, settle_velocity_impulses
from bencao.backends.common.vector3 import sub
from bencao.backends.cpu.lanes8 import (
    gather_positions8,
    gather_rows8,
    mask_bits,
    scatter_atoms8,
)
from bencao.backends.cpu.simd8 import LANES


@njit(cache=True)
def settle_block(reference, positions, waters, water_masses, water_shape, first, count,
                 failed_waters):
    """SETTLE waters ``first .. first + count - 1`` (count <= 8) in place, as
    :func:`~bencao.backends.common.constraint_laws.settle_one` does each: a water without a
    solution is left untouched and flagged 1 in ``failed_waters`` (others 0)."""
    o_ref = gather_positions8(reference, waters, first, count, 0)
    origin = gather_positions8(positions, waters, first, count, 0)
    ok, new_o, new_h1, new_h2 = settle_solution(
        sub(gather_positions8(reference, waters, first, count, 1), o_ref),
        sub(gather_positions8(reference, waters, first, count, 2), o_ref),
        sub(gather_positions8(positions, waters, first, count, 1), origin),
        sub(gather_positions8(positions, waters, first, count, 2), origin),
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
    x_o = gather_positions8(positions, waters, first, count, 0)
    x_h1 = gather_positions8(positions, waters, first, count, 1)
    x_h2 = gather_positions8(positions, waters, first, count, 2)
    v_o = gather_positions8(velocities, waters, first, count, 0)
    v_h1 = gather_positions8(velocities, waters, first, count, 1)
    v_h2 = gather_positions8(velocities, waters, first, count, 2)
    w_o = 1.0 / gather_rows8(water_masses, first, count, 0)
    w_h = 1.0 / gather_rows8(water_masses, first, count, 1)
    e1, e2, e3, l1, l2, l3 = settle_velocity_impulses(
        sub(x_h1, x_o), sub(x_h2, x_o), sub(x_h2, x_h1),
        sub(v_h1, v_o), sub(v_h2, v_o), sub(v_h2, v_h1), w_o, w_h)
    # the scalar law's three kicks, in its order
    v_o, v_h1 = _kick(v_o, v_h1, e1, l1, w_o, w_h)
    v_o, v_h2 = _kick(v_o, v_h2, e2, l2, w_o, w_h)
    v_h1, v_h2 = _kick(v_h1, v_h2, e3, l3, w_h, w_h)
    every = (1 << LANES) - 1
    for which, v in ((0, v_o), (1, v_h1), (2, v_h2)):
        for k in range(3):
            scatter_atoms8(velocities, waters, first, count, which, k, v[k], every)
