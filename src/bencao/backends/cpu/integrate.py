"""Per-particle update kernels of the integrators (Numba, float64).

Every kernel is element-wise over particles, so its result does not depend on how threads split
the loop.  No ``fastmath``: contracting a*b+c into a fused multiply-add in the vectorised body
but not in the scalar remainder would make a particle's result depend on where a thread's chunk
boundary falls, and so on the thread count.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(parallel=True, cache=True)
def kick(velocities, forces, inverse_masses, dt):
    """v += dt F / m.

    Parameters
    ----------
    velocities : (N, 3) float64 array
        Velocities, nm/ps (updated in place).
    forces : (N, 3) float64 array
        Forces, kJ/mol/nm.
    inverse_masses : (N,) float64 array
        1/m, 1/amu; 0 for massless particles, which therefore never move.
    dt : float
        Length of the kick, ps.
    """
    for i in prange(velocities.shape[0]):
        scale = dt * inverse_masses[i]
        for k in range(3):
            velocities[i, k] += scale * forces[i, k]


@njit(parallel=True, cache=True)
def drift(positions, velocities, dt, out):
    """out = x + dt v (nm, nm/ps, ps)."""
    for i in prange(positions.shape[0]):
        for k in range(3):
            out[i, k] = positions[i, k] + dt * velocities[i, k]


@njit(parallel=True, cache=True)
def langevin_drift(positions, velocities, noise, inverse_masses, dt, velocity_scale, kt, out):
    """The A-O-A part of a LangevinMiddle step.

    out = x + dt/2 v;  v = c v + sqrt(kT (1 - c^2) / m) R;  out += dt/2 v, with c = exp(-gamma dt).

    Parameters
    ----------
    positions, out : (N, 3) float64 arrays
        Positions at the start of the step and the unconstrained new positions, nm.
    velocities : (N, 3) float64 array
        Velocities after the kick, nm/ps (updated in place).
    noise : (N, 3) float64 array
        Standard normal numbers.
    inverse_masses : (N,) float64 array
        1/m, 1/amu (0 for massless particles).
    dt : float
        Time step, ps.
    velocity_scale : float
        exp(-friction dt).
    kt : float
        k_B T, kJ/mol.
    """
    half = 0.5 * dt
    noise_variance = kt * (1.0 - velocity_scale * velocity_scale)
    for i in prange(positions.shape[0]):
        sigma = np.sqrt(noise_variance * inverse_masses[i])
        scale = velocity_scale if inverse_masses[i] > 0.0 else 0.0
        for k in range(3):
            x = positions[i, k] + half * velocities[i, k]
            v = scale * velocities[i, k] + sigma * noise[i, k]
            velocities[i, k] = v
            out[i, k] = x + half * v


@njit(parallel=True, cache=True)
def add_constraint_velocity(constrained, unconstrained, inverse_masses, dt, velocities):
    """v += (x_constrained - x_unconstrained) / dt for particles with mass, nm/ps.

    The velocity picks up exactly the displacement the constraints made, as OpenMM's integrators
    do.  (Setting v = (x_new - x_old) / dt instead would be wrong for LangevinMiddle, whose drift
    mixes the velocities before and after the O step.)
    """
    inverse_dt = 1.0 / dt
    for i in prange(constrained.shape[0]):
        if inverse_masses[i] > 0.0:
            for k in range(3):
                velocities[i, k] += (constrained[i, k] - unconstrained[i, k]) * inverse_dt


@njit(cache=True)
def standard_normal_fill(generator, out):
    """Fill ``out`` (1-D float64) with ``generator.standard_normal()``, element by element.

    Numba's ``Generator`` draws the numbers NumPy's would (same algorithm, same bit
    generator state, which advances as NumPy's does), about 3x faster than NumPy's own
    ``standard_normal(out=...)`` for a (N, 3) array of Langevin noise.
    """
    for k in range(out.shape[0]):
        out[k] = generator.standard_normal()


@njit(cache=True)
def kinetic_energy(velocities, masses):
    """Sum of m v^2 / 2 in a fixed serial order (so it is reproducible), kJ/mol."""
    total = 0.0
    for i in range(velocities.shape[0]):
        total += masses[i] * (velocities[i, 0] ** 2 + velocities[i, 1] ** 2 + velocities[i, 2] ** 2)
    return 0.5 * total


@njit(cache=True)
def remove_center_of_mass_motion(velocities, masses):
    """Subtract the centre-of-mass velocity from every particle with mass (in place)."""
    momentum = np.zeros(3)
    total_mass = 0.0
    for i in range(velocities.shape[0]):
        total_mass += masses[i]
        for k in range(3):
            momentum[k] += masses[i] * velocities[i, k]
    if total_mass <= 0.0:
        return
    for i in range(velocities.shape[0]):
        if masses[i] > 0.0:
            for k in range(3):
                velocities[i, k] -= momentum[k] / total_mass


@njit(parallel=True, cache=True)
def scale_velocities(velocities, factor):
    """v *= factor (in place)."""
    for i in prange(velocities.shape[0]):
        for k in range(3):
            velocities[i, k] *= factor


@njit(parallel=True, cache=True)
def scale_molecules(positions, molecule_start, molecule_atoms, old_box_inverse, new_box, out):
    """Move each molecule rigidly so that its centre scales with the box (MC barostat).

    The centre (plain average of the atom positions, as OpenMM uses) is expressed in fractional
    coordinates of the old box and mapped into the new box; every atom of the molecule is
    translated by the same amount, so bond lengths do not change.

    Parameters
    ----------
    positions, out : (N, 3) float64 arrays
        Positions before and after, nm.
    molecule_start, molecule_atoms : int64 arrays
        CSR table: atoms of molecule m are ``molecule_atoms[molecule_start[m]:molecule_start[m+1]]``.
    old_box_inverse : (3, 3) float64 array
        Inverse of the old box matrix (rows are box vectors), 1/nm.
    new_box : (3, 3) float64 array
        New box vectors as rows, nm.
    """
    for m in prange(molecule_start.shape[0] - 1):
        start = molecule_start[m]
        stop = molecule_start[m + 1]
        center = np.zeros(3)
        for a in range(start, stop):
            for k in range(3):
                center[k] += positions[molecule_atoms[a], k]
        for k in range(3):
            center[k] /= stop - start
        fractional = np.zeros(3)
        for k in range(3):
            for j in range(3):
                fractional[k] += center[j] * old_box_inverse[j, k]
        shift = np.zeros(3)
        for k in range(3):
            moved = 0.0
            for j in range(3):
                moved += fractional[j] * new_box[j, k]
            shift[k] = moved - center[k]
        for a in range(start, stop):
            atom = molecule_atoms[a]
            for k in range(3):
                out[atom, k] = positions[atom, k] + shift[k]
