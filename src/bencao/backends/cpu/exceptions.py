"""NonbondedForce exceptions on the CPU: the listed pairs with their own parameters and, under
Ewald/PME, the removal of the reciprocal-space interaction of every excluded pair.

Most exceptions are bonded neighbours with no interaction of their own (DHFR: 28,153 of
34,709), so the Ewald part, qi qj erf(alpha r)/r, is most of the work, and with ``math.erf``
and ``math.exp`` it was 80% of it.  Within the reach of bonded neighbours (alpha r <=
``SERIES_REACH``: 0.51 nm at alpha = 2.92/nm; DHFR's farthest exception is at 0.42 nm) the
kernel sums instead the Taylor series of S(u) = erf(x)/x and of S'(u), u = x^2: polynomials,
evaluated 8 pairs at a time (:mod:`bencao.backends.cpu.simd8`).  A pair beyond that reach is
computed again, after the series, by the scalar law
(``common.pair_laws.exception_pair``, which the CUDA kernel also compiles).  The series' last
terms are ~1e-20 of the sum and its evaluation in float64 has a condition number of ~4 at
the reach: the accuracy of the library calls.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from bencao.backends.common.fixed_point import add_force
from bencao.backends.common.pair_laws import exception_pair
from bencao.backends.common.periodic import minimum_image
from bencao.backends.cpu.simd8 import vfma, vload, vmul, vsplat, vstore, vsub, vzero

#: Largest alpha r summed by the series; farther pairs take the scalar law.
SERIES_REACH = 1.5
#: Terms of the series: the last, u^n / (n! (2n + 1)) at u = SERIES_REACH^2, is ~1e-20 of
#: the sum.
SERIES_TERMS = 28
#: Exceptions per parallel work item (a multiple of 8).
CHUNK = 512
#: Rows of the scratch: the displacement (nm), alpha^2 r^2 clamped to the reach, the Ewald
#: charge product (kJ/mol nm), then each exception's force on its second atom (kJ/mol/nm; the
#: rows start with the exception's own) and energy (kJ/mol).
_DX, _DY, _DZ, _U, _QQ, _FX, _FY, _FZ, _ENERGY = range(9)


def _series():
    """Coefficients, highest power first, of S(u) = erf(x)/x and of S'(u) = dS/du."""
    scale = 2.0 / math.sqrt(math.pi)
    value = [scale * (-1.0) ** n / (math.factorial(n) * (2 * n + 1))
             for n in range(SERIES_TERMS)]
    slope = [scale * (-1.0) ** (n + 1) / (math.factorial(n) * (2 * n + 3))
             for n in range(SERIES_TERMS - 1)]
    return np.array(value[::-1]), np.array(slope[::-1])


_VALUE, _SLOPE = _series()


@njit(cache=True, inline="always")
def _polynomial(coefficients, u):
    """Horner's rule on 8 lanes of ``u`` (coefficients highest power first)."""
    total = vzero()
    for k in range(coefficients.shape[0]):
        total = vfma(total, u, vsplat(coefficients[k]))
    return total


