"""Virtual sites: massless particles placed from their parents (TIP4P/OPC M sites, lone pairs)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Kinds of virtual site.
LINEAR = 0  #: TwoParticleAverageSite / ThreeParticleAverageSite: r = sum_i w_i r_i
OUT_OF_PLANE = 1  #: OutOfPlaneSite: r = r1 + w12 r12 + w13 r13 + wcross (r12 x r13)
LOCAL_COORDINATES = 2  #: LocalCoordinatesSite: origin + local position in a parent-built frame


@dataclass(frozen=True)
class VirtualSites:
    """All virtual sites of a system, in dependency order (a site built from another site comes
    after it).

    Parameters
    ----------
    site : (M,) int64 array
        Index of the virtual particle.
    kind : (M,) int64 array
        LINEAR, OUT_OF_PLANE or LOCAL_COORDINATES.
    parents : (M, P) int64 array
        Parent particle indices, padded with -1.
    weights : (M, P, 3) float64 array
        LINEAR: weights[:, :, 0] are the averaging weights.  LOCAL_COORDINATES: weights[:, :, 0],
        [:, :, 1], [:, :, 2] are the origin, x-direction and y-direction weights.  Unused: 0.
    params : (M, 3) float64 array
        OUT_OF_PLANE: (w12, w13, wcross) (wcross in 1/nm).  LOCAL_COORDINATES: the local position
        (x, y, z), nm.  Unused: 0.
    """

    site: np.ndarray
    kind: np.ndarray
    parents: np.ndarray
    weights: np.ndarray
    params: np.ndarray

    @classmethod
    def empty(cls) -> "VirtualSites":
        """No virtual sites."""
        return cls(
            site=np.zeros(0, np.int64),
            kind=np.zeros(0, np.int64),
            parents=np.zeros((0, 1), np.int64),
            weights=np.zeros((0, 1, 3)),
            params=np.zeros((0, 3)),
        )

    def __len__(self) -> int:
        return len(self.site)
