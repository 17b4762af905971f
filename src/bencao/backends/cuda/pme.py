"""Smooth PME reciprocal space on the GPU: spread, FFT, convolution, gather.

OpenMM's conventions, as ``cpu.pme.CpuPME`` (which matches OpenMM's Reference platform): alpha
and the grid from the Ewald error tolerance and the *default* box
(``common.ewald_parameters.ewald_parameters``), B-spline order 5, the influence function with the
B-spline moduli (made even in k, as the CPU term explains, so a real FFT reproduces OpenMM), the
Ewald self energy and the neutralising-background energy of a net charge.

Determinism: charges are spread onto an int64 grid with integer atomics.  Each contribution
``q theta_x theta_y theta_z`` (e) is scaled by ``GRID_SCALE`` = 2^40 and rounded to the nearest
integer: resolution 9.1e-13 e per contribution (far below the ~1e-5 relative accuracy of PME
itself, and below float64 spreading's own rounding for a few hundred contributions per point),
range +-8.4e6 e per grid point.  Integer sums commute, so the grid does not depend on the order
the threads run in.  The FFT is cuFFT through CuPy on a GPU (deterministic for a fixed plan)
and NumPy's pocketfft in Numba's CUDA simulator (CuPy cannot run there); the gather is one
thread per atom, its force converted to fixed point once.

Everything is float64 in this first slice; a float32 grid and FFT (OpenMM's CUDA choice) is the
mixed-precision step to come.
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda

from bencao.backends.common.ewald_parameters import (
    PME_ORDER,
    bspline_moduli,
    check_reduced_box,
    ewald_parameters,
    ewald_self_energy,
    neutralizing_energy,
    reciprocal_box,
)
from bencao.backends.cuda.common import device_function, launch_kernel, to_fixed
from bencao.backends.cuda.device import using_simulator
from bencao.constants import ONE_4PI_EPS0

#: Fixed-point scale of the charge grid, 1/e (see the module docstring).
GRID_SCALE = 2.0**40

assert PME_ORDER == 5  # the kernels' local arrays are sized for it


@device_function
def _bspline(w, theta, dtheta):
    """Order-5 B-spline weights ``theta[k]`` of grid points i0 + k for an atom at i0 + w
    (0 <= w < 1), and their derivatives d theta / dw; OpenMM's recursion (Essmann et al.)."""
    theta[4] = 0.0
    theta[1] = w
    theta[0] = 1.0 - w
    for j in range(3, 5):
        div = 1.0 / (j - 1)
        theta[j - 1] = div * w * theta[j - 2]
        for k in range(1, j - 1):
            theta[j - k - 1] = div * ((w + k) * theta[j - k - 2] + (j - k - w) * theta[j - k - 1])
        theta[0] = div * (1.0 - w) * theta[0]
    dtheta[0] = -theta[0]
    for k in range(1, 5):
        dtheta[k] = theta[k - 1] - theta[k]
    div = 0.25
    theta[4] = div * w * theta[3]
    for k in range(1, 4):
        theta[4 - k] = div * ((w + k) * theta[3 - k] + (5 - k - w) * theta[4 - k])
    theta[0] = div * (1.0 - w) * theta[0]


@device_function
def _locate(positions, i, recip, shape, d, theta, dtheta):
    """Grid index i0 of atom i along axis d (0..n_d - 1) and its weights into theta[d],
    dtheta[d] (as ``cpu.pme_spread._locate``: t = n_d frac_d wrapped into [0, n_d), t = i0 + w)."""
    nd = shape[d]
    t = (positions[i, 0] * recip[0, d] + positions[i, 1] * recip[1, d]
         + positions[i, 2] * recip[2, d])
    t = (t - math.floor(t)) * nd
    ti = int(t)
    _bspline(t - ti, theta[d], dtheta[d])
    # t - floor(t) can round up to exactly 1.0: ti == nd, which wraps to 0
    return ti - nd if ti >= nd else ti


@cuda.jit
def _spread(positions, charges, recip, shape, grid):
    """One thread per atom: add its 5 x 5 x 5 charge block to the flat int64 grid (x major)."""
    i = cuda.grid(1)
    if i >= positions.shape[0]:
        return
    q = charges[i]
    if q == 0.0:
        return
    theta = cuda.local.array((3, 5), np.float64)
    dtheta = cuda.local.array((3, 5), np.float64)
    x0 = _locate(positions, i, recip, shape, 0, theta, dtheta)
    y0 = _locate(positions, i, recip, shape, 1, theta, dtheta)
    z0 = _locate(positions, i, recip, shape, 2, theta, dtheta)
    nx, ny, nz = shape[0], shape[1], shape[2]
    for a in range(5):
        x = x0 + a
        x = x - nx if x >= nx else x
        qa = q * theta[0, a] * GRID_SCALE
        for b in range(5):
            y = y0 + b
            y = y - ny if y >= ny else y
            qab = qa * theta[1, b]
            row = (x * ny + y) * nz
            for c in range(5):
                z = z0 + c
                z = z - nz if z >= nz else z
                cuda.atomic.add(grid, row + z, np.int64(math.floor(qab * theta[2, c] + 0.5)))


