"""Which atoms line pockets: protein heavy atoms, chosen once per topology, and what each is.

Waters, ions, ligands and hydrogens are left out: a ligand fills the pocket it sits in, and
hydrogens would change every alpha sphere.  Amino acids written as HETATM (modified residues such
as CSO, MSE, SEP) are kept when they carry a backbone (N, CA, C), so they leave no false hole.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bencao.errors import InputFileError

#: Kyte-Doolittle hydropathy of the standard residues (J. Mol. Biol. 157, 105 (1982)).
HYDROPATHY = {"ILE": 4.5, "VAL": 4.2, "LEU": 3.8, "PHE": 2.8, "CYS": 2.5, "MET": 1.9, "ALA": 1.8,
              "GLY": -0.4, "THR": -0.7, "SER": -0.8, "TRP": -0.9, "TYR": -1.3, "PRO": -1.6,
              "HIS": -3.2, "GLU": -3.5, "GLN": -3.5, "ASP": -3.5, "ASN": -3.5, "LYS": -3.9,
              "ARG": -4.5}
_HISTIDINES = {"HID": "HIS", "HIE": "HIS", "HIP": "HIS", "HSD": "HIS", "HSE": "HIS", "HSP": "HIS",
               "CYX": "CYS", "CYM": "CYS", "ASH": "ASP", "GLH": "GLU", "LYN": "LYS"}
_BACKBONE = {"N", "CA", "C"}


@dataclass(frozen=True)
class PocketAtoms:
    """The protein heavy atoms pockets are made of.

    Attributes
    ----------
    indices : (M,) int64 array
        Their indices in the topology.
    apolar : (M,) bool array
        Carbon and sulphur (the atoms that make a surface hydrophobic).
    residue : (M,) int64 array
        Index of each atom's residue in ``residue_labels``.
    residue_labels : tuple of str
        "ALA23:A" for every residue that has atoms here.
    hydropathy : (R,) float64 array
        Kyte-Doolittle hydropathy of each residue (0 for residues without a value).
    backbone : (B,) int64 array
        Positions in ``indices`` of the C-alpha atoms, to superpose frames.
    """

    indices: np.ndarray
    apolar: np.ndarray
    residue: np.ndarray
    residue_labels: tuple
    hydropathy: np.ndarray
    backbone: np.ndarray


def _is_amino_acid(residue) -> bool:
    return residue.is_protein or _BACKBONE <= {atom.name for atom in residue.atoms}


def pocket_atoms(topology, source: str = "the structure") -> PocketAtoms:
    """The protein heavy atoms of an MDTraj topology (computed once per topology).

    Raises
    ------
    bencao.errors.InputFileError
        If ``source`` holds no protein.
    """
    indices, apolar, residue_of, labels, hydropathy, backbone = [], [], [], [], [], []
    seen = {}
    for residue in topology.residues:
        if not _is_amino_acid(residue):
            continue
        for atom in residue.atoms:
            element = atom.element.symbol if atom.element is not None else atom.name[:1]
            if element in ("H", "D"):
                continue
            if residue.index not in seen:
                seen[residue.index] = len(labels)
                chain = residue.chain.chain_id or str(residue.chain.index)
                labels.append(f"{residue.name}{residue.resSeq}:{chain}")
                name = _HISTIDINES.get(residue.name, residue.name)
                hydropathy.append(HYDROPATHY.get(name, 0.0))
            if atom.name == "CA":
                backbone.append(len(indices))
            indices.append(atom.index)
            apolar.append(element in ("C", "S"))
            residue_of.append(seen[residue.index])
    if len(indices) < 4:
        raise InputFileError(f"{source} holds no protein: pockets are found in protein structures")
    return PocketAtoms(np.array(indices, np.int64), np.array(apolar, bool),
                       np.array(residue_of, np.int64), tuple(labels),
                       np.array(hydropathy, np.float64), np.array(backbone, np.int64))
