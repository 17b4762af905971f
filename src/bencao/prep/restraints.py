"""Position restraints for equilibration: which atoms, and the System with them added."""

from __future__ import annotations

import dataclasses

import numpy as np

from bencao.errors import JobFileError
from bencao.forces import PositionRestraints
from bencao.selections import is_ligand, is_solvent

#: What each restraint choice of a job file holds in place; choices combine with "+"
#: ("backbone+ligand").
RESTRAINT_CHOICES = ("none", "heavy", "backbone", "protein", "ligand")

_BACKBONE_NAMES = {"N", "CA", "C", "O"}


def _is_heavy(atom) -> bool:
    return atom.element is None or atom.element.symbol != "H"


_SELECTS = {
    "none": lambda atom: False,
    "heavy": lambda atom: not is_solvent(atom.residue) and _is_heavy(atom),
    "backbone": lambda atom: atom.residue.is_protein and atom.name in _BACKBONE_NAMES,
    "protein": lambda atom: atom.residue.is_protein,
    "ligand": lambda atom: is_ligand(atom.residue) and _is_heavy(atom),
}


def restraint_parts(which: str) -> list:
    """The choices in ``which`` ("backbone+ligand" -> ["backbone", "ligand"]), checked."""
    parts = [part.strip() for part in str(which).split("+")]
    if not all(part in RESTRAINT_CHOICES for part in parts):
        raise JobFileError(f"restraints must be one of {', '.join(RESTRAINT_CHOICES)} or several "
                           f"joined with '+' (e.g. 'backbone+ligand'), got {which!r}")
    return parts


def restrained_atoms(topology, which: str) -> np.ndarray:
    """Indices of the atoms a restraint choice holds.

    Parameters
    ----------
    topology : mdtraj.Topology
        The system's topology (residue and atom names, elements).
    which : str
        "heavy": every non-hydrogen atom outside water and ions (protein, nucleic acids,
        ligands); "backbone": protein N, CA, C, O; "protein": all atoms of protein residues;
        "ligand": heavy atoms of ligands (residues that are neither polymer nor solvent, see
        :func:`bencao.selections.is_ligand`); "none"; or several joined with "+".

    Returns
    -------
    (M,) int64 array
    """
    selects = [_SELECTS[part] for part in restraint_parts(which)]
    chosen = [atom.index for atom in topology.atoms if any(select(atom) for select in selects)]
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
