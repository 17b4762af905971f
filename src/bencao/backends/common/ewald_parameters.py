"""Ewald/PME parameters chosen exactly as OpenMM 8 does, and small helpers shared by the kernels.

OpenMM picks the parameters once, at Context creation, from the System's *default* box
(``NonbondedForceImpl::calcEwaldParameters`` / ``calcPMEParameters``); they stay fixed when the box
later changes (barostat).  The Reference and CPU platforms report (``getPMEParametersInContext``)
and the Reference platform uses the grid exactly as computed, with no rounding to FFT-friendly
sizes (its FFT handles any size).  OpenMM's optimised CPU PME plugin rounds the grid up
internally to sizes with factors 2, 3, 5, 7 (one 11 or 13 allowed, last axis even) but still
reports the unrounded size; we follow the Reference platform, so the same grid gives the same
numbers.  scipy's FFT also handles any size.
"""

from __future__ import annotations

import math

import numpy as np

from bencao.constants import ONE_4PI_EPS0
from bencao.forces.nonbonded import Nonbonded

#: B-spline interpolation order of smooth PME (OpenMM's value; 5 points per axis per atom).
PME_ORDER = 5

#: OpenMM never uses fewer PME grid points than this along an axis.
MIN_PME_GRID = 6


def _ewald_kmax(width: float, alpha: float, tol: float) -> int:
    """Number of Ewald wave vectors along one axis, as OpenMM's ``findZero`` search.

    The estimated relative error of truncating the reciprocal sum at k is
    ``0.05 * sqrt(width*alpha) * k * exp(-(pi k / (width alpha))^2)``; kmax is the smallest k
    (searching from 10 as OpenMM does) at which it drops to ``tol``.

    Parameters
    ----------
    width : float
        Box length along the axis (the diagonal element of the reduced box), nm.
    alpha : float
        Ewald separation parameter, 1/nm.
    tol : float
        Error tolerance (dimensionless).

    Returns
    -------
    int
        kmax before OpenMM's rounding up to an odd number.
    """

    def excess(k: int) -> float:
        x = k * math.pi / (width * alpha)
        return tol - 0.05 * math.sqrt(width * alpha) * k * math.exp(-x * x)

    k = 10
    value = excess(k)
    if value > 0.0:
        # Already below the tolerance: walk down to the last k that is still within it.
        while value > 0.0 and k > 0:
            k -= 1
            value = excess(k)
        return k + 1
    while value < 0.0:
        k += 1
        value = excess(k)
    return k


def _automatic_alpha(cutoff: float, tol: float) -> float:
    """``sqrt(-ln(2 tol)) / cutoff`` (1/nm), evaluated in OpenMM's order for identical bits."""
    return (1.0 / cutoff) * math.sqrt(-math.log(2.0 * tol))


def ewald_parameters(term: Nonbonded, box: np.ndarray) -> tuple[float, np.ndarray]:
    """Ewald separation parameter and PME grid (or Ewald kmax), chosen as OpenMM 8 does.

    PME: if ``term.ewald_alpha`` is non-zero, alpha and ``term.ewald_grid`` are used as given
    (OpenMM's ``setPMEParameters``).  Otherwise ``alpha = sqrt(-ln(2 tol)) / cutoff`` and
    ``n_k = max(ceil(2 alpha box[k, k] / (3 tol^(1/5))), 6)``.

    Ewald: OpenMM ignores ``setPMEParameters`` for this method, and so do we: alpha comes from
    the tolerance as above and kmax from the truncation-error estimate along each axis, made odd.

    Parameters
    ----------
    term : Nonbonded
        The non-bonded term; ``method`` must be "PME" or "Ewald".
    box : (3, 3) float64 array
        Default periodic box vectors as rows, nm, in OpenMM's reduced (lower-triangular) form.

    Returns
    -------
    alpha : float
        Ewald separation parameter, 1/nm.
    grid : (3,) int64 array
        PME grid points along a, b, c; for Ewald, the kmax along x, y, z (wave-vector indices
        ``-kmax < n < kmax`` are summed).
    """
    box = np.asarray(box, dtype=np.float64)
    tol = float(term.ewald_error_tolerance)
    if term.method == "PME":
        if term.ewald_alpha != 0.0:
            grid = np.asarray(term.ewald_grid, dtype=np.int64).copy()
            if grid.shape != (3,) or np.any(grid < 1):
                raise ValueError("ewald_alpha is set but ewald_grid is not three positive sizes")
            return float(term.ewald_alpha), grid
        alpha = _automatic_alpha(term.cutoff, tol)
        # Same operation order as OpenMM, so a value at an integer rounds up the same way.
        grid = [math.ceil(2.0 * alpha * box[k, k] / (3.0 * math.pow(tol, 0.2))) for k in range(3)]
        return alpha, np.array([max(g, MIN_PME_GRID) for g in grid], dtype=np.int64)
    if term.method == "Ewald":
        alpha = _automatic_alpha(term.cutoff, tol)
        kmax = [_ewald_kmax(float(box[k, k]), alpha, tol) for k in range(3)]
        return alpha, np.array([k + 1 if k % 2 == 0 else k for k in kmax], dtype=np.int64)
    raise ValueError(f"ewald_parameters: method {term.method!r} is neither PME nor Ewald")


