"""Benchmark systems: DHFR from the structure shipped with the package, and water boxes."""

from __future__ import annotations

import math
from importlib import resources

import numpy as np

# Waters per nm^3 in the cubes Modeller fills from its pre-equilibrated TIP3P box (the median
# over cubes of 2.4 to 4.8 nm; they range from 31.7 to 33.1): sizes a box for a number of atoms.
WATER_DENSITY = 32.4
# Largest box Modeller fills directly (about 4,000 waters, a second); bigger boxes are tiled.
LARGEST_TILE_NM = 5.0


def dhfr_openmm(*, with_topology: bool = False):
    """The standard DHFR benchmark (OpenMM's benchmark settings).

    23,558 atoms, amber99sb + TIP3P, PME with a 0.9 nm cutoff and OpenMM's default error
    tolerance, bonds to hydrogen constrained, hydrogen mass 1.5 amu.

    Parameters
    ----------
    with_topology : bool
        Also return the ``openmm.app.Topology`` (as a fourth item), for converting the system
        to another engine's files.

    Returns
    -------
    system : openmm.System
    positions : (N, 3) float64 array, nm
    box : (3, 3) float64 array, nm
    topology : openmm.app.Topology
        Only with ``with_topology``.
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
    return (system, positions, box, pdb.topology) if with_topology else (system, positions, box)


def alanine_dipeptide_openmm(*, with_topology: bool = False):
    """Alanine dipeptide in TIP3P water (2,269 atoms), the small-system benchmark.

    The AMBER ff99SB prmtop/inpcrd of OpenMM's own test set, with DHFR's settings: PME with a
    0.9 nm cutoff, bonds to hydrogen constrained, hydrogen mass 1.5 amu (so 4 fs steps hold).
    Per-step overhead dominates here, as in an ensemble of many small replicas.

    Parameters
    ----------
    with_topology : bool
        Also return the ``openmm.app.Topology`` (as a fourth item).

    Returns
    -------
    system : openmm.System
    positions : (N, 3) float64 array, nm
    box : (3, 3) float64 array, nm
    topology : openmm.app.Topology
        Only with ``with_topology``.
    """
    from openmm import app, unit

    data = resources.files("bencao") / "data"
    with resources.as_file(data / "alanine-dipeptide-explicit.prmtop") as prmtop_path, \
            resources.as_file(data / "alanine-dipeptide-explicit.inpcrd") as inpcrd_path:
        prmtop = app.AmberPrmtopFile(str(prmtop_path))
        inpcrd = app.AmberInpcrdFile(str(inpcrd_path))
    system = prmtop.createSystem(nonbondedMethod=app.PME, nonbondedCutoff=0.9 * unit.nanometer,
                                 constraints=app.HBonds, hydrogenMass=1.5 * unit.amu)
    positions = np.array(inpcrd.getPositions().value_in_unit(unit.nanometer))
    box = np.array([v.value_in_unit(unit.nanometer) for v in inpcrd.getBoxVectors()])
    return (system, positions, box, prmtop.topology) if with_topology else (system, positions, box)


def water_box_edge(atoms: int) -> float:
    """Edge of the cubic TIP3P box holding about ``atoms`` atoms, nm."""
    return (atoms / 3 / WATER_DENSITY) ** (1.0 / 3.0)


def _modeller_water(edge: float):
    """Modeller's fill of a periodic cube of ``edge`` nm with TIP3P: (topology, positions nm).

    Modeller removes the waters that clash across the periodic boundary, so the cube is
    periodic on its own lattice and can be tiled.
    """
    import openmm as mm
    from openmm import app, unit

    modeller = app.Modeller(app.Topology(), [])
    modeller.addSolvent(app.ForceField("amber14/tip3p.xml"), model="tip3p",
                        boxSize=mm.Vec3(edge, edge, edge) * unit.nanometer, neutralize=False)
    return modeller.topology, np.array(modeller.positions.value_in_unit(unit.nanometer))


def _fill_tile(edge: float, attempts: int = 10):
    """A Modeller cube of about ``edge`` nm with bulk water density.

    Modeller's removal of waters that clash across the boundary leaves a void for some edges
    (3.05 to 3.17 nm hold the same 895 waters, 12 % short of bulk): such a fill is refused and
    the edge grown by 1 % until the density is within 3 % of bulk.

    Returns
    -------
    topology, positions, edge
        The fill and its edge, nm.
    """
    edges = [edge * 1.01**attempt for attempt in range(attempts)]
    for tried in edges:
        topology, positions = _modeller_water(tried)
        if topology.getNumResidues() >= 0.97 * WATER_DENSITY * tried**3:
            return topology, positions, tried
    raise RuntimeError(f"Modeller filled no cube of {edges[0]:.2f} to {edges[-1]:.2f} nm with "
                       "bulk water density")


def _minimized(topology, positions: np.ndarray, edge: float, iterations: int) -> np.ndarray:
    """Positions after ``iterations`` of OpenMM's minimiser with periodic boundaries.

    A few iterations remove the close contacts left where Modeller's pre-equilibrated box was
    cut; a cutoff without PME is enough for that and much cheaper.
    """
    import openmm as mm
    from openmm import app, unit

    system = app.ForceField("amber14/tip3p.xml").createSystem(
        topology, nonbondedMethod=app.CutoffPeriodic,
        nonbondedCutoff=min(0.9, 0.49 * edge) * unit.nanometer)
    context = mm.Context(system, mm.VerletIntegrator(0.001), mm.Platform.getPlatformByName("CPU"))
    context.setPositions(positions * unit.nanometer)
    mm.LocalEnergyMinimizer.minimize(context, 10.0, iterations)
    state = context.getState(getPositions=True)
    return np.array(state.getPositions(asNumpy=True).value_in_unit(unit.nanometer), np.float64)


def _tiled_topology(tile, copies: int, box_edge: float):
    """``copies``**3 copies of the tile's residues, atoms and bonds in one Topology."""
    from openmm import app, unit

    topology = app.Topology()
    chain = topology.addChain()
    bonds: dict = {}
    for bond in tile.bonds():  # once: Residue.internal_bonds scans every bond of the topology
        bonds.setdefault(bond[0].residue.index, []).append((bond[0].index, bond[1].index))
    for _ in range(copies**3):
        for residue in tile.residues():
            new_residue = topology.addResidue(residue.name, chain)
            atoms = {atom.index: topology.addAtom(atom.name, atom.element, new_residue)
                     for atom in residue.atoms()}
            for first, second in bonds.get(residue.index, ()):
                topology.addBond(atoms[first], atoms[second])
    topology.setPeriodicBoxVectors(np.eye(3) * box_edge * unit.nanometer)
    return topology


