"""Virtual sites on the CPU: place them from their parents, spread their forces back.

Placement runs through the sites in table order and force distribution in reverse order, so a site
built from another site is placed after it and hands its force to it before that site passes the
sum on to real atoms.  The laws of one site (OpenMM's formulas, float64) are shared with the CUDA
backend, in :mod:`bencao.backends.common.virtual_site_laws`; the tables and their checks are
:class:`~bencao.backends.common.virtual_site_tables.VirtualSiteTables`.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from bencao.backends.common.virtual_site_laws import distribute_site
from bencao.backends.common.virtual_site_tables import VirtualSiteTables


@njit(cache=True)
def distribute_kernel(positions, forces, site, kind, parents, weights, params):
    """Move every virtual site's force onto its parents (reverse table order), zero the site.

    Parameters
    ----------
    positions : (N, 3) float64 array
        Positions with the sites placed, nm.
    forces : (N, 3) float64 array
        Forces, kJ/mol/nm; modified in place.
    site, kind, parents, weights, params : arrays
        The fields of :class:`~bencao.forces.virtual_sites.VirtualSites`.
    """
    parent_forces = np.empty((parents.shape[1], 3))
    for m in range(site.shape[0] - 1, -1, -1):
        v = site[m]
        fx = forces[v, 0]
        fy = forces[v, 1]
        fz = forces[v, 2]
        # Zero first: a parent is never the site itself, so nothing below writes row v.
        forces[v, 0] = 0.0
        forces[v, 1] = 0.0
        forces[v, 2] = 0.0
        count = distribute_site(positions, m, fx, fy, fz, kind, parents, weights, params,
                                parent_forces)
        for j in range(count):
            p = parents[m, j]
            if p < 0:
                continue
            forces[p, 0] += parent_forces[j, 0]
            forces[p, 1] += parent_forces[j, 1]
            forces[p, 2] += parent_forces[j, 2]
    return forces


class CpuVirtualSites(VirtualSiteTables):
    """Places virtual sites and distributes their forces (OpenMM's semantics), on the CPU.

    Parameters
    ----------
    vsites : VirtualSites
        The system's virtual sites, ordered so that a site comes after any site it is built from.
    """

    def distribute(self, positions: np.ndarray, forces: np.ndarray) -> np.ndarray:
        """Move each site's force onto its parents and zero the site rows, in place.

        Parameters
        ----------
        positions : (N, 3) float64 array
            Positions with the sites already placed, nm.
        forces : (N, 3) float64 array
            Forces, kJ/mol/nm.

        Returns
        -------
        (N, 3) float64 array
            ``forces`` itself.
        """
        if len(self.site):
            distribute_kernel(
                positions, forces, self.site, self.kind, self.parents, self.weights, self.params
            )
        return forces
