"""A parametrised ligand as an OpenMM ForceField file, and as a Topology that Modeller can add.

ParmEd turns antechamber's typed MOL2 and GAFF's parameters (``gaff2.dat`` + the ``parmchk2``
frcmod) into OpenMM's force-field XML: one residue template and the bonded and Lennard-Jones
parameters of the atom types it uses, with Amber's improper ordering and 1-4 scaling (the same
as the protein force fields').  The atom types are then prefixed with the ligand's residue name:
two ligands, or a ligand and the protein force field, never share a type by accident.
"""

from __future__ import annotations

import io
import xml.etree.ElementTree as ElementTree

import numpy as np

from bencao.errors import PreparationError

#: XML attributes that hold an atom type or class in OpenMM's force-field files.
_TYPE_ATTRIBUTES = ("type", "class") + tuple(f"{kind}{i}" for kind in ("type", "class")
                                             for i in range(1, 5))


def prefixed(name: str, prefix: str) -> str:
    """Atom type ``name`` of ligand ``prefix``: ``TMP-ca``."""
    return f"{prefix}-{name}"


def _prefix_types(xml_text: str, prefix: str) -> str:
    """Rename every atom type and class in an OpenMM force-field XML to ``prefix-type``.

    Empty classes are wildcards in OpenMM's torsion definitions and stay empty.
    """
    root = ElementTree.fromstring(xml_text)
    for element in root.iter():
        if element.tag == "Type" and "name" in element.attrib:
            element.set("name", prefixed(element.get("name"), prefix))
        for attribute in _TYPE_ATTRIBUTES:
            value = element.get(attribute)
            if value:
                element.set(attribute, prefixed(value, prefix))
    ElementTree.indent(root)
    return ElementTree.tostring(root, encoding="unicode") + "\n"


def reorder_mol2(text: str, order, names, residue_name: str, charges=None) -> str:
    """A MOL2 file's molecule in another atom order, with other atom names and residue name.

    Parameters
    ----------
    text : str
        antechamber's MOL2 (one molecule, one residue).
    order : list of int
        ``order[i]`` is the new index of the file's atom ``i``.
    names : list of str
        New atom names, in the new order.
    residue_name : str
    charges : (n,) array or None
        New partial charges, e, in the new order (None keeps the file's).

    Returns
    -------
    str
        The MOL2 text; tleap reads it and finds the atoms of ``structure.pdb`` by these names.
    """
    lines = text.splitlines()
    out, section, atoms, bonds = [], None, {}, []
    for line in lines:
        if line.startswith("@<TRIPOS>"):
            section = line.strip()
            out.append(line)
            if section in ("@<TRIPOS>ATOM", "@<TRIPOS>BOND"):
                out.append(f"{{{section}}}")  # placeholder, filled below
            continue
        fields = line.split()
        if section == "@<TRIPOS>ATOM" and fields:
            new = order[int(fields[0]) - 1]
            charge = float(fields[8]) if charges is None else float(charges[new])
            atoms[new] = (f"{new + 1:7d} {names[new]:<8s}{float(fields[2]):12.4f}"
                          f"{float(fields[3]):12.4f}{float(fields[4]):12.4f} {fields[5]:<8s}"
                          f"{1:3d} {residue_name:<8s}{charge:12.6f}")
        elif section == "@<TRIPOS>BOND" and fields:
            bonds.append((order[int(fields[1]) - 1] + 1, order[int(fields[2]) - 1] + 1, fields[3]))
        elif section == "@<TRIPOS>SUBSTRUCTURE" and fields:
            out.append(line.replace(fields[1], residue_name, 1))
        elif section is None or section not in ("@<TRIPOS>ATOM", "@<TRIPOS>BOND"):
            out.append(line if not (section == "@<TRIPOS>MOLECULE" and out[-1] == section)
                       else residue_name)
    bonds.sort()
    atom_block = "\n".join(atoms[k] for k in range(len(atoms)))
    bond_block = "\n".join(f"{k + 1:6d}{a:6d}{b:6d} {kind}" for k, (a, b, kind) in enumerate(bonds))
    text = "\n".join(out) + "\n"
    return text.replace("{@<TRIPOS>ATOM}", atom_block).replace("{@<TRIPOS>BOND}", bond_block)


def forcefield_xml(mol2_path: str, frcmod_path: str, gaff_path: str, name: str) -> str:
    """The ligand's OpenMM force-field XML.

    Parameters
    ----------
    mol2_path : str
        antechamber's typed MOL2 (atom types, charges, bonds).
    frcmod_path : str
        parmchk2's frcmod (parameters GAFF lacks).
    gaff_path : str
        ``gaff2.dat`` or ``gaff.dat``.
    name : str
        Residue name of the template, and the prefix of its atom types.

    Returns
    -------
    str
        The XML text.
    """
    import parmed
    from parmed.openmm import OpenMMParameterSet

    try:
        parameters = parmed.amber.AmberParameterSet(gaff_path, frcmod_path)
        template = parmed.load_file(mol2_path)
    except Exception as exc:  # ParmEd raises many kinds on a malformed file
        raise PreparationError(f"ligand {name}: ParmEd could not read antechamber's output "
                               f"({' '.join(str(exc).split())})") from exc
    template.name = name
    forcefield = OpenMMParameterSet.from_parameterset(parameters)
    forcefield.residues[name] = template
    buffer = io.StringIO()
    forcefield.write(buffer, write_unused=False, improper_dihedrals_ordering="amber")
    return _prefix_types(buffer.getvalue(), name)


def template_charges(xml_text: str, name: str) -> np.ndarray:
    """Partial charges of residue template ``name`` in a force-field XML, e (in atom order)."""
    root = ElementTree.fromstring(xml_text)
    for residue in root.iter("Residue"):
        if residue.get("name") == name:
            return np.array([float(a.get("charge", 0.0)) for a in residue.iter("Atom")])
    raise PreparationError(f"ligand {name}: no residue template {name} in its parameters")


def residue_names_in_xml(path: str) -> list:
    """Residue template names defined in an OpenMM force-field XML file."""
    try:
        root = ElementTree.parse(path).getroot()
    except (ElementTree.ParseError, OSError) as exc:
        from bencao.errors import InputFileError

        raise InputFileError(f"{path}: not a readable force-field XML file ({exc})") from exc
    return [r.get("name") for r in root.iter("Residue") if r.get("name")]


def ligand_topology(ligand):
    """An OpenMM Topology (one chain, one residue, bonds) and positions for ``ligand``.

    Returns
    -------
    topology : openmm.app.Topology
    positions : openmm.unit.Quantity
        (n, 3) positions, nm.
    """
    from openmm import Vec3, app, unit

    topology = app.Topology()
    chain = topology.addChain(ligand.chain_id or "L")
    residue = topology.addResidue(ligand.name, chain, id=ligand.residue_id or "1")
    atoms = [topology.addAtom(name, app.Element.getBySymbol(symbol), residue)
             for name, symbol in zip(ligand.atom_names, ligand.elements)]
    orders = {1.0: app.Single, 2.0: app.Double, 3.0: app.Triple, 1.5: app.Aromatic}
    for bond in ligand.molecule.GetBonds():
        order = bond.GetBondTypeAsDouble()
        topology.addBond(atoms[bond.GetBeginAtomIdx()], atoms[bond.GetEndAtomIdx()],
                         type=orders.get(order), order=int(order) if order in (1, 2, 3) else None)
    positions = [Vec3(*map(float, p)) for p in ligand.positions_nm] * unit.nanometer
    return topology, positions
