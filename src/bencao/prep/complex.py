"""Protein–ligand complexes: ligands taken out of the structure, parametrised, and put back.

PDBFixer and the protein force fields know polymers, water and ions; a ligand would be deleted
(it has no template) or mangled (hydrogens added by rules meant for amino acids).  So ligands are
taken out of the structure before PDBFixer repairs it, rebuilt with RDKit (bond orders from a
SMILES, hydrogens with coordinates), parametrised with GAFF2/AM1-BCC, and added back to the
repaired structure with their templates loaded into the force field, before solvation.

Nothing is dropped silently: a residue without a template that is bonded into a polymer chain is
an error (removing it would leave a broken chain), removed heterogens are listed, explicitly
removed residues split their chain, and atoms closer than 0.05 nm are an error.
"""

from __future__ import annotations

import io
import logging
import os
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field

import numpy as np

from bencao.errors import PreparationError

log = logging.getLogger(__name__)

#: Atoms closer than this are a clash (bonded atoms are never closer than ~0.09 nm), nm.
CLASH_DISTANCE_NM = 0.05
#: Longest covalent link between consecutive polymer residues (peptide C-N, nucleic O3'-P), nm.
POLYMER_LINK_NM = 0.2
#: A ligand whose nearest receptor heavy atom is farther than this is probably in another frame, nm.
FAR_LIGAND_NM = 0.6

_LINKS = (("C", "N"), ("O3'", "P"))


@dataclass
class LigandOptions:
    """What the user asked about ligands (``bencao prepare --ligand...``).

    Parameters
    ----------
    files : list of str
        SDF/MOL/MOL2 files, one ligand each, coordinates in the protein's frame.
    residues : dict
        Residue name -> SMILES, for ligands already in the structure.
    charge_method : str
        "am1bcc", "am1bcc-fast" or "file".
    net_charges : dict
        Ligand residue name -> net charge override, e; the key None applies to a single ligand.
    forcefield : str
        "gaff2" or "gaff".
    params_files : list of str
        OpenMM force-field XML files written before (``ligands/NAME.xml``); residues with a
        template there are kept as they are, and ligands named like one are not parametrised.
    remove : list of str
        Residue names removed from the structure on purpose (a chain is split where one goes).
    """

    files: list = field(default_factory=list)
    residues: dict = field(default_factory=dict)
    charge_method: str = "am1bcc"
    net_charges: dict = field(default_factory=dict)
    forcefield: str = "gaff2"
    params_files: list = field(default_factory=list)
    remove: list = field(default_factory=list)

    @property
    def any(self) -> bool:
        return bool(self.files or self.residues or self.params_files or self.remove
                    or self.net_charges)


@dataclass
class StagedComplex:
    """Ligands taken out of a structure (or read from files), waiting to go back in."""

    ligands: list = field(default_factory=list)        # bencao.prep.ligands.Ligand
    kept: list = field(default_factory=list)           # (topology, positions) with own templates
    params_xml: list = field(default_factory=list)     # force-field XML texts to load
    parameters: list = field(default_factory=list)     # LigandParameters
    notes: list = field(default_factory=list)

    @property
    def names(self) -> set:
        """Residue names of the ligands to parametrise (or parametrised before)."""
        return {ligand.name for ligand in self.ligands}

    @property
    def all_names(self) -> set:
        """Residue names of every ligand, those kept with their own templates included."""
        return self.names | {next(topology.residues()).name for topology, _ in self.kept}


def describe(residue) -> str:
    """``TMP 163 (chain A)``."""
    return f"{residue.name} {residue.id} (chain {residue.chain.id})"


def _positions_nm(positions) -> np.ndarray:
    from openmm import unit

    if hasattr(positions, "value_in_unit"):
        positions = positions.value_in_unit(unit.nanometer)
    return np.array([[float(c) for c in p] for p in positions], np.float64).reshape(-1, 3)


