"""``bencao prepare``: from a PDB/mmCIF file (or AMBER, GROMACS, CHARMM inputs) to a System.

Writes ``system.npz``, ``state.npz``, ``structure.pdb``, ``structure.cif`` and ``system.xml``
into the output folder and prints a short summary.
"""

from __future__ import annotations

import os


def _ligand_options(args):
    """The ligand options as a LigandOptions, or None when none was given."""
    from bencao.errors import PreparationError
    from bencao.prep.complex import LigandOptions

    residues = {}
    for item in args.ligand_residue or ():
        name, _, smiles = item.partition("=")
        if not name.strip() or not smiles.strip():
            raise PreparationError(f"--ligand-residue {item}: write it as NAME=SMILES, e.g. "
                                   f"--ligand-residue TMP=Cc1ccc(C)cc1")
        residues[name.strip().upper()] = smiles.strip()
    net_charges = {}
    for item in args.ligand_net_charge or ():
        name, _, value = item.rpartition("=")
        try:
            net_charges[name.strip().upper() or None] = int(value)
        except ValueError:
            raise PreparationError(f"--ligand-net-charge {item}: give an integer charge (e.g. -1) "
                                   f"or NAME=CHARGE") from None
    options = LigandOptions(files=list(args.ligand or ()), residues=residues,
                            charge_method=args.ligand_charge_method, net_charges=net_charges,
                            forcefield=args.ligand_forcefield,
                            params_files=list(args.ligand_params or ()),
                            remove=[n.upper() for n in args.remove_residue or ()])
    return options if options.any else None


def _prepare(args) -> int:
    from bencao.prep.inputs import load_inputs
    from bencao.prep.prepare import summarize, write_prepared

    prepared = load_inputs(
        args.inputs,
        include_dir=args.gromacs_include,
        parameter_files=args.charmm_params or (),
        charmm_box=args.charmm_box,
        forcefield=args.forcefield,
        water=args.water,
        padding=args.padding,
        ionic_strength=args.ionic_strength,
        ph=args.ph,
        box_shape=args.box,
        solvate=False if args.no_solvent or args.solvent == "none" else None,
        implicit=args.gb if args.solvent == "implicit" else None,
        nonbonded_cutoff=args.cutoff,
        constraints=args.constraints,
        hydrogen_mass=args.hydrogen_mass,
        ligands=_ligand_options(args),
    )
    written = write_prepared(prepared, args.output)
    _print_summary(prepared, summarize(prepared), written)
    return 0


def _print_summary(prepared, summary: dict, written: dict) -> None:
    """A few lines: what was prepared, its size and box, what changed, and the files written."""
    ions = ", ".join(f"{name} {count}" for name, count in sorted(summary["ions"].items()))
    print(f"prepared {prepared.source}")
    print(f"  {summary['atoms']} atoms, {summary['residues']} residues, {summary['waters']} waters, "
          f"ions: {ions or 'none'}")
    if summary["box_lengths"] is None:
        print("  no periodic box (vacuum, no cutoff)")
    else:
        a, b, c = summary["box_lengths"]
        print(f"  box {a:.3f} x {b:.3f} x {c:.3f} nm, volume {summary['volume']:.1f} nm^3 (PME)")
    print(f"  total charge {summary['total_charge']:+.4f} e")
    for note in prepared.notes:
        print(f"  note: {note}")
    folder = os.path.dirname(next(iter(written.values())))
    print(f"  wrote {', '.join(written)} in {folder}")


def _number(text: str) -> float:
    """A float for argparse (range checks are the library's, with its messages)."""
    import argparse

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    return value


