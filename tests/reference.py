"""OpenMM reference evaluations and the force-agreement metric used across the tests."""

from __future__ import annotations

import os

import numpy as np
import openmm as mm
from openmm import unit

DATA = os.path.join(os.path.dirname(__file__), "data")
PACKAGE_DATA = os.path.join(os.path.dirname(__file__), "..", "src", "bencao", "data")


def data_path(name: str) -> str:
    """Path of a test data file (tests/data, or the package's own data folder)."""
    for folder in (DATA, PACKAGE_DATA):
        path = os.path.join(folder, name)
        if os.path.exists(path):
            return path
    raise FileNotFoundError(name)


def openmm_evaluation(system: mm.System, positions, box=None, platform: str = "Reference"):
    """Energy, forces and per-force-class energies from an OpenMM platform.

    Parameters
    ----------
    system : openmm.System
        The system (copied; the original keeps its force groups).
    positions : (N, 3) array, nm
    box : (3, 3) array or None, nm
    platform : str
        "Reference" or "CPU".

    Returns
    -------
    energy : float, kJ/mol
    forces : (N, 3) float64 array, kJ/mol/nm
    terms : dict, kJ/mol by force class name
    positions : (N, 3) array with virtual sites placed by OpenMM, nm
    """
    system = mm.XmlSerializer.deserialize(mm.XmlSerializer.serialize(system))
    classes = sorted({type(f).__name__ for f in system.getForces()})
    for force in system.getForces():
        force.setForceGroup(classes.index(type(force).__name__))
    properties = {"Threads": "2"} if platform == "CPU" else {}
    context = mm.Context(
        system, mm.VerletIntegrator(0.001), mm.Platform.getPlatformByName(platform), properties
    )
    if box is not None:
        context.setPeriodicBoxVectors(*[mm.Vec3(*row) for row in box])
    context.setPositions(np.asarray(positions) * unit.nanometer)
    context.computeVirtualSites()
    state = context.getState(getEnergy=True, getForces=True, getPositions=True)
    terms = {}
    for index, name in enumerate(classes):
        group_state = context.getState(getEnergy=True, groups=1 << index)
        terms[name] = group_state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
    return (
        state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole),
        state.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer),
        terms,
        state.getPositions(asNumpy=True).value_in_unit(unit.nanometer),
    )


def force_agreement(forces, reference) -> tuple[float, float]:
    """OpenMM's force metric: per atom 2|F - Fref| / (|F| + |Fref|); returns (median, 99th pct).

    Particles where both forces vanish (virtual sites after redistribution) are left out.
    """
    a = np.linalg.norm(forces, axis=1)
    b = np.linalg.norm(reference, axis=1)
    keep = (a + b) > 0
    metric = 2 * np.linalg.norm(forces - reference, axis=1)[keep] / (a + b)[keep]
    return float(np.median(metric)), float(np.percentile(metric, 99))