def _rebuild(topology, positions, drop: set, split_after: set):
    """A copy of ``topology`` without the residues in ``drop``; a new chain starts after each
    residue index in ``split_after`` (so OpenMM never bonds across a removed residue)."""
    from openmm import app

    new = app.Topology()
    new.setPeriodicBoxVectors(topology.getPeriodicBoxVectors())
    xyz = _positions_nm(positions)
    kept_positions, atom_map = [], {}
    for chain in topology.chains():
        target = None
        for residue in chain.residues():
            if residue.index in drop:
                if residue.index in split_after:
                    target = None
                continue
            if target is None:
                target = new.addChain(chain.id)
            copy = new.addResidue(residue.name, target, residue.id, residue.insertionCode)
            for atom in residue.atoms():
                atom_map[atom] = new.addAtom(atom.name, atom.element, copy, atom.id)
                kept_positions.append(xyz[atom.index])
    for bond in topology.bonds():
        if bond[0] in atom_map and bond[1] in atom_map:
            new.addBond(atom_map[bond[0]], atom_map[bond[1]], bond.type, bond.order)
    return new, np.array(kept_positions).reshape(-1, 3)


def polymer_link(residue, topology, xyz, polymer_names) -> str | None:
    """How ``residue`` is bonded into a polymer chain (words), or None if it is not.

    A residue is part of a chain when it is covalently linked to a polymer neighbour in the
    chain's order (peptide C-N or nucleic O3'-P within 0.2 nm) or bonded (CONECT) to a polymer
    residue.
    """
    residues = list(residue.chain.residues())
    position = residues.index(residue)
    atoms = {a.name: a.index for a in residue.atoms()}
    for offset, (mine, theirs) in ((-1, _LINKS[0][::-1]), (1, _LINKS[0]),
                                   (-1, _LINKS[1][::-1]), (1, _LINKS[1])):
        k = position + offset
        if not 0 <= k < len(residues) or residues[k].name not in polymer_names:
            continue
        other = {a.name: a.index for a in residues[k].atoms()}
        if mine in atoms and theirs in other:
            if np.linalg.norm(xyz[atoms[mine]] - xyz[other[theirs]]) < POLYMER_LINK_NM:
                return f"bonded to {describe(residues[k])}"
    for a, b in topology.bonds():
        for mine, theirs in ((a, b), (b, a)):
            if mine.residue is residue and theirs.residue.name in polymer_names:
                return f"bonded to {describe(theirs.residue)}"
    return None


def check_unknown_residues(topology, positions, drop, polymer_names) -> None:
    """Refuse to drop a residue that is part of a polymer chain (it would leave a broken chain)."""
    xyz = _positions_nm(positions)
    for residue in drop:
        link = polymer_link(residue, topology, xyz, polymer_names)
        if link is not None:
            raise PreparationError(
                f"residue {describe(residue)} has no template and is {link} in its chain: give "
                f"its chemistry with --ligand-residue {residue.name}=SMILES (a separate "
                f"molecule), or remove it on purpose with --remove-residue {residue.name} (the "
                f"chain is then split there)")


def _take_residue_ligand(residue, xyz, smiles):
    from bencao.prep.ligands import ligand_from_residue

    atoms = list(residue.atoms())
    elements = [a.element.symbol if a.element is not None else "" for a in atoms]
    if "" in elements:
        raise PreparationError(f"residue {describe(residue)}: atoms without an element; add the "
                               f"element column (77-78) to the PDB file")
    return ligand_from_residue(
        residue.name, smiles, [a.name for a in atoms], elements,
        xyz[[a.index for a in atoms]], f"residue {describe(residue)}", chain_id=residue.chain.id,
        residue_id=residue.id)