@njit(parallel=True, cache=True)
def _exception_forces(positions, atoms, chargeprod, sigma, epsilon, charges, box, periodic,
                      coulomb_constant, alpha, ewald, scratch):
    """Each exception's force on its second atom and energy, into ``scratch``'s rows."""
    reach2 = SERIES_REACH * SERIES_REACH
    alpha2 = alpha * alpha
    n = atoms.shape[0]
    width = scratch.shape[1]  # n rounded up to whole vectors; the padding lanes stay zero
    for chunk in prange((n + CHUNK - 1) // CHUNK):
        first = chunk * CHUNK
        last = min(n, first + CHUNK)
        # 1. one pair at a time: the displacement, the charges, and the exception's own
        # Coulomb + LJ where it has one (a fifth of them)
        for m in range(first, last):
            i = atoms[m, 0]
            j = atoms[m, 1]
            dx, dy, dz = minimum_image(positions[j, 0] - positions[i, 0],
                                       positions[j, 1] - positions[i, 1],
                                       positions[j, 2] - positions[i, 2], box, periodic)
            r2 = dx * dx + dy * dy + dz * dz
            scratch[_DX, m] = dx
            scratch[_DY, m] = dy
            scratch[_DZ, m] = dz
            scratch[_U, m] = min(alpha2 * r2, reach2)
            scratch[_QQ, m] = coulomb_constant * charges[i] * charges[j] if ewald else 0.0
            energy = 0.0
            f_over_r = 0.0
            if chargeprod[m] != 0.0 or epsilon[m] != 0.0:
                inv_r2 = 1.0 / r2
                e_coul = coulomb_constant * chargeprod[m] / math.sqrt(r2)
                sr2 = sigma[m] * sigma[m] * inv_r2
                sr6 = sr2 * sr2 * sr2
                energy = e_coul + 4.0 * epsilon[m] * (sr6 * sr6 - sr6)
                f_over_r = (e_coul + 4.0 * epsilon[m] * (12.0 * sr6 * sr6 - 6.0 * sr6)) * inv_r2
            scratch[_FX, m] = f_over_r
            scratch[_ENERGY, m] = energy
        # 2. eight pairs at a time: minus the reciprocal-space part.  With x = alpha r,
        # E = qq alpha S(u) and -dE/dr / r = -2 qq alpha^3 S'(u), finite at r = 0 (coincident
        # sites, whose force is zero because their displacement is)
        for m in range(first, min(width, first + CHUNK), 8):
            u = vload(scratch[_U], m)
            qq = vload(scratch[_QQ], m)
            energy = vsub(vload(scratch[_ENERGY], m),
                          vmul(vmul(qq, vsplat(alpha)), _polynomial(_VALUE, u)))
            f_over_r = vfma(vmul(qq, vsplat(2.0 * alpha * alpha2)), _polynomial(_SLOPE, u),
                            vload(scratch[_FX], m))
            vstore(scratch[_ENERGY], m, energy)
            vstore(scratch[_FX], m, vmul(f_over_r, vload(scratch[_DX], m)))
            vstore(scratch[_FY], m, vmul(f_over_r, vload(scratch[_DY], m)))
            vstore(scratch[_FZ], m, vmul(f_over_r, vload(scratch[_DZ], m)))
        # 3. a pair beyond the series' reach: the scalar law instead
        if ewald:
            for m in range(first, last):
                dx = scratch[_DX, m]
                dy = scratch[_DY, m]
                dz = scratch[_DZ, m]
                r2 = dx * dx + dy * dy + dz * dz
                if alpha2 * r2 > reach2:
                    f_over_r, pair_energy = exception_pair(
                        r2, chargeprod[m], sigma[m], epsilon[m], charges[atoms[m, 0]],
                        charges[atoms[m, 1]], coulomb_constant, alpha, ewald)
                    scratch[_ENERGY, m] = pair_energy
                    scratch[_FX, m] = f_over_r * dx
                    scratch[_FY, m] = f_over_r * dy
                    scratch[_FZ, m] = f_over_r * dz


#: Atom ranges of the parallel force scatter (:func:`exception_plan`): a fixed number, so that
#: the plan does not depend on the thread count (the sums are integers and would not either).
SCATTER_RANGES = 16


def exception_plan(atoms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """How :func:`_scatter_exception_forces` splits the exceptions among threads.

    The atoms are cut into ``SCATTER_RANGES`` ranges of consecutive indices; an exception whose
    two atoms lie in the same range goes to that range's group, the others (exceptions are
    bonded neighbours, so only those near a cut: DHFR 24 of 34,709) to a last group added by
    one thread.  Each thread then adds forces to atoms no other thread touches.

    Returns
    -------
    order : (M,) int64 array
        Exception indices, by group.
    starts : (SCATTER_RANGES + 2,) int64 array
        Group g is ``order[starts[g]:starts[g + 1]]``; the last group is the mixed one.
    """
    atoms = np.asarray(atoms, np.int64).reshape(-1, 2)
    span = max(1, -(-(int(atoms.max()) + 1 if len(atoms) else 1) // SCATTER_RANGES))
    first, second = atoms[:, 0] // span, atoms[:, 1] // span
    group = np.where(first == second, first, SCATTER_RANGES)
    order = np.argsort(group, kind="stable").astype(np.int64)
    starts = np.searchsorted(group[order], np.arange(SCATTER_RANGES + 2)).astype(np.int64)
    return order, starts


@njit(cache=True, inline="always")
def _add_exception_force(atoms, scratch, m, forces):
    fx = scratch[_FX, m]
    fy = scratch[_FY, m]
    fz = scratch[_FZ, m]
    if fx != 0.0 or fy != 0.0 or fz != 0.0:
        add_force(forces, atoms[m, 0], -fx, -fy, -fz)
        add_force(forces, atoms[m, 1], fx, fy, fz)


@njit(parallel=True, cache=True)
def _scatter_exception_forces(atoms, scratch, order, starts, forces):
    """Add each exception's force pair to the fixed-point accumulator and return the energy.

    The groups of :func:`exception_plan` that own an atom range run in parallel, the mixed one
    after them; the energy is summed in exception order.  Fixed-point sums do not depend on
    order, so the forces, and the energy, are the same on any number of threads.  (Adding the
    forces in one thread had made this 70% of the exceptions' time on two: DHFR 231 us.)"""
    ranges = starts.shape[0] - 2
    for g in prange(ranges):
        for k in range(starts[g], starts[g + 1]):
            _add_exception_force(atoms, scratch, order[k], forces)
    for k in range(starts[ranges], starts[ranges + 1]):
        _add_exception_force(atoms, scratch, order[k], forces)
    energy = 0.0
    for m in range(atoms.shape[0]):
        energy += scratch[_ENERGY, m]
    return energy


class ExceptionScratch:
    """What :func:`exception_pairs` keeps between calls, so that a step allocates nothing:
    ``values``, rows of the exceptions rounded up to whole vectors, zero (the padding lanes are
    computed too, and must be finite), and the scatter's ``order`` and ``starts``
    (:func:`exception_plan`)."""

    def __init__(self, atoms):
        atoms = np.asarray(atoms, np.int64).reshape(-1, 2)
        self.values = np.zeros((9, (len(atoms) + 7) // 8 * 8))
        self.order, self.starts = exception_plan(atoms)


def exception_scratch(atoms) -> ExceptionScratch:
    """Scratch for :func:`exception_pairs` on the exception pairs ``atoms`` ((M, 2) ints)."""
    return ExceptionScratch(atoms)


def exception_pairs(positions, atoms, chargeprod, sigma, epsilon, charges, box, periodic,
                    coulomb_constant, alpha, ewald, forces, scratch):
    """Exceptions in float64: plain Coulomb + LJ with their own parameters, and for Ewald/PME the
    removal of the reciprocal-space interaction qi qj erf(alpha r)/r of every excluded pair.

    The pairs are computed in parallel and their forces added in parallel by atom range:
    fixed-point sums do not depend on order, and the energy is summed in exception order, so
    the result is the same on any number of threads.

    Parameters
    ----------
    positions : (N, 3) float64 array
        Positions, nm.
    atoms : (M, 2) int64 array
        Exception pairs.
    chargeprod, sigma, epsilon : (M,) float64 arrays
        Exception parameters (e^2, nm, kJ/mol).
    charges : (N,) float64 array
        Particle charges, e (for the Ewald exclusion term).
    box : (3, 3) float64 array, periodic : bool
        Minimum image applied if periodic.
    coulomb_constant : float
        1/(4 pi eps0), kJ/mol nm/e^2.
    alpha : float
        Ewald parameter, 1/nm.
    ewald : bool
        Subtract the reciprocal-space part of excluded pairs.
    forces : (N, 3) int64 array
        Fixed-point accumulator.
    scratch : ExceptionScratch
        From :func:`exception_scratch` on the same ``atoms``.

    Returns
    -------
    float
        Energy, kJ/mol.
    """
    _exception_forces(positions, atoms, chargeprod, sigma, epsilon, charges, box, periodic,
                      coulomb_constant, alpha, ewald, scratch.values)
    return _scatter_exception_forces(atoms, scratch.values, scratch.order, scratch.starts,
                                     forces)
