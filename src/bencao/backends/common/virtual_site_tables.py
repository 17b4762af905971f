"""Virtual-site tables on the host, checked once for every backend, and host-side placement.

:class:`VirtualSiteTables` turns a :class:`~bencao.forces.virtual_sites.VirtualSites` into the
contiguous int64/float64 arrays the laws of :mod:`~bencao.backends.common.virtual_site_laws`
take, refusing what they cannot compute; the CPU backend and the CUDA backend (which uploads the
arrays) build on it.  Its :meth:`~VirtualSiteTables.place` places the sites on a host array, as
system preparation and ``Simulation`` (between device steps) need without a backend.
"""

from __future__ import annotations

import numpy as np

from bencao.backends.common.virtual_site_laws import place_sites
from bencao.forces.virtual_sites import (
    LINEAR,
    LOCAL_COORDINATES,
    OUT_OF_PLANE,
    VirtualSites,
)


class VirtualSiteTables:
    """A system's virtual sites as checked, contiguous arrays, and their placement on the host.

    Parameters
    ----------
    vsites : VirtualSites
        The system's virtual sites, ordered so that a site comes after any site it is built from.

    Attributes
    ----------
    site : (M,) int64 array
        Particle index of each site.
    kind : (M,) int64 array
        LINEAR, OUT_OF_PLANE or LOCAL_COORDINATES.
    parents : (M, P) int64 array
        Parent particle indices, padded with -1.
    weights : (M, P, 3) float64 array
        Per-parent weights (see :class:`~bencao.forces.virtual_sites.VirtualSites`).
    params : (M, 3) float64 array
        Per-site parameters (OUT_OF_PLANE weights, LOCAL_COORDINATES local position in nm).

    Raises
    ------
    ValueError
        If a kind is unknown or an OUT_OF_PLANE site lacks one of its three parents.
    """

    def __init__(self, vsites: VirtualSites):
        n = len(vsites.site)
        self.site = np.ascontiguousarray(np.asarray(vsites.site, dtype=np.int64).reshape(-1))
        self.kind = np.ascontiguousarray(np.asarray(vsites.kind, dtype=np.int64).reshape(-1))
        self.parents = np.ascontiguousarray(
            np.asarray(vsites.parents, dtype=np.int64).reshape(n, -1)
        )
        self.weights = np.ascontiguousarray(
            np.asarray(vsites.weights, dtype=np.float64).reshape(n, self.parents.shape[1], 3)
        )
        self.params = np.ascontiguousarray(
            np.asarray(vsites.params, dtype=np.float64).reshape(n, 3)
        )
        unknown = set(self.kind.tolist()) - {LINEAR, OUT_OF_PLANE, LOCAL_COORDINATES}
        if unknown:
            raise ValueError(f"unknown virtual-site kind(s) {sorted(unknown)}")
        oop = self.kind == OUT_OF_PLANE
        if oop.any() and (self.parents.shape[1] < 3 or np.any(self.parents[oop, :3] < 0)):
            raise ValueError("an OUT_OF_PLANE virtual site needs three parents")

    def __len__(self) -> int:
        return len(self.site)

    def place(self, positions: np.ndarray) -> np.ndarray:
        """Overwrite the virtual-site rows of ``positions`` in place, in table order.

        Parameters
        ----------
        positions : (N, 3) float64 C-contiguous host array
            Positions, nm.

        Returns
        -------
        (N, 3) float64 array
            ``positions`` itself.
        """
        if len(self.site):
            place_sites(positions, self.site, self.kind, self.parents, self.weights, self.params)
        return positions


def place_virtual_sites(vsites: VirtualSites, positions: np.ndarray) -> np.ndarray:
    """Place every virtual site of ``vsites`` on the host, in place (see
    :meth:`VirtualSiteTables.place`).

    Parameters
    ----------
    vsites : VirtualSites
        The system's virtual sites, in dependency order.
    positions : (N, 3) float64 C-contiguous host array
        Positions, nm; the site rows are overwritten.

    Returns
    -------
    (N, 3) float64 array
        ``positions`` itself.
    """
    return VirtualSiteTables(vsites).place(positions)
