"""Constraint tables on the host, built once for every backend: checks, waters and clusters.

:class:`ConstraintTables` checks a constraint list, splits the constraint graph (particles joined
by constraints) into its connected components and sorts them into rigid three-site waters, which
SETTLE solves analytically, and *clusters*, which SHAKE/RATTLE sweep Gauss-Seidel (the laws are in
:mod:`bencao.backends.common.constraint_laws`).  Components share no particle, so a backend hands
one water or one cluster to each thread.  The CPU backend's solver is built on these tables, the
CUDA backend uploads them, and both describe failures with the messages made here.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from bencao.backends.common.constraint_laws import distance
from bencao.errors import ConstraintError

#: SHAKE and RATTLE give up after this many Gauss-Seidel sweeps of a cluster.
MAX_ITERATIONS = 1000

# Constraint lengths and hydrogen masses of a water count as equal within this relative difference.
_SAME = 1.0e-10


@njit(cache=True, parallel=True)
def relative_errors_kernel(positions, pairs, lengths, out):
    """out[c] = |d_c - d0_c| / d0_c for every constraint (positions and lengths in nm)."""
    for c in prange(pairs.shape[0]):
        out[c] = abs(distance(positions, pairs[c, 0], pairs[c, 1]) - lengths[c]) / lengths[c]


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
# The tables
# --------------------------------------------------------------------------------------------


class ConstraintTables:
    """Holonomic distance constraints, checked and partitioned into SETTLE waters and SHAKE/RATTLE
    clusters, as host arrays for a backend's kernels.

    Parameters
    ----------
    constraint_atoms : (C, 2) int array
        Particle pairs.
    constraint_lengths : (C,) float array
        Target distances, nm.
    masses : (N,) float array
        Particle masses, amu; a particle of mass 0 is never moved (at most one per constraint).

    Attributes
    ----------
    n_constraints : int
        Number of constraints, C.
    n_waters : int
        Number of waters handled by SETTLE, W.
    n_clusters : int
        Number of independent SHAKE/RATTLE clusters, K.

    Raises
    ------
    ValueError
        If the lists disagree in length, an index is out of range, a constraint joins a particle
        to itself or two massless particles, a pair is constrained twice, a length is not
        positive or a mass is negative.

    Notes
    -----
    The backends' kernels take the protected attributes: ``_pairs`` ((C, 2) int64), ``_lengths``
    ((C,) float64, nm), ``_inverse_masses`` ((N,) float64, 1/amu, 0 for massless particles),
    ``_water_atoms`` ((W, 3) int64: O, H, H), ``_water_constraints`` ((W, 3) int64),
    ``_water_masses`` ((W, 2) float64: O and H masses, amu), ``_water_shape`` ((W, 3) float64,
    nm: ra, rb, rc, the distances from the centre of mass to O and to the H-H midpoint along the
    bisector, and half the H-H distance), ``_cluster_order`` and ``_cluster_offsets`` (int64,
    CSR: cluster k holds the constraints ``_cluster_order[_cluster_offsets[k]:_cluster_offsets[k
    + 1]]``, swept in that order).
    """

    def __init__(self, constraint_atoms, constraint_lengths, masses):
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

    def max_relative_error(self, positions) -> float:
        """Largest |d - d0| / d0 over all constraints (0 if there are none).

        Parameters
        ----------
        positions : (N, 3) float host array
            Positions, nm.
        """
        if self.n_constraints == 0:
            return 0.0
        return float(self.relative_errors(positions).max())

    def relative_errors(self, positions) -> np.ndarray:
        """|d - d0| / d0 of every constraint, in the order given to the constructor.

        Parameters
        ----------
        positions : (N, 3) float host array
            Positions, nm.
        """
        out = np.empty(self.n_constraints)
        relative_errors_kernel(np.ascontiguousarray(positions, dtype=np.float64), self._pairs,
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
    # Failure reports, the same on every backend

    def settle_failure(self, positions, w) -> ConstraintError:
        """The error for water ``w`` (its row of the SETTLE tables), which has no SETTLE solution.

        Parameters
        ----------
        positions : (N, 3) float64 C-contiguous host array
            Positions after the failed step, nm.
        w : int
            The water.
        """
        errors = self._errors(positions, self._water_constraints[w])
        c = self._water_constraints[w][np.argmax(errors)]
        o, h1, h2 = (int(a) for a in self._water_atoms[w])
        return ConstraintError(
            f"SETTLE found no solution for the water of atoms ({o}, {h1}, {h2}): "
            + self._describe(positions, c)
            + ". The water moved too far in one step: use a smaller time step, or check the "
            "structure for overlapping atoms."
        )

    def shake_failure(self, positions, c, tolerance, max_iterations) -> ConstraintError:
        """The error for a SHAKE cluster that did not converge, ``c`` its worst constraint.

        Parameters
        ----------
        positions : (N, 3) float host array
            Positions after the failed step, nm.
        c : int
            The constraint to describe.
        tolerance : float
            Relative tolerance used.
        max_iterations : int
            Sweeps done.
        """
        return ConstraintError(
            "Constraints did not converge: " + self._describe(positions, c)
            + f" (tolerance {tolerance:.3g}, {max_iterations} iterations). Use a "
            "smaller time step, or check the structure (overlapping atoms, impossible "
            "constraints)."
        )

    def rattle_failure(self, positions, c, tolerance, max_iterations,
                       velocities=None) -> ConstraintError:
        """The error for a RATTLE cluster that did not converge, ``c`` its worst constraint.

        Parameters
        ----------
        positions : (N, 3) float host array
            Constrained positions, nm.
        c : int
            The constraint to describe.
        tolerance : float
            Relative tolerance used.
        max_iterations : int
            Sweeps done.
        velocities : (N, 3) float host array, optional
            Velocities after the failed step, nm/ps; if given, the message also gives the
            relative speed along the constraint.
        """
        speed = ""
        if velocities is not None:
            i, j = self._pairs[c]
            r = positions[i] - positions[j]
            value = abs(np.dot(r, velocities[i] - velocities[j])) / np.linalg.norm(r)
            speed = f"; relative speed along it {value:.3g} nm/ps"
        return ConstraintError(
            "Velocity constraints did not converge: " + self._describe(positions, c) + speed
            + f" (tolerance {tolerance:.3g}, {max_iterations} iterations). Use a "
            "smaller time step, or check the structure."
        )

    def _errors(self, positions, constraints):
        out = np.empty(len(constraints))
        relative_errors_kernel(positions, self._pairs[constraints], self._lengths[constraints],
                               out)
        return out

    def _describe(self, positions, c) -> str:
        i, j = (int(a) for a in self._pairs[c])
        d = float(np.linalg.norm(positions[i] - positions[j]))
        return (f"the constraint between atoms {i} and {j} has length {d:.6g} nm, target "
                f"{self._lengths[c]:.6g} nm")
