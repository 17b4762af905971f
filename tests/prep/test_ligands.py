"""Ligands: read and checked with RDKit, typed and charged by AmberTools, cached, and placed in a
prepared complex whose energies are tleap's and OpenMM Reference's; bad input fails in one line.

The complex is T4 lysozyme L99A with p-xylene (PDB 187L), shipped in the package's data.
"""

import copy
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import openmm as mm
import pytest
from openmm import app, unit
from reference import (
    FORCE_FLOOR,
    PARITY,
    check_against_openmm,
    data_path,
    force_agreement,
    openmm_evaluation,
)

pytest.importorskip("rdkit", reason="ligands need RDKit (pip install 'bencao[ligand]')")
pytest.importorskip("parmed", reason="ligands need ParmEd (pip install 'bencao[ligand]')")

from rdkit import Chem  # noqa: E402
from rdkit.Chem import AllChem  # noqa: E402

import bencao  # noqa: E402
from bencao.errors import InputFileError, PreparationError  # noqa: E402
from bencao.prep import prepare_structure, write_prepared  # noqa: E402
from bencao.prep.complex import LigandOptions  # noqa: E402
from bencao.prep.forcefields import make_forcefield  # noqa: E402
from bencao.prep.ligands import (  # noqa: E402
    find_ambertools,
    ligand_from_residue,
    parametrize_ligand,
    read_ligand_file,
)
from bencao.prep.ligands.templates import template_charges  # noqa: E402

try:
    AMBERTOOLS = find_ambertools()
except PreparationError as exc:  # pragma: no cover - CI installs the ligand extra
    pytest.skip(str(exc), allow_module_level=True)

COMPLEX = data_path("t4l-l99a-pxylene.pdb")
PXYLENE = data_path("pxylene.sdf")
PXYLENE_SMILES = "Cc1ccc(C)cc1"