def reciprocal_box(box: np.ndarray) -> np.ndarray:
    """Inverse of a reduced (lower-triangular) box matrix.

    Row j, column d is the derivative of fractional coordinate d with respect to Cartesian
    coordinate j: ``frac = positions @ recip``.  Written out (as OpenMM does) rather than with
    ``np.linalg.inv`` so the zeros above the diagonal are exact.

    Parameters
    ----------
    box : (3, 3) float64 array
        Box vectors as rows, nm, reduced form.

    Returns
    -------
    (3, 3) float64 array
        Lower-triangular reciprocal box, 1/nm.
    """
    ax, bx, by = box[0, 0], box[1, 0], box[1, 1]
    cx, cy, cz = box[2, 0], box[2, 1], box[2, 2]
    scale = 1.0 / (ax * by * cz)
    recip = np.zeros((3, 3), dtype=np.float64)
    recip[0, 0] = by * cz * scale
    recip[1, 0] = -bx * cz * scale
    recip[1, 1] = ax * cz * scale
    recip[2, 0] = (bx * cy - by * cx) * scale
    recip[2, 1] = -ax * cy * scale
    recip[2, 2] = ax * by * scale
    return recip


def check_reduced_box(box: np.ndarray) -> np.ndarray:
    """Validate a periodic box for Ewald/PME and return it as a contiguous float64 array.

    Parameters
    ----------
    box : (3, 3) array or None
        Box vectors as rows, nm.

    Returns
    -------
    (3, 3) float64 array
        The same box.

    Raises
    ------
    ValueError
        If the box is missing or not in OpenMM's reduced lower-triangular form.
    """
    if box is None:
        raise ValueError("Ewald/PME needs a periodic box")
    box = np.ascontiguousarray(box, dtype=np.float64)
    if box.shape != (3, 3) or box[0, 1] != 0.0 or box[0, 2] != 0.0 or box[1, 2] != 0.0:
        raise ValueError("box must be 3x3 and lower-triangular (OpenMM reduced form)")
    if not (box[0, 0] > 0.0 and box[1, 1] > 0.0 and box[2, 2] > 0.0):
        raise ValueError("box diagonal must be positive")
    return box


def ewald_self_energy(charges: np.ndarray, alpha: float) -> float:
    """Ewald self energy ``-ONE_4PI_EPS0 * alpha / sqrt(pi) * sum(q^2)``.

    Parameters
    ----------
    charges : (N,) float64 array
        Charges, e.
    alpha : float
        Ewald separation parameter, 1/nm.

    Returns
    -------
    float
        Energy, kJ/mol.
    """
    q = np.asarray(charges, dtype=np.float64)
    return -ONE_4PI_EPS0 * alpha / math.sqrt(math.pi) * float(np.dot(q, q))


def neutralizing_energy(total_charge: float, volume: float, alpha: float) -> float:
    """Energy of a uniform neutralising background for a net charge Q: ``-pi Q^2 / (2 V alpha^2)``.

    Times ``ONE_4PI_EPS0`` (i.e. ``-Q^2 / (8 eps0 V alpha^2)``).  The Ewald sum drops the k = 0
    term, which is the same as adding this background; OpenMM 8 (Reference and CPU platforms
    included, measured on 8.6.1) adds its energy to the reciprocal-space group.  It depends on
    the volume only, so it adds no forces (but does contribute to the pressure).

    Parameters
    ----------
    total_charge : float
        Net charge of the system, e.
    volume : float
        Box volume, nm^3.
    alpha : float
        Ewald separation parameter, 1/nm.

    Returns
    -------
    float
        Energy, kJ/mol.
    """
    return -ONE_4PI_EPS0 * math.pi * total_charge * total_charge / (2.0 * volume * alpha * alpha)


def bspline_moduli(n: int, order: int = PME_ORDER) -> np.ndarray:
    """Squared moduli of the discrete Fourier transform of the smooth-PME B-spline.

    ``|sum_j M_order(j+1) exp(2 pi i k j / n)|^2`` for k = 0..n-1, where M is the cardinal
    B-spline.  Where it (nearly) vanishes -- at k = n/2 for even order-1 -- it is replaced by the
    mean of its neighbours, as OpenMM does, so the influence function stays finite there.

    Parameters
    ----------
    n : int
        Grid points along the axis.
    order : int
        B-spline order.

    Returns
    -------
    (n,) float64 array
        Moduli (dimensionless).
    """
    # Cardinal B-spline values at the integers 1..order-1 via the standard recursion
    # M_p(x) = [x M_{p-1}(x) + (p - x) M_{p-1}(x - 1)] / (p - 1), starting from M_2 (hat function).
    values = np.zeros(order + 1, dtype=np.float64)  # values[x] = M_p(x) for integer x
    values[1] = 1.0
    for p in range(3, order + 1):
        new = np.zeros_like(values)
        for x in range(1, p):
            new[x] = (x * values[x] + (p - x) * values[x - 1]) / (p - 1)
        values = new
    data = np.zeros(max(n, order + 1), dtype=np.float64)
    data[: order + 1] = values  # data[j] = M(j); M(0) = 0
    j = np.arange(n, dtype=np.float64)
    moduli = np.empty(n, dtype=np.float64)
    for k in range(n):
        arg = 2.0 * math.pi * k * j / n
        moduli[k] = np.dot(data[:n], np.cos(arg)) ** 2 + np.dot(data[:n], np.sin(arg)) ** 2
    small = moduli < 1.0e-7
    for k in np.nonzero(small)[0]:
        moduli[k] = 0.5 * (moduli[(k - 1) % n] + moduli[(k + 1) % n])
    return moduli
