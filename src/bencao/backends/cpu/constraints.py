"""Holonomic distance constraints on the CPU: SETTLE for rigid waters, SHAKE/RATTLE for the rest.

The constraints are checked and split into rigid three-site waters and SHAKE/RATTLE clusters once,
by :class:`~bencao.backends.common.constraint_tables.ConstraintTables`; the laws of one water
(SETTLE, Miyamoto & Kollman, J. Comput. Chem. 13, 952 (1992)) and of one cluster (Gauss-Seidel
SHAKE for positions, RATTLE for velocities) are in :mod:`bencao.backends.common.constraint_laws`,
shared with the CUDA backend.  Components share no particle, so waters and clusters are handed to
Numba threads with ``prange`` and each one is computed by a single thread in a fixed order:
results are bit-identical for any number of threads.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from bencao.backends.common.constraint_laws import (
    VELOCITY_TIME_SCALE,
    rattle_cluster,
    shake_cluster,
)
from bencao.backends.common.constraint_tables import MAX_ITERATIONS, ConstraintTables
from bencao.backends.cpu.settle8 import settle_block, settle_velocities_block
from bencao.errors import ConstraintError

__all__ = ["MAX_ITERATIONS", "VELOCITY_TIME_SCALE", "ConstraintError", "CpuConstraints"]


# --------------------------------------------------------------------------------------------
# Every water and every cluster, one per thread
# --------------------------------------------------------------------------------------------
# Waters and clusters share one parallel loop (items 0..B-1 blocks of 8 waters, then the
# clusters): a parallel region can cost a wake-up of the other threads (~20-40 us on a 2-core
# VM once they sleep), more than SHAKE's ~800 DHFR clusters take on their own.  The
# waters go 8 at a time through the shared SETTLE law on vectors (:mod:`.settle8`).

#: Waters per item of the parallel loops: the lanes of ``settle8``'s vectors.
WATER_BLOCK = 8


@njit(cache=True, inline="always")
def _item(item, blocks, clusters):
    """What item ``item`` of the parallel loops does: (True, water block) or (False, cluster).

    The items run in halves -- the first half of the water blocks and of the clusters, then the
    second halves -- so that each of two threads, which take the loop in two equal runs, gets
    half of each kind: with the blocks first and the clusters last, one thread had SETTLE alone
    and took twice as long as the other (DHFR: 878 blocks of 8 waters, 790 SHAKE clusters)."""
    half_blocks = blocks // 2
    half_clusters = clusters // 2
    if item < half_blocks:
        return True, item
    if item < half_blocks + half_clusters:
        return False, item - half_blocks
    if item < blocks + half_clusters:
        return True, item - half_clusters
    return False, item - blocks


@njit(cache=True, parallel=True)
def _constrain_positions(reference, positions, water_atoms, water_masses, water_shape, pairs,
                         lengths, inverse_masses, order, offsets, tolerance, max_iterations,
                         failed_waters, failed):
    """SETTLE every water and SHAKE every cluster in place.

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
    failed_waters : (W,) int64 array
        Output: 1 where SETTLE has no solution, else 0.
    failed : (K,) int64 array
        Output: -1, or the worst constraint of cluster k.
    """
    n_waters = water_atoms.shape[0]
    blocks = (n_waters + WATER_BLOCK - 1) // WATER_BLOCK
    clusters = offsets.shape[0] - 1
    for item in prange(blocks + clusters):
        water, k = _item(np.int64(item), np.int64(blocks), np.int64(clusters))
        if water:
            first = k * WATER_BLOCK
            settle_block(reference, positions, water_atoms, water_masses, water_shape, first,
                         min(WATER_BLOCK, n_waters - first), failed_waters)
        else:
            failed[k] = shake_cluster(reference, positions, pairs, lengths, inverse_masses,
                                      order[offsets[k]:offsets[k + 1]], tolerance,
                                      max_iterations)


@njit(cache=True, parallel=True)
def _constrain_velocities(positions, velocities, water_atoms, water_masses, pairs, lengths,
                          inverse_masses, order, offsets, tolerance, max_iterations, failed):
    """Velocity SETTLE of every water (``settle_velocities_one`` of
    :mod:`~bencao.backends.common.constraint_laws`) and RATTLE of every cluster, in place;
    arguments as :func:`_constrain_positions` (velocities nm/ps)."""
    n_waters = water_atoms.shape[0]
    blocks = (n_waters + WATER_BLOCK - 1) // WATER_BLOCK
    clusters = offsets.shape[0] - 1
    for item in prange(blocks + clusters):
        water, k = _item(np.int64(item), np.int64(blocks), np.int64(clusters))
        if water:
            first = k * WATER_BLOCK
            settle_velocities_block(positions, velocities, water_atoms, water_masses, first,
                                    min(WATER_BLOCK, n_waters - first))
        else:
            failed[k] = rattle_cluster(positions, velocities, pairs, lengths, inverse_masses,
                                       order[offsets[k]:offsets[k + 1]], tolerance,
                                       max_iterations)


# --------------------------------------------------------------------------------------------
# Public interface
# --------------------------------------------------------------------------------------------


class CpuConstraints(ConstraintTables):
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

    Raises
    ------
    ValueError
        For inputs :class:`~bencao.backends.common.constraint_tables.ConstraintTables` refuses.
    """

    def __init__(self, constraint_atoms, constraint_lengths, masses, tolerance=1e-5, *,
                 max_iterations=MAX_ITERATIONS):
        super().__init__(constraint_atoms, constraint_lengths, masses)
        self.tolerance = float(tolerance)
        self.max_iterations = int(max_iterations)

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
        failed = np.empty(self.n_clusters, dtype=np.int64)
        _constrain_positions(reference, positions, self._water_atoms, self._water_masses,
                             self._water_shape, self._pairs, self._lengths,
                             self._inverse_masses, self._cluster_order, self._cluster_offsets,
                             self.tolerance, self.max_iterations, failed_waters, failed)
        bad_water = np.flatnonzero(failed_waters)
        if len(bad_water):
            raise self.settle_failure(positions, bad_water[0])
        bad = np.flatnonzero(failed >= 0)
        if len(bad):
            raise self.shake_failure(positions, failed[bad[0]], self.tolerance,
                                     self.max_iterations)

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
        failed = np.empty(self.n_clusters, dtype=np.int64)
        _constrain_velocities(positions, velocities, self._water_atoms, self._water_masses,
                              self._pairs, self._lengths, self._inverse_masses,
                              self._cluster_order, self._cluster_offsets, self.tolerance,
                              self.max_iterations, failed)
        bad = np.flatnonzero(failed >= 0)
        if len(bad):
            raise self.rattle_failure(positions, failed[bad[0]], self.tolerance,
                                      self.max_iterations, velocities)

    def _check(self, array) -> None:
        if not (isinstance(array, np.ndarray) and array.dtype == np.float64
                and array.flags.c_contiguous and array.shape == (self._n_particles, 3)):
            raise ValueError(f"expected a C-contiguous float64 array of shape "
                             f"({self._n_particles}, 3) to update in place")