def register(commands) -> None:
    """Add the ``prepare`` subcommand to the ``bencao`` parser's subcommands."""
    prepare = commands.add_parser(
        "prepare", help="prepare a system from a PDB/mmCIF file or AMBER/GROMACS/CHARMM inputs",
        description="Repair, solvate and parametrise a structure (PDB, mmCIF), or load a "
                    "parametrised system (.prmtop + .inpcrd, .top + .gro, .psf + .crd + "
                    "parameters), and write it for 'bencao run'.")
    prepare.add_argument("inputs", nargs="+", metavar="IN",
                         help="a .pdb/.cif structure, or the files of a parametrised system")
    prepare.add_argument("-o", "--output", default="system",
                         help="output folder (default: system)")
    structure = prepare.add_argument_group("structures (PDB, mmCIF)")
    structure.add_argument("--forcefield", default=None,
                           help="amber14 (ff14SB), amber19 (ff19SB), charmm36, charmm36_2024 "
                                "(default: amber14)")
    structure.add_argument("--water", default=None,
                           help="water model: tip3p, opc, spce, tip4pew... (default: the force "
                                "field's own: tip3p for amber14 and charmm36, opc for amber19)")
    structure.add_argument("--padding", type=_number, default=None,
                           help="solute to box edge, nm (default: 1.0)")
    structure.add_argument("--ionic-strength", type=_number, default=None,
                           help="salt beyond neutralisation, mol/L (default: 0.15)")
    structure.add_argument("--ph", type=_number, default=None,
                           help="pH for protonation states (default: 7)")
    structure.add_argument("--box", choices=["cube", "dodecahedron", "octahedron"], default=None,
                           help="box shape (default: cube; a dodecahedron has 71%% of its volume)")
    structure.add_argument("--no-solvent", action="store_true",
                           help="do not add water and ions (vacuum, unless the input is solvated); "
                                "the same as --solvent none")
    structure.add_argument("--solvent", choices=["explicit", "implicit", "none"],
                           default="explicit",
                           help="explicit: water and ions in a periodic box (default); implicit: "
                                "Generalized Born (--gb), no water, no box; none: vacuum")
    structure.add_argument("--gb", default="obc2", choices=["hct", "obc1", "obc2", "gbn", "gbn2"],
                           help="Generalized Born model for --solvent implicit (OpenMM's "
                                "implicit/*.xml; default obc2)")
    ligands = prepare.add_argument_group(
        "ligands (GAFF2 + AM1-BCC with AmberTools; needs pip install 'bencao[ligand]')")
    ligands.add_argument("--ligand", metavar="FILE", action="append",
                         help="a ligand as SDF/MOL (explicit hydrogens) or MOL2, 3-D coordinates "
                              "in the protein's frame (repeatable)")
    ligands.add_argument("--ligand-residue", metavar="NAME=SMILES", action="append",
                         help="keep the structure's residue NAME as a ligand: bond orders and "
                              "protonation from the SMILES, hydrogens added (repeatable)")
    ligands.add_argument("--ligand-charge-method", choices=["am1bcc", "am1bcc-fast", "file"],
                         default="am1bcc",
                         help="am1bcc (sqm optimises first), am1bcc-fast (at the input "
                              "geometry) or file (the MOL2/SDF's charges); default am1bcc")
    ligands.add_argument("--ligand-net-charge", metavar="[NAME=]Q", action="append",
                         help="net charge of the ligand (default: the sum of formal charges)")
    ligands.add_argument("--ligand-forcefield", choices=["gaff2", "gaff"], default="gaff2",
                         help="general Amber force field (default: gaff2)")
    ligands.add_argument("--ligand-params", metavar="FILE.xml", action="append",
                         help="reuse ligand parameters written before (ligands/NAME.xml)")
    ligands.add_argument("--remove-residue", metavar="NAME", action="append",
                         help="remove every residue NAME on purpose (a chain is split there)")
    system = prepare.add_argument_group("every input")
    system.add_argument("--hydrogen-mass", type=_number, default=None,
                        help="mass of hydrogens on heavy atoms, amu (e.g. 1.5 for 4 fs; "
                             "default: unchanged)")
    system.add_argument("--cutoff", type=_number, default=1.0,
                        help="non-bonded cutoff, nm (default: 1.0)")
    system.add_argument("--constraints", choices=["hbonds", "allbonds", "none"], default="hbonds",
                        help="bonds held rigid (default: hbonds); water is always rigid")
    other = prepare.add_argument_group("GROMACS and CHARMM inputs")
    other.add_argument("--gromacs-include", metavar="DIR", default=None,
                       help="GROMACS topology folder for #include files (share/gromacs/top)")
    other.add_argument("--charmm-params", metavar="F", nargs="+", default=None,
                       help="CHARMM parameter and topology files (.prm, .rtf, .str)")
    other.add_argument("--charmm-box", metavar="L", nargs=3, type=_number, default=None,
                       help="periodic box lengths for a CHARMM system, nm")
    prepare.set_defaults(handler=_prepare)
