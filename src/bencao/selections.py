"""What a residue is, for restraints and analysis: solvent, polymer, or ligand.

Used on MDTraj topologies (the run folder's ``topology.pdb``), where a ligand has no flag of its
own: it is whatever is neither polymer nor solvent.
"""

from __future__ import annotations

#: Nucleotide residue names (MDTraj flags proteins, not nucleic acids).
NUCLEIC_RESIDUES = frozenset({"DA", "DC", "DG", "DT", "DI", "A", "C", "G", "U", "I",
                              "DA5", "DA3", "DC5", "DC3", "DG5", "DG3", "DT5", "DT3",
                              "A5", "A3", "C5", "C3", "G5", "G3", "U5", "U3"})


def is_solvent(residue) -> bool:
    """Water, and monatomic ions (any residue of a single atom)."""
    return residue.is_water or residue.n_atoms == 1


def is_ligand(residue) -> bool:
    """A small molecule: not protein, not nucleic acid, not water, more than one atom."""
    return not (residue.is_protein or residue.name in NUCLEIC_RESIDUES or is_solvent(residue))


def ligand_residues(topology) -> list:
    """The ligand residues of an MDTraj topology, in order."""
    return [residue for residue in topology.residues if is_ligand(residue)]
