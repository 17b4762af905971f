"""Analytic long-range (dispersion) corrections for truncated r^-n pair potentials.

Beyond the cutoff, a homogeneous fluid is assumed: the missing energy of all pairs is
E = 2 pi N^2 / V * <integral>, averaged over pairs of particle classes exactly as OpenMM averages
(N(N+1)/2 interactions, classes counted with n(n+1)/2 self pairs).  It depends only on the volume,
so it adds energy (and pressure) but no forces.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.integrate import quad


def _switch(r: float, rs: float, rc: float) -> float:
    x = (r - rs) / (rc - rs)
    return 1.0 - 10.0 * x**3 + 15.0 * x**4 - 6.0 * x**5


def tail_integral(c12: float, c6: float, c4: float, cutoff: float, switch_distance: float) -> float:
    """Integral of r^2 E(r) over the part of the potential the cutoff and switch remove.

    E(r) = c12/r^12 - c6/r^6 - c4/r^4.  Returns, in kJ/mol nm^3,
    int_rc^inf r^2 E dr + int_rs^rc r^2 (1 - S(r)) E dr.
    """
    rc = cutoff
    value = c12 / (9.0 * rc**9) - c6 / (3.0 * rc**3) - c4 / rc
    if switch_distance > 0.0:
        rs = switch_distance

        def missing(r):
            return r * r * (1.0 - _switch(r, rs, rc)) * (c12 / r**12 - c6 / r**6 - c4 / r**4)

        value += quad(missing, rs, rc, epsabs=0.0, epsrel=1e-13, limit=200)[0]
    return value


def class_pair_coefficient(class_ids: np.ndarray, pair_integral) -> float:
    """2 pi N^2 <integral> over all particle pairs, with OpenMM's class counting.

    Parameters
    ----------
    class_ids : (N,) int array
        Class of each particle (particles of one class have identical parameters).
    pair_integral : callable
        ``pair_integral(class_a, class_b)`` -> tail integral for that class pair, kJ/mol nm^3.

    Returns
    -------
    float
        The coefficient C of the correction energy C / V, kJ/mol nm^3.
    """
    n = len(class_ids)
    if n == 0:
        return 0.0
    classes, counts = np.unique(class_ids, return_counts=True)
    total = 0.0
    for a in range(len(classes)):
        count = counts[a] * (counts[a] + 1) / 2.0
        total += count * pair_integral(classes[a], classes[a])
        for b in range(a):
            total += float(counts[a]) * float(counts[b]) * pair_integral(classes[a], classes[b])
    return 2.0 * math.pi * n * n * total / (n * (n + 1) / 2.0)


def lennard_jones_coefficient(sigma, epsilon, cutoff, switch_distance) -> float:
    """Dispersion-correction coefficient of a NonbondedForce (Lorentz-Berthelot LJ), kJ/mol nm^3."""
    keys = np.stack([sigma, epsilon], axis=1)
    unique, class_ids = np.unique(keys, axis=0, return_inverse=True)

    def integral(a, b):
        s = 0.5 * (unique[a, 0] + unique[b, 0])
        e = math.sqrt(unique[a, 1] * unique[b, 1])
        if e == 0.0:
            return 0.0
        return tail_integral(4 * e * s**12, 4 * e * s**6, 0.0, cutoff, switch_distance)

    return class_pair_coefficient(class_ids.ravel(), integral)


def table_coefficient(types, c12, c6, c4, cutoff, switch_distance) -> float:
    """Long-range-correction coefficient of a type-tabulated pair potential, kJ/mol nm^3."""

    def integral(a, b):
        return tail_integral(c12[a, b], c6[a, b], c4[a, b], cutoff, switch_distance)

    return class_pair_coefficient(np.asarray(types), integral)
