"""Pair laws both backends compile: each written once, as ``@njit`` CPU functions.

The CPU kernels call these directly (``inline="always"``: Numba pastes their IR into the
caller, so a kernel computes exactly what it computed when the formula was written inline); the
CUDA backend compiles the same source for the device with
``bencao.backends.cuda.common.device_version``.

* :func:`switch_factor`: OpenMM's switching function and its derivative;
* :data:`tabulated_pair32` / :data:`tabulated_pair64`: c12/r^12 - c6/r^6 - c4/r^4 with the
  switch on the whole energy (CustomNonbondedForce NBFIX, LJ-table and 12-6-4 forms), in float32
  (the CPU kernel) and float64 (the CUDA kernel), from one source (:func:`tabulated_pair_law`);
* :func:`exception_pair`: a NonbondedForce exception (its own Coulomb + LJ) and the removal of
  the reciprocal-space erf term of an excluded pair under Ewald/PME, float64 on both backends.

Every law returns ``(f_over_r, energy)``: -dE/dr / r in kJ/mol/nm^2 (the force on the second
particle of the pair is ``f_over_r * (r_j - r_i)``, the first gets the opposite) and E in kJ/mol.

The CPU's regular NonbondedForce pairs do not use these: they run in the SIMD cluster kernels
(``cpu.cluster_kernels``), whose arithmetic is laid out for vector lanes.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

#: Coulomb kinds of the NonbondedForce pair kernels of both backends.
COULOMB_PLAIN = 0  #: 1/r (NoCutoff)
COULOMB_REACTION_FIELD = 1  #: 1/r + krf r^2 - crf (CutoffNonPeriodic, CutoffPeriodic)
COULOMB_EWALD = 2  #: erfc(alpha r)/r (Ewald, PME real space)


def reaction_field_constants(cutoff: float, dielectric: float) -> tuple[float, float]:
    """OpenMM's reaction-field constants (krf in 1/nm^3, crf in 1/nm) for a cutoff (nm) and the
    dielectric constant beyond it: 1/r becomes 1/r + krf r^2 - crf, zero at the cutoff."""
    krf = (dielectric - 1.0) / ((2.0 * dielectric + 1.0) * cutoff**3)
    crf = 3.0 * dielectric / ((2.0 * dielectric + 1.0) * cutoff)
    return krf, crf


#: 2/sqrt(pi), the erf derivative's prefactor (the same double as ``2.0 / math.sqrt(math.pi)``
#: evaluated inside a kernel, which is how the CPU exception kernel had it).
TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)


#: Most interaction groups a CustomNonbondedForce may have: one bit each in an int64 mask,
#: the sign bit left alone.
MAX_INTERACTION_GROUPS = 62


@njit(cache=True, inline="always")
def group_multiplicity(first, second, i, j):
    """How many interaction groups hold the pair (i, j): OpenMM computes a pair once per group
    whose one set holds i and other set j.

    ``first[k]`` and ``second[k]`` have bit g set when particle k is in set 1 / set 2 of group g.
    """
    bits = (first[i] & second[j]) | (second[i] & first[j])
    count = 0
    while bits != 0:
        bits &= bits - 1
        count += 1
    return count


@njit(cache=True, inline="always")
def switch_factor(r, switch_distance, cutoff):
    """Switching function S(r) and dS/dr (OpenMM's 1 - 10x^3 + 15x^4 - 6x^5), x in [0, 1]."""
    width = cutoff - switch_distance
    x = min((r - switch_distance) / width, 1.0)
    x2 = x * x
    s = 1.0 + x2 * x * (-10.0 + x * (15.0 - 6.0 * x))
    ds = -30.0 * x2 * (1.0 - x) * (1.0 - x) / width
    return s, ds


def tabulated_pair_law(real):
    """The tabulated law with its arithmetic in the precision ``real``.

    Parameters
    ----------
    real : type
        ``np.float32`` or ``np.float64``: the type of the constants 1, 12, 6, 4 and of r.  The
        constants are frozen into the compiled law, so a float32 law on float32 inputs stays in
        float32 exactly as a kernel that wrote ``np.float32(12.0)`` inline (Numba would promote
        a bare ``12.0`` to float64).

    Returns
    -------
    numba dispatcher
        ``law(r2, c12, c6, c4, switching, switch_distance, cutoff) -> (f_over_r, energy)``:
        ``r2`` the squared distance (nm^2, of type ``real``), ``c12, c6, c4`` the pair's
        coefficients (kJ/mol nm^12, nm^6, nm^4), ``switching`` whether the switch applies
        beyond ``switch_distance`` (nm) up to ``cutoff`` (nm; both unused without it).
    """
    one = real(1.0)
    twelve = real(12.0)
    six = real(6.0)
    four = real(4.0)

    @njit(cache=True, inline="always")
    def tabulated_pair(r2, c12, c6, c4, switching, switch_distance, cutoff):
        inv_r2 = one / r2
        inv_r4 = inv_r2 * inv_r2
        inv_r6 = inv_r4 * inv_r2
        a12 = c12 * inv_r6 * inv_r6
        b6 = c6 * inv_r6
        d4 = c4 * inv_r4
        energy = a12 - b6 - d4
        f_over_r = (twelve * a12 - six * b6 - four * d4) * inv_r2
        if switching:
            r = real(math.sqrt(r2))
            if r > switch_distance:
                # CustomNonbondedForce switches the whole energy: F = S F0 - E0 dS/dr r_hat
                s, ds = switch_factor(r, switch_distance, cutoff)
                f_over_r = f_over_r * s - energy * ds / r
                energy = energy * s
        return f_over_r, energy

    return tabulated_pair


#: The CPU kernel's law (float32 tables and distances; see :func:`tabulated_pair_law`).
tabulated_pair32 = tabulated_pair_law(np.float32)
#: The CUDA kernel's law, float64 throughout (closer to OpenMM's Reference platform).
tabulated_pair64 = tabulated_pair_law(np.float64)


@njit(cache=True, inline="always")
def exception_pair(r2, chargeprod, sigma, epsilon, qi, qj, coulomb_constant, alpha, ewald):
    """One NonbondedForce exception at squared distance ``r2`` (nm^2), in float64.

    Plain Coulomb + Lennard-Jones with the exception's own parameters and, for Ewald/PME, minus
    the reciprocal-space interaction qi qj erf(alpha r)/r that the reciprocal sum gave the pair.

    Parameters
    ----------
    r2 : float
        Squared distance, nm^2.
    chargeprod, sigma, epsilon : float
        The exception's charge product (e^2), sigma (nm) and epsilon (kJ/mol).
    qi, qj : float
        The two particles' charges, e (only read under Ewald/PME).
    coulomb_constant : float
        1/(4 pi eps0), kJ/mol nm/e^2.
    alpha : float
        Ewald parameter, 1/nm.
    ewald : bool
        Subtract the reciprocal-space part.

    Returns
    -------
    f_over_r : float
        -dE/dr / r, kJ/mol/nm^2.
    energy : float
        E, kJ/mol.
    """
    r = math.sqrt(r2)
    energy = 0.0
    f_over_r = 0.0
    if chargeprod != 0.0 or epsilon != 0.0:
        inv_r2 = 1.0 / r2
        e_coul = coulomb_constant * chargeprod / r
        sr2 = sigma * sigma * inv_r2
        sr6 = sr2 * sr2 * sr2
        e_lj = 4.0 * epsilon * (sr6 * sr6 - sr6)
        energy += e_coul + e_lj
        f_over_r += (e_coul + 4.0 * epsilon * (12.0 * sr6 * sr6 - 6.0 * sr6)) * inv_r2
    if ewald:
        qq = coulomb_constant * qi * qj
        if qq != 0.0:
            ar = alpha * r
            if ar < 1e-8:
                # erf(ar)/r -> 2 alpha/sqrt(pi) as r -> 0 (coincident sites); force -> 0
                energy -= qq * TWO_OVER_SQRT_PI * alpha
            else:
                erf_term = math.erf(ar) / r
                energy -= qq * erf_term
                f_over_r -= qq * (erf_term - TWO_OVER_SQRT_PI * alpha * math.exp(-ar * ar)) / r2
    return f_over_r, energy