@pytest.fixture(scope="module", autouse=True)
def private_cache(tmp_path_factory):
    """Every test module starts from an empty parameter cache of its own."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BENCAO_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        yield


def one_line(exc_info, *fragments):
    message = str(exc_info.value)
    assert "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, message


def write_sdf(molecule, path) -> str:
    writer = Chem.SDWriter(str(path))
    writer.write(molecule)
    writer.close()
    return str(path)


def pxylene():
    return Chem.MolFromMolFile(PXYLENE, removeHs=False)


def shifted(molecule, offset_angstrom):
    moved = Chem.Mol(molecule)
    conformer = moved.GetConformer()
    for i in range(moved.GetNumAtoms()):
        p = conformer.GetAtomPosition(i)
        conformer.SetAtomPosition(i, (p.x + offset_angstrom[0], p.y + offset_angstrom[1],
                                      p.z + offset_angstrom[2]))
    return moved


# ------------------------------------------------------------------ reading and checking


def test_sdf_ligand_is_read_with_names_and_net_charge():
    ligand = read_ligand_file(PXYLENE)
    assert ligand.name == "LIG" and ligand.net_charge == 0
    assert ligand.elements.count("H") == 10 and ligand.elements.count("C") == 8
    assert len(set(ligand.atom_names)) == 18
    # coordinates stay in the protein's frame (Å in the file, nm here)
    assert np.allclose(ligand.positions_nm[0], [4.1249, 4.4585, 1.8477])


def test_residue_ligand_takes_its_chemistry_from_the_smiles():
    pdb = app.PDBFile(COMPLEX)
    (residue,) = [r for r in pdb.topology.residues() if r.name == "TMP"]
    xyz = np.array(pdb.positions.value_in_unit(unit.nanometer))
    atoms = list(residue.atoms())
    ligand = ligand_from_residue("TMP", PXYLENE_SMILES, [a.name for a in atoms],
                                 [a.element.symbol for a in atoms], xyz[[a.index for a in atoms]],
                                 "residue TMP 163 (chain A)")
    assert ligand.elements.count("H") == 10 and ligand.net_charge == 0
    # every heavy atom keeps its name and its crystal position
    by_name = {a.name: xyz[a.index] for a in atoms}
    for name, position in zip(ligand.atom_names, ligand.positions_nm):
        if name in by_name:
            np.testing.assert_allclose(position, by_name[name], atol=1e-9)
    assert Chem.MolToSmiles(Chem.RemoveHs(ligand.molecule)) == Chem.CanonSmiles(PXYLENE_SMILES)


def zinc_sdf(tmp_path):
    molecule = Chem.AddHs(Chem.MolFromSmiles("C[Zn]C"))
    AllChem.EmbedMolecule(molecule, randomSeed=1)
    return write_sdf(molecule, tmp_path / "zinc.sdf")


def no_hydrogen_sdf(tmp_path):
    return write_sdf(Chem.RemoveHs(pxylene()), tmp_path / "bare.sdf")


def flat_sdf(tmp_path):
    molecule = Chem.AddHs(Chem.MolFromSmiles(PXYLENE_SMILES))
    AllChem.Compute2DCoords(molecule)
    return write_sdf(molecule, tmp_path / "flat.sdf")


def two_molecules_sdf(tmp_path):
    path = tmp_path / "two.sdf"
    writer = Chem.SDWriter(str(path))
    writer.write(pxylene())
    writer.write(pxylene())
    writer.close()
    return str(path)


def bad_valence_sdf(tmp_path):
    lines = Path(PXYLENE).read_text().splitlines()
    # a fourth bond on an aromatic carbon: carbon 2 bonded to hydrogen 9 of carbon 1's methyl
    counts = lines[3]
    lines[3] = f"{int(counts[:3]):3d}{int(counts[3:6]) + 1:3d}" + counts[6:]
    bonds_end = next(i for i, line in enumerate(lines) if line.startswith("M  END"))
    lines.insert(bonds_end, "  2 16  1  0")
    path = tmp_path / "valence.sdf"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def junk_sdf(tmp_path):
    path = tmp_path / "junk.sdf"
    path.write_text("this is not a molecule\n")
    return str(path)


@pytest.mark.parametrize("make, error, fragments", [
    (no_hydrogen_sdf, PreparationError, ("bare.sdf", "has no hydrogens", "--ligand-residue")),
    (zinc_sdf, PreparationError, ("zinc.sdf", "element Zn", "GAFF")),
    (flat_sdf, PreparationError, ("flat.sdf", "2-D")),
    (two_molecules_sdf, InputFileError, ("two.sdf", "2 molecules")),
    (junk_sdf, InputFileError, ("junk.sdf", "could not read a molecule")),
    (bad_valence_sdf, InputFileError, ("valence.sdf", "valence")),
])
def test_bad_ligand_files_fail_in_one_line(tmp_path, make, error, fragments):
    with pytest.raises(error) as exc_info:
        read_ligand_file(make(tmp_path))
    one_line(exc_info, *fragments)


def test_a_net_charge_that_leaves_an_odd_electron_count_is_refused():
    with pytest.raises(PreparationError) as exc_info:
        read_ligand_file(PXYLENE, net_charge=1)
    one_line(exc_info, "pxylene.sdf", "+1", "odd number of electrons")


def test_smiles_that_does_not_match_the_residue_names_it():
    with pytest.raises(PreparationError) as exc_info:
        prepare_structure(COMPLEX, solvate=False,
                          ligands=LigandOptions(residues={"TMP": "Cc1ccccc1"}))  # toluene
    one_line(exc_info, "TMP 163 (chain A)", "C8", "C7", "Cc1ccccc1")


def test_ligand_residue_absent_from_the_structure_is_named():
    with pytest.raises(PreparationError) as exc_info:
        prepare_structure(COMPLEX, solvate=False,
                          ligands=LigandOptions(residues={"XYZ": PXYLENE_SMILES}))
    one_line(exc_info, "--ligand-residue XYZ", "no residue named XYZ")


# ------------------------------------------------------------------ parametrisation


def test_parameters_are_cached_whatever_the_atom_order():
    ligand = read_ligand_file(PXYLENE)
    first = parametrize_ligand(ligand)
    assert not first.cache_hit
    charges = template_charges(first.xml, "LIG")
    assert abs(charges.sum()) < 1e-5  # AM1-BCC charges carry 6 decimals and sum to the net charge
    again = parametrize_ligand(read_ligand_file(PXYLENE))
    assert again.cache_hit and again.xml == first.xml
    # the same molecule with its atoms in reverse order: a cache hit, each atom its own charge
    n = ligand.molecule.GetNumAtoms()
    permutation = list(reversed(range(n)))
    reordered = copy.copy(ligand)
    reordered.molecule = Chem.RenumberAtoms(ligand.molecule, permutation)
    reordered.atom_names = [ligand.atom_names[i] for i in permutation]
    hit = parametrize_ligand(reordered)
    assert hit.cache_hit
    np.testing.assert_array_equal(template_charges(hit.xml, "LIG"), charges[permutation])


def test_charge_methods_give_the_net_charge(tmp_path):
    ligand = read_ligand_file(PXYLENE)
    fast = template_charges(parametrize_ligand(ligand, "am1bcc-fast", use_cache=False).xml, "LIG")
    full = template_charges(parametrize_ligand(ligand, "am1bcc").xml, "LIG")
    assert abs(fast.sum()) < 1e-5 and abs(full.sum()) < 1e-5
    # at the crystal geometry the charges move, but by far less than a charge model would
    assert 0 < np.abs(fast - full).max() < 0.05
    # "file": the charges of a SYBYL MOL2 (antechamber's, with SYBYL types as docking tools write)
    sybyl = {"c3": "C.3", "ca": "C.ar", "hc": "H", "ha": "H"}
    text = parametrize_ligand(ligand).files["LIG.mol2"]
    for gaff, sybyl_type in sybyl.items():
        text = text.replace(f" {gaff} ", f" {sybyl_type} ".ljust(len(gaff) + 2))
    mol2 = tmp_path / "pxylene.mol2"
    mol2.write_text(text)
    from_file = read_ligand_file(mol2)
    assert from_file.partial_charges is not None
    kept = template_charges(parametrize_ligand(from_file, "file").xml, from_file.name)
    np.testing.assert_allclose(kept, from_file.partial_charges, atol=0)


def test_file_charges_must_exist_and_add_up():
    with pytest.raises(PreparationError) as exc_info:
        parametrize_ligand(read_ligand_file(PXYLENE), "file")
    one_line(exc_info, "pxylene.sdf", "needs partial charges")


def test_sqm_failure_is_one_line_naming_the_ligand():
    with pytest.raises(PreparationError) as exc_info:
        # two SCF iterations cannot converge: sqm fails as it does on a badly charged molecule
        parametrize_ligand(read_ligand_file(PXYLENE), use_cache=False, sqm_keywords="itrmax=2")
    one_line(exc_info, "ligand LIG (pxylene.sdf)", "sqm", "No convergence")


def test_atom_types_are_prefixed_per_ligand(tmp_path):
    toluene = Chem.AddHs(Chem.MolFromSmiles("Cc1ccccc1"))
    AllChem.EmbedMolecule(toluene, randomSeed=7)
    other = read_ligand_file(write_sdf(toluene, tmp_path / "toluene.sdf"), name="TOL")
    xml_a = parametrize_ligand(read_ligand_file(PXYLENE)).xml
    xml_b = parametrize_ligand(other, "am1bcc-fast").xml
    import xml.etree.ElementTree as ElementTree

    def types(xml):
        return {t.get("name") for t in ElementTree.fromstring(xml).iter("Type")}

    assert types(xml_a) and all(t.startswith("LIG-") for t in types(xml_a))
    assert types(xml_b) and all(t.startswith("TOL-") for t in types(xml_b))
    # both load into one force field beside the protein's
    forcefield = make_forcefield("amber14", "tip3p")
    import io

    forcefield.loadFile(io.StringIO(xml_a))
    forcefield.loadFile(io.StringIO(xml_b))


# ------------------------------------------------------------------ the prepared complex


@pytest.fixture(scope="module")
def vacuum_complex():
    """T4L L99A + p-xylene from the SDF, no solvent, no constraints (every term has energy)."""
    return prepare_structure(COMPLEX, solvate=False, constraints="none",
                             ligands=LigandOptions(files=[PXYLENE]))


def test_complex_holds_the_ligand_and_replaces_the_crystal_copy(vacuum_complex):
    residues = [r.name for r in vacuum_complex.topology.residues()]
    assert residues.count("LIG") == 1 and "TMP" not in residues
    assert vacuum_complex.ligand_names == ("LIG",)
    assert any("TMP 163 (chain A)" in note and "removed" in note
               for note in vacuum_complex.notes)
    assert any("am1bcc" in note for note in vacuum_complex.notes)


def _terms(system, positions):
    from reference import openmm_evaluation

    return openmm_evaluation(system, positions)[2]


def _amber_names(topology):
    """Amber's residue and atom names where OpenMM's templates differ (HIS variants, N-term H)."""
    first = {chain.index: next(chain.residues()).index for chain in topology.chains()}
    for residue in topology.residues():
        names = {a.name for a in residue.atoms()}
        if residue.name == "HIS":
            residue.name = ("HIP" if {"HD1", "HE2"} <= names else
                            "HID" if "HD1" in names else "HIE")
        if residue.index in first.values():
            for atom in residue.atoms():
                if atom.name == "H":
                    atom.name = "H1"


def _tleap_terms(topology, positions, folder: Path, name: str, ligand_files=None):
    """Per-term energies of the same structure built by tleap (ff14SB, GAFF2), on our coordinates."""
    topology = copy.deepcopy(topology)
    _amber_names(topology)
    with open(folder / f"{name}.pdb", "w") as handle:
        app.PDBFile.writeFile(topology, positions * unit.nanometer, handle)
    ligand = ""
    if ligand_files:
        ligand = (f"loadamberparams {ligand_files['frcmod']}\n"
                  f"LIG = loadmol2 {ligand_files['mol2']}\n")
    (folder / f"{name}.in").write_text(
        f"source leaprc.protein.ff14SB\nsource leaprc.gaff2\n{ligand}"
        f"m = loadpdb {name}.pdb\nsaveamberparm m {name}.prmtop {name}.inpcrd\nquit\n")
    tleap = os.path.join(AMBERTOOLS.bin_dir, "tleap")
    subprocess.run([tleap, "-f", f"{name}.in"], cwd=folder, capture_output=True, check=True,
                   env=AMBERTOOLS.environment())
    prmtop = app.AmberPrmtopFile(str(folder / f"{name}.prmtop"))
    # tleap orders atoms as its residue libraries do: map them back by residue and raw name
    index = {(a.residue.index, a.name): a.index for a in topology.atoms()}
    order = [index[(a.residue.index, prmtop._prmtop.getAtomName(a.index))]
             for a in prmtop.topology.atoms()]
    system = prmtop.createSystem(nonbondedMethod=app.NoCutoff, constraints=None,
                                 rigidWater=False)
    return _terms(system, positions[order])


@pytest.mark.skipif(shutil.which("tleap", path=AMBERTOOLS.bin_dir) is None,
                    reason="tleap is not installed")
def test_ligand_energies_equal_tleaps_from_the_same_antechamber_output(vacuum_complex, tmp_path):
    """Per term, what the ligand adds to the complex (its own terms and its interactions with the
    protein) equals what tleap's build from the same MOL2 and frcmod adds.

    The difference of complex and protein is compared because OpenMM's amber14 XML and tleap's
    ff14SB differ in the last digits of a few protein parameters (TRP CG-CD2-CE3 angles by 1e-6
    rad: 0.01 kJ/mol over the whole protein), which is not what is under test here.
    """
    written = write_prepared(vacuum_complex, tmp_path / "complex")
    files = {"mol2": written["ligands/LIG.mol2"], "frcmod": written["ligands/LIG.frcmod"]}
    positions = vacuum_complex.positions
    ours_complex = _terms(vacuum_complex.openmm_system, positions)
    leap_complex = _tleap_terms(vacuum_complex.topology, positions, tmp_path, "complex", files)
    modeller = app.Modeller(vacuum_complex.topology, positions * unit.nanometer)
    modeller.delete([r for r in modeller.topology.residues() if r.name == "LIG"])
    protein_positions = np.array(modeller.getPositions().value_in_unit(unit.nanometer))
    protein = make_forcefield("amber14", "tip3p").createSystem(
        modeller.topology, nonbondedMethod=app.NoCutoff, constraints=None, rigidWater=False)
    ours_protein = _terms(protein, protein_positions)
    leap_protein = _tleap_terms(modeller.topology, protein_positions, tmp_path, "protein")
    for term in ("HarmonicBondForce", "HarmonicAngleForce", "PeriodicTorsionForce",
                 "NonbondedForce"):
        ours = ours_complex[term] - ours_protein[term]
        theirs = leap_complex[term] - leap_protein[term]
        assert abs(ours - theirs) <= 1e-4, (term, ours, theirs)  # the bar, kJ/mol
    assert abs(ours_complex["NonbondedForce"] - ours_protein["NonbondedForce"]) > 1.0


def test_written_parameters_are_reused_without_ambertools(vacuum_complex, tmp_path, monkeypatch):
    written = write_prepared(vacuum_complex, tmp_path / "first")
    for name in ("LIG.xml", "LIG.mol2", "LIG.frcmod", "LIG.sdf"):
        assert os.path.isfile(written[f"ligands/{name}"])

    def no_ambertools(*args, **kwargs):
        raise AssertionError("AmberTools ran although the parameters were given")

    monkeypatch.setattr("bencao.prep.ligands.parametrize_ligand", no_ambertools)
    again = prepare_structure(written["structure.pdb"], solvate=False, constraints="none",
                              ligands=LigandOptions(params_files=[written["ligands/LIG.xml"]]))
    assert again.system.n_particles == vacuum_complex.system.n_particles
    assert any("kept LIG" in note for note in again.notes)
    assert ([(a.residue.name, a.name) for a in again.topology.atoms()]
            == [(a.residue.name, a.name) for a in vacuum_complex.topology.atoms()])
    # same coordinates for both systems, so only the parameters can differ (they must not);
    # 1e-9 relative: summation order only
    ours = _terms(again.openmm_system, again.positions)
    first = _terms(vacuum_complex.openmm_system, again.positions)
    for term, value in first.items():
        assert abs(ours[term] - value) <= 1e-9 * max(1.0, abs(value)), term


def test_solvated_complex_matches_openmm_reference():
    """Rung 4: the solvated complex with PME, HBonds and HMR, as dynamics would run it; the whole
    system and the ligand's own atoms, each no worse than OpenMM's CPU platform."""
    prepared = prepare_structure(COMPLEX, padding=0.5, hydrogen_mass=1.5, nonbonded_cutoff=0.9,
                                 ligands=LigandOptions(residues={"TMP": PXYLENE_SMILES}))
    numbers = check_against_openmm(prepared.openmm_system, prepared.positions, prepared.box)
    assert numbers["median"] < 1e-5  # float32 pair forces with float64 sums (test_evaluate.py)
    ligand = [a.index for a in prepared.topology.atoms() if a.residue.name == "TMP"]
    assert len(ligand) == 18
    _, reference_forces, _, placed = openmm_evaluation(prepared.openmm_system,
                                                       prepared.positions, prepared.box)
    _, cpu_forces, _, _ = openmm_evaluation(prepared.openmm_system, prepared.positions,
                                            prepared.box, platform="CPU")
    ours = bencao.evaluate(prepared.system, placed, prepared.box).forces
    median, worst = force_agreement(ours[ligand], reference_forces[ligand])
    cpu_median, cpu_worst = force_agreement(cpu_forces[ligand], reference_forces[ligand])
    assert median <= max(PARITY * cpu_median, FORCE_FLOOR), (median, cpu_median)
    assert worst <= max(PARITY * cpu_worst, 10 * FORCE_FLOOR), (worst, cpu_worst)


# ------------------------------------------------------------------ structures that need care


def _renamed(tmp_path, residues: dict, name="renamed.pdb") -> str:
    """1T2Y with residues (chain A number -> new name) renamed, as a modified residue would be."""
    lines = []
    for line in Path(data_path("1T2Y.pdb")).read_text().splitlines():
        if line.startswith("ATOM") and int(line[22:26]) in residues:
            line = line[:17] + f"{residues[int(line[22:26])]:>3s}" + line[20:]
        lines.append(line)
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_unknown_residue_inside_a_chain_is_an_error_not_a_gap(tmp_path):
    path = _renamed(tmp_path, {10: "XYZ", 11: "XYZ"})
    with pytest.raises(PreparationError) as exc_info:
        prepare_structure(path, solvate=False)
    one_line(exc_info, "XYZ 10 (chain A)", "bonded to", "--ligand-residue XYZ=SMILES",
             "--remove-residue XYZ")


def test_removing_a_residue_on_purpose_splits_its_chain(tmp_path):
    path = _renamed(tmp_path, {10: "XYZ"})
    prepared = prepare_structure(path, solvate=False,
                                 ligands=LigandOptions(remove=["XYZ"]))
    chains = list(prepared.topology.chains())
    assert len(chains) == 2
    assert [r.id for r in chains[0].residues()][-1] == "9"
    assert [r.id for r in chains[1].residues()][0] == "11"
    # no bond across the gap: each piece has its own termini
    for a, b in prepared.topology.bonds():
        assert a.residue.chain is b.residue.chain
    assert any("removed XYZ 10 (chain A) on request" in note for note in prepared.notes)


def test_a_ligand_on_top_of_the_protein_is_a_clash(tmp_path):
    pdb = app.PDBFile(COMPLEX)
    ca = next(a for a in pdb.topology.atoms() if a.name == "CA" and a.residue.id == "100")
    target = np.array(pdb.positions[ca.index].value_in_unit(unit.angstrom))
    molecule = pxylene()
    start = np.array(molecule.GetConformer().GetAtomPosition(0))
    sdf = write_sdf(shifted(molecule, target - start + 0.1), tmp_path / "clash.sdf")
    with pytest.raises(PreparationError) as exc_info:
        prepare_structure(COMPLEX, solvate=False, ligands=LigandOptions(files=[sdf]))
    one_line(exc_info, "CA of", "100 (chain A)", "apart", "check its coordinates")


def test_a_ligand_far_from_the_protein_is_warned_about(tmp_path):
    sdf = write_sdf(shifted(pxylene(), (0.0, 0.0, 60.0)), tmp_path / "far.sdf")
    prepared = prepare_structure(COMPLEX, solvate=False,
                                 ligands=LigandOptions(files=[sdf], charge_method="am1bcc-fast"))
    assert any(note.startswith("warning: ligand LIG") and "frame" in note
               for note in prepared.notes)


def test_ligand_options_on_the_command_line(tmp_path, capsys):
    from bencao.cli import main

    out = tmp_path / "system"
    code = main(["prepare", COMPLEX, "--no-solvent", "--ligand-residue",
                 f"TMP={PXYLENE_SMILES}", "--ligand-charge-method", "am1bcc-fast",
                 "-o", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "TMP" in printed and "10 hydrogen(s) added" in printed
    assert (out / "ligands" / "TMP.xml").is_file()
    code = main(["prepare", COMPLEX, "--no-solvent", "--ligand-residue", "TMP", "-o", str(out)])
    assert code != 0
    assert "NAME=SMILES" in capsys.readouterr().err


def test_net_charge_override_needs_a_ligand_to_apply_to():
    with pytest.raises(PreparationError) as exc_info:
        prepare_structure(COMPLEX, solvate=False, ligands=LigandOptions(net_charges={None: 0}))
    one_line(exc_info, "--ligand-net-charge", "0 ligands")


def test_openmm_system_of_the_complex_has_the_ligand_charges(vacuum_complex):
    (force,) = [f for f in vacuum_complex.openmm_system.getForces()
                if isinstance(f, mm.NonbondedForce)]
    ligand = [a.index for a in vacuum_complex.topology.atoms() if a.residue.name == "LIG"]
    charges = [force.getParticleParameters(i)[0].value_in_unit(unit.elementary_charge)
               for i in ligand]
    assert abs(sum(charges)) < 1e-5 and max(map(abs, charges)) > 0.05


def test_missing_ligand_dependencies_say_what_to_install(monkeypatch, tmp_path):
    import sys

    from bencao.prep.ligands import ambertools
    from bencao.prep.ligands.molecules import require_rdkit

    monkeypatch.setitem(sys.modules, "rdkit", None)  # as if RDKit were not installed
    with pytest.raises(PreparationError) as exc_info:
        require_rdkit()
    one_line(exc_info, "pip install 'bencao[ligand]'")
    monkeypatch.delenv("AMBERHOME", raising=False)
    monkeypatch.setattr(ambertools, "_candidate_bin_dirs", lambda: [str(tmp_path)])
    ambertools.find_ambertools.cache_clear()
    try:
        with pytest.raises(PreparationError) as exc_info:
            ambertools.find_ambertools()
        one_line(exc_info, "antechamber", "pip install 'bencao[ligand]'")
    finally:
        ambertools.find_ambertools.cache_clear()
