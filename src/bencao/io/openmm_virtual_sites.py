"""Read the virtual sites of an OpenMM System into a :class:`~bencao.forces.VirtualSites` table."""

from __future__ import annotations

from xml.etree import ElementTree

import numpy as np
import openmm

from bencao.forces.virtual_sites import (
    LINEAR,
    LOCAL_COORDINATES,
    OUT_OF_PLANE,
    VirtualSites,
)

_SUPPORTED = (
    "TwoParticleAverageSite",
    "ThreeParticleAverageSite",
    "OutOfPlaneSite",
    "LocalCoordinatesSite",
)


def _dependency_order(system: openmm.System, indices: list[int]) -> list[int]:
    """Virtual-site indices ordered so every site follows the sites it is built from.

    Raises
    ------
    ValueError
        If site definitions are circular.
    """
    pending = set(indices)
    order: list[int] = []
    while pending:
        ready = sorted(
            i
            for i in pending
            if not any(
                system.getVirtualSite(i).getParticle(j) in pending
                for j in range(system.getVirtualSite(i).getNumParticles())
            )
        )
        if not ready:
            raise ValueError(f"circular virtual-site definitions among particles {sorted(pending)}")
        order.extend(ready)
        pending.difference_update(ready)
    return order


def _site_class_name(system: openmm.System, index: int) -> str:
    """Class name of the virtual site of particle ``index``.

    OpenMM's Python wrapper downcasts only the site classes it knows; others (SymmetrySite in
    OpenMM 8.x) come back as the base ``VirtualSite``.  The XML serialisation names the real class,
    so we read it there; this runs only on the error path.
    """
    name = type(system.getVirtualSite(index)).__name__
    if name != "VirtualSite":
        return name
    root = ElementTree.fromstring(openmm.XmlSerializer.serialize(system))
    particle = root.find("Particles")[index]
    return particle[0].tag if len(particle) else name


def virtual_sites_from_openmm(system: openmm.System) -> VirtualSites:
    """Convert the virtual sites of an OpenMM System.

    Supported: TwoParticleAverageSite and ThreeParticleAverageSite (LINEAR), OutOfPlaneSite
    (OUT_OF_PLANE, weights w12, w13 dimensionless and wcross in 1/nm) and LocalCoordinatesSite
    (LOCAL_COORDINATES, local position in nm).  Sites are listed in dependency order (a site built
    from other sites comes after them), which is the order ``CpuVirtualSites`` needs.

    Parameters
    ----------
    system : openmm.System
        The system.

    Returns
    -------
    VirtualSites
        The table; ``VirtualSites.empty()`` if the system has none.

    Raises
    ------
    ValueError
        For any other kind of virtual site (e.g. SymmetrySite), naming it and the supported ones,
        or for circular definitions.
    """
    indices = [i for i in range(system.getNumParticles()) if system.isVirtualSite(i)]
    if not indices:
        return VirtualSites.empty()
    for i in indices:
        if type(system.getVirtualSite(i)).__name__ not in _SUPPORTED:
            raise ValueError(
                f"particle {i}: unsupported virtual site {_site_class_name(system, i)}; "
                f"supported: {', '.join(_SUPPORTED)}"
            )
    order = _dependency_order(system, indices)
    width = max(system.getVirtualSite(i).getNumParticles() for i in order)

    n = len(order)
    site = np.array(order, dtype=np.int64)
    kind = np.zeros(n, dtype=np.int64)
    parents = np.full((n, width), -1, dtype=np.int64)
    weights = np.zeros((n, width, 3), dtype=np.float64)
    params = np.zeros((n, 3), dtype=np.float64)
    for m, i in enumerate(order):
        vs = system.getVirtualSite(i)
        count = vs.getNumParticles()
        parents[m, :count] = [vs.getParticle(j) for j in range(count)]
        if isinstance(vs, (openmm.TwoParticleAverageSite, openmm.ThreeParticleAverageSite)):
            kind[m] = LINEAR
            weights[m, :count, 0] = [vs.getWeight(j) for j in range(count)]
        elif isinstance(vs, openmm.OutOfPlaneSite):
            kind[m] = OUT_OF_PLANE
            params[m] = (vs.getWeight12(), vs.getWeight13(), vs.getWeightCross())
        else:  # LocalCoordinatesSite (checked above)
            kind[m] = LOCAL_COORDINATES
            weights[m, :count, 0] = vs.getOriginWeights()
            weights[m, :count, 1] = vs.getXWeights()
            weights[m, :count, 2] = vs.getYWeights()
            local = vs.getLocalPosition()
            # The SWIG wrapper returns a Quantity in nm; strip the unit without converting.
            local = local.value_in_unit(openmm.unit.nanometer) if hasattr(local, "unit") else local
            params[m] = (float(local[0]), float(local[1]), float(local[2]))
    return VirtualSites(site=site, kind=kind, parents=parents, weights=weights, params=params)
