"""Reciprocal-space Coulomb: smooth particle-mesh Ewald (PME) and plain Ewald summation.

Both terms return the reciprocal energy plus the Ewald self energy (and, for a net charge, the
neutralising-background energy) and add the reciprocal forces; the real-space erfc pair sum and
the exclusion corrections are computed elsewhere (they use ``.alpha``).  The PME conventions
follow OpenMM's Reference platform (Essmann et al. 1995 smooth PME, B-spline order 5, influence
function with the B-spline moduli, same grid), and everything is float64, so energies and forces
agree with it to rounding (~1e-11 relative).  ``CpuEwald`` lives in ``ewald.py`` and is
re-exported here.

This module holds the term (``CpuPME``) and its influence function (``_influence``); the
kernels it drives live beside it:

* :mod:`bencao.backends.cpu.pme_spread` -- B-spline charge spreading and force gathering;
* :mod:`bencao.backends.cpu.pme_transform` -- the 3-D real transform and the convolution;
* :mod:`bencao.backends.cpu.fft` (with ``fft_radix``) -- the 8-line vectorised FFT;
* :mod:`bencao.backends.cpu.simd8` -- the 8-lane float64 vector type they all use.

One ``CpuPME.compute`` (``bencao.profiling`` phase in brackets):

1. [PME spread] ``_locate``: each atom's grid cell (x0, y0, z0) and B-spline offsets;
   ``_sort_by_plane``: a stable counting sort of the atoms by x0 ("plane buckets");
   ``_spread``: each task owns a slab of x-planes and adds the 5 x 5 x 5 charge blocks of the
   atoms of the buckets that reach it, one 8-lane vector per grid row.
2. [PME FFT] ``_fft_planes_forward``: per x-plane, real-to-complex FFT along y and complex
   FFT along z, by the thread that spread the plane.
3. [PME x-FFT + convolution] ``_fft_x_convolve``: per line along x, FFT, energy, product with
   the influence function, inverse FFT (the only pass that reads every plane).
4. [PME FFT] ``_fft_planes_inverse``: per x-plane, inverse FFT along z and y back into the
   grid, which now holds the potential.
5. [PME gather] ``_gather``: the force on each atom from the potential at its 125 points.

Determinism without fixed point: every grid point is written by exactly one task, and its
contributions arrive in a canonical order whatever the number of slabs (see ``_spread``); so
the float64 grid is bit-identical on any number of threads.  Every later step is a per-line or
per-plane FFT whose arithmetic is fixed by the plan, element-wise work, a sum in a fixed order
(the energy: per line, then ``math.fsum`` over lines), or a per-atom gather that writes only its
own row of the int64 force accumulator.  Results are bit-identical on any number of threads
(tested with 1, 2 and 3).
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import njit, prange

from bencao.backends.common.ewald_parameters import (
    PME_ORDER,
    bspline_moduli,
    check_reduced_box,
    ewald_parameters,
    ewald_self_energy,
    neutralizing_energy,
    reciprocal_box,
)
from bencao.backends.cpu.base import CpuTerm
from bencao.backends.cpu.ewald import CpuEwald
from bencao.backends.cpu.fft import fft_plan, fft_work_size
from bencao.backends.cpu.pme_spread import (
    _bspline_polynomials,
    _gather,
    _locate,
    _sort_by_plane,
    _spread,
)
from bencao.backends.cpu.pme_transform import (
    _fft_planes_forward,
    _fft_planes_inverse,
    _fft_x_convolve,
    _layout,
    _plane_buffers,
)
from bencao.backends.cpu.simd8 import LANES
from bencao.backends.cpu.threads import per_particle
from bencao.constants import ONE_4PI_EPS0
from bencao.forces.nonbonded import Nonbonded
from bencao.profiling import phase

__all__ = ["LANES", "CpuEwald", "CpuPME"]


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
def _influence(recip, volume, alpha, moduli_x, moduli_y, moduli_z, eterm, ky_weight):
    """Influence function for ky = 0..ny/2, laid out ``eterm[kx, kz, ky]`` like the spectrum
    (zero in the padding lanes), symmetrised over k and -k; and the energy weight of each ky.

    On Nyquist planes (even n, index n/2) OpenMM assigns wave number -n/2 to both k and -k, so
    its full-grid influence function is not even in k for a triclinic box; OpenMM then keeps the
    real part of the back-transform, which is the same as convolving with the even part
    (E(k) + E(-k)) / 2.  Using that even part here reproduces OpenMM with a real FFT.
    """
    nx, nz, nyhw = eterm.shape
    ny = moduli_y.shape[0]
    nyh = ny // 2 + 1
    factor = math.pi * math.pi / (alpha * alpha)
    prefactor = ONE_4PI_EPS0 / (math.pi * volume)
    for kx in prange(nx):
        for kz in range(nz):
            for ky in range(nyhw):
                if ky >= nyh:
                    eterm[kx, kz, ky] = 0.0
                    continue
                e_plus = _eterm_at(kx, ky, kz, nx, ny, nz, recip, moduli_x, moduli_y, moduli_z,
                                   factor, prefactor)
                e_minus = _eterm_at((nx - kx) % nx, (ny - ky) % ny, (nz - kz) % nz, nx, ny, nz,
                                    recip, moduli_x, moduli_y, moduli_z, factor, prefactor)
                eterm[kx, kz, ky] = 0.5 * (e_plus + e_minus)
    # Each ky in 1..(ny-1)/2 also stands for -ky (|S(-k)| = |S(k)|, eterm even).
    for ky in range(nyhw):
        ky_weight[ky] = 0.0 if ky >= nyh else (1.0 if (ky == 0 or 2 * ky == ny) else 2.0)


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
    work_per_particle = False  # compute limits its own threads

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
        self._moduli = [bspline_moduli(int(g)) for g in grid]
        self._coefficients = _bspline_polynomials()
        n = n_particles
        # Per-atom work arrays (the s_* ones in plane-bucket order), reused every call.
        self._index = np.zeros((n, 3), dtype=np.int64)
        self._offset = np.zeros((n, 3), dtype=np.float64)
        self._order = np.zeros(n, dtype=np.int64)
        self._starts = np.zeros(nx + 1, dtype=np.int64)
        self._counts = np.zeros((numba.config.NUMBA_NUM_THREADS, nx), dtype=np.int64)
        self._s_index = np.zeros((n, 3), dtype=np.int64)
        self._s_offset = np.zeros((n, 3), dtype=np.float64)
        self._s_charges = np.zeros(n, dtype=np.float64)
        # One real grid for the charges and, after the transforms, the potential: x-planes of
        # ny rows of nz + LANES columns (whole-vector row access from any column z0 < nz).  The
        # planes are LANES doubles further apart than their size: 56 x 64 doubles is exactly
        # 7 x 4 KiB, and the rows at one (y, z) of an atom's 5 planes would share an L1 set.
        self._plane_stride = ny * (nz + LANES) + LANES
        self._grid = np.zeros(nx * self._plane_stride, dtype=np.float64)
        nzv, _, nyhv, _, spec_plane = _layout(ny, nz)
        self._spectrum = np.zeros(nx * spec_plane, dtype=np.float64)
        self._eterm = np.zeros((nx, nz, nyhv * LANES), dtype=np.float64)
        self._ky_weight = np.zeros(nyhv * LANES, dtype=np.float64)
        self._line_energy = np.zeros(nz * nyhv, dtype=np.float64)
        self._plans = [fft_plan(int(g)) for g in grid]
        # Work space of each thread (get_thread_id() < NUMBA_NUM_THREADS even after
        # set_num_threads), for a plane pass or an x-line pass, whichever needs more.
        plane_work = _plane_buffers(ny, nzv, nyhv)[-1] + max(fft_work_size(ny),
                                                             fft_work_size(nz))
        line_work = 2 * (nx * LANES + 3 * LANES) + fft_work_size(nx)
        self._buffers = np.zeros((numba.config.NUMBA_NUM_THREADS, max(plane_work, line_work)),
                                 dtype=np.float64)
        # A slab may hold at most nx - PME_ORDER + 1 planes (see _spread).
        self._min_slabs = -(-nx // (nx - PME_ORDER + 1))
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
                   self._moduli[2], self._eterm, self._ky_weight)

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
        # per-particle work: a small system runs it on fewer threads (backends/cpu/threads.py)
        with per_particle(len(positions)):
            return self._compute(positions, box, forces)

    def _compute(self, positions, box, forces) -> float:
        box = check_reduced_box(box)
        if self._box is None or not np.array_equal(box, self._box):
            self._set_box(box)
        positions = np.ascontiguousarray(positions, dtype=np.float64)
        if not np.isfinite(positions).all():
            return math.nan
        shape = self.grid
        (plan_x, tw_x), (plan_y, tw_y), (plan_z, tw_z) = self._plans
        threads = numba.get_num_threads()
        counts = self._counts[:threads]
        with phase("PME spread"):
            _locate(positions, self._recip, shape, self._index, self._offset, counts)
            _sort_by_plane(self._index, self._offset, self.charges, counts, self._starts,
                           self._order, self._s_index, self._s_offset, self._s_charges)
            _spread(self._s_charges, self._s_index, self._s_offset, self._starts,
                    self._coefficients, shape, self._plane_stride,
                    max(min(threads, int(shape[0])), self._min_slabs), self._grid)
        with phase("PME FFT"):
            _fft_planes_forward(self._grid, shape, self._plane_stride, self._spectrum, plan_y,
                                tw_y, plan_z, tw_z, self._buffers)
        with phase("PME x-FFT + convolution"):
            # One pass per line along x: FFT, convolution, inverse FFT (see _fft_x_convolve).
            _fft_x_convolve(self._spectrum, shape, self._eterm, self._ky_weight, plan_x, tw_x,
                            self._buffers, self._line_energy)
            # fsum: correctly rounded, so independent of the order (and of the thread count).
            energy = 0.5 * math.fsum(self._line_energy)
        with phase("PME FFT"):
            _fft_planes_inverse(self._spectrum, shape, self._plane_stride, self._grid, plan_y,
                                tw_y, plan_z, tw_z, self._buffers)
        with phase("PME gather"):
            _gather(self._order, self._s_charges, self._s_index, self._s_offset,
                    self._coefficients, self._grid, shape, self._plane_stride, self._recip, forces)
        return energy + self._constant_energy
