"""Holonomic distance constraints on the CPU: SETTLE for rigid waters, SHAKE/RATTLE for the rest.

The constraint graph (particles joined by constraints) is split into its connected components once,
in :class:`CpuConstraints`.  A component that is a rigid three-site water (a triangle of constraints
with two equal O-H lengths and two equal H masses) is solved analytically by SETTLE (Miyamoto &
Kollman, J. Comput. Chem. 13, 952 (1992)); every other component is a *cluster* solved by SHAKE
for positions and RATTLE for velocities, sweeping its constraints Gauss-Seidel until each is within
the tolerance.  Components share no particle, so waters and clusters are handed to Numba threads
with ``prange`` and each one is computed by a single thread in a fixed order: results are
bit-identical for any number of threads.

Both solvers move particles along the constraint vectors of the *reference* positions (the
constrained positions before the unconstrained update), weighted by inverse mass, so constraint
forces are internal (total momentum is unchanged) and particles of mass 0 never move.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from bencao.errors import ConstraintError

# SHAKE and RATTLE give up after this many Gauss-Seidel sweeps of a cluster.
MAX_ITERATIONS = 1000

# RATTLE's stopping rule needs a time to turn the tolerance into a rate: a constraint is satisfied
# when its length changes by at most `tolerance` of itself per VELOCITY_TIME_SCALE (ps), i.e.
# |(v_i - v_j) . (r_i - r_j)| / d0^2 <= tolerance / VELOCITY_TIME_SCALE.  With 1 ps the residual
# stretch over a 2-4 fs step is ~1/300 of the position tolerance, so velocity constraints never
# undo what SHAKE achieved, and the residual relative speed (<= tolerance * d0 / 1 ps, e.g.
# 1e-6 nm/ps) is negligible next to thermal speeds (~1 nm/ps).
VELOCITY_TIME_SCALE = 1.0

# A SHAKE step divides by r_ref . r; when that falls below this fraction of d0^2 the bond has
# turned by ~90 degrees in one step and the iteration cannot recover.
_MIN_PROJECTION = 1.0e-6

# Constraint lengths and hydrogen masses of a water count as equal within this relative difference.
_SAME = 1.0e-10


# --------------------------------------------------------------------------------------------
# SETTLE
# --------------------------------------------------------------------------------------------


@njit(cache=True)
def _row(array, i):
    return array[i, 0], array[i, 1], array[i, 2]


@njit(cache=True)
def _sub(a, b):
    return a[0] - b[0], a[1] - b[1], a[2] - b[2]


@njit(cache=True)
def _scale(a, s):
    return a[0] * s, a[1] * s, a[2] * s


@njit(cache=True)
def _dot(a, b):
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


@njit(cache=True)
def _cross(a, b):
    return a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]


@njit(cache=True)
def _normalized(a):
    """(a / |a|, |a|); a zero vector gives NaNs, which the caller detects through |a|."""
    norm = math.sqrt(_dot(a, a))
    return _scale(a, 1.0 / norm), norm


@njit(cache=True)
def _settle_one(reference, positions, o, h1, h2, m_o, m_h, ra, rb, rc):
    """SETTLE one water in place; False (positions untouched) if no solution exists.

    The water is described in a frame centred on the new centre of mass: Z is normal to the
    reference plane (constraint forces lie in that plane, so every z coordinate is kept) and X is
    chosen so that the new O lies in the YZ plane.  The canonical triangle -- O at (0, ra),
    H at (-+rc, -rb) -- is tilted by phi about X and psi about Y to match the three z coordinates,
    then turned by theta about Z so that the in-plane displacements exert no torque about the
    reference positions, which is what makes them combinations of the reference bond vectors.
    Vectors are taken relative to O first, so that they are small and exact to rounding.
    """
    f_h = m_h / (m_o + 2.0 * m_h)  # centre of mass relative to O = f_h (r_H1 + r_H2)
    # Reference geometry about its centre of mass, and the frame's Z axis
    b0 = _sub(_row(reference, h1), _row(reference, o))
    c0 = _sub(_row(reference, h2), _row(reference, o))
    ez, norm_z = _normalized(_cross(b0, c0))
    com0 = _scale((b0[0] + c0[0], b0[1] + c0[1], b0[2] + c0[2]), f_h)
    a0 = _scale(com0, -1.0)
    b0 = _sub(b0, com0)
    c0 = _sub(c0, com0)
    # New geometry about its centre of mass (which constraint forces do not move)
    origin = _row(positions, o)
    b1 = _sub(_row(positions, h1), origin)
    c1 = _sub(_row(positions, h2), origin)
    com1 = _scale((b1[0] + c1[0], b1[1] + c1[1], b1[2] + c1[2]), f_h)
    a1 = _scale(com1, -1.0)
    b1 = _sub(b1, com1)
    c1 = _sub(c1, com1)
    ex, norm_x = _normalized(_cross(a1, ez))
    if not (norm_z > 0.0 and norm_x > 0.0):
        return False  # collinear reference, or new O on the normal through the centre of mass
    ey = _cross(ez, ex)

    sin_phi = _dot(a1, ez) / ra
    if not abs(sin_phi) < 1.0:
        return False
    cos_phi = math.sqrt(1.0 - sin_phi * sin_phi)
    sin_psi = (_dot(b1, ez) - _dot(c1, ez)) / (2.0 * rc * cos_phi)
    if not abs(sin_psi) < 1.0:
        return False
    cos_psi = math.sqrt(1.0 - sin_psi * sin_psi)
    # Tilted canonical triangle: in-plane (x, y) and normal (z) coordinates of O, H1, H2
    tilted = (
        (0.0, ra * cos_phi, ra * sin_phi),
        (-rc * cos_psi, -rb * cos_phi - rc * sin_psi * sin_phi,
         -rb * sin_phi + rc * sin_psi * cos_phi),
        (rc * cos_psi, -rb * cos_phi + rc * sin_psi * sin_phi,
         -rb * sin_phi - rc * sin_psi * cos_phi),
    )

    # No torque about Z: alpha sin(theta) + beta cos(theta) = gamma, with sums over the atoms of
    # m * (reference x, y) combined with the tilted and with the new in-plane coordinates.
    alpha = 0.0
    beta = 0.0
    gamma = 0.0
    for r0, p, r1, m in ((a0, tilted[0], a1, m_o), (b0, tilted[1], b1, m_h),
                         (c0, tilted[2], c1, m_h)):
        x0 = _dot(r0, ex)
        y0 = _dot(r0, ey)
        alpha += m * (x0 * p[0] + y0 * p[1])
        beta += m * (x0 * p[1] - y0 * p[0])
        gamma += m * (x0 * _dot(r1, ey) - y0 * _dot(r1, ex))
    r2 = alpha * alpha + beta * beta
    discriminant = r2 - gamma * gamma
    if not discriminant >= 0.0:
        return False
    # The root nearest theta = 0 (the smallest rotation, the one SHAKE converges to)
    sin_theta = (alpha * gamma - beta * math.sqrt(discriminant)) / r2
    cos_theta = math.sqrt(1.0 - sin_theta * sin_theta)

    for atom, p in ((o, tilted[0]), (h1, tilted[1]), (h2, tilted[2])):
        u = p[0] * cos_theta - p[1] * sin_theta
        v = p[0] * sin_theta + p[1] * cos_theta
        for k in range(3):
            positions[atom, k] = origin[k] + (com1[k] + (u * ex[k] + v * ey[k] + p[2] * ez[k]))
    return True


@njit(cache=True, parallel=True)
def _settle_positions(reference, positions, water_atoms, water_masses, water_shape, failed):
    """SETTLE every water in place; failed[w] = 1 where no solution exists (else 0).

    Parameters
    ----------
    reference, positions : (N, 3) float64 arrays
        Reference and updated positions, nm; positions is overwritten.
    water_atoms : (W, 3) int64 array
        O, H, H of each water.
    water_masses : (W, 2) float64 array
        O and H masses, amu.
    water_shape : (W, 3) float64 array
        ra, rb, rc, nm: distances from the centre of mass to O and to the H-H midpoint along the
        bisector, and half the H-H distance.
    failed : (W,) int64 array
        Output flags.
    """
    for w in prange(water_atoms.shape[0]):
        ok = _settle_one(reference, positions, water_atoms[w, 0], water_atoms[w, 1],
                         water_atoms[w, 2], water_masses[w, 0], water_masses[w, 1],
                         water_shape[w, 0], water_shape[w, 1], water_shape[w, 2])
        failed[w] = 0 if ok else 1


@njit(cache=True)
def _kick(velocities, i, j, e, impulse, w_i, w_j):
    """Equal and opposite impulses along e (amu nm/ps): i gains +impulse, j gains -impulse."""
    for k in range(3):
        velocities[i, k] += impulse * w_i * e[k]
        velocities[j, k] -= impulse * w_j * e[k]


@njit(cache=True)
def _settle_velocities_one(positions, velocities, o, h1, h2, w_o, w_h):
    """Remove the velocity along the three bonds of one water, exactly (SETTLE's velocity part);
    w_o and w_h are the O and H inverse masses, 1/amu.

    With unit vectors e1 = O->H1, e2 = O->H2, e3 = H1->H2 and impulses lambda_k along them, the
    closing speeds after the kick are u + M lambda with the symmetric 3x3 matrix M below; setting
    them to zero is a linear system, solved by Cramer's rule.  The result is the mass-weighted
    projection onto the constraint surface, so the kinetic energy can only go down.
    """
    e1 = _normalized(_sub(_row(positions, h1), _row(positions, o)))[0]
    e2 = _normalized(_sub(_row(positions, h2), _row(positions, o)))[0]
    e3 = _normalized(_sub(_row(positions, h2), _row(positions, h1)))[0]
    # d(closing speed p) / d(impulse q); see _kick for the sign of an impulse
    m11 = -(w_o + w_h)
    m22 = -(w_o + w_h)
    m33 = -2.0 * w_h
    m12 = -w_o * _dot(e1, e2)
    m13 = w_h * _dot(e1, e3)
    m23 = -w_h * _dot(e2, e3)
    # minus the closing speeds (v_j - v_i) . e, nm/ps
    r1 = -_dot(_sub(_row(velocities, h1), _row(velocities, o)), e1)
    r2 = -_dot(_sub(_row(velocities, h2), _row(velocities, o)), e2)
    r3 = -_dot(_sub(_row(velocities, h2), _row(velocities, h1)), e3)
    # Cramer's rule: lambda = adj(M) r / det(M), with k1j the first row of the adjugate
    k11 = m22 * m33 - m23 * m23
    k12 = m13 * m23 - m12 * m33
    k13 = m12 * m23 - m13 * m22
    det = m11 * k11 + m12 * k12 + m13 * k13
    l1 = (k11 * r1 + k12 * r2 + k13 * r3) / det
    l2 = (k12 * r1 + (m11 * m33 - m13 * m13) * r2 + (m12 * m13 - m11 * m23) * r3) / det
    l3 = (k13 * r1 + (m12 * m13 - m11 * m23) * r2 + (m11 * m22 - m12 * m12) * r3) / det
    _kick(velocities, o, h1, e1, l1, w_o, w_h)
    _kick(velocities, o, h2, e2, l2, w_o, w_h)
    _kick(velocities, h1, h2, e3, l3, w_h, w_h)


@njit(cache=True, parallel=True)
def _settle_velocities(positions, velocities, water_atoms, water_masses):
    """Velocity SETTLE of every water in place (see :func:`_settle_velocities_one`)."""
    for w in prange(water_atoms.shape[0]):
        _settle_velocities_one(positions, velocities, water_atoms[w, 0], water_atoms[w, 1],
                               water_atoms[w, 2], 1.0 / water_masses[w, 0],
                               1.0 / water_masses[w, 1])


# --------------------------------------------------------------------------------------------
# SHAKE / RATTLE
# --------------------------------------------------------------------------------------------


@njit(cache=True)
def _shake_cluster(reference, positions, pairs, lengths, inverse_masses, members, tolerance,
                   max_iterations):
    """Gauss-Seidel SHAKE of one cluster; returns -1, or the worst constraint if it failed."""
    for _ in range(max_iterations):
        converged = True
        for m in members:
            i = pairs[m, 0]
            j = pairs[m, 1]
            rx = positions[i, 0] - positions[j, 0]
            ry = positions[i, 1] - positions[j, 1]
            rz = positions[i, 2] - positions[j, 2]
            r2 = rx * rx + ry * ry + rz * rz
            d0 = lengths[m]
            if abs(math.sqrt(r2) - d0) <= tolerance * d0:
                continue
            converged = False
            sx = reference[i, 0] - reference[j, 0]
            sy = reference[i, 1] - reference[j, 1]
            sz = reference[i, 2] - reference[j, 2]
            projection = sx * rx + sy * ry + sz * rz
            if not projection > _MIN_PROJECTION * d0 * d0:
                return m
            w_i = inverse_masses[i]
            w_j = inverse_masses[j]
            # Linearised |r + g (w_i + w_j) s|^2 = d0^2
            g = (d0 * d0 - r2) / (2.0 * projection * (w_i + w_j))
            positions[i, 0] += g * w_i * sx
            positions[i, 1] += g * w_i * sy
            positions[i, 2] += g * w_i * sz
            positions[j, 0] -= g * w_j * sx
            positions[j, 1] -= g * w_j * sy
            positions[j, 2] -= g * w_j * sz
        if converged:
            return -1
    worst = members[0]
    worst_error = -1.0
    for m in members:
        error = abs(_distance(positions, pairs[m, 0], pairs[m, 1]) - lengths[m]) / lengths[m]
        if not error <= worst_error:  # NaN counts as worst
            worst = m
            worst_error = error
    return worst


@njit(cache=True)
def _rattle_cluster(positions, velocities, pairs, lengths, inverse_masses, members, tolerance,
                    max_iterations):
    """Gauss-Seidel RATTLE of one cluster; returns -1, or the worst constraint if it failed."""
    for _ in range(max_iterations):
        converged = True
        for m in members:
            i = pairs[m, 0]
            j = pairs[m, 1]
            rx = positions[i, 0] - positions[j, 0]
            ry = positions[i, 1] - positions[j, 1]
            rz = positions[i, 2] - positions[j, 2]
            rate = (rx * (velocities[i, 0] - velocities[j, 0])
                    + ry * (velocities[i, 1] - velocities[j, 1])
                    + rz * (velocities[i, 2] - velocities[j, 2]))
            d0 = lengths[m]
            if abs(rate) <= tolerance * d0 * d0 / VELOCITY_TIME_SCALE:
                continue
            converged = False
            w_i = inverse_masses[i]
            w_j = inverse_masses[j]
            # Exact for this constraint alone: (v_rel - k (w_i + w_j) r) . r = 0
            k = rate / ((rx * rx + ry * ry + rz * rz) * (w_i + w_j))
            velocities[i, 0] -= k * w_i * rx
            velocities[i, 1] -= k * w_i * ry
            velocities[i, 2] -= k * w_i * rz
            velocities[j, 0] += k * w_j * rx
            velocities[j, 1] += k * w_j * ry
            velocities[j, 2] += k * w_j * rz
        if converged:
            return -1
    worst = members[0]
    worst_rate = -1.0
    for m in members:
        i = pairs[m, 0]
        j = pairs[m, 1]
        rate = 0.0
        for axis in range(3):
            rate += ((positions[i, axis] - positions[j, axis])
                     * (velocities[i, axis] - velocities[j, axis]))
        rate = abs(rate) / (lengths[m] * lengths[m])
        if not rate <= worst_rate:
            worst = m
            worst_rate = rate
    return worst


@njit(cache=True, parallel=True)
def _shake_positions(reference, positions, pairs, lengths, inverse_masses, order, offsets,
                     tolerance, max_iterations, failed):
    """SHAKE every cluster in place; failed[k] = -1, or the worst constraint of cluster k.

    Parameters
    ----------
    reference, positions : (N, 3) float64 arrays
        Reference and updated positions, nm; positions is overwritten.
    pairs : (C, 2) int64 array
        Constrained particle pairs.
    lengths : (C,) float64 array
        Constraint lengths, nm.
    inverse_masses : (N,) float64 array
        1 / mass, 1/amu (0 for massless particles).
    order, offsets : int64 arrays
        Cluster k holds constraints order[offsets[k]:offsets[k + 1]] (CSR layout).
    tolerance : float
        Relative length tolerance.
    max_iterations : int
        Sweeps before giving up.
    failed : (K,) int64 array
        Output.
    """
    for k in prange(offsets.shape[0] - 1):
        failed[k] = _shake_cluster(reference, positions, pairs, lengths, inverse_masses,
                                   order[offsets[k]:offsets[k + 1]], tolerance, max_iterations)


@njit(cache=True, parallel=True)
def _rattle_velocities(positions, velocities, pairs, lengths, inverse_masses, order, offsets,
                       tolerance, max_iterations, failed):
    """RATTLE every cluster in place; arguments as :func:`_shake_positions` (velocities nm/ps)."""
    for k in prange(offsets.shape[0] - 1):
        failed[k] = _rattle_cluster(positions, velocities, pairs, lengths, inverse_masses,
                                    order[offsets[k]:offsets[k + 1]], tolerance, max_iterations)


@njit(cache=True)
def _distance(positions, i, j):
    x = positions[i, 0] - positions[j, 0]
    y = positions[i, 1] - positions[j, 1]
    z = positions[i, 2] - positions[j, 2]
    return math.sqrt(x * x + y * y + z * z)


@njit(cache=True, parallel=True)
def _relative_errors(positions, pairs, lengths, out):
    """out[c] = |d_c - d0_c| / d0_c for every constraint."""
    for c in prange(pairs.shape[0]):
        out[c] = abs(_distance(positions, pairs[c, 0], pairs[c, 1]) - lengths[c]) / lengths[c]


# --------------------------------------------------------------------------------------------
# Partition of the constraints into waters and clusters
# --------------------------------------------------------------------------------------------


def _components(pairs: np.ndarray, n_particles: int):
    """Constraints grouped by connected component: (order, offsets, n_particles per component)."""
    n = len(pairs)
    graph = coo_matrix((np.ones(n), (pairs[:, 0], pairs[:, 1])), shape=(n_particles, n_particles))
    _, label = connected_components(graph, directed=False)
    constrained = np.zeros(n_particles, dtype=bool)
    constrained[pairs.ravel()] = True
    # Renumber so components without constraints (lone particles) drop out
    used, component = np.unique(label[pairs[:, 0]], return_inverse=True)
    order = np.argsort(component, kind="stable").astype(np.int64)
    offsets = np.zeros(len(used) + 1, dtype=np.int64)
    np.cumsum(np.bincount(component, minlength=len(used)), out=offsets[1:])
    atoms = np.bincount(np.searchsorted(used, label[constrained]), minlength=len(used))
    return order, offsets, atoms


def _find_waters(pairs, lengths, masses, order, offsets, atoms):
    """Which components SETTLE can take; returns (is_water, O/H/H atoms, d_OH, d_HH) per component.

    A water is three particles joined by exactly three constraints (a triangle, since no pair is
    constrained twice), with two equal lengths meeting at O, equal masses on the other two
    particles, all masses positive and d_HH < 2 d_OH (otherwise there is no such triangle).
    """
    n_components = len(offsets) - 1
    is_water = np.zeros(n_components, dtype=bool)
    atoms_out = np.zeros((n_components, 3), dtype=np.int64)
    d_oh = np.zeros(n_components)
    d_hh = np.zeros(n_components)
    candidate = np.flatnonzero((np.diff(offsets) == 3) & (atoms == 3))
    if len(candidate) == 0:
        return is_water, atoms_out, d_oh, d_hh
    members = order[offsets[candidate][:, None] + np.arange(3)]  # (K, 3) constraint indices
    p = pairs[members]  # (K, 3, 2)
    length = lengths[members]  # (K, 3)
    every_atom_sum = p.sum(axis=(1, 2)) // 2  # each particle appears in two constraints
    unresolved = np.ones(len(candidate), dtype=bool)
    for h in range(3):  # constraint h as the H-H one
        a, b = (h + 1) % 3, (h + 2) % 3
        h1 = p[:, h, 0]
        h2 = p[:, h, 1]
        o = every_atom_sum - h1 - h2
        ok = (
            unresolved
            & (np.abs(length[:, a] - length[:, b]) <= _SAME * length[:, a])
            & (np.abs(masses[h1] - masses[h2]) <= _SAME * masses[h1])
            & (masses[o] > 0.0) & (masses[h1] > 0.0)
            & (length[:, h] < 2.0 * np.minimum(length[:, a], length[:, b]))
        )
        k = candidate[ok]
        is_water[k] = True
        atoms_out[k] = np.stack([o[ok], h1[ok], h2[ok]], axis=1)
        d_oh[k] = 0.5 * (length[ok, a] + length[ok, b])
        d_hh[k] = length[ok, h]
        unresolved &= ~ok
    return is_water, atoms_out, d_oh, d_hh


# --------------------------------------------------------------------------------------------
# Public interface
# --------------------------------------------------------------------------------------------


class CpuConstraints:
    """Holonomic distance constraints on the CPU: SETTLE for rigid three-site waters, SHAKE
    (positions) / RATTLE (velocities) for every other constraint.

    Parameters
    ----------
    constraint_atoms : (C, 2) int array
        Particle pairs.
    constraint_lengths : (C,) float array
        Target distances, nm.
    masses : (N,) float array
        Particle masses, amu; a particle of mass 0 is never moved (at most one per constraint).
    tolerance : float
        Relative tolerance, as OpenMM's constraint tolerance: SHAKE stops when
        |d - d0| / d0 <= tolerance for every constraint, RATTLE when
        |(v_i - v_j) . (r_i - r_j)| / d0^2 <= tolerance / (1 ps) (see ``VELOCITY_TIME_SCALE``).
        SETTLE is exact to rounding whatever the tolerance.  May be changed between calls.
    max_iterations : int
        Gauss-Seidel sweeps per cluster before :class:`ConstraintError` is raised.

    Attributes
    ----------
    n_constraints : int
        Number of constraints, C.
    n_waters : int
        Number of waters handled by SETTLE.
    n_clusters : int
        Number of independent SHAKE/RATTLE clusters.
    max_iterations : int
        As the parameter; may be changed between calls.
    """

    def __init__(self, constraint_atoms, constraint_lengths, masses, tolerance=1e-5, *,
                 max_iterations=MAX_ITERATIONS):
        pairs = np.ascontiguousarray(constraint_atoms, dtype=np.int64).reshape(-1, 2)
        lengths = np.ascontiguousarray(constraint_lengths, dtype=np.float64).reshape(-1)
        masses = np.ascontiguousarray(masses, dtype=np.float64).reshape(-1)
        n = len(masses)
        if len(lengths) != len(pairs):
            raise ValueError(f"{len(pairs)} constraint pairs but {len(lengths)} lengths")
        if len(pairs) and (pairs.min() < 0 or pairs.max() >= n):
            raise ValueError(f"constraint particle index outside 0..{n - 1}")
        if np.any(pairs[:, 0] == pairs[:, 1]):
            raise ValueError("a constraint joins a particle to itself")
        if len(np.unique(np.sort(pairs, axis=1), axis=0)) != len(pairs):
            raise ValueError("a pair of particles is constrained twice")
        if np.any(~(lengths > 0.0)):
            raise ValueError("constraint lengths must be positive")
        if np.any(masses < 0.0):
            raise ValueError("masses must not be negative")
        if np.any((masses[pairs[:, 0]] == 0.0) & (masses[pairs[:, 1]] == 0.0)):
            raise ValueError("a constraint joins two massless particles")
        self.n_constraints = len(pairs)
        self.tolerance = float(tolerance)
        self.max_iterations = int(max_iterations)
        self._pairs = pairs
        self._lengths = lengths
        self._n_particles = n
        self._inverse_masses = np.where(masses > 0.0, 1.0 / np.where(masses > 0.0, masses, 1.0),
                                        0.0)

        order, offsets, atoms = _components(pairs, n)
        is_water, water_atoms, d_oh, d_hh = _find_waters(pairs, lengths, masses, order, offsets,
                                                         atoms)
        # SETTLE tables
        self._water_atoms = np.ascontiguousarray(water_atoms[is_water])
        self._water_constraints = order[offsets[:-1][is_water][:, None] + np.arange(3)]
        m_o = masses[self._water_atoms[:, 0]]
        m_h = masses[self._water_atoms[:, 1]]
        self._water_masses = np.ascontiguousarray(np.stack([m_o, m_h], axis=1))
        rc = 0.5 * d_hh[is_water]
        height = np.sqrt(d_oh[is_water] ** 2 - rc**2)
        ra = 2.0 * m_h * height / (m_o + 2.0 * m_h)
        self._water_shape = np.ascontiguousarray(np.stack([ra, height - ra, rc], axis=1))
        # SHAKE clusters in CSR layout
        sizes = np.diff(offsets)[~is_water]
        # order is grouped by component, so keeping the non-water rows keeps the clusters whole
        self._cluster_order = order[np.repeat(~is_water, np.diff(offsets))]
        self._cluster_offsets = np.zeros(len(sizes) + 1, dtype=np.int64)
        np.cumsum(sizes, out=self._cluster_offsets[1:])
        self.n_waters = len(self._water_atoms)
        self.n_clusters = len(sizes)

    # ----------------------------------------------------------------------------------------

    def apply_positions(self, reference, positions) -> None:
        """Enforce every constraint, in place.

        Particles move along the constraint vectors of ``reference``, weighted by inverse mass, as
        SHAKE and SETTLE do; massless particles do not move.  Waters are solved exactly, other
        constraints to ``tolerance``.

        Parameters
        ----------
        reference : (N, 3) float array
            Constrained positions before the unconstrained update, nm (may be ``positions``
            itself, as in OpenMM's ``applyConstraints``).
        positions : (N, 3) float64 C-contiguous array
            Positions to correct, nm; overwritten.

        Raises
        ------
        ConstraintError
            If a cluster does not converge or a water has no SETTLE solution.  Positions are then
            partly updated.
        """
        self._check(positions)
        reference = np.ascontiguousarray(reference, dtype=np.float64)
        if reference.shape != positions.shape:
            raise ValueError(f"reference has shape {reference.shape}, positions {positions.shape}")
        if np.shares_memory(reference, positions):
            reference = reference.copy()
        failed_waters = np.empty(self.n_waters, dtype=np.int64)
        _settle_positions(reference, positions, self._water_atoms, self._water_masses,
                          self._water_shape, failed_waters)
        failed = np.empty(self.n_clusters, dtype=np.int64)
        _shake_positions(reference, positions, self._pairs, self._lengths, self._inverse_masses,
                         self._cluster_order, self._cluster_offsets, self.tolerance,
                         self.max_iterations, failed)
        bad_water = np.flatnonzero(failed_waters)
        if len(bad_water):
            w = bad_water[0]
            errors = self._errors(positions, self._water_constraints[w])
            c = self._water_constraints[w][np.argmax(errors)]
            o, h1, h2 = (int(a) for a in self._water_atoms[w])
            raise ConstraintError(
                f"SETTLE found no solution for the water of atoms ({o}, {h1}, {h2}): "
                + self._describe(positions, c)
                + ". The water moved too far in one step: use a smaller time step, or check the "
                "structure for overlapping atoms."
            )
        bad = np.flatnonzero(failed >= 0)
        if len(bad):
            raise ConstraintError(
                "Constraints did not converge: " + self._describe(positions, failed[bad[0]])
                + f" (tolerance {self.tolerance:.3g}, {self.max_iterations} iterations). Use a "
                "smaller time step, or check the structure (overlapping atoms, impossible "
                "constraints)."
            )

    def apply_velocities(self, positions, velocities) -> None:
        """Remove the relative velocity along every constraint, in place (RATTLE, SETTLE).

        Parameters
        ----------
        positions : (N, 3) float array
            Constrained positions, nm.
        velocities : (N, 3) float64 C-contiguous array
            Velocities, nm/ps; overwritten.

        Raises
        ------
        ConstraintError
            If a cluster does not converge.
        """
        self._check(velocities)
        positions = np.ascontiguousarray(positions, dtype=np.float64)
        _settle_velocities(positions, velocities, self._water_atoms, self._water_masses)
        failed = np.empty(self.n_clusters, dtype=np.int64)
        _rattle_velocities(positions, velocities, self._pairs, self._lengths,
                           self._inverse_masses, self._cluster_order, self._cluster_offsets,
                           self.tolerance, self.max_iterations, failed)
        bad = np.flatnonzero(failed >= 0)
        if len(bad):
            c = failed[bad[0]]
            i, j = self._pairs[c]
            r = positions[i] - positions[j]
            speed = abs(np.dot(r, velocities[i] - velocities[j])) / np.linalg.norm(r)
            raise ConstraintError(
                "Velocity constraints did not converge: " + self._describe(positions, c)
                + f"; relative speed along it {speed:.3g} nm/ps (tolerance {self.tolerance:.3g}, "
                f"{self.max_iterations} iterations). Use a smaller time step, or check the "
                "structure."
            )

    def max_relative_error(self, positions) -> float:
        """Largest |d - d0| / d0 over all constraints (0 if there are none).

        Parameters
        ----------
        positions : (N, 3) float array
            Positions, nm.
        """
        if self.n_constraints == 0:
            return 0.0
        return float(self.relative_errors(positions).max())

    def relative_errors(self, positions) -> np.ndarray:
        """|d - d0| / d0 of every constraint, in the order given to the constructor.

        Parameters
        ----------
        positions : (N, 3) float array
            Positions, nm.
        """
        out = np.empty(self.n_constraints)
        _relative_errors(np.ascontiguousarray(positions, dtype=np.float64), self._pairs,
                         self._lengths, out)
        return out

    @property
    def constraint_atoms(self) -> np.ndarray:
        """(C, 2) int64 array: the constrained particle pairs, in the constructor's order."""
        return self._pairs

    @property
    def constraint_lengths(self) -> np.ndarray:
        """(C,) float64 array: the constrained distances, nm."""
        return self._lengths

    @property
    def settled(self) -> np.ndarray:
        """Boolean mask over the constraints: True for those SETTLE solves (rigid waters)."""
        mask = np.zeros(self.n_constraints, dtype=bool)
        mask[self._water_constraints.ravel()] = True
        return mask

    # ----------------------------------------------------------------------------------------

    def _errors(self, positions, constraints):
        out = np.empty(len(constraints))
        _relative_errors(positions, self._pairs[constraints], self._lengths[constraints], out)
        return out

    def _describe(self, positions, c) -> str:
        i, j = (int(a) for a in self._pairs[c])
        d = float(np.linalg.norm(positions[i] - positions[j]))
        return (f"the constraint between atoms {i} and {j} has length {d:.6g} nm, target "
                f"{self._lengths[c]:.6g} nm")

    def _check(self, array) -> None:
        if not (isinstance(array, np.ndarray) and array.dtype == np.float64
                and array.flags.c_contiguous and array.shape == (self._n_particles, 3)):
            raise ValueError(f"expected a C-contiguous float64 array of shape "
                             f"({self._n_particles}, 3) to update in place")
