"""GAFF2/AM1-BCC parameters for a ligand, computed once and kept in a cache.

antechamber types the atoms and computes AM1-BCC charges with sqm, parmchk2 supplies the
parameters GAFF lacks, and ParmEd writes an OpenMM force-field XML.  sqm is the slow part
(seconds to minutes), so its results are kept in a cache keyed by what decides them: the
canonical isomeric SMILES with every hydrogen, the net charge, the charge method, the force field
and the AmberTools version.  A second preparation of the same molecule, in any atom order, reads
the cache instead of running anything.

The cache lives in ``$BENCAO_CACHE_DIR/ligands``, else ``$XDG_CACHE_HOME/bencao/ligands``, else
``~/.cache/bencao/ligands``; each entry is written into a temporary folder and renamed into place,
so a killed run never leaves a half-written entry.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field

import numpy as np

from bencao.errors import PreparationError
from bencao.prep.ligands.ambertools import (
    CHARGE_METHODS,
    FORCE_FIELDS,
    find_ambertools,
    run_antechamber,
    run_parmchk2,
)
from bencao.prep.ligands.molecules import Ligand, require_rdkit
from bencao.prep.ligands.templates import forcefield_xml, reorder_mol2

CACHE_FORMAT = 1

#: Files of a cache entry (the molecule in the MOL2's atom order, and AmberTools' outputs).
ENTRY_FILES = ("molecule.sdf", "antechamber.mol2", "parmchk2.frcmod", "key.json")

#: Largest difference between the file's partial charges and the net charge, e.
FILE_CHARGE_TOLERANCE = 0.01


@dataclass
class LigandParameters:
    """A ligand's force field, ready for OpenMM's ForceField.

    Parameters
    ----------
    ligand : Ligand
    xml : str
        OpenMM force-field XML: the residue template and its (prefixed) atom types.
    files : dict
        File name -> text of what to keep beside the prepared system (``NAME.xml``,
        ``NAME.mol2``, ``NAME.frcmod``, ``NAME.sdf``).
    charge_method, forcefield : str
    seconds : float
        Wall time spent, s.
    cache_hit : bool
        Whether AmberTools was skipped.
    notes : list of str
    """

    ligand: Ligand
    xml: str
    files: dict
    charge_method: str
    forcefield: str
    seconds: float
    cache_hit: bool
    notes: list = field(default_factory=list)


def cache_folder() -> str:
    """The parameter cache's folder (see the module's docstring)."""
    if os.environ.get("BENCAO_CACHE_DIR"):
        root = os.environ["BENCAO_CACHE_DIR"]
    elif os.environ.get("XDG_CACHE_HOME"):
        root = os.path.join(os.environ["XDG_CACHE_HOME"], "bencao")
    else:
        root = os.path.join(os.path.expanduser("~"), ".cache", "bencao")
    return os.path.join(root, "ligands")


def cache_key(ligand: Ligand, charge_method: str, forcefield: str, version: str) -> dict:
    """What decides a ligand's parameters (the cache entry's name is its SHA-256)."""
    key = {"format": CACHE_FORMAT, "smiles": ligand.smiles(), "net_charge": ligand.net_charge,
           "charge_method": charge_method, "forcefield": forcefield, "ambertools": version}
    if charge_method == "file":
        key["charges"] = hashlib.sha256(
            np.round(ligand.partial_charges, 6).tobytes()).hexdigest()
    return key


def _entry_name(key: dict) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:40]


def _match_cached(ligand: Ligand, folder: str):
    """Indices into ``ligand`` of the cached molecule's atoms (its MOL2 order), or None."""
    Chem = require_rdkit()
    cached = Chem.MolFromMolFile(os.path.join(folder, "molecule.sdf"), removeHs=False)
    if cached is None or cached.GetNumAtoms() != ligand.molecule.GetNumAtoms():
        return None
    match = ligand.molecule.GetSubstructMatch(cached)
    return list(match) if len(match) == cached.GetNumAtoms() else None


def _check_file_charges(ligand: Ligand) -> None:
    charges = ligand.partial_charges
    if charges is None:
        raise PreparationError(f"{ligand.label}: --ligand-charge-method file needs partial "
                               f"charges in the ligand file (MOL2 charge column, or an SDF "
                               f"atom.dprop.PartialCharge property)")
    if abs(float(np.sum(charges)) - ligand.net_charge) > FILE_CHARGE_TOLERANCE:
        raise PreparationError(f"{ligand.label}: the file's partial charges add up to "
                               f"{np.sum(charges):+.4f} e, not the net charge "
                               f"{ligand.net_charge:+d}; fix the charges or --ligand-net-charge")


def _compute(ligand: Ligand, charge_method: str, forcefield: str, folder: str,
             sqm_keywords: str) -> None:
    """Run AmberTools for ``ligand`` in ``folder`` (the files of a cache entry land there)."""
    Chem = require_rdkit()
    tools = find_ambertools()
    sdf = os.path.join(folder, "molecule.sdf")
    Chem.MolToMolFile(ligand.molecule, sdf)
    mol2 = run_antechamber(tools, sdf, folder, ligand.label, ligand.net_charge, charge_method,
                           forcefield, sqm_keywords)
    run_parmchk2(tools, mol2, folder, ligand.label, forcefield)


