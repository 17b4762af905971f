"""Virtual sites on the GPU: place them from their parents, move their forces onto the parents.

The laws of one site are the CPU's (:mod:`bencao.backends.common.virtual_site_laws`: OpenMM's
formulas, float64) compiled for the GPU, one thread per site: ``place_site`` writes the site's
position, ``distribute_site`` gives the forces on its parents, which this module adds to the
fixed-point accumulator with atomics where the CPU adds float64.  The tables and their checks are
the CPU's too (:class:`~bencao.backends.common.virtual_site_tables.VirtualSiteTables`).

Order.  The CPU places sites in table order and distributes in reverse order, so that a site
built from another site is placed after it and hands its force to it before that site passes
the sum on.  Threads have no order, so the sites are grouped into dependency levels (level 0:
every parent is a real atom; level k: some parent is a site of level k - 1) and each level is one
launch: placement from level 0 up, distribution from the top level down.  Launches on one stream
run one after another, which is the ordering the CPU loop gives.  Within a level no site is a
parent of another, so no thread reads a row that another thread of the same launch writes.  For
water models (TIP4P, OPC: every site built from real atoms) that is one launch each way.

Distribution.  Each site's fixed-point force is converted to float64, sent through the shared
law and added to its parents with ``to_fixed`` and integer atomics, which commute: the result
does not depend on thread order, run to run.  The CPU instead converts the whole accumulator to
float64 first and adds in float64, so the two differ only by the truncation of each redistributed
part to fixed point: less than 1/FORCE_SCALE = 2^-32 kJ/mol/nm (2.3e-10) per component and per
addition (a parent of k sites: below k units).
"""

from __future__ import annotations

import numpy as np
from numba import cuda

from bencao.backends.common import virtual_site_laws
from bencao.backends.common.fixed_point import forces_from_fixed
from bencao.backends.common.virtual_site_tables import VirtualSiteTables
from bencao.backends.cuda.bonded import add_force
from bencao.backends.cuda.common import device_version, launch_kernel
from bencao.constants import FORCE_SCALE
from bencao.forces.virtual_sites import VirtualSites

# The shared per-site laws, compiled for the GPU (plain Python in the simulator).
_place_site = device_version(virtual_site_laws.place_site)
_distribute_site = device_version(virtual_site_laws.distribute_site)

#: kJ/mol/nm per fixed-point unit; FORCE_SCALE is a power of two, so the product is exact.
_INV_FORCE_SCALE = 1.0 / FORCE_SCALE


@cuda.jit
def place_sites_kernel(positions, start, count, site, kind, parents, weights, params):
    """Overwrite the positions of sites ``start .. start + count - 1`` (one level); one thread
    per site, with the shared ``place_site``.

    Parameters
    ----------
    positions : (N, 3) float64 device array
        Positions, nm; the site rows are written.
    start, count : int
        The level's slice of the (level-sorted) site table.
    site, kind, parents, weights, params : device arrays
        The fields of :class:`~bencao.forces.virtual_sites.VirtualSites` (int64 / float64).
    """
    t = cuda.grid(1)
    if t < count:
        _place_site(positions, start + t, site, kind, parents, weights, params)


@cuda.jit
def gather_site_forces_kernel(forces, site, site_forces):
    """Copy every site's row of the fixed-point accumulator (int64) into ``site_forces``, (M, 3)
    int64; one thread per site.  Run before any distribution, so a site built from other sites
    is kept without the forces its children hand to it (what the CPU reports)."""
    m = cuda.grid(1)
    if m >= site.shape[0]:
        return
    v = site[m]
    site_forces[m, 0] = forces[v, 0]
    site_forces[m, 1] = forces[v, 1]
    site_forces[m, 2] = forces[v, 2]


@cuda.jit
def distribute_sites_kernel(positions, forces, start, count, site, kind, parents, weights,
                            params, parent_forces):
    """Move the forces of sites ``start .. start + count - 1`` (one level) onto their parents and
    zero the site rows; one thread per site, with the shared ``distribute_site``, adding
    fixed point.

    Parameters
    ----------
    positions : (N, 3) float64 device array
        Positions with the sites placed, nm.
    forces : (N, 3) int64 device array
        Fixed-point force accumulator (FORCE_SCALE units per kJ/mol/nm): the site rows are read
        and zeroed, the parents' rows added to atomically.
    start, count : int
        The level's slice of the (level-sorted) site table.
    site, kind, parents, weights, params : device arrays
        The fields of :class:`~bencao.forces.virtual_sites.VirtualSites` (int64 / float64).
    parent_forces : (M, P, 3) float64 device array
        Scratch: row m receives the forces site m hands to its parents, kJ/mol/nm.
    """
    t = cuda.grid(1)
    if t >= count:
        return
    m = start + t
    v = site[m]
    # Exact but for int64 -> float64 rounding beyond 2^53 units (forces above 2^21 kJ/mol/nm).
    fx = np.float64(forces[v, 0]) * _INV_FORCE_SCALE
    fy = np.float64(forces[v, 1]) * _INV_FORCE_SCALE
    fz = np.float64(forces[v, 2]) * _INV_FORCE_SCALE
    # Plain stores: within a level no site is a parent of another, so no thread of this launch
    # adds to row v (children, of higher levels, have already been distributed).
    forces[v, 0] = 0
    forces[v, 1] = 0
    forces[v, 2] = 0
    mine = parent_forces[m]
    n = _distribute_site(positions, m, fx, fy, fz, kind, parents, weights, params, mine)
    for j in range(n):
        p = parents[m, j]
        if p < 0:
            continue
        add_force(forces, p, mine[j, 0], mine[j, 1], mine[j, 2])


