"""Reciprocal-space Coulomb: smooth particle-mesh Ewald (PME) and plain Ewald summation.

Both terms return the reciprocal energy plus the Ewald self energy (and, for a net charge, the
neutralising-background energy) and add the reciprocal forces; the real-space erfc pair sum and
the exclusion corrections are computed elsewhere (they use ``.alpha``).  The PME conventions
follow OpenMM's Reference platform (Essmann et al. 1995 smooth PME, B-spline order 5, influence
function with the B-spline moduli, same grid), so energies and forces agree with it to rounding.
``CpuEwald`` lives in ``ewald.py`` and is re-exported here.

Determinism (Anton's approach): charges are spread onto the PME grid as int64 fixed-point
numbers, so each grid value is an exact integer sum that does not depend on the order atoms are
added in or on how they are split over threads.  Every later step is either element-wise, an
FFT whose per-line arithmetic does not depend on the thread count, a sum in a fixed order, or a
per-atom gather that writes only its own row.  Results are bit-identical on any thread count.
"""

from __future__ import annotations

import math

import numba
import numpy as np
import scipy.fft
from numba import njit, prange

from bencao.backends.cpu.base import CpuTerm
from bencao.backends.cpu.ewald import CpuEwald
from bencao.backends.cpu.ewald_parameters import (
    PME_ORDER,
    bspline_moduli,
    check_reduced_box,
    ewald_parameters,
    ewald_self_energy,
    neutralizing_energy,
    reciprocal_box,
)
from bencao.backends.cpu.fixed_point import add_force
from bencao.constants import ONE_4PI_EPS0
from bencao.forces.nonbonded import Nonbonded

__all__ = ["CpuPME", "CpuEwald", "GRID_SCALE"]

#: Fixed-point scale of the PME charge grid: a contribution c (e) is stored as rint(c * 2**40).
#: Resolution 9.1e-13 e per contribution, far below the float64 PME error (relative energy
#: error ~1e-11 for typical grid values 0.01-1 e).  Overflow bound: an atom's 125 B-spline
#: weights are non-negative and sum to 1, so no grid point (nor the sum of the per-thread grids)
#: can exceed sum_i |q_i| * scale in magnitude; ``_grid_scale`` lowers the scale by powers of 2
#: for the rare system with sum |q| > 2**22 e (4.2e6 e), keeping that bound below 2**62.
GRID_SCALE = 2.0**40


def _grid_scale(charges: np.ndarray) -> float:
    """Largest power of 2 up to GRID_SCALE with ``sum |q| * scale < 2**62`` (no int64 overflow)."""
    total = float(np.sum(np.abs(charges)))
    scale = GRID_SCALE
    while total * scale >= 2.0**62:
        scale *= 0.5
    return scale


@njit(cache=True, inline="always")
def _bsplines(positions, recip, grid_shape, i, index, theta, dtheta):
    """Grid index, order-5 B-spline weights and their derivatives for atom i.

    For each axis d the scaled fractional coordinate u = n_d * frac_d(x) is split as
    u = i0 + w (0 <= w < 1); the atom reaches grid points i0 + j (j = 0..4, wrapped) with weight
    theta[j] = M5(w + 4 - j), M5 the cardinal B-spline, and dtheta[j] = d theta[j] / du.
    """
    for d in range(3):
        nd = grid_shape[d]
        t = (positions[i, 0] * recip[0, d] + positions[i, 1] * recip[1, d]
             + positions[i, 2] * recip[2, d])
        t = (t - math.floor(t)) * nd
        ti = np.int64(t)
        w = t - ti
        # t - floor(t) can round up to exactly 1.0: ti == nd, which wraps to 0.
        index[i, d] = ti - nd if ti >= nd else ti
        th = theta[i, d]
        # Order 2 (hat function), then raise the order with
        # M_p(x) = [x M_{p-1}(x) + (p - x) M_{p-1}(x - 1)] / (p - 1), updating th[j] from
        # the top down so th[j-1] still holds the previous order when th[j] is computed.
        th[0] = 1.0 - w
        th[1] = w
        for p in range(3, PME_ORDER + 1):
            inv = 1.0 / (p - 1)
            for j in range(p - 1, -1, -1):
                upper = th[j - 1] if j >= 1 else 0.0
                lower = th[j] if j <= p - 2 else 0.0
                th[j] = inv * ((w + p - 1 - j) * upper + (1.0 - w + j) * lower)
            if p == PME_ORDER - 1:
                # dM_p(x)/dx = M_{p-1}(x) - M_{p-1}(x - 1): derivatives from order 4.
                for j in range(PME_ORDER):
                    upper = th[j - 1] if j >= 1 else 0.0
                    lower = th[j] if j <= PME_ORDER - 2 else 0.0
                    dtheta[i, d, j] = upper - lower