@cuda.jit
def _gather(positions, charges, recip, shape, potential, forces):
    """One thread per atom: the force from the convolved grid (flat float64, x major), into
    the fixed-point accumulator."""
    i = cuda.grid(1)
    if i >= positions.shape[0]:
        return
    q = charges[i]
    if q == 0.0:
        return
    theta = cuda.local.array((3, 5), np.float64)
    dtheta = cuda.local.array((3, 5), np.float64)
    x0 = _locate(positions, i, recip, shape, 0, theta, dtheta)
    y0 = _locate(positions, i, recip, shape, 1, theta, dtheta)
    z0 = _locate(positions, i, recip, shape, 2, theta, dtheta)
    nx, ny, nz = shape[0], shape[1], shape[2]
    sx = 0.0  # sum of dtheta_x theta_y theta_z V
    sy = 0.0
    sz = 0.0
    for a in range(5):
        x = x0 + a
        x = x - nx if x >= nx else x
        for b in range(5):
            y = y0 + b
            y = y - ny if y >= ny else y
            row = (x * ny + y) * nz
            p = 0.0  # sum over c of theta_z V
            dp = 0.0  # sum over c of dtheta_z V
            for c in range(5):
                z = z0 + c
                z = z - nz if z >= nz else z
                v = potential[row + z]
                p += theta[2, c] * v
                dp += dtheta[2, c] * v
            sx += dtheta[0, a] * theta[1, b] * p
            sy += theta[0, a] * dtheta[1, b] * p
            sz += theta[0, a] * theta[1, b] * dp
    # chain rule through u_d = n_d (x . recip[:, d]); recip is lower-triangular
    gx = -q * nx * sx
    gy = -q * ny * sy
    gz = -q * nz * sz
    cuda.atomic.add(forces, (i, 0), to_fixed(gx * recip[0, 0]))
    cuda.atomic.add(forces, (i, 1), to_fixed(gx * recip[1, 0] + gy * recip[1, 1]))
    cuda.atomic.add(forces, (i, 2), to_fixed(gx * recip[2, 0] + gy * recip[2, 1]
                                             + gz * recip[2, 2]))