def stage_ligands(fixer, options: LigandOptions, path: str) -> StagedComplex:
    """Take ligands out of ``fixer``'s structure and read the ligand files (in place on ``fixer``).

    Parameters
    ----------
    fixer : pdbfixer.PDBFixer
        The structure; ligand residues, and residues removed on purpose, leave its topology.
    options : LigandOptions
    path : str
        The structure file, for messages.

    Returns
    -------
    StagedComplex
    """
    from openmm import app, unit

    from bencao.prep.ligands import read_ligand_file
    from bencao.prep.ligands.templates import residue_names_in_xml

    staged = StagedComplex()
    templated = {}
    for params in options.params_files:
        names = residue_names_in_xml(params)
        if not names:
            raise PreparationError(f"{params}: no residue templates in this force-field file")
        with open(params, encoding="utf-8") as handle:
            staged.params_xml.append(handle.read())
        templated.update({name: params for name in names})
    unknown_names = sorted(set(options.remove) | set(options.residues))
    present = {r.name for r in fixer.topology.residues()}
    for name in unknown_names:
        if name not in present:
            option = "--remove-residue" if name in options.remove else "--ligand-residue"
            raise PreparationError(f"{option} {name}: {path} has no residue named {name} "
                                   f"(it has: {', '.join(sorted(present))})")
    xyz = _positions_nm(fixer.positions)
    drop, split_after = set(), set()
    for residue in fixer.topology.residues():
        if residue.name in options.remove:
            drop.add(residue.index)
            split_after.add(residue.index)
            staged.notes.append(f"removed {describe(residue)} on request")
        elif residue.name in options.residues:
            staged.ligands.append(_take_residue_ligand(
                residue, xyz, options.residues[residue.name]))
            drop.add(residue.index)
        elif residue.name in templated:
            single = app.Topology()
            chain = single.addChain(residue.chain.id)
            copy = single.addResidue(residue.name, chain, residue.id)
            mapping = {a: single.addAtom(a.name, a.element, copy) for a in residue.atoms()}
            for a, b in fixer.topology.bonds():
                if a in mapping and b in mapping:
                    single.addBond(mapping[a], mapping[b])
            positions = [xyz[a.index] for a in residue.atoms()]
            staged.kept.append((single, positions * unit.nanometer))
            drop.add(residue.index)
            staged.notes.append(f"kept {describe(residue)} with the parameters of "
                                f"{os.path.basename(templated[residue.name])}")
    for file in options.files:
        staged.ligands.append(read_ligand_file(file))
    _name_ligands_uniquely(staged.ligands, set(templated) - staged.names)
    _apply_net_charges(staged.ligands, options.net_charges)
    for ligand in staged.ligands:
        staged.notes.extend(ligand.notes)
    if drop:
        fixer.topology, kept_xyz = _rebuild(fixer.topology, fixer.positions, drop, split_after)
        fixer.positions = _as_quantity(kept_xyz)
    return staged


def _as_quantity(xyz):
    from openmm import Vec3, unit

    return [Vec3(*map(float, p)) for p in xyz] * unit.nanometer


def _apply_net_charges(ligands, net_charges: dict) -> None:
    """Override net charges: by residue name, or (key None) for the only ligand there is."""
    from bencao.prep.ligands.molecules import set_net_charge

    if None in net_charges and len(ligands) != 1:
        raise PreparationError(f"--ligand-net-charge {net_charges[None]}: there are "
                               f"{len(ligands)} ligands; say which with NAME=CHARGE")
    names = {ligand.name for ligand in ligands}
    for name in net_charges:
        if name is not None and name not in names:
            raise PreparationError(f"--ligand-net-charge {name}={net_charges[name]}: no ligand "
                                   f"is named {name} (ligands: {', '.join(sorted(names))})")
    for ligand in ligands:
        charge = net_charges.get(ligand.name, net_charges.get(None))
        if charge is not None:
            set_net_charge(ligand, charge)


def _name_ligands_uniquely(ligands, taken: set) -> None:
    """Give ligands from files that share a residue name distinct names (LIG, LI2, LI3...)."""
    seen = set(taken)
    for ligand in ligands:
        if ligand.residue_id is not None:
            seen.add(ligand.name)
    for ligand in ligands:
        if ligand.residue_id is not None:
            continue
        if ligand.name in seen:
            stem, k = ligand.name[:2], 2
            while f"{stem}{k}" in seen:
                k += 1
            ligand.notes.append(f"{ligand.label}: renamed to {stem}{k} (its name was taken)")
            ligand.name = f"{stem}{k}"
        seen.add(ligand.name)


