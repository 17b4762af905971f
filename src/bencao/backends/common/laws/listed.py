"""The laws of the listed bonded terms, each registered with its record type.

Each law is one item's energy and derivative as a function of its internal coordinate, read
from row ``m`` of its parameter table (:class:`~bencao.backends.common.laws.registry.ListedLaw`
says what the backends pass and expect).  Column indices are documented with each law and
match the ``parameters`` of its registration.  Bonded terms never use periodic boundaries
(OpenMM's default for these forces).  Every expression is written in the order the CPU kernels
have always evaluated it: the results are the same bits.

To add a listed term: its record in ``bencao.forces.bonded``, its law and one
:func:`register_listed_law` call here, and its OpenMM importer; the backends pick it up.
"""

from __future__ import annotations

import math

from numba import njit

from bencao.backends.common.laws.registry import register_listed_law
from bencao.forces.bonded import (
    HarmonicAngles,
    HarmonicBonds,
    HarmonicImpropers,
    LJPairs,
    PeriodicTorsions,
)


@njit(cache=True, inline="always")
def harmonic_bond(dx, dy, dz, params, m):
    """E = 1/2 k (r - length)^2; columns (length [nm], k [kJ/mol/nm^2]).

    Returns (E [kJ/mol], f [kJ/mol/nm^2]) with F_i = f d for d = x_j - x_i.
    """
    r = math.sqrt(dx * dx + dy * dy + dz * dz)
    k = params[m, 1]
    delta = r - params[m, 0]
    energy = 0.5 * k * delta * delta
    # Two coincident atoms have no bond direction: OpenMM applies no force, nor do we.
    f = 0.0
    if r > 0.0:
        f = k * delta / r
    return energy, f


@njit(cache=True, inline="always")
def lj_pair(dx, dy, dz, params, m):
    """E = c12 / r^12 - c6 / r^6; columns (c12 [kJ/mol nm^12], c6 [kJ/mol nm^6]).

    Returns (E [kJ/mol], f [kJ/mol/nm^2]) with F_i = f d for d = x_j - x_i.
    """
    inv_r2 = 1.0 / (dx * dx + dy * dy + dz * dz)
    inv_r6 = inv_r2 * inv_r2 * inv_r2
    rep = params[m, 0] * inv_r6 * inv_r6
    disp = params[m, 1] * inv_r6
    # (12 rep - 6 disp) / r^2 is -dE/dr / r, the factor of F_j = s d; F_i is its opposite.
    s = (12.0 * rep - 6.0 * disp) * inv_r2
    return rep - disp, -s


@njit(cache=True, inline="always")
def harmonic_angle(theta, params, m):
    """E = 1/2 k (theta - angle)^2; columns (angle [rad], k [kJ/mol/rad^2]).

    Returns (E [kJ/mol], dE/dtheta [kJ/mol/rad]).
    """
    k = params[m, 1]
    delta = theta - params[m, 0]
    return 0.5 * k * delta * delta, k * delta


@njit(cache=True, inline="always")
def periodic_torsion(theta, params, m):
    """E = k (1 + cos(n theta - phase)); columns (n, phase [rad], k [kJ/mol]).

    Returns (E [kJ/mol], dE/dtheta [kJ/mol/rad]).
    """
    n = params[m, 0]
    k = params[m, 2]
    arg = n * theta - params[m, 1]
    return k * (1.0 + math.cos(arg)), -k * n * math.sin(arg)


@njit(cache=True, inline="always")
def harmonic_improper(theta, params, m):
    """E = k d^2 with d = theta - theta0, or its periodic minimum if ``wrap``; columns
    (theta0 [rad], k [kJ/mol/rad^2], wrap [1 or 0]).

    With wrap, d = min(|dtheta|, 2 pi - |dtheta|) (CHARMM psf form); without, d = dtheta.
    Returns (E [kJ/mol], dE/dtheta [kJ/mol/rad]).
    """
    k = params[m, 1]
    delta = theta - params[m, 0]
    if params[m, 2] != 0.0:
        two_pi = 2.0 * math.pi
        adelta = abs(delta)
        sign = 1.0 if delta >= 0.0 else -1.0
        if two_pi - adelta < adelta:
            # Shorter the other way round the circle: d = 2 pi - |dtheta| shrinks as |dtheta|
            # grows, hence the flipped sign of the derivative.
            dist = two_pi - adelta
            dE = -2.0 * k * dist * sign
        else:
            dist = adelta
            dE = 2.0 * k * dist * sign
    else:
        dist = delta
        dE = 2.0 * k * delta
    return k * dist * dist, dE


register_listed_law(HarmonicBonds, 2, harmonic_bond, lambda t: (t.length, t.k))
register_listed_law(LJPairs, 2, lj_pair, lambda t: (t.c12, t.c6))
register_listed_law(HarmonicAngles, 3, harmonic_angle, lambda t: (t.angle, t.k))
register_listed_law(PeriodicTorsions, 4, periodic_torsion,
                    lambda t: (t.periodicity, t.phase, t.k))
register_listed_law(HarmonicImpropers, 4, harmonic_improper, lambda t: (t.theta0, t.k, t.wrap))
