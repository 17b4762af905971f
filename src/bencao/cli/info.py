"""``bencao info FILE``: atoms, residues, terms, constraints, box and charge of a system."""

from __future__ import annotations

import os
from collections import Counter

import numpy as np

from bencao.errors import InputFileError


def _locate(path: str) -> tuple[str, str | None]:
    """(system.npz, structure or topology PDB beside it or None) for a file or folder."""
    if os.path.isdir(path):
        system = os.path.join(path, "system.npz")
        if not os.path.exists(system):
            raise InputFileError(f"{path}: no system.npz in this folder (make one with bencao prepare)")
        folder = path
    elif os.path.exists(path):
        system, folder = path, os.path.dirname(os.path.abspath(path))
    else:
        raise InputFileError(f"{path}: no such file or folder")
    for name in ("structure.pdb", "topology.pdb"):
        if os.path.exists(os.path.join(folder, name)):
            return system, os.path.join(folder, name)
    return system, None


def describe_system(system, topology=None) -> list[str]:
    """Lines describing a bencao System (and its mdtraj topology if known)."""
    from bencao.dynamics.barostat import box_volume
    from bencao.forces import Nonbonded

    lines = [f"particles     {system.n_particles} ({int(np.count_nonzero(system.masses == 0))} massless)"]
    if topology is not None:
        residues = Counter("water" if r.is_water else "protein" if r.is_protein else r.name
                           for r in topology.residues)
        parts = ", ".join(f"{count} {name}" for name, count in residues.most_common())
        lines.append(f"residues      {topology.n_residues} ({parts}) in {topology.n_chains} chains")
    lines.append("terms")
    for term in system.terms:
        sizes = [len(getattr(term, f)) for f in ("atoms", "charges", "types", "parameters")
                 if hasattr(term, f)]
        detail = ""
        if isinstance(term, Nonbonded):
            detail = (f", {term.method}, cutoff {term.cutoff:g} nm, "
                      f"{len(term.exception_atoms)} exceptions")
        if getattr(term, "expression", None):  # the custom forces: their energy expression
            detail = f", {term.expression[:60]}{'...' if len(term.expression) > 60 else ''}"
        elif getattr(term, "energy_expressions", None):  # CustomGB: its values and terms
            detail = (f", values {', '.join(term.value_names)}, "
                      f"{len(term.energy_expressions)} energy terms")
        lines.append(f"  {term.name:<24} {sizes[0] if sizes else ''}{detail}")
    lines.append(f"constraints   {len(system.constraint_atoms)}")
    if len(system.virtual_sites):
        lines.append(f"virtual sites {len(system.virtual_sites)}")
    charge = sum(float(np.sum(t.charges)) for t in system.terms if isinstance(t, Nonbonded))
    lines.append(f"total charge  {charge + 0.0 if abs(charge) >= 5e-5 else 0.0:+.4f} e")
    lines.append(f"total mass    {float(np.sum(system.masses)):.2f} amu")
    if system.box is None:
        lines.append("box           none (not periodic)")
    else:
        box = np.asarray(system.box)
        lengths = " x ".join(f"{x:.4f}" for x in np.linalg.norm(box, axis=1))
        lines.append(f"box           {lengths} nm, volume {box_volume(box):.3f} nm^3")
    return lines


def _info(args) -> int:
    from bencao.system import System

    system_path, structure = _locate(args.file)
    try:
        system = System.load(system_path)
    except ValueError as exc:
        raise InputFileError(str(exc)) from exc
    topology = None
    if structure is not None:
        import mdtraj

        topology = mdtraj.load_topology(structure)
        if topology.n_atoms != system.n_particles:
            topology = None
    print(system_path)
    for line in describe_system(system, topology):
        print(f"  {line}")
    return 0


def register(commands) -> None:
    """Add the ``info`` subcommand."""
    info = commands.add_parser("info", help="describe a prepared system (system.npz or its folder)")
    info.add_argument("file", help="system.npz, or a folder holding one (prepared or run folder)")
    info.set_defaults(handler=_info)