def parametrize_staged(staged: StagedComplex, options: LigandOptions) -> None:
    """Parametrise each distinct ligand once (copies of one residue share a template)."""
    from bencao.prep.ligands import parametrize_ligand

    templated_names = {residue.get("name") for text in staged.params_xml
                       for residue in ElementTree.fromstring(text).iter("Residue")}
    done = {}
    for ligand in staged.ligands:
        if ligand.name in templated_names:
            staged.notes.append(f"{ligand.label}: parameters from --ligand-params")
            continue
        key = (ligand.name, ligand.smiles())
        if ligand.name in {k[0] for k in done} and key not in done:
            raise PreparationError(f"{ligand.label}: two different molecules are both named "
                                   f"{ligand.name}; rename one")
        if key in done:
            continue
        parameters = parametrize_ligand(ligand, options.charge_method, options.forcefield)
        done[key] = parameters
        staged.parameters.append(parameters)
        staged.notes.extend(parameters.notes)


def add_to_modeller(modeller, staged: StagedComplex) -> None:
    """Put the staged ligands (and kept templated residues) into ``modeller``."""
    from bencao.prep.ligands.templates import ligand_topology

    for ligand in staged.ligands:
        modeller.add(*ligand_topology(ligand))
    for topology, positions in staged.kept:
        modeller.add(topology, positions)


def load_templates(forcefield, staged: StagedComplex) -> None:
    """Load the ligands' force-field XML (new and reused) into an OpenMM ForceField."""
    for text in staged.params_xml + [p.xml for p in staged.parameters]:
        try:
            forcefield.loadFile(io.StringIO(text))
        except Exception as exc:  # OpenMM raises ValueError and others on clashing definitions
            raise PreparationError(f"loading ligand parameters into the force field failed: "
                                   f"{' '.join(str(exc).split())[:240]}") from exc


def check_geometry(topology, positions, ligand_names: set) -> list:
    """Refuse clashes (any two atoms closer than 0.05 nm); warn about ligands far from the rest.

    Returns
    -------
    list of str
        Warnings (a ligand whose nearest other heavy atom is more than 0.6 nm away).
    """
    from scipy.spatial import cKDTree

    xyz = _positions_nm(positions)
    atoms = list(topology.atoms())
    tree = cKDTree(xyz)
    pairs = tree.query_pairs(CLASH_DISTANCE_NM, output_type="ndarray")
    if len(pairs):
        i, j = (int(k) for k in pairs[0])
        d = float(np.linalg.norm(xyz[i] - xyz[j]))
        raise PreparationError(
            f"atoms {atoms[i].name} of {describe(atoms[i].residue)} and {atoms[j].name} of "
            f"{describe(atoms[j].residue)} are {d:.3f} nm apart ({len(pairs)} pair(s) closer than "
            f"{CLASH_DISTANCE_NM} nm): the ligand overlaps the structure; check its coordinates")
    warnings = []
    heavy = np.array([a.element is not None and a.element.symbol != "H" for a in atoms])
    for residue in topology.residues():
        if residue.name not in ligand_names:
            continue
        mine = np.array([a.index for a in residue.atoms() if heavy[a.index]])
        others = np.flatnonzero(heavy)
        others = others[~np.isin(others, [a.index for a in residue.atoms()])]
        if len(mine) == 0 or len(others) == 0:
            continue
        nearest = float(cKDTree(xyz[others]).query(xyz[mine])[0].min())
        if nearest > FAR_LIGAND_NM:
            warnings.append(f"warning: ligand {describe(residue)} is {nearest:.2f} nm from the "
                            f"nearest other heavy atom: are its coordinates in the protein's "
                            f"frame?")
            log.warning(warnings[-1])
    return warnings
