"""Structure preparation: from a PDB/mmCIF file, or AMBER/GROMACS/CHARMM inputs, to a System.

A structure from the PDB is repaired with PDBFixer (internal gaps filled, non-standard residues
replaced, ligands kept or removed, missing atoms and hydrogens added), solvated with OpenMM's
Modeller and parametrised with OpenMM's ForceField.  Pre-parametrised inputs (``prmtop``/
``inpcrd``, ``top``/``gro``, ``psf`` plus parameters) are read in :mod:`bencao.prep.inputs`, which
also chooses the route by file type.  Either way the result is an
``openmm.System``, which is imported into a bencao :class:`~bencao.system.System`: the OpenMM
system stays in :class:`PreparedSystem` (and in ``system.xml``) so that every energy can be
checked against OpenMM.

Every failure a user can cause (a missing or malformed file, an unknown force field, a residue
without a template) is raised as a one-line :class:`~bencao.errors.PreparationError` or
:class:`~bencao.errors.InputFileError` naming the file or residue.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import re
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from bencao.errors import BencaoError, InputFileError, OutputError, PreparationError
from bencao.io.files import (
    atomic_write,
    describe_os_error,
    ensure_output_folder,
    save_state,
)
from bencao.prep.complex import (
    add_to_modeller,
    check_geometry,
    load_templates,
    parametrize_staged,
    stage_ligands,
)
from bencao.prep.forcefields import (
    SOLVENT_BOX,
    force_field_spec,
    make_forcefield,
    water_model,
)

log = logging.getLogger(__name__)

BOX_SHAPES = ("cube", "dodecahedron", "octahedron")
CONSTRAINTS = ("hbonds", "allbonds", "hangles", "none")
POSITIVE_IONS = ("Na+", "K+", "Li+", "Rb+", "Cs+")
NEGATIVE_IONS = ("Cl-", "Br-", "F-", "I-")

#: Residue names of water (OpenMM's PDB reader renames most of them to HOH).
WATER_RESIDUES = frozenset({"HOH", "WAT", "TIP3", "TIP4", "TIP5", "SOL", "SPC", "T3P", "T4P"})
#: Monatomic solvent ions: kept from the input (an already solvated system stays neutral).
ION_RESIDUES = frozenset({"NA", "CL", "K", "LI", "RB", "CS", "BR", "F", "IOD",
                          "SOD", "CLA", "POT", "Na+", "Cl-", "K+"})
#: Polymer residues kept by preparation: the standard amino acids and nucleotides, the Amber names
#: of protonation variants and caps (for inputs protonated elsewhere), and unknown residues (UNK,
#: N), which are part of a chain: dropping them silently would break it.
POLYMER_RESIDUES = frozenset({
    "ALA", "ARG", "ASN", "ASP", "CYS", "GLN", "GLU", "GLY", "HIS", "ILE", "LEU", "LYS", "MET",
    "PHE", "PRO", "SER", "THR", "TRP", "TYR", "VAL",
    "HID", "HIE", "HIP", "CYX", "CYM", "ASH", "GLH", "LYN", "ACE", "NME", "NH2",
    "DA", "DC", "DG", "DT", "DI", "A", "C", "G", "U", "I",
    "UNK", "N",
})

#: Volume of one water molecule in liquid water at 300 K, nm^3 (33.4 molecules per nm^3).
WATER_MOLECULE_VOLUME = 1 / 33.4

STRUCTURE_EXTENSIONS = (".pdb", ".ent", ".cif", ".mmcif", ".pdbx")
#: Options of prepare_structure that only make sense for a structure to be parametrised.
STRUCTURE_OPTIONS = ("forcefield", "water", "padding", "ionic_strength", "ph", "box_shape",
                     "solvate", "positive_ion", "negative_ion", "ligands", "implicit")
#: Generalized Born models of OpenMM's ``implicit/*.xml`` (AMBER igb 1, 2, 5, 7, 8).
IMPLICIT_MODELS = ("hct", "obc1", "obc2", "gbn", "gbn2")
#: Options every input takes (how the OpenMM system is built).
SYSTEM_OPTIONS = ("nonbonded_cutoff", "constraints", "hydrogen_mass")


@dataclass
class PreparedSystem:
    """A prepared system: ours, OpenMM's, and the coordinates they belong to.

    Parameters
    ----------
    system : bencao.System
        The system imported from ``openmm_system``.
    openmm_system : openmm.System
        The system OpenMM built (kept to compare energies with OpenMM).
    topology : openmm.app.Topology
        Chains, residues, atoms and bonds, in particle order.
    positions : (N, 3) float64 array
        Positions, nm, virtual sites placed.
    box : (3, 3) float64 array or None
        Periodic box vectors as rows, nm, in OpenMM's reduced form; None without periodicity.
    source : str
        What was prepared and how (input files, force field, water model).
    notes : tuple of str
        What preparation changed or ignored (residues removed, gaps filled, options ignored).
    ligand_files : dict
        File name -> text of each ligand's parameters (``NAME.xml`` force field, antechamber's
        ``NAME.mol2``, parmchk2's ``NAME.frcmod``, ``NAME.sdf``), written to ``ligands/``.
    ligand_names : tuple of str
        Residue names of the ligands.
    """

    system: object
    openmm_system: object
    topology: object
    positions: np.ndarray
    box: np.ndarray | None
    source: str = ""
    notes: tuple = ()
    ligand_files: dict = field(default_factory=dict)
    ligand_names: tuple = ()


# ------------------------------------------------------------------ small helpers


def _one_line(exc: BaseException, limit: int = 300) -> str:
    """An exception's message on one line, shortened to ``limit`` characters."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _existing_file(path) -> str:
    """``path`` as a string, after checking that it is a readable file."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise InputFileError(f"{path}: no such file")
    if not os.path.isfile(path):
        raise InputFileError(f"{path}: not a file")
    if not os.access(path, os.R_OK):
        raise InputFileError(f"{path}: permission denied")
    return path


def _extension(path) -> str:
    return os.path.splitext(os.fspath(path))[1].lower()


@contextlib.contextmanager
def _seeded_random(seed: int):
    """Seed Python's ``random`` (Modeller places ions with it) and restore its state afterwards.

    The same input then gives the same prepared system, without changing the random stream of
    anything else in the process.
    """
    state = random.getstate()
    random.seed(seed)
    try:
        yield
    finally:
        random.setstate(state)


def _system_options(nonbonded_cutoff, constraints, hydrogen_mass, periodic: bool) -> dict:
    """Keyword arguments for OpenMM's ``createSystem`` (any of its readers), checked.

    Parameters
    ----------
    nonbonded_cutoff : float
        Cutoff, nm (PME real space for periodic systems; unused without periodicity).
    constraints : str or None
        "hbonds", "allbonds", "hangles" or "none".
    hydrogen_mass : float or None
        Mass of hydrogens bonded to heavy atoms, amu; None keeps the force field's masses.
    periodic : bool
        PME if True, no cutoff otherwise.
    """
    from openmm import app, unit

    try:
        cutoff = float(nonbonded_cutoff)
    except (TypeError, ValueError):
        cutoff = float("nan")
    if not cutoff > 0:
        raise PreparationError(f"the non-bonded cutoff must be a positive length in nm, "
                               f"got {nonbonded_cutoff!r}")
    key = "none" if constraints is None else str(constraints).strip().lower()
    if key not in CONSTRAINTS:
        raise PreparationError(f"unknown constraints {constraints!r}; choose one of: "
                               f"{', '.join(CONSTRAINTS)}")
    options = {
        "nonbondedMethod": app.PME if periodic else app.NoCutoff,
        "nonbondedCutoff": cutoff * unit.nanometer,
        "constraints": {"hbonds": app.HBonds, "allbonds": app.AllBonds,
                        "hangles": app.HAngles, "none": None}[key],
        "rigidWater": True,
    }
    if hydrogen_mass is not None:
        try:
            mass = float(hydrogen_mass)
        except (TypeError, ValueError):
            mass = float("nan")
        if not mass > 0:
            raise PreparationError(f"the hydrogen mass must be positive (amu), got {hydrogen_mass!r}")
        options["hydrogenMass"] = mass * unit.amu
    return options


def _check_solvent_options(padding, ionic_strength, box_shape, positive_ion, negative_ion,
                           ph) -> None:
    """Check the solvation options before any work is done, so that mistakes fail at once."""
    for name, value in (("padding", padding), ("ionic strength", ionic_strength)):
        if not (isinstance(value, (int, float, np.floating)) and np.isfinite(value) and value >= 0):
            raise PreparationError(f"the {name} must be a number >= 0, got {value!r}")
    if box_shape not in BOX_SHAPES:
        raise PreparationError(f"unknown box shape {box_shape!r}; choose one of: "
                               f"{', '.join(BOX_SHAPES)}")
    if positive_ion not in POSITIVE_IONS:
        raise PreparationError(f"unknown positive ion {positive_ion!r}; choose one of: "
                               f"{', '.join(POSITIVE_IONS)}")
    if negative_ion not in NEGATIVE_IONS:
        raise PreparationError(f"unknown negative ion {negative_ion!r}; choose one of: "
                               f"{', '.join(NEGATIVE_IONS)}")
    if not (isinstance(ph, (int, float, np.floating)) and 0 <= ph <= 14):
        raise PreparationError(f"the pH must be a number between 0 and 14, got {ph!r}")


_TEMPLATE_ERROR = re.compile(
    r"(No template found|Multiple non-identical matching templates found|"
    r"Multiple matching templates found) for residue (\d+) \(([^)]*)\)"
)


def _template_error(exc: Exception, topology, forcefield_name: str):
    """A one-line PreparationError for OpenMM's template errors, or None for other errors.

    OpenMM names the residue by its index in the topology; users know it by name, number and
    chain, so the residue is looked up.
    """
    text = str(exc)
    match = _TEMPLATE_ERROR.search(text)
    if match is None:
        return None
    kind, index, name = match.group(1), int(match.group(2)), match.group(3)
    residues = list(topology.residues())
    where = f"residue {name}"
    if index < len(residues) and residues[index].name == name:
        residue = residues[index]
        where = f"residue {name} {residue.id} (chain {residue.chain.id})"
    if kind != "No template found":
        return PreparationError(f"{where} matches several templates in {forcefield_name}; "
                                f"rename it to the variant you mean (e.g. HID/HIE/HIP)")
    # OpenMM's first sentence of diagnosis ("...is missing 1 H atom") helps with damaged residues
    diagnosis = text[match.end():].strip(" .").split(".  ")[0].split(" For more information")[0]
    hint = f" (OpenMM: {' '.join(diagnosis.split())})" if diagnosis else ""
    return PreparationError(f"{where} has no template in {forcefield_name}: a ligand needs "
                            f"parameters (--ligand-residue {name}=SMILES for GAFF2/AM1-BCC, or "
                            f"--ligand-params FILE.xml), or remove it with --remove-residue "
                            f"{name}{hint}")


@contextlib.contextmanager
def _openmm_errors(topology, forcefield_name: str, what: str):
    """Turn OpenMM's errors from Modeller and ForceField into one-line PreparationErrors.

    OpenMM raises ValueError for template problems and plain Exception for others ("Cannot
    neutralize the system..."), so everything but our own errors is translated.
    """
    try:
        yield
    except BencaoError:
        raise
    except Exception as exc:
        error = _template_error(exc, topology, forcefield_name)
        if error is None:
            error = PreparationError(f"{what} with {forcefield_name} failed: {_one_line(exc)}")
        raise error from exc


# ------------------------------------------------------------------ structures (PDB, mmCIF)


def _read_structure(path: str):
    """A PDBFixer holding the structure in ``path`` (PDB or PDBx/mmCIF, by extension).

    PDBFixer relaxes the hydrogens it adds with a short OpenMM minimisation, run on OpenMM's
    Reference platform so that its result does not depend on the machine's threads.
    """
    import openmm
    from pdbfixer import PDBFixer

    kind = "PDB" if _extension(path) in (".pdb", ".ent") else "PDBx/mmCIF"
    try:
        return PDBFixer(filename=path, platform=openmm.Platform.getPlatformByName("Reference"))
    except Exception as exc:  # the readers fail with IndexError, AssertionError... on junk
        detail = _one_line(exc, 120)
        detail = "" if detail in ("Structure contains no atoms.", type(exc).__name__) else f" ({detail})"
        raise InputFileError(f"{path}: no atoms could be read; is it a {kind} file?{detail}") from exc


def _drop_terminal_gaps(fixer) -> None:
    """Keep only the internal gaps in ``fixer.missingResidues``.

    Residues missing at a chain's ends are usually disordered tails that were never resolved;
    building them would add long, unstructured chains, so the standard recipe leaves them out.
    """
    chains = list(fixer.topology.chains())
    for chain_index, position in list(fixer.missingResidues):
        length = len(list(chains[chain_index].residues()))
        if position == 0 or position == length:
            del fixer.missingResidues[(chain_index, position)]


def _remove_heterogens(fixer) -> list[str]:
    """Delete every residue that is not polymer, water or a solvent ion; return what went.

    Ligands, cofactors and bound metals need parameters the protein force fields do not have;
    they are removed (and reported) rather than failing later without a template.  A residue
    bonded into a polymer chain is an error instead: removing it would break the chain.
    """
    from openmm import app

    from bencao.prep.complex import check_unknown_residues

    keep = POLYMER_RESIDUES | WATER_RESIDUES | ION_RESIDUES
    drop = [r for r in fixer.topology.residues() if r.name not in keep]
    check_unknown_residues(fixer.topology, fixer.positions, drop, POLYMER_RESIDUES)
    if drop:
        modeller = app.Modeller(fixer.topology, fixer.positions)
        modeller.delete(drop)
        fixer.topology, fixer.positions = modeller.topology, modeller.positions
    return [f"{r.name} {r.id} (chain {r.chain.id})" for r in drop]


def _fix_structure(fixer, ph: float, path: str) -> list[str]:
    """Repair the structure in ``fixer`` in place; return notes on what changed."""
    notes = []
    try:
        fixer.findMissingResidues()
        _drop_terminal_gaps(fixer)
        filled = sum(len(names) for names in fixer.missingResidues.values())
        if filled:
            notes.append(f"filled {len(fixer.missingResidues)} gap(s) with {filled} residue(s)")
        fixer.findNonstandardResidues()
        if fixer.nonstandardResidues:
            notes.append("replaced non-standard residues: " + ", ".join(
                f"{r.name} {r.id} -> {new}" for r, new in fixer.nonstandardResidues))
        fixer.replaceNonstandardResidues()
        removed = _remove_heterogens(fixer)
        if removed:
            notes.append(f"removed {len(removed)} heterogen residue(s) without parameters: "
                         + ", ".join(removed[:10]) + (" ..." if len(removed) > 10 else ""))
        fixer.findMissingAtoms()
        fixer.addMissingAtoms(seed=0)
        fixer.addMissingHydrogens(ph)
    except BencaoError:
        raise
    except Exception as exc:  # PDBFixer fails with assorted exception types
        raise PreparationError(f"{path}: PDBFixer could not repair the structure: "
                               f"{_one_line(exc)}") from exc
    for note in notes:
        log.info("%s: %s", path, note)
    return notes


def _has_water(topology) -> bool:
    return any(residue.name in WATER_RESIDUES for residue in topology.residues())


def _input_box(topology, cutoff: float):
    """The input's own periodic box if the input is an already solvated system, else None.

    NMR entries carry a dummy 1 Å CRYST1 record, and a crystal structure's unit cell with a few
    hundred crystal waters is no box for a protein in vacuum.  So the box is used only if water
    fills at least half of it and it is wider than twice the cutoff.
    """
    from openmm import unit

    vectors = topology.getPeriodicBoxVectors()
    if vectors is None:
        return None
    box = np.array(vectors.value_in_unit(unit.nanometer), np.float64)
    n_water = sum(residue.name in WATER_RESIDUES for residue in topology.residues())
    if n_water * WATER_MOLECULE_VOLUME < 0.5 * abs(np.linalg.det(box)):
        return None
    if np.min(np.diag(box)) <= 2 * cutoff:
        return None
    return box


def _solvate(modeller, forcefield, forcefield_name: str, water: str, padding: float,
             ionic_strength: float, box_shape: str, positive_ion: str, negative_ion: str) -> None:
    """Fill a box around the structure with water and ions (neutral, at ``ionic_strength`` M)."""
    from openmm import unit

    with _openmm_errors(modeller.topology, forcefield_name, "solvating the structure"):
        if SOLVENT_BOX[water] != "tip3p" and _has_water(modeller.topology):
            # crystal waters need the model's extra sites before the force field can match them
            modeller.addExtraParticles(forcefield)
        with _seeded_random(0):
            modeller.addSolvent(forcefield, model=SOLVENT_BOX[water], padding=padding * unit.nanometer,
                                ionicStrength=ionic_strength * unit.molar, neutralize=True,
                                boxShape=box_shape, positiveIon=positive_ion,
                                negativeIon=negative_ion)


def prepare_structure(path, forcefield: str = "amber14", water: str | None = None,
                      padding: float = 1.0, ionic_strength: float = 0.15, ph: float = 7.0,
                      box_shape: str = "cube", hydrogen_mass: float | None = None,
                      nonbonded_cutoff: float = 1.0, constraints: str | None = "hbonds",
                      solvate: bool = True, positive_ion: str = "Na+",
                      negative_ion: str = "Cl-", ligands=None,
                      implicit: str | None = None) -> PreparedSystem:
    """Repair, solvate and parametrise a structure from a PDB or PDBx/mmCIF file.

    Parameters
    ----------
    path : str or path-like
        A ``.pdb`` (or ``.ent``) or ``.cif``/``.mmcif``/``.pdbx`` file.
    forcefield : str
        ``amber14`` (``ff14SB``), ``amber19`` (``ff19SB``), ``charmm36``, ``charmm36_2024``.
    water : str or None
        Water model; None for the force field's recommended one (see
        :func:`bencao.prep.forcefields.force_field_files`).
    padding : float
        Minimum distance from the solute to the box edge, nm.
    ionic_strength : float
        Salt added beyond neutralisation, mol/L.
    ph : float
        pH at which protonation states are chosen.
    box_shape : str
        "cube", "dodecahedron" (71% of the cube's volume) or "octahedron" (77%).
    hydrogen_mass : float or None
        Mass of hydrogens bonded to heavy atoms, amu (1.5 for 4 fs steps); water is unchanged.
    nonbonded_cutoff : float
        Non-bonded cutoff, nm (PME real space).
    constraints : str or None
        "hbonds", "allbonds", "hangles" or "none"; water is rigid in any case.
    solvate : bool
        Add water and ions in a periodic box (PME).  If False, the system is in vacuum (no
        cutoff), unless the input is already solvated (water fills at least half of its CRYST1
        box, which is wider than twice the cutoff): that box is then kept (PME).
    positive_ion, negative_ion : str
        Ions added: "Na+", "K+", "Li+", "Rb+", "Cs+"; "Cl-", "Br-", "F-", "I-".
    ligands : bencao.prep.complex.LigandOptions or None
        Ligands to keep or add (files, residues of the structure with their SMILES), their
        charge method and force field (GAFF2/AM1-BCC by default), residues to remove on purpose.
    implicit : str or None
        A Generalized Born model of :data:`IMPLICIT_MODELS` (OpenMM's ``implicit/<model>.xml``,
        AMBER force fields): the structure's waters are removed, nothing is added, no box, no
        cutoff.  ``water``, ``padding``, ``ionic_strength`` and ``box_shape`` do not apply.

    Returns
    -------
    PreparedSystem

    Raises
    ------
    bencao.errors.InputFileError
        If the file is missing or no atoms can be read from it.
    bencao.errors.PreparationError
        For an unknown force field, water model, box shape or ion, a negative padding or ionic
        strength, or a residue the force field has no template for.

    Notes
    -----
    PDBFixer fills internal gaps (not missing termini), replaces non-standard residues (MSE ->
    MET...), removes the ligands, cofactors and bound metals that ``ligands`` does not keep
    (listed in ``notes``; one bonded into a polymer chain is an error), keeps water and solvent
    ions, and adds missing heavy atoms and hydrogens.  Ligands are taken out before and put back
    after (see :mod:`bencao.prep.complex`).  Ions are placed with a fixed seed.
    """
    from openmm import app, unit

    path = _existing_file(path)
    spec = force_field_spec(forcefield)
    water = water_model(spec.name, water)
    _check_solvent_options(padding, ionic_strength, box_shape, positive_ion, negative_ion, ph)
    _system_options(nonbonded_cutoff, constraints, hydrogen_mass, True)  # fail before the work
    if implicit is not None:
        implicit = _implicit_model(implicit, spec.name)
        openmm_forcefield = app.ForceField(*spec.files, f"implicit/{implicit}.xml")
        solvate = False
    else:
        openmm_forcefield = make_forcefield(spec.name, water)

    fixer = _read_structure(path)
    staged = stage_ligands(fixer, ligands, path) if ligands is not None and ligands.any else None
    with _seeded_random(0):  # Modeller.addHydrogens starts hydrogens in random directions
        notes = _fix_structure(fixer, float(ph), path)
    modeller = app.Modeller(fixer.topology, fixer.positions)
    label = f"{spec.name}/{water}" if implicit is None else f"{spec.name}/{implicit}"
    if implicit is not None and _has_water(modeller.topology):
        modeller.deleteWater()
        notes = notes + ["removed the structure's waters (implicit solvent)"]
    if staged is not None:
        parametrize_staged(staged, ligands)
        notes = staged.notes + notes
        label += " + " + ligands.forcefield
        add_to_modeller(modeller, staged)
        load_templates(openmm_forcefield, staged)
        notes += check_geometry(modeller.topology, modeller.positions, staged.all_names)
    if solvate:
        _solvate(modeller, openmm_forcefield, label, water, float(padding), float(ionic_strength),
                 box_shape, positive_ion, negative_ion)
        periodic = True
    elif implicit is not None:
        modeller.topology.setPeriodicBoxVectors(None)
        periodic = False
    else:
        box = _input_box(modeller.topology, float(nonbonded_cutoff))
        periodic = box is not None
        if not periodic:
            modeller.topology.setPeriodicBoxVectors(None)
        if SOLVENT_BOX[water] != "tip3p" and _has_water(modeller.topology):
            with _openmm_errors(modeller.topology, label, "adding water extra sites"):
                modeller.addExtraParticles(openmm_forcefield)
    options = _system_options(nonbonded_cutoff, constraints, hydrogen_mass, periodic)
    with _openmm_errors(modeller.topology, label, "building the system"):
        openmm_system = openmm_forcefield.createSystem(modeller.topology, **options)
    positions = modeller.getPositions().value_in_unit(unit.nanometer)
    solvent = water if implicit is None else f"{implicit} implicit solvent"
    source = f"{os.path.basename(path)} with {spec.name} + {solvent}"
    prepared = _finish(openmm_system, modeller.topology, positions, options, source, notes)
    if staged is not None:
        prepared.source += f" + {', '.join(sorted(staged.names))} ({ligands.forcefield})" \
            if staged.names else ""
        prepared.ligand_files = {name: text for p in staged.parameters
                                 for name, text in p.files.items()}
        prepared.ligand_names = tuple(sorted(staged.all_names))
    return prepared


def _implicit_model(model: str, forcefield: str) -> str:
    """``model`` checked: one of :data:`IMPLICIT_MODELS`, with an AMBER force field."""
    key = str(model).strip().lower()
    if key not in IMPLICIT_MODELS:
        raise PreparationError(f"unknown implicit-solvent model {model!r}; choose one of: "
                               f"{', '.join(IMPLICIT_MODELS)}")
    if not forcefield.startswith("amber"):
        raise PreparationError(f"implicit solvent ({key}) is parametrised for AMBER force "
                               f"fields; use --forcefield amber14 or amber19, not {forcefield}")
    return key


# ------------------------------------------------------------------ common end of every route


def _box_of(openmm_system):
    """The system's default box, (3, 3) nm, or None if it is not periodic."""
    from openmm import unit

    if not openmm_system.usesPeriodicBoundaryConditions():
        return None
    vectors = openmm_system.getDefaultPeriodicBoxVectors()
    return np.array([v.value_in_unit(unit.nanometer) for v in vectors], np.float64).reshape(3, 3)


def _finish(openmm_system, topology, positions, options: dict, source: str,
            notes=()) -> PreparedSystem:
    """Import the OpenMM system, place virtual sites, check the box; a PreparedSystem."""
    from openmm import unit

    from bencao.backends.common.virtual_site_tables import place_virtual_sites
    from bencao.io.openmm_import import UnsupportedForceError
    from bencao.system import System

    try:
        system = System.from_openmm(openmm_system)
    except UnsupportedForceError as exc:
        raise PreparationError(f"{source}: {_one_line(exc)}") from exc
    if hasattr(positions, "value_in_unit"):
        positions = positions.value_in_unit(unit.nanometer)
    xyz = np.array([[float(c) for c in p] for p in positions], np.float64).reshape(-1, 3)
    if len(xyz) != system.n_particles:
        raise PreparationError(f"{source}: the coordinates have {len(xyz)} atoms but the topology "
                               f"has {system.n_particles}; are they of the same system?")
    # solvent boxes come with one water model's geometry of extra sites: place them for this one
    if len(system.virtual_sites.site):
        place_virtual_sites(system.virtual_sites, xyz)
    box = _box_of(openmm_system)
    if box is not None:
        cutoff = options["nonbondedCutoff"].value_in_unit(unit.nanometer)
        # rows of a reduced box have their perpendicular widths on the diagonal
        if np.min(np.diag(box)) < 2 * cutoff:
            raise PreparationError(f"{source}: the box ({np.min(np.diag(box)):.3f} nm wide) is "
                                   f"smaller than twice the cutoff ({cutoff:g} nm); use a "
                                   f"larger box or a shorter cutoff")
    return PreparedSystem(system=system, openmm_system=openmm_system, topology=topology,
                          positions=xyz, box=box, source=source, notes=tuple(notes))


def _read_with(reader, path: str, kind: str, *args, **kwargs):
    """``reader(path, ...)``, with any failure to parse reported as a one-line InputFileError."""
    try:
        return reader(path, *args, **kwargs)
    except BencaoError:
        raise
    except Exception as exc:  # OpenMM's readers fail with assorted exception types
        raise InputFileError(f"{path}: not a readable {kind} file ({_one_line(exc, 160)})") from exc


def _create(topology_file, source: str, options: dict, *args, **extra):
    """``topology_file.createSystem(*args, **options, **extra)`` with one-line errors."""
    try:
        return topology_file.createSystem(*args, **options, **extra)
    except BencaoError:
        raise
    except Exception as exc:
        raise PreparationError(f"{source}: OpenMM could not build the system: "
                               f"{_one_line(exc)}") from exc


# ------------------------------------------------------------------ output


#: Files written by write_prepared, in the order they are written: system.npz goes last, so that
#: its presence means the whole set was written.
OUTPUT_FILES = ("structure.pdb", "structure.cif", "system.xml", "state.npz", "system.npz")


def write_prepared(prepared: PreparedSystem, folder) -> dict[str, str]:
    """Write a prepared system to ``folder``, every file atomically.

    Parameters
    ----------
    prepared : PreparedSystem
    folder : str or path-like
        Created if needed.

    Returns
    -------
    dict
        File name -> path: ``system.npz`` (bencao System), ``state.npz`` (positions and box),
        ``structure.pdb`` and ``structure.cif`` (topology and positions), ``system.xml`` (the
        OpenMM system, serialised, to compare with OpenMM), and ``ligands/NAME.xml`` (reuse
        with ``--ligand-params``), ``.mol2``, ``.frcmod``, ``.sdf`` for each ligand.

    Raises
    ------
    bencao.errors.OutputError
        If the folder or a file cannot be written.  Files already written stay (each complete).
    """
    import openmm
    from openmm import app, unit

    folder = ensure_output_folder(folder)
    paths = {name: os.path.join(folder, name) for name in OUTPUT_FILES}
    positions = prepared.positions * unit.nanometer
    with atomic_write(paths["structure.pdb"], "w") as handle:
        app.PDBFile.writeFile(prepared.topology, positions, handle, keepIds=True)
    with atomic_write(paths["structure.cif"], "w") as handle:
        app.PDBxFile.writeFile(prepared.topology, positions, handle, keepIds=True)
    with atomic_write(paths["system.xml"], "w") as handle:
        handle.write(openmm.XmlSerializer.serialize(prepared.openmm_system))
    save_state(paths["state.npz"], prepared.positions, prepared.box)
    if prepared.ligand_files:
        ligand_folder = ensure_output_folder(os.path.join(folder, "ligands"))
        for name, text in sorted(prepared.ligand_files.items()):
            paths[f"ligands/{name}"] = os.path.join(ligand_folder, name)
            with atomic_write(paths[f"ligands/{name}"], "w") as handle:
                handle.write(text)
    try:
        prepared.system.save(paths["system.npz"])
    except OSError as exc:
        raise OutputError(describe_os_error(exc, paths["system.npz"])) from exc
    return paths


def summarize(prepared: PreparedSystem) -> dict:
    """Counts and totals of a prepared system, for reports.

    Returns
    -------
    dict
        ``atoms``, ``residues``, ``waters``, ``ions`` (residue name -> count), ``box_lengths``
        (3 floats, nm, or None), ``volume`` (nm^3 or None), ``total_charge`` (e).
    """
    from bencao.forces import Nonbonded

    residues = list(prepared.topology.residues())
    charge = sum(float(np.sum(term.charges)) for term in prepared.system.terms
                 if isinstance(term, Nonbonded))
    box = prepared.box
    return {
        "atoms": prepared.system.n_particles,
        "residues": len(residues),
        "waters": sum(r.name in WATER_RESIDUES for r in residues),
        "ions": dict(Counter(r.name for r in residues if r.name in ION_RESIDUES)),
        "box_lengths": None if box is None else [float(x) for x in np.linalg.norm(box, axis=1)],
        "volume": None if box is None else float(abs(np.linalg.det(box))),
        "total_charge": charge,
    }
