"""Per-particle kernels of the integrators on the GPU: one thread per particle (or molecule),
float64, the CUDA counterparts of ``bencao.backends.cpu.integrate`` in the same order of
operations.  Sums over particles (momentum, kinetic energy) go through int64 fixed point with
integer atomics, so they do not depend on the order threads run in.
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda
from numba.cuda.random import xoroshiro128p_normal_float64

from bencao.constants import FORCE_SCALE

#: Fixed-point scale of the momentum sum in centre-of-mass removal (amu nm/ps): integer sums do
#: not depend on thread order.  2**32 resolves 2e-10 amu nm/ps, and 300k atoms of 500 amu nm/ps
#: each still fit an int64 (6e17 < 9.2e18).
MOMENTUM_SCALE = 2.0**32


#: Fixed-point scale of the kinetic-energy sum of the Nosé–Hoover chain (kJ/mol): 2**24 resolves
#: 6e-8 kJ/mol, and 10^6 particles of up to 500 kJ/mol each (a blow-up) still fit an int64.
KINETIC_SCALE = 2.0**24


# ----------------------------------------------------------------------------------------------
# Kernels: one thread per particle, float64
# ----------------------------------------------------------------------------------------------


@cuda.jit
def kick(velocities, forces, inverse_masses, dt, threshold, step, blown):
    """v += dt F / m with F from the int64 accumulator; blown[0] = min step whose force is at
    the clamp (the CPU's ``forces_from_fixed`` then ``kick``, the same roundings)."""
    i = cuda.grid(1)
    if i < velocities.shape[0]:
        scale = dt * inverse_masses[i]
        for k in range(3):
            fixed = forces[i, k]
            if fixed >= threshold or fixed <= -threshold:
                cuda.atomic.min(blown, 0, step)
            velocities[i, k] += scale * (np.float64(fixed) * (1.0 / FORCE_SCALE))


@cuda.jit
def drift(positions, velocities, dt, out):
    """out = x + dt v."""
    i = cuda.grid(1)
    if i < positions.shape[0]:
        for k in range(3):
            out[i, k] = positions[i, k] + dt * velocities[i, k]


@cuda.jit
def langevin_drift(positions, velocities, states, inverse_masses, dt, velocity_scale,
                   noise_variance, out):
    """The A-O-A part of LangevinMiddle, as the CPU's ``langevin_drift``, with the particle's own
    random stream (three normal numbers per step)."""
    i = cuda.grid(1)
    if i < positions.shape[0]:
        half = 0.5 * dt
        sigma = math.sqrt(noise_variance * inverse_masses[i])
        scale = velocity_scale if inverse_masses[i] > 0.0 else 0.0
        for k in range(3):
            noise = xoroshiro128p_normal_float64(states, i)
            x = positions[i, k] + half * velocities[i, k]
            v = scale * velocities[i, k] + sigma * noise
            velocities[i, k] = v
            out[i, k] = x + half * v


@cuda.jit
def copy_random_states(source, out):
    """out[i] = source[i] for xoroshiro128+ states (a kernel: Numba's simulator cannot copy
    record arrays from device to device)."""
    i = cuda.grid(1)
    if i < source.shape[0]:
        out[i]["s0"] = source[i]["s0"]
        out[i]["s1"] = source[i]["s1"]


@cuda.jit
def add_constraint_velocity(constrained, unconstrained, inverse_masses, inverse_dt, velocities):
    """v += (x_constrained - x_unconstrained) / dt for particles with mass."""
    i = cuda.grid(1)
    if i < constrained.shape[0] and inverse_masses[i] > 0.0:
        for k in range(3):
            velocities[i, k] += (constrained[i, k] - unconstrained[i, k]) * inverse_dt


@cuda.jit
def sum_momentum(velocities, masses, momentum):
    """momentum[k] += m v_k of every particle, in int64 fixed point (order-independent)."""
    i = cuda.grid(1)
    if i < velocities.shape[0]:
        for k in range(3):
            cuda.atomic.add(momentum, k,
                            np.int64(masses[i] * velocities[i, k] * MOMENTUM_SCALE))


@cuda.jit
def subtract_drift_velocity(velocities, masses, momentum, inverse_total_mass):
    """v -= P / M for every particle with mass."""
    i = cuda.grid(1)
    if i < velocities.shape[0] and masses[i] > 0.0:
        for k in range(3):
            drift_velocity = np.float64(momentum[k]) * (1.0 / MOMENTUM_SCALE) * inverse_total_mass
            velocities[i, k] -= drift_velocity


@cuda.jit
def sum_kinetic(velocities, masses, total):
    """total[0] += m v^2 of every particle, in int64 fixed point (order-independent)."""
    i = cuda.grid(1)
    if i < velocities.shape[0]:
        v2 = (velocities[i, 0] * velocities[i, 0] + velocities[i, 1] * velocities[i, 1]
              + velocities[i, 2] * velocities[i, 2])
        twice = masses[i] * v2
        cuda.atomic.add(total, 0, np.int64(twice * KINETIC_SCALE))


@cuda.jit
def scale_velocities(velocities, factor):
    """v *= factor."""
    i = cuda.grid(1)
    if i < velocities.shape[0]:
        for k in range(3):
            velocities[i, k] *= factor


@cuda.jit
def scale_molecules(positions, molecule_start, molecule_atoms, old_box_inverse, new_box, out):
    """The CPU's ``integrate.scale_molecules`` with one thread per molecule, in the same order
    of operations: each molecule's centre keeps its fractional coordinates in the new box and
    all its atoms move by the same shift (nm)."""
    m = cuda.grid(1)
    if m < molecule_start.shape[0] - 1:
        start = molecule_start[m]
        stop = molecule_start[m + 1]
        cx = 0.0
        cy = 0.0
        cz = 0.0
        for a in range(start, stop):
            cx += positions[molecule_atoms[a], 0]
            cy += positions[molecule_atoms[a], 1]
            cz += positions[molecule_atoms[a], 2]
        count = stop - start
        cx /= count
        cy /= count
        cz /= count
        fx = 0.0
        fy = 0.0
        fz = 0.0
        fx += cx * old_box_inverse[0, 0]
        fx += cy * old_box_inverse[1, 0]
        fx += cz * old_box_inverse[2, 0]
        fy += cx * old_box_inverse[0, 1]
        fy += cy * old_box_inverse[1, 1]
        fy += cz * old_box_inverse[2, 1]
        fz += cx * old_box_inverse[0, 2]
        fz += cy * old_box_inverse[1, 2]
        fz += cz * old_box_inverse[2, 2]
        sx = fx * new_box[0, 0] + fy * new_box[1, 0] + fz * new_box[2, 0] - cx
        sy = fx * new_box[0, 1] + fy * new_box[1, 1] + fz * new_box[2, 1] - cy
        sz = fx * new_box[0, 2] + fy * new_box[1, 2] + fz * new_box[2, 2] - cz
        for a in range(start, stop):
            atom = molecule_atoms[a]
            out[atom, 0] = positions[atom, 0] + sx
            out[atom, 1] = positions[atom, 1] + sy
            out[atom, 2] = positions[atom, 2] + sz