def parametrize_ligand(ligand: Ligand, charge_method: str = "am1bcc", forcefield: str = "gaff2",
                       use_cache: bool = True, sqm_keywords: str = "") -> LigandParameters:
    """GAFF/GAFF2 types and charges for ``ligand``, as an OpenMM force-field XML.

    Parameters
    ----------
    ligand : Ligand
    charge_method : {"am1bcc", "am1bcc-fast", "file"}
        AM1-BCC after sqm optimises the AM1 geometry; AM1-BCC at the input geometry; or the
        partial charges of the ligand file.
    forcefield : {"gaff2", "gaff"}
    use_cache : bool
        Read and fill the parameter cache.
    sqm_keywords : str
        Extra sqm keywords (for tests).

    Returns
    -------
    LigandParameters

    Raises
    ------
    bencao.errors.PreparationError
        Unknown options, missing AmberTools, or a failing antechamber/sqm/parmchk2 run (the
        message names the ligand and the program's own diagnosis).
    """
    if charge_method not in CHARGE_METHODS:
        raise PreparationError(f"unknown ligand charge method {charge_method!r}; choose one of: "
                               f"{', '.join(CHARGE_METHODS)}")
    if forcefield not in FORCE_FIELDS:
        raise PreparationError(f"unknown ligand force field {forcefield!r}; choose one of: "
                               f"{', '.join(FORCE_FIELDS)}")
    if charge_method == "file":
        _check_file_charges(ligand)
    start = time.perf_counter()
    tools = find_ambertools()
    key = cache_key(ligand, charge_method, forcefield, tools.version)
    entry = os.path.join(cache_folder(), _entry_name(key))
    order = _match_cached(ligand, entry) if use_cache and os.path.isdir(entry) else None
    cache_hit = order is not None
    scratch = None
    if not cache_hit:
        scratch = tempfile.mkdtemp(prefix="bencao-ligand-")
        try:
            _compute(ligand, charge_method, forcefield, scratch, sqm_keywords)
            with open(os.path.join(scratch, "key.json"), "w", encoding="utf-8") as handle:
                json.dump(key, handle, indent=1, sort_keys=True)
        except BaseException:
            shutil.rmtree(scratch, ignore_errors=True)
            raise
        order = list(range(ligand.molecule.GetNumAtoms()))
        source = scratch
    else:
        source = entry
    try:
        with open(os.path.join(source, "antechamber.mol2"), encoding="utf-8") as handle:
            mol2 = reorder_mol2(handle.read(), order, ligand.atom_names, ligand.name,
                                ligand.partial_charges if charge_method == "file" else None)
        with open(os.path.join(source, "parmchk2.frcmod"), encoding="utf-8") as handle:
            frcmod = handle.read()
        if scratch is not None and use_cache:
            _store(scratch, entry)
        with tempfile.TemporaryDirectory(prefix="bencao-ligand-") as folder:
            mol2_path = os.path.join(folder, f"{ligand.name}.mol2")
            with open(mol2_path, "w", encoding="utf-8") as handle:
                handle.write(mol2)
            xml = forcefield_xml(mol2_path, os.path.join(source, "parmchk2.frcmod"),
                                 tools.parameter_file(forcefield), ligand.name)
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    files = {f"{ligand.name}.xml": xml, f"{ligand.name}.mol2": mol2,
             f"{ligand.name}.frcmod": frcmod}
    Chem = require_rdkit()
    files[f"{ligand.name}.sdf"] = Chem.MolToMolBlock(ligand.molecule) + "$$$$\n"
    seconds = time.perf_counter() - start
    how = "from the cache" if cache_hit else f"with AmberTools in {seconds:.1f} s"
    notes = [f"{ligand.label}: {forcefield} + {charge_method} charges {how}, net charge "
             f"{ligand.net_charge:+d}"]
    return LigandParameters(ligand=ligand, xml=xml, files=files, charge_method=charge_method,
                            forcefield=forcefield, seconds=seconds, cache_hit=cache_hit,
                            notes=notes)


def _store(scratch: str, entry: str) -> None:
    """Copy a finished computation into the cache atomically (a folder renamed into place)."""
    root = os.path.dirname(entry)
    try:
        os.makedirs(root, exist_ok=True)
        staging = tempfile.mkdtemp(prefix=".incoming-", dir=root)
        for name in ENTRY_FILES:
            shutil.copy2(os.path.join(scratch, name), os.path.join(staging, name))
        try:
            os.rename(staging, entry)
        except OSError:  # another process stored the same entry first: theirs is as good
            shutil.rmtree(staging, ignore_errors=True)
    except OSError:
        # a cache that cannot be written costs time, not correctness: carry on without it
        return
