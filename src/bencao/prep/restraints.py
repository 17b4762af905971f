"""Position restraints for equilibration: which atoms, and the System with them added."""

from __future__ import annotations

import dataclasses

import numpy as np

from bencao.errors import JobFileError
from bencao.forces import PositionRestraints

#: What each restraint choice of a job file holds in place.
RESTRAINT_CHOICES = ("none", "heavy", "backbone", "protein")

_BACKBONE_NAMES = {"N", "CA", "C", "O"}


def _is_solvent(residue) -> bool:
    """Water and monatomic ions: what restraints never hold."""
    return residue.is_water or residue.n_atoms == 1


def restrained_atoms(topology, which: str) -> np.ndarray:
    """Indices of the atoms a restraint choice holds.

    Parameters
    ----------
    topology : mdtraj.Topology
        The system's topology (residue and atom names, elements).
    which : {"none", "heavy", "backbone", "protein"}
        "heavy": every non-hydrogen atom outside water and ions (protein, nucleic acids,
        ligands); "backbone": protein N, CA, C, O; "protein": all atoms of protein residues.

    Returns
    -------
    (M,) int64 array
    """
    if which not in RESTRAINT_CHOICES:
        raise JobFileError(f"restraints must be one of {', '.join(RESTRAINT_CHOICES)}, got {which!r}")
    chosen = []
    for atom in topology.atoms:
        residue = atom.residue
        if which == "heavy":
            keep = not _is_solvent(residue) and (atom.element is None or atom.element.symbol != "H")
        elif which == "backbone":
            keep = residue.is_protein and atom.name in _BACKBONE_NAMES
        elif which == "protein":
            keep = residue.is_protein
        else:
            keep = False
        if keep:
            chosen.append(atom.index)
    return np.array(chosen, dtype=np.int64)


def with_position_restraints(system, atoms, reference_positions, k: float):
    """A copy of ``system`` with harmonic position restraints added.

    Parameters
    ----------
    system : bencao.System
    atoms : (M,) int array
        Particles to restrain.
    reference_positions : (N, 3) array
        Positions of all particles, nm; the restrained ones are held near theirs.
    k : float
        Force constant, kJ/mol/nm^2 (E = 1/2 k d^2; 1000 is GROMACS's usual choice).

    Returns
    -------
    bencao.System
    """
    atoms = np.asarray(atoms, np.int64)
    if len(atoms) == 0:
        return system
    reference = np.asarray(reference_positions, np.float64)[atoms]
    term = PositionRestraints(atoms=atoms, reference=reference.copy(),
                              k=np.full(len(atoms), float(k)))
    return dataclasses.replace(system, terms=tuple(system.terms) + (term,))