def dependency_levels(site: np.ndarray, parents: np.ndarray) -> np.ndarray:
    """Level of each site: 0 if all its parents are real atoms, else 1 + the highest level among
    its parent sites.

    Parameters
    ----------
    site : (M,) int64 array
        Particle index of each site.
    parents : (M, P) int64 array
        Parent particle indices, padded with -1.

    Returns
    -------
    (M,) int64 array

    Raises
    ------
    ValueError
        If a particle is listed as a site twice or site definitions are circular.
    """
    m = len(site)
    if m == 0:
        return np.zeros(0, dtype=np.int64)
    if len(np.unique(site)) != m:
        raise ValueError("a particle is listed twice in the virtual-site table")
    n = int(max(site.max(), parents.max())) + 1
    slot = np.full(n, -1, dtype=np.int64)
    slot[site] = np.arange(m, dtype=np.int64)
    # parent_slot[m, j]: row of the site table that parent j of site m is, or -1 for a real atom.
    parent_slot = np.where(parents >= 0, slot[np.maximum(parents, 0)], -1)
    has = parent_slot >= 0
    level = np.zeros(m, dtype=np.int64)
    # Levels only grow; without cycles they settle after (depth + 1) rounds, depth < M.
    for _ in range(m + 1):
        raised = np.where(has, level[np.maximum(parent_slot, 0)] + 1, 0).max(axis=1)
        if np.array_equal(raised, level):
            return level
        level = raised
    raise ValueError(f"circular virtual-site definitions among particles {site.tolist()[:10]}")


class CudaVirtualSites:
    """Virtual sites on the device: placed from their parents in ``state.positions``, their
    forces moved onto the parents in ``state.forces`` (OpenMM's semantics, as on the CPU).

    Parameters
    ----------
    vsites : VirtualSites
        The system's virtual sites.  Validated as on the CPU (``VirtualSiteTables``); the table
        need not be in dependency order, the levels are worked out here.

    Attributes
    ----------
    site : (M,) int64 array
        The sites' particle indices, in the device table's (level-sorted) order.
    levels : list of (int, int)
        (start, count) of each dependency level in that order, level 0 first.
    site_forces : (M, 3) int64 device array
        Each site's own fixed-point force (FORCE_SCALE units per kJ/mol/nm), kept by
        :meth:`distribute` before it moves them.
    """

    def __init__(self, vsites: VirtualSites):
        # The shared tables check the kinds and parent counts and normalise dtypes and shapes.
        host = VirtualSiteTables(vsites)
        level = dependency_levels(host.site, host.parents)
        order = np.argsort(level, kind="stable")  # keeps the table order within a level
        counts = np.bincount(level, minlength=1) if len(level) else np.zeros(0, dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]]) if len(counts) else counts
        self.levels = [(int(s), int(c)) for s, c in zip(starts, counts)]
        self.site = np.ascontiguousarray(host.site[order])
        self._site = cuda.to_device(self.site)
        self._kind = cuda.to_device(np.ascontiguousarray(host.kind[order]))
        self._parents = cuda.to_device(np.ascontiguousarray(host.parents[order]))
        self._weights = cuda.to_device(np.ascontiguousarray(host.weights[order]))
        self._params = cuda.to_device(np.ascontiguousarray(host.params[order]))
        self.site_forces = cuda.device_array((max(len(self.site), 1), 3), dtype=np.int64)
        # What each site hands to its parents, written and read by its own thread
        self._parent_forces = cuda.device_array(
            (max(len(self.site), 1), host.parents.shape[1], 3), dtype=np.float64)

    def __len__(self) -> int:
        return len(self.site)

    def place(self, state) -> None:
        """Overwrite the site rows of ``state.positions`` (nm) from their parents, level by level.

        Parameters
        ----------
        state : CudaState
            Device positions, (N, 3) float64, nm.
        """
        for start, count in self.levels:
            launch_kernel(place_sites_kernel, count)(
                state.positions, start, count, self._site, self._kind, self._parents,
                self._weights, self._params)

    def distribute(self, state) -> None:
        """Move every site's force onto its parents and zero the site rows of ``state.forces``.

        Call after every term has added its forces; each site's own force is kept in
        :attr:`site_forces` first (see :meth:`restore_site_forces`).

        Parameters
        ----------
        state : CudaState
            Device positions (sites placed, nm) and the (N, 3) int64 fixed-point forces.
        """
        if not len(self.site):
            return
        launch_kernel(gather_site_forces_kernel, len(self.site))(
            state.forces, self._site, self.site_forces)
        # Top level first: a site hands its force to its parent sites before they pass it on.
        for start, count in reversed(self.levels):
            launch_kernel(distribute_sites_kernel, count)(
                state.positions, state.forces, start, count, self._site, self._kind,
                self._parents, self._weights, self._params, self._parent_forces)

    def restore_site_forces(self, forces: np.ndarray) -> np.ndarray:
        """Write each site's own force, kept by the last :meth:`distribute`, into its row of a
        host force array: the sites report the force acting on them, as OpenMM's getForces and
        the CPU backend do (integrators skip massless particles).

        Parameters
        ----------
        forces : (N, 3) float64 array
            Forces downloaded after :meth:`distribute`, kJ/mol/nm; modified in place.

        Returns
        -------
        (N, 3) float64 array
            ``forces`` itself.
        """
        if len(self.site):
            kept = self.site_forces.copy_to_host()[: len(self.site)]
            # The CPU backend's own conversion, so the rows agree exactly.
            forces[self.site] = forces_from_fixed(kept)
        return forces