def _tiled_positions(positions: np.ndarray, copies: int, tile_edge: float) -> np.ndarray:
    """Tile positions on the lattice of a cube of ``tile_edge``, in the topology's copy order."""
    offsets = np.array([(i, j, k) for i in range(copies) for j in range(copies)
                        for k in range(copies)], np.float64) * tile_edge
    return (offsets[:, None, :] + positions[None, :, :]).reshape(-1, 3)


def water_box_openmm(atoms: int, cutoff: float = 0.9, minimize_iterations: int = 10):
    """A cubic box of rigid TIP3P water with about ``atoms`` atoms (amber14/tip3p.xml, PME).

    Up to ``LARGEST_TILE_NM`` a side, Modeller fills the box directly; larger boxes are tiles of
    an equal cube filled by Modeller, repeated on the tile's own periodic lattice, so nothing
    overlaps at the seams and the build takes seconds even for 300,000 atoms.

    The tile is minimised briefly with periodic boundaries before it is repeated: that settles
    the contacts at its faces, and so those between copies.

    Parameters
    ----------
    atoms : int
        Requested number of atoms; the box holds this many to within a few per cent
        (Modeller's packing varies with the edge: about 3,000 gives 3,222).
    cutoff : float
        Nonbonded cutoff, nm (PME with OpenMM's default error tolerance).
    minimize_iterations : int
        Iterations of OpenMM's minimiser on the tile before tiling (0: none).

    Returns
    -------
    system : openmm.System
    positions : (N, 3) float64 array, nm
    box : (3, 3) float64 array, nm

    Raises
    ------
    ValueError
        If the box would be narrower than twice the cutoff.
    """
    from openmm import app, unit

    edge = water_box_edge(atoms)
    copies = max(1, math.ceil(edge / LARGEST_TILE_NM))
    tile, tile_positions, tile_edge = _fill_tile(edge / copies)
    if copies * tile_edge <= 2.0 * cutoff:
        raise ValueError(f"a box of {atoms} water atoms is {copies * tile_edge:.2f} nm wide, too "
                         f"narrow for a {cutoff:g} nm cutoff (more than {2 * cutoff:g} nm needed)")
    if minimize_iterations > 0:
        tile_positions = _minimized(tile, tile_positions, tile_edge, minimize_iterations)
    topology = _tiled_topology(tile, copies, copies * tile_edge)
    positions = _tiled_positions(tile_positions, copies, tile_edge)
    system = app.ForceField("amber14/tip3p.xml").createSystem(
        topology, nonbondedMethod=app.PME, nonbondedCutoff=cutoff * unit.nanometer, rigidWater=True)
    return system, positions, np.eye(3) * copies * tile_edge


def bpti_gbn2_openmm(*, with_topology: bool = False):
    """BPTI (PDB 4PTI with hydrogens, 892 atoms) in implicit solvent: amber14 with OpenMM's
    ``implicit/gbn2.xml`` (a CustomGBForce), no cutoff, bonds to hydrogen constrained, hydrogen
    mass 1.5 amu (DHFR's settings, so 4 fs steps hold).  Returns as :func:`dhfr_openmm`, the box
    None."""
    from openmm import app, unit

    with resources.as_file(resources.files("bencao") / "data" / "bpti.pdb") as path:
        pdb = app.PDBFile(str(path))
    forcefield = app.ForceField("amber14-all.xml", "implicit/gbn2.xml")
    modeller = app.Modeller(pdb.topology, pdb.positions)
    modeller.deleteWater()
    modeller.addHydrogens(forcefield)
    system = forcefield.createSystem(modeller.topology, nonbondedMethod=app.NoCutoff,
                                     constraints=app.HBonds, hydrogenMass=1.5 * unit.amu)
    positions = np.array(modeller.positions.value_in_unit(unit.nanometer))
    return (system, positions, None, modeller.topology) if with_topology else \
        (system, positions, None)


#: Benchmark systems by name: each returns (openmm.System, positions nm, box nm or None), and
#: the openmm.app.Topology as a fourth item when called with ``with_topology=True``.
SYSTEMS = {"dhfr": dhfr_openmm, "alanine": alanine_dipeptide_openmm, "gbn2": bpti_gbn2_openmm}
