"""NonbondedForce exceptions on the CPU: the listed pairs with their own parameters and, under
Ewald/PME, the removal of the reciprocal-space interaction of every excluded pair.

Most exceptions are bonded neighbours with no interaction of their own (DHFR: 28,153 of
34,709), so the Ewald part, qi qj erf(alpha r)/r, is most of the work, and with ``math.erf``
and ``math.exp`` it was 80% of it.  Within the reach of bonded neighbours (alpha r <=
``SERIES_REACH``: 0.51 nm at alpha = 2.92/nm; DHFR's farthest exception is at 0.42 nm) the
kernel sums instead the Taylor series of S(u) = erf(x)/x and of S'(u), u = x^2: polynomials,
evaluated 8 pairs at a time (:mod:`bencao.backends.cpu.simd8`).  A pair beyond that reach is
computed again, when its forces are added, by the scalar law
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
    """Each exception's force on its second atom and energy, into ``scratch``'s rows; a pair
    beyond the series' reach under Ewald is left for :func:`_scatter_exception_forces`."""
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


@njit(cache=True)
def _scatter_exception_forces(atoms, chargeprod, sigma, epsilon, charges, coulomb_constant,
                              alpha, ewald, scratch, forces):
    """Add each exception's force pair to the fixed-point accumulator and return the energy,
    summed in exception order (the same on any number of threads); a pair beyond the series'
    reach is computed here by the scalar law."""
    reach2 = SERIES_REACH * SERIES_REACH
    energy = 0.0
    for m in range(atoms.shape[0]):
        i = atoms[m, 0]
        j = atoms[m, 1]
        dx = scratch[_DX, m]
        dy = scratch[_DY, m]
        dz = scratch[_DZ, m]
        r2 = dx * dx + dy * dy + dz * dz
        if ewald and alpha * alpha * r2 > reach2:
            f_over_r, pair_energy = exception_pair(
                r2, chargeprod[m], sigma[m], epsilon[m], charges[i], charges[j],
                coulomb_constant, alpha, ewald)
            scratch[_ENERGY, m] = pair_energy
            scratch[_FX, m] = f_over_r * dx
            scratch[_FY, m] = f_over_r * dy
            scratch[_FZ, m] = f_over_r * dz
        energy += scratch[_ENERGY, m]
        fx = scratch[_FX, m]
        fy = scratch[_FY, m]
        fz = scratch[_FZ, m]
        if fx != 0.0 or fy != 0.0 or fz != 0.0:
            add_force(forces, i, -fx, -fy, -fz)
            add_force(forces, j, fx, fy, fz)
    return energy


def exception_scratch(n_exceptions: int) -> np.ndarray:
    """Scratch for :func:`exception_pairs`, kept by the caller so that a step allocates
    nothing: rows of ``n_exceptions`` rounded up to whole vectors, zero (the padding lanes are
    computed too, and must be finite)."""
    return np.zeros((9, (n_exceptions + 7) // 8 * 8))


def exception_pairs(positions, atoms, chargeprod, sigma, epsilon, charges, box, periodic,
                    coulomb_constant, alpha, ewald, forces, scratch):
    """Exceptions in float64: plain Coulomb + LJ with their own parameters, and for Ewald/PME the
    removal of the reciprocal-space interaction qi qj erf(alpha r)/r of every excluded pair.

    The pairs are computed in parallel and their forces added in one thread: fixed-point sums
    do not depend on order, and the energy is summed in exception order, so the result is the
    same on any number of threads.

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
    scratch : float64 array
        From :func:`exception_scratch`.

    Returns
    -------
    float
        Energy, kJ/mol.
    """
    _exception_forces(positions, atoms, chargeprod, sigma, epsilon, charges, box, periodic,
                      coulomb_constant, alpha, ewald, scratch)
    return _scatter_exception_forces(atoms, chargeprod, sigma, epsilon, charges,
                                     coulomb_constant, alpha, ewald, scratch, forces)
