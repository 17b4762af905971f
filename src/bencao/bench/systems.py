"""Benchmark systems built from structures shipped with the package."""

from __future__ import annotations

from importlib import resources

import numpy as np


def dhfr_openmm():
    """The standard DHFR benchmark (OpenMM's benchmark settings).

    23,558 atoms, amber99sb + TIP3P, PME with a 0.9 nm cutoff and OpenMM's default error
    tolerance, bonds to hydrogen constrained, hydrogen mass 1.5 amu.

    Returns
    -------
    system : openmm.System
    positions : (N, 3) float64 array, nm
    box : (3, 3) float64 array, nm
    """
    from openmm import app, unit

    with resources.as_file(resources.files("bencao") / "data" / "dhfr_solvated.pdb") as path:
        pdb = app.PDBFile(str(path))
    forcefield = app.ForceField("amber99sb.xml", "tip3p.xml")
    system = forcefield.createSystem(
        pdb.topology,
        nonbondedMethod=app.PME,
        nonbondedCutoff=0.9 * unit.nanometer,
        constraints=app.HBonds,
        hydrogenMass=1.5 * unit.amu,
    )
    positions = np.array(pdb.positions.value_in_unit(unit.nanometer))
    box = np.array([v.value_in_unit(unit.nanometer) for v in pdb.topology.getPeriodicBoxVectors()])
    return system, positions, box


SYSTEMS = {"dhfr": dhfr_openmm}
