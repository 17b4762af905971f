"""Real test systems built with OpenMM's app layer (cached per test session)."""

from __future__ import annotations

import functools

import numpy as np
import openmm as mm
from openmm import app, unit
from reference import data_path

NM = unit.nanometer


def _positions(quantity) -> np.ndarray:
    return np.array(quantity.value_in_unit(NM), dtype=np.float64)


def _box(topology_or_vectors) -> np.ndarray:
    vectors = topology_or_vectors
    if hasattr(vectors, "getPeriodicBoxVectors"):
        vectors = vectors.getPeriodicBoxVectors()
    return np.array([[float(x) for x in v.value_in_unit(NM)] for v in vectors])


@functools.lru_cache(maxsize=None)
def solvated_trpcage(forcefield: tuple, shape: str = "cube", padding: float = 0.8, ions: bool = True):
    """Trp-cage (1T2Y) solvated with Modeller: (topology, positions nm, box nm, ForceField)."""
    ff = app.ForceField(*forcefield)
    pdb = app.PDBFile(data_path("1T2Y.pdb"))
    modeller = app.Modeller(pdb.topology, pdb.positions)
    modeller.addHydrogens(ff)
    water = "tip4pew" if any("tip4p" in f or "opc.xml" in f for f in forcefield) else "tip3p"
    # OPC is a four-site model: Modeller places it with TIP4P-Ew geometry, the force field's
    # template then assigns OPC parameters and virtual-site weights
    modeller.addSolvent(
        ff, model=water, padding=padding * NM, boxShape=shape,
        ionicStrength=(0.15 if ions else 0.0) * unit.molar,
    )
    return modeller.topology, _positions(modeller.positions), _box(modeller.topology), ff


def build(topology, ff, **options) -> mm.System:
    """ForceField.createSystem with the box of the topology."""
    return ff.createSystem(topology, **options)


@functools.lru_cache(maxsize=None)
def water_box(size: float = 2.4, model: str = "tip3p"):
    """A cubic box of water: (topology, positions nm, box nm, ForceField)."""
    files = {"tip3p": ("amber14/tip3p.xml",), "tip4pew": ("amber14/tip4pew.xml",)}[model]
    ff = app.ForceField(*files)
    modeller = app.Modeller(app.Topology(), [])
    modeller.addSolvent(ff, model=model, boxSize=mm.Vec3(size, size, size) * NM)
    return modeller.topology, _positions(modeller.positions), _box(modeller.topology), ff


def alanine_dipeptide(**options):
    """AMBER prmtop alanine dipeptide in TIP3P: (openmm System, positions nm, box nm)."""
    prmtop = app.AmberPrmtopFile(data_path("alanine-dipeptide-explicit.prmtop"))
    inpcrd = app.AmberInpcrdFile(data_path("alanine-dipeptide-explicit.inpcrd"))
    system = prmtop.createSystem(**options)
    box = _box(inpcrd.boxVectors)
    system.setDefaultPeriodicBoxVectors(*[mm.Vec3(*row) for row in box])
    return system, _positions(inpcrd.positions), box


def dhfr(**options):
    """The DHFR benchmark system (amber99sb + TIP3P): (openmm System, positions nm, box nm)."""
    pdb = app.PDBFile(data_path("dhfr_solvated.pdb"))
    ff = app.ForceField("amber99sb.xml", "tip3p.xml")
    system = ff.createSystem(pdb.topology, **options)
    return system, _positions(pdb.positions), _box(pdb.topology)


def write_vacuum_dipeptide(folder) -> None:
    """Alanine dipeptide without its water (22 atoms, amber14, no cutoff, H-bond constraints) as
    ``bencao prepare`` writes a system folder: small enough for many replicas in seconds."""
    import os

    import bencao
    from bencao.io.files import save_state

    prmtop = app.AmberPrmtopFile(data_path("alanine-dipeptide-explicit.prmtop"))
    inpcrd = app.AmberInpcrdFile(data_path("alanine-dipeptide-explicit.inpcrd"))
    modeller = app.Modeller(prmtop.topology, inpcrd.positions)
    modeller.deleteWater()
    system = app.ForceField("amber14-all.xml").createSystem(
        modeller.topology, nonbondedMethod=app.NoCutoff, constraints=app.HBonds)
    os.makedirs(folder, exist_ok=True)
    bencao.System.from_openmm(system).save(os.path.join(folder, "system.npz"))
    save_state(os.path.join(folder, "state.npz"), _positions(modeller.positions))
    with open(os.path.join(folder, "structure.pdb"), "w") as handle:
        app.PDBFile.writeFile(modeller.topology, modeller.positions, handle)