def _signed(n: int) -> np.ndarray:
    """Wave numbers of the FFT indices 0..n-1 (upper half negative; n/2 -> -n/2)."""
    k = np.arange(n)
    return np.where(k < (n + 1) // 2, k, k - n)


def influence_function(recip, volume, alpha, moduli, shape):
    """OpenMM's influence function on the half spectrum of a real FFT over the last axis,
    made even in k, and its energy weights.

    Parameters
    ----------
    recip : (3, 3) float64 array
        Reciprocal box (``reciprocal_box``), 1/nm.
    volume : float
        Box volume, nm^3.
    alpha : float
        Ewald parameter, 1/nm.
    moduli : list of three (n_d,) float64 arrays
        B-spline moduli (``bspline_moduli``).
    shape : (3,) ints
        Grid points along a, b, c.

    Returns
    -------
    eterm : (nx, ny, nz // 2 + 1) float64 array
        ``(E(k) + E(-k)) / 2``, E the influence function (kJ/mol nm / e^2 per grid unit), zero
        at k = 0.
    weighted : same shape
        ``eterm`` times 2 where the half spectrum's kz also stands for -kz, else 1: the energy
        is ``0.5 sum weighted |S|^2``.
    """
    nx, ny, nz = (int(g) for g in shape)
    factor = math.pi * math.pi / (alpha * alpha)
    prefactor = ONE_4PI_EPS0 / (math.pi * volume)
    kx = np.arange(nx)[:, None, None]
    ky = np.arange(ny)[None, :, None]
    kz = np.arange(nz // 2 + 1)[None, None, :]

    def eterm_at(ix, iy, iz):
        mx = _signed(nx)[ix]
        my = _signed(ny)[iy]
        mz = _signed(nz)[iz]
        hx = mx * recip[0, 0]
        hy = mx * recip[1, 0] + my * recip[1, 1]
        hz = mx * recip[2, 0] + my * recip[2, 1] + mz * recip[2, 2]
        m2 = hx * hx + hy * hy + hz * hz
        denominator = m2 * moduli[0][ix] * moduli[1][iy] * moduli[2][iz]
        zero = (ix == 0) & (iy == 0) & (iz == 0)
        return np.where(zero, 0.0,
                        prefactor * np.exp(-factor * m2) / np.where(zero, 1.0, denominator))

    eterm = 0.5 * (eterm_at(kx, ky, kz)
                   + eterm_at((nx - kx) % nx, (ny - ky) % ny, (nz - kz) % nz))
    weight = np.where((kz == 0) | (2 * kz == nz), 1.0, 2.0)
    return np.ascontiguousarray(eterm), np.ascontiguousarray(eterm * weight)


class CudaPME:
    """Smooth PME reciprocal-space Coulomb energy and forces on the GPU, plus the Ewald self
    energy and the neutralising-background energy (OpenMM's reciprocal-space group).

    Parameters
    ----------
    term : bencao.forces.Nonbonded
        Non-bonded term with ``method == "PME"``.
    n_particles : int
        Number of particles (``len(term.charges)``).
    default_box : (3, 3) float64 array
        The System's default box (rows, nm, reduced form): alpha and the grid come from it.

    Attributes
    ----------
    alpha : float
        Ewald separation parameter, 1/nm.
    grid : (3,) int64 array
        PME grid points along a, b, c.
    self_energy : float
        ``-ONE_4PI_EPS0 alpha / sqrt(pi) sum q^2``, kJ/mol.
    """

    name = "NonbondedForce"
    profile_phase = "reciprocal space"
    energy_optional = True  # compute(..., energy=False) skips the energy sum

    def __init__(self, term, n_particles, default_box):
        if term.method != "PME":
            raise ValueError(f"CudaPME needs method 'PME', got {term.method!r}")
        charges = np.ascontiguousarray(term.charges, np.float64)
        if charges.shape != (n_particles,):
            raise ValueError("charges do not match n_particles")
        alpha, grid = ewald_parameters(term, check_reduced_box(default_box))
        if np.any(grid < PME_ORDER):
            raise ValueError(f"PME grid {grid} is smaller than the B-spline order {PME_ORDER}")
        self.alpha = float(alpha)
        self.grid = np.ascontiguousarray(grid, np.int64)
        self.n = int(n_particles)
        self.self_energy = ewald_self_energy(charges, self.alpha)
        self._total_charge = float(np.sum(charges))
        self._moduli = [bspline_moduli(int(g)) for g in self.grid]
        self._charges = cuda.to_device(charges if self.n else np.zeros(1))
        self._shape = cuda.to_device(self.grid)
        size = int(np.prod(self.grid))
        self._fixed_grid = cuda.to_device(np.zeros(size, np.int64))
        self._simulator = using_simulator()
        if not self._simulator:
            import cupy  # the FFT library on a real GPU (bencao[cuda])

            self._xp = cupy
        else:
            self._xp = np
            self._zeros = np.zeros(size, np.int64)
        self._box = None

    def _set_box(self, box):
        """Reciprocal box, influence function and constant energy of a new box."""
        self._box = box.copy()
        recip = reciprocal_box(box)
        self._recip = cuda.to_device(recip)
        volume = box[0, 0] * box[1, 1] * box[2, 2]
        eterm, weighted = influence_function(recip, volume, self.alpha, self._moduli, self.grid)
        self._eterm = self._xp.asarray(eterm)
        self._weighted = self._xp.asarray(weighted)
        self._constant_energy = self.self_energy + neutralizing_energy(
            self._total_charge, volume, self.alpha)

    def _convolve(self, energy=True):
        """Charge grid -> potential grid (a device array) and the reciprocal energy, kJ/mol
        (NaN without ``energy``: the sum is a transfer that would stall a step on the GPU).

        The inverse FFT is unnormalised (``norm="forward"`` puts 1/N on the forward transform,
        which is not taken): the gather's formula expects OpenMM's unnormalised convolution.
        """
        xp = self._xp
        shape = tuple(int(g) for g in self.grid)
        if self._simulator:
            charge = self._fixed_grid.copy_to_host()
            self._fixed_grid.copy_to_device(self._zeros)  # ready for the next spread
        else:
            charge = xp.asarray(self._fixed_grid).copy()
            xp.asarray(self._fixed_grid).fill(0)
        charge = charge.astype(np.float64) * (1.0 / GRID_SCALE)
        spectrum = xp.fft.rfftn(charge.reshape(shape))
        if energy:
            energy = 0.5 * float(xp.sum(self._weighted * (spectrum.real**2 + spectrum.imag**2)))
        else:
            energy = math.nan
        spectrum *= self._eterm
        potential = xp.ascontiguousarray(xp.fft.irfftn(spectrum, s=shape, norm="forward")).ravel()
        if self._simulator:
            return cuda.to_device(potential), energy
        # CuPy and Numba share the device pointer (__cuda_array_interface__), no copy
        self._potential = potential  # keep it alive while the gather runs
        return cuda.as_cuda_array(potential), energy

    def compute(self, state, box, energy=True) -> float:
        """Add reciprocal-space forces to ``state.forces``; return reciprocal + self +
        background energy, kJ/mol (NaN if ``energy`` is False; the forces are the same).

        Parameters
        ----------
        state : object
            ``state.positions`` ((N, 3) float64 device array, nm) and ``state.forces`` ((N, 3)
            int64 device array, fixed point).
        box : (3, 3) float64 array
            Box vectors as rows, nm, reduced form (host).
        """
        box = check_reduced_box(box)
        if self._box is None or not np.array_equal(box, self._box):
            self._set_box(box)
        if self.n:
            launch_kernel(_spread, self.n)(state.positions, self._charges, self._recip,
                                           self._shape, self._fixed_grid)
        potential, energy = self._convolve(energy)
        if self.n:
            launch_kernel(_gather, self.n)(state.positions, self._charges, self._recip,
                                           self._shape, potential, state.forces)
        return energy + self._constant_energy