@njit(cache=True, inline="always")
def _wrap(i, n):
    """i mod n for 0 <= i < 2n, without an integer division in the hot loops."""
    return i - n if i >= n else i


@njit(cache=True, parallel=True)
def _spread(positions, recip, grid_shape, charges, index, theta, dtheta, int_grids, n_chunks,
            scale):
    """B-splines of every atom, and charges spread onto per-chunk int64 grids.

    Chunk c owns ``int_grids[c]`` (no races).  The B-spline weights are also stored for the
    force gather.

    Each contribution q * wx * wy * wz (e) is rounded to an integer multiple of 1/scale before
    it is added, so the grid is an exact integer sum whatever the order or chunking.
    """
    n = charges.shape[0]
    nx, ny, nz = int_grids.shape[1], int_grids.shape[2], int_grids.shape[3]
    for c in prange(n_chunks):
        g = int_grids[c]
        g[:, :, :] = 0
        for i in range(c * n // n_chunks, (c + 1) * n // n_chunks):
            _bsplines(positions, recip, grid_shape, i, index, theta, dtheta)
            q = charges[i] * scale
            x0, y0, z0 = index[i, 0], index[i, 1], index[i, 2]
            for a in range(PME_ORDER):
                x = _wrap(x0 + a, nx)
                qa = q * theta[i, 0, a]
                for b in range(PME_ORDER):
                    y = _wrap(y0 + b, ny)
                    qab = qa * theta[i, 1, b]
                    for k in range(PME_ORDER):
                        z = _wrap(z0 + k, nz)
                        g[x, y, z] += np.int64(np.rint(qab * theta[i, 2, k]))


@njit(cache=True, parallel=True)
def _sum_grids(int_grids, n_chunks, inv_scale, grid):
    """Exact int64 sum of the chunk grids, converted to the float64 charge grid (e)."""
    nx, ny, nz = grid.shape
    for x in prange(nx):
        for y in range(ny):
            for z in range(nz):
                total = np.int64(0)
                for c in range(n_chunks):
                    total += int_grids[c, x, y, z]
                grid[x, y, z] = total * inv_scale


@njit(cache=True, parallel=True)
def _convolve(spectrum, eterm, nz, plane_energy):
    """Energy ``0.5 * sum_k eterm |S(k)|^2`` over the full spectrum, then S *= eterm in place.

    ``spectrum`` is the real-to-complex half (last axis 0..nz//2); interior last-axis entries
    stand for themselves and their conjugate partners, so they count twice in the energy.  Each
    x-plane is summed serially and the planes in order: the result does not depend on threads.
    """
    nx, ny, nzh = spectrum.shape
    for x in prange(nx):
        e = 0.0
        for y in range(ny):
            for z in range(nzh):
                v = spectrum[x, y, z]
                f = eterm[x, y, z]
                weight = 1.0 if (z == 0 or 2 * z == nz) else 2.0
                e += weight * f * (v.real * v.real + v.imag * v.imag)
                spectrum[x, y, z] = v * f
        plane_energy[x] = e
    total = 0.0
    for x in range(nx):
        total += plane_energy[x]
    return 0.5 * total


@njit(cache=True, parallel=True)
def _gather(charges, index, theta, dtheta, potential, recip, forces):
    """Force on each atom from the convolved grid (each atom writes only its own row)."""
    n = charges.shape[0]
    nx, ny, nz = potential.shape
    for i in prange(n):
        gx = 0.0
        gy = 0.0
        gz = 0.0
        x0, y0, z0 = index[i, 0], index[i, 1], index[i, 2]
        for a in range(PME_ORDER):
            x = _wrap(x0 + a, nx)
            tx = theta[i, 0, a]
            dtx = dtheta[i, 0, a]
            for b in range(PME_ORDER):
                y = _wrap(y0 + b, ny)
                # Contract z first: two sums per (x, y) rather than three products per point.
                vz = 0.0
                dvz = 0.0
                for k in range(PME_ORDER):
                    v = potential[x, y, _wrap(z0 + k, nz)]
                    vz += theta[i, 2, k] * v
                    dvz += dtheta[i, 2, k] * v
                ty = theta[i, 1, b]
                dty = dtheta[i, 1, b]
                gx += dtx * ty * vz
                gy += tx * dty * vz
                gz += tx * ty * dvz
        # Chain rule through u_d = n_d * (x . recip[:, d]); recip is lower-triangular.
        q = charges[i]
        gx *= -q * nx
        gy *= -q * ny
        gz *= -q * nz
        add_force(forces, i,
                  gx * recip[0, 0],
                  gx * recip[1, 0] + gy * recip[1, 1],
                  gx * recip[2, 0] + gy * recip[2, 1] + gz * recip[2, 2])


@njit(cache=True, inline="always")
def _signed_frequency(k, n):
    """Wave number of FFT index k on an n-point axis (upper half negative; n/2 -> -n/2)."""
    return k if k < (n + 1) // 2 else k - n


@njit(cache=True, inline="always")
def _eterm_at(kx, ky, kz, nx, ny, nz, recip, moduli_x, moduli_y, moduli_z, factor, prefactor):
    """OpenMM's influence function at FFT index (kx, ky, kz) (zero at k = 0)."""
    if kx == 0 and ky == 0 and kz == 0:
        return 0.0
    mx = _signed_frequency(kx, nx)
    my = _signed_frequency(ky, ny)
    mz = _signed_frequency(kz, nz)
    hx = mx * recip[0, 0]
    hy = mx * recip[1, 0] + my * recip[1, 1]
    hz = mx * recip[2, 0] + my * recip[2, 1] + mz * recip[2, 2]
    m2 = hx * hx + hy * hy + hz * hz
    return prefactor * math.exp(-factor * m2) / (m2 * moduli_x[kx] * moduli_y[ky] * moduli_z[kz])


@njit(cache=True, parallel=True)
def _influence(recip, volume, alpha, moduli_x, moduli_y, moduli_z, eterm):
    """Influence function on the real-to-complex half grid, symmetrised over k and -k.

    On Nyquist planes (even n, index n/2) OpenMM assigns wave number -n/2 to both k and -k, so
    its full-grid influence function is not even in k for a triclinic box; OpenMM then keeps the
    real part of the back-transform, which is the same as convolving with the even part
    (E(k) + E(-k)) / 2.  Using that even part here reproduces OpenMM with a real FFT.
    """
    nx, ny, nzh = eterm.shape
    nz = moduli_z.shape[0]
    factor = math.pi * math.pi / (alpha * alpha)
    prefactor = ONE_4PI_EPS0 / (math.pi * volume)
    for kx in prange(nx):
        for ky in range(ny):
            for kz in range(nzh):
                e_plus = _eterm_at(kx, ky, kz, nx, ny, nz, recip, moduli_x, moduli_y, moduli_z,
                                   factor, prefactor)
                e_minus = _eterm_at((nx - kx) % nx, (ny - ky) % ny, (nz - kz) % nz, nx, ny, nz,
                                    recip, moduli_x, moduli_y, moduli_z, factor, prefactor)
                eterm[kx, ky, kz] = 0.5 * (e_plus + e_minus)


class CpuPME(CpuTerm):
    """Smooth PME reciprocal-space Coulomb energy and forces, plus the Ewald self energy.

    Parameters
    ----------
    term : Nonbonded
        Non-bonded term with ``method == "PME"``; only the charges, cutoff, tolerance and the
        explicit alpha/grid are used here.
    n_particles : int
        Number of particles (must equal ``len(term.charges)``).
    default_box : (3, 3) float64 array
        The System's default box (rows, nm, reduced form): OpenMM chooses alpha and the grid
        from it once, and keeps them when the box changes.

    Attributes
    ----------
    alpha : float
        Ewald separation parameter, 1/nm (for the real-space part and exclusion corrections).
    grid : (3,) int64 array
        PME grid points along a, b, c.
    self_energy : float
        Ewald self energy ``-ONE_4PI_EPS0 alpha / sqrt(pi) sum q^2``, kJ/mol.

    Notes
    -----
    ``compute`` returns reciprocal + self + neutralising-background energy (the last is zero for
    a neutral system): exactly what OpenMM 8 puts in the NonbondedForce's reciprocal-space force
    group.
    """

    name = "NonbondedForce"
    profile_phase = "reciprocal space"

    def __init__(self, term: Nonbonded, n_particles: int, default_box: np.ndarray):
        if term.method != "PME":
            raise ValueError(f"CpuPME needs method 'PME', got {term.method!r}")
        self.charges = np.ascontiguousarray(term.charges, dtype=np.float64)
        if self.charges.shape != (n_particles,):
            raise ValueError("charges do not match n_particles")
        alpha, grid = ewald_parameters(term, check_reduced_box(default_box))
        grid = np.ascontiguousarray(grid, dtype=np.int64)
        if np.any(grid < PME_ORDER):
            raise ValueError(f"PME grid {grid} is smaller than the B-spline order {PME_ORDER}")
        self.alpha = float(alpha)
        self.grid = grid
        self.self_energy = ewald_self_energy(self.charges, self.alpha)
        nx, ny, nz = (int(g) for g in grid)
        self._shape = (nx, ny, nz)
        self._scale = _grid_scale(self.charges)
        self._moduli = [bspline_moduli(int(g)) for g in grid]
        self._index = np.zeros((n_particles, 3), dtype=np.int64)
        self._theta = np.zeros((n_particles, 3, PME_ORDER), dtype=np.float64)
        self._dtheta = np.zeros((n_particles, 3, PME_ORDER), dtype=np.float64)
        self._charge_grid = np.zeros(self._shape, dtype=np.float64)
        self._int_grids = np.zeros((numba.get_num_threads(), nx, ny, nz), dtype=np.int64)
        self._eterm = np.zeros((nx, ny, nz // 2 + 1), dtype=np.float64)
        self._plane_energy = np.zeros(nx, dtype=np.float64)
        self._box = None
        self._recip = None
        self._constant_energy = 0.0

    def _set_box(self, box: np.ndarray) -> None:
        """Recompute the reciprocal box and influence function (only when the box changed)."""
        self._box = box.copy()
        self._recip = reciprocal_box(box)
        volume = box[0, 0] * box[1, 1] * box[2, 2]
        self._constant_energy = self.self_energy + neutralizing_energy(
            float(np.sum(self.charges)), volume, self.alpha)
        _influence(self._recip, volume, self.alpha, self._moduli[0], self._moduli[1],
                   self._moduli[2], self._eterm)

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
        nz = self._shape[2]
        n_chunks = numba.get_num_threads()
        if self._int_grids.shape[0] < n_chunks:
            self._int_grids = np.zeros((n_chunks,) + self._shape, dtype=np.int64)
        _spread(positions, self._recip, self.grid, self.charges, self._index, self._theta,
                self._dtheta, self._int_grids, n_chunks, self._scale)
        _sum_grids(self._int_grids, n_chunks, 1.0 / self._scale, self._charge_grid)
        workers = max(n_chunks, 1)
        spectrum = scipy.fft.rfftn(self._charge_grid, workers=workers)
        energy = _convolve(spectrum, self._eterm, nz, self._plane_energy)
        # norm="forward" leaves the inverse transform unscaled, as OpenMM's convolution expects.
        potential = scipy.fft.irfftn(spectrum, s=self._shape, norm="forward", workers=workers)
        _gather(self.charges, self._index, self._theta, self._dtheta, potential, self._recip,
                forces)
        return energy + self._constant_energy
