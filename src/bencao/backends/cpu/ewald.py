"""Plain Ewald reciprocal-space sum (OpenMM's "Ewald" method): O(N K), for small systems.

Energy ``E = (4 pi ONE_4PI_EPS0 / V) sum_{k in half space} exp(-k^2 / 4 alpha^2) / k^2 |S(k)|^2``
with ``S(k) = sum_j q_j exp(i k.r_j)`` over wave vectors ``k = 2 pi (n . reciprocal box)``,
``|n_d| < kmax_d``, one of each +-k pair (as OpenMM's Reference platform sums them).
Deterministic: each S(k) is a serial sum over atoms, the energy a serial sum over k, and every
atom's force a serial sum over k written only to its own row.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from bencao.backends.common.ewald_parameters import (
    check_reduced_box,
    ewald_parameters,
    ewald_self_energy,
    neutralizing_energy,
    reciprocal_box,
)
from bencao.backends.common.fixed_point import add_force
from bencao.backends.cpu.base import CpuTerm
from bencao.constants import ONE_4PI_EPS0
from bencao.forces.nonbonded import Nonbonded


@njit(cache=True, parallel=True)
def _phase_tables(positions, recip, cos_t, sin_t):
    """cos/sin of ``2 pi n f_d`` for n = 0..kmax-1 and each fractional coordinate f_d."""
    n_atoms = positions.shape[0]
    n_k = cos_t.shape[2]
    for i in prange(n_atoms):
        for d in range(3):
            f = (positions[i, 0] * recip[0, d] + positions[i, 1] * recip[1, d]
                 + positions[i, 2] * recip[2, d])
            for n in range(n_k):
                # Direct cos/sin rather than repeated complex products: no error growth with n.
                arg = 2.0 * math.pi * n * f
                cos_t[i, d, n] = math.cos(arg)
                sin_t[i, d, n] = math.sin(arg)


@njit(cache=True, inline="always")
def _phase(cos_t, sin_t, i, nx, ny, nz):
    """exp(i k.r_i) for wave-vector indices (nx, ny, nz); negative indices conjugate."""
    cx = cos_t[i, 0, nx]
    sx = sin_t[i, 0, nx]  # nx >= 0 in the half space
    cy = cos_t[i, 1, abs(ny)]
    sy = sin_t[i, 1, abs(ny)] if ny >= 0 else -sin_t[i, 1, -ny]
    cz = cos_t[i, 2, abs(nz)]
    sz = sin_t[i, 2, abs(nz)] if nz >= 0 else -sin_t[i, 2, -nz]
    re_xy = cx * cy - sx * sy
    im_xy = cx * sy + sx * cy
    return re_xy * cz - im_xy * sz, re_xy * sz + im_xy * cz


@njit(cache=True, parallel=True)
def _structure_factors(charges, cos_t, sin_t, k_index, s_re, s_im):
    """S(k) for every listed wave vector, each summed over atoms in index order."""
    n_atoms = charges.shape[0]
    for k in prange(k_index.shape[0]):
        nx, ny, nz = k_index[k, 0], k_index[k, 1], k_index[k, 2]
        re = 0.0
        im = 0.0
        for i in range(n_atoms):
            c, s = _phase(cos_t, sin_t, i, nx, ny, nz)
            re += charges[i] * c
            im += charges[i] * s
        s_re[k] = re
        s_im[k] = im


@njit(cache=True)
def _energy(coef, s_re, s_im):
    """Reciprocal energy: serial sum over the half-space wave vectors."""
    e = 0.0
    for k in range(coef.shape[0]):
        e += coef[k] * (s_re[k] * s_re[k] + s_im[k] * s_im[k])
    return e


@njit(cache=True, parallel=True)
def _forces(charges, cos_t, sin_t, k_index, k_vec, coef, s_re, s_im, forces):
    """F_i = sum_k 2 coef(k) q_i Im(conj(S(k)) exp(i k.r_i)) k; each atom its own row."""
    for i in prange(charges.shape[0]):
        q = charges[i]
        fx = 0.0
        fy = 0.0
        fz = 0.0
        for k in range(k_index.shape[0]):
            c, s = _phase(cos_t, sin_t, i, k_index[k, 0], k_index[k, 1], k_index[k, 2])
            g = 2.0 * coef[k] * q * (s_re[k] * s - s_im[k] * c)
            fx += g * k_vec[k, 0]
            fy += g * k_vec[k, 1]
            fz += g * k_vec[k, 2]
        add_force(forces, i, fx, fy, fz)


def _half_space_indices(kmax: np.ndarray) -> np.ndarray:
    """Integer wave vectors with |n_d| < kmax_d, one of each +-n pair, n != 0 (OpenMM's set)."""
    kx, ky, kz = (int(k) for k in kmax)
    nx, ny, nz = np.meshgrid(np.arange(0, kx), np.arange(1 - ky, ky), np.arange(1 - kz, kz),
                             indexing="ij")
    keep = (nx > 0) | ((nx == 0) & (ny > 0)) | ((nx == 0) & (ny == 0) & (nz > 0))
    return np.ascontiguousarray(np.stack([nx[keep], ny[keep], nz[keep]], axis=1), dtype=np.int64)


class CpuEwald(CpuTerm):
    """Ewald reciprocal-space Coulomb energy and forces, plus self and background energy.

    Parameters
    ----------
    term : Nonbonded
        Non-bonded term with ``method == "Ewald"``.  As in OpenMM, alpha and kmax always come
        from the error tolerance (an explicit ``ewald_alpha``/``ewald_grid`` is ignored).
    n_particles : int
        Number of particles (must equal ``len(term.charges)``).
    default_box : (3, 3) float64 array
        The System's default box (rows, nm, reduced form) that fixes alpha and kmax.

    Attributes
    ----------
    alpha : float
        Ewald separation parameter, 1/nm.
    kmax : (3,) int64 array
        Wave-vector index bound per axis (``|n_d| < kmax_d``).
    self_energy : float
        Ewald self energy, kJ/mol.

    Notes
    -----
    OpenMM allows Ewald only in rectangular boxes; the sum here is written with the reciprocal
    box, so it is also correct for a triclinic one.
    """

    name = "NonbondedForce"

    def __init__(self, term: Nonbonded, n_particles: int, default_box: np.ndarray):
        if term.method != "Ewald":
            raise ValueError(f"CpuEwald needs method 'Ewald', got {term.method!r}")
        self.charges = np.ascontiguousarray(term.charges, dtype=np.float64)
        if self.charges.shape != (n_particles,):
            raise ValueError("charges do not match n_particles")
        alpha, kmax = ewald_parameters(term, check_reduced_box(default_box))
        self.alpha = float(alpha)
        self.kmax = kmax
        self.self_energy = ewald_self_energy(self.charges, self.alpha)
        self._k_index = _half_space_indices(kmax)
        n_k = self._k_index.shape[0]
        self._k_vec = np.zeros((n_k, 3), dtype=np.float64)
        self._coef = np.zeros(n_k, dtype=np.float64)
        self._s_re = np.zeros(n_k, dtype=np.float64)
        self._s_im = np.zeros(n_k, dtype=np.float64)
        table = (n_particles, 3, int(kmax.max()))
        self._cos = np.zeros(table, dtype=np.float64)
        self._sin = np.zeros(table, dtype=np.float64)
        self._box = None
        self._recip = None
        self._constant_energy = 0.0

    def _set_box(self, box: np.ndarray) -> None:
        """Wave vectors and their coefficients for a new box."""
        self._box = box.copy()
        self._recip = reciprocal_box(box)
        volume = box[0, 0] * box[1, 1] * box[2, 2]
        # Column d of recip is reciprocal vector d: k = 2 pi sum_d n_d recip[:, d].
        self._k_vec[:] = 2.0 * math.pi * (self._k_index.astype(np.float64) @ self._recip.T)
        k2 = np.einsum("ij,ij->i", self._k_vec, self._k_vec)
        self._coef[:] = (4.0 * math.pi * ONE_4PI_EPS0 / volume) * np.exp(
            -k2 / (4.0 * self.alpha * self.alpha)) / k2
        self._constant_energy = self.self_energy + neutralizing_energy(
            float(np.sum(self.charges)), volume, self.alpha)

    def compute(self, positions: np.ndarray, box: np.ndarray | None, forces: np.ndarray) -> float:
        """Add reciprocal-space forces and return reciprocal + self + background energy.

        Parameters
        ----------
        positions : (N, 3) float64 array
            Positions, nm.
        box : (3, 3) float64 array
            Periodic box vectors as rows, nm, reduced form.
        forces : (N, 3) int64 array
            Fixed-point force accumulator (``fixed_point``).

        Returns
        -------
        float
            Energy, kJ/mol (NaN, with no forces added, if a position is not finite).
        """
        box = check_reduced_box(box)
        if self._box is None or not np.array_equal(box, self._box):
            self._set_box(box)
        positions = np.ascontiguousarray(positions, dtype=np.float64)
        if not np.isfinite(positions).all():
            return math.nan
        _phase_tables(positions, self._recip, self._cos, self._sin)
        _structure_factors(self.charges, self._cos, self._sin, self._k_index, self._s_re,
                           self._s_im)
        energy = _energy(self._coef, self._s_re, self._s_im)
        _forces(self.charges, self._cos, self._sin, self._k_index, self._k_vec, self._coef,
                self._s_re, self._s_im, forces)
        return energy + self._constant_energy
