"""Structure preparation: prepared systems are what OpenMM builds, boxes and ions are right, inputs
of every kind load, outputs load back, and user mistakes fail with one-line messages."""

import math
import os
from pathlib import Path

import mdtraj
import numpy as np
import openmm as mm
import pytest
from openmm import app
from reference import data_path, openmm_evaluation

import bencao
from bencao.errors import InputFileError, PreparationError
from bencao.forces import Nonbonded
from bencao.io.files import load_state
from bencao.prep import (
    force_field_files,
    load_amber,
    load_charmm,
    load_gromacs,
    load_inputs,
    prepare_structure,
    summarize,
    write_prepared,
)

SOLVENT = {"HOH", "NA", "CL"}


@pytest.fixture(scope="module")
def cube():
    """1T2Y (25 residues) in TIP3P with 0.15 M NaCl, 1 nm padding: about 5,500 atoms."""
    return prepare_structure(data_path("1T2Y.pdb"), "amber14", "tip3p", padding=1.0,
                             ionic_strength=0.15)


@pytest.fixture(scope="module")
def dodecahedron():
    return prepare_structure(data_path("1T2Y.pdb"), "amber14", "tip3p", padding=1.0,
                             box_shape="dodecahedron", hydrogen_mass=1.5)


def charges(prepared):
    (term,) = [t for t in prepared.system.terms if isinstance(t, Nonbonded)]
    return term.charges


def assert_matches_openmm(prepared, rtol=1e-4):
    """bencao's energy of the prepared System equals OpenMM Reference's of the OpenMM system.

    1e-4 relative: the bar of "the same physics" on whole prepared systems (measured 1e-7 to
    1e-9), well above PME/erfc round-off and far below any missing or mis-typed term.
    """
    reference, _, _, placed = openmm_evaluation(prepared.openmm_system, prepared.positions,
                                                prepared.box)
    # the prepared positions already hold the virtual sites where OpenMM puts them
    np.testing.assert_allclose(placed, prepared.positions, atol=1e-9)
    ours = bencao.evaluate(prepared.system, prepared.positions, prepared.box).energy
    assert math.isfinite(ours)
    assert abs(ours - reference) <= rtol * abs(reference), (ours, reference)
    return ours


def assert_one_line(exc_info, *fragments):
    message = str(exc_info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message


# ------------------------------------------------------------------ solvated structures


def test_solvated_system_is_neutral_with_the_requested_salt(cube):
    q = charges(cube)
    assert abs(q.sum()) < 1e-6  # force-field charges carry ~6 decimals; a missing ion is >= 1 e
    residues = list(cube.topology.residues())
    names = [r.name for r in residues]
    n_na, n_cl, n_water = names.count("NA"), names.count("CL"), names.count("HOH")
    solute = [a.index for r in residues if r.name not in SOLVENT for a in r.atoms()]
    solute_charge = round(float(q[solute].sum()))
    assert n_na - n_cl == -solute_charge
    # Modeller's count: salt pairs from the waters present before ions replaced some of them
    neutralising = abs(solute_charge)
    expected_pairs = (n_water + n_na + n_cl - neutralising) * 0.15 / 55.4
    assert abs(min(n_na, n_cl) - expected_pairs) <= 1
    assert n_water > 1000
    summary = summarize(cube)
    assert summary["waters"] == n_water and summary["ions"] == {"NA": n_na, "CL": n_cl}
    assert abs(summary["total_charge"]) < 1e-6  # as above: decimals of the charges


def test_solvated_energy_matches_openmm_reference(cube):
    assert cube.box is not None and cube.system.periodic
    np.testing.assert_allclose(cube.system.box, cube.box)
    assert cube.positions.shape == (cube.system.n_particles, 3)
    assert_matches_openmm(cube)


def test_dodecahedron_is_reduced_and_smaller_than_the_cube(cube, dodecahedron):
    box = dodecahedron.box
    width = box[0, 0]
    # OpenMM's reduced rhombic dodecahedron: a = (w,0,0), b = (0,w,0), c = (w/2, w/2, w/sqrt2)
    np.testing.assert_allclose(box, [[width, 0, 0], [0, width, 0],
                                     [width / 2, width / 2, width / math.sqrt(2)]], atol=1e-9)
    assert width == pytest.approx(cube.box[0, 0])  # same solute, same padding
    ratio = abs(np.linalg.det(box)) / abs(np.linalg.det(cube.box))
    assert ratio == pytest.approx(1 / math.sqrt(2), rel=1e-9)
    n_water = sum(r.name == "HOH" for r in dodecahedron.topology.residues())
    cube_water = sum(r.name == "HOH" for r in cube.topology.residues())
    assert 0.6 < n_water / cube_water < 0.8


def test_hydrogen_mass_repartitioning_spares_water(dodecahedron):
    masses = dodecahedron.system.masses
    protein_h, water_h = [], []
    for atom in dodecahedron.topology.atoms():
        if atom.element is app.element.hydrogen:
            (water_h if atom.residue.name == "HOH" else protein_h).append(atom.index)
    assert protein_h and water_h
    np.testing.assert_allclose(masses[protein_h], 1.5)
    # untouched water H: the element mass (1.007947 amu in OpenMM), not the repartitioned 1.5
    np.testing.assert_allclose(masses[water_h], 1.008, atol=1e-3)


# ------------------------------------------------------------------ other force fields, vacuum


@pytest.mark.parametrize("forcefield", ["amber19", "charmm36"])
def test_other_force_fields_prepare_and_match_openmm(forcefield):
    prepared = prepare_structure(data_path("1T2Y.pdb"), forcefield, solvate=False)
    assert prepared.box is None and not prepared.system.periodic
    assert prepared.system.n_particles == 271
    assert_matches_openmm(prepared)


def test_force_field_names_and_waters():
    assert force_field_files("ff14SB", None) == ["amber14-all.xml", "amber14/tip3p.xml"]
    assert force_field_files("amber19", None) == ["amber19-all.xml", "amber19/opc.xml"]
    assert force_field_files("amber19", "tip3p")[1] == "amber19/tip3p.xml"
    assert force_field_files("charmm36", "tip3p") == ["charmm36.xml", "charmm36/water.xml"]
    with pytest.raises(PreparationError) as exc_info:
        force_field_files("amber14", "tip5p")
    assert_one_line(exc_info, "tip5p", "amber14", "opc")


def test_heterogens_are_removed_and_reported(tmp_path):
    lines = Path(data_path("1T2Y.pdb")).read_text().splitlines()
    end = max(i for i, line in enumerate(lines) if line.startswith("ATOM"))
    zinc = "HETATM  272 ZN    ZN A 101       0.000   0.000   0.000  1.00  0.00          ZN"
    path = tmp_path / "with-zinc.pdb"
    path.write_text("\n".join(lines[:end + 1] + ["TER", zinc] + lines[end + 1:]) + "\n")
    prepared = prepare_structure(path, solvate=False)
    assert prepared.system.n_particles == 271
    assert any("ZN 101 (chain A)" in note for note in prepared.notes)


def test_without_solvent_a_solvated_input_keeps_its_box(cube, tmp_path):
    written = write_prepared(cube, tmp_path / "first")
    again = prepare_structure(written["structure.pdb"], solvate=False)
    assert again.system.n_particles == cube.system.n_particles  # waters and ions kept
    np.testing.assert_allclose(again.box, cube.box, atol=1e-3)  # CRYST1 has 0.001 Å digits
    assert abs(charges(again).sum()) < 1e-6  # decimals of the force-field charges
    # a crystal structure: a few waters in a large unit cell is not a solvated system
    lines = Path(written["structure.pdb"]).read_text().splitlines()
    waters = [i for i, line in enumerate(lines) if line[17:20] == "HOH"]
    keep = [line for i, line in enumerate(lines) if line[17:20] not in ("HOH", " NA", " CL")
            or i in waters[:60]]
    (tmp_path / "crystal.pdb").write_text("\n".join(keep) + "\n")
    crystal = prepare_structure(tmp_path / "crystal.pdb", solvate=False)
    assert crystal.box is None and crystal.system.n_particles == 271 + 60


# ------------------------------------------------------------------ pre-parametrised inputs


def test_load_amber_matches_openmm_reference():
    prepared = load_amber(data_path("alanine-dipeptide-explicit.prmtop"),
                          data_path("alanine-dipeptide-explicit.inpcrd"))
    assert prepared.box is not None
    assert_matches_openmm(prepared)


def test_load_inputs_dispatches_and_notes_ignored_options():
    prepared = load_inputs([data_path("alanine-dipeptide-explicit.inpcrd"),
                            data_path("alanine-dipeptide-explicit.prmtop")],
                           forcefield="charmm36", padding=None, hydrogen_mass=2.0)
    assert prepared.notes == ("ignored forcefield: the input is already parametrised",)
    masses = prepared.system.masses
    hydrogens = [a for a in prepared.topology.atoms() if a.element is app.element.hydrogen]
    water = [a.index for a in hydrogens if a.residue.name == "HOH"]
    solute = [a.index for a in hydrogens if a.residue.name != "HOH"]
    assert water and solute
    np.testing.assert_allclose(masses[solute], 2.0)
    np.testing.assert_allclose(masses[water], 1.008, atol=1e-3)  # element mass, untouched


GROMACS_TOP = """\
; two SPC/E waters and a Na+ Cl- pair, self-contained
[ defaults ]
  1  2  yes  0.5  0.8333
[ atomtypes ]
  OW  8   15.9994  0.0  A  3.16557e-01  6.50194e-01
  HW  1   1.008    0.0  A  0.0          0.0
  NA  11  22.99    0.0  A  2.43928e-01  3.65846e-01
  CL  17  35.45    0.0  A  4.47766e-01  1.48913e-01
[ moleculetype ]
  SOL  2
[ atoms ]
  1  OW  1  SOL  OW   1  -0.8476  15.9994
  2  HW  1  SOL  HW1  1   0.4238   1.008
  3  HW  1  SOL  HW2  1   0.4238   1.008
[ bonds ]
  1  2  1  0.1  345000
  1  3  1  0.1  345000
[ angles ]
  2  1  3  1  109.47  383
[ moleculetype ]
  NA  1
[ atoms ]
  1  NA  1  NA  NA  1   1.0  22.99
[ moleculetype ]
  CL  1
[ atoms ]
  1  CL  1  CL  CL  1  -1.0  35.45
[ system ]
test
[ molecules ]
SOL  2
NA   1
CL   1
"""

GROMACS_GRO = """\
two waters and NaCl
    8
    1SOL     OW    1   0.500   0.500   0.500
    1SOL    HW1    2   0.600   0.500   0.500
    1SOL    HW2    3   0.467   0.594   0.500
    2SOL     OW    4   1.200   1.100   1.000
    2SOL    HW1    5   1.300   1.100   1.000
    2SOL    HW2    6   1.167   1.194   1.000
    3NA      NA    7   0.800   1.600   0.400
    4CL      CL    8   1.600   0.600   1.500
   2.20000   2.20000   2.20000
"""


def test_load_gromacs_matches_openmm_reference(tmp_path):
    (tmp_path / "w.top").write_text(GROMACS_TOP)
    (tmp_path / "w.gro").write_text(GROMACS_GRO)
    prepared = load_inputs([tmp_path / "w.top", tmp_path / "w.gro"])
    np.testing.assert_allclose(prepared.box, np.eye(3) * 2.2)
    assert prepared.openmm_system.getNumConstraints() == 6  # rigid water
    assert_matches_openmm(prepared)


def test_gromacs_missing_include_names_the_option(tmp_path):
    (tmp_path / "w.top").write_text('#include "nonexistent.ff/forcefield.itp"\n' + GROMACS_TOP)
    (tmp_path / "w.gro").write_text(GROMACS_GRO)
    with pytest.raises(PreparationError) as exc_info:
        load_gromacs(tmp_path / "w.top", tmp_path / "w.gro")
    assert_one_line(exc_info, "nonexistent.ff/forcefield.itp", "--gromacs-include")


CHARMM_PSF = """\
PSF EXT

         1 !NTITLE
* two TIP3 waters and a NaCl pair

         8 !NATOM
         1 W        1        TIP3     OH2      OT      -0.834000       15.9994           0
         2 W        1        TIP3     H1       HT       0.417000        1.0080           0
         3 W        1        TIP3     H2       HT       0.417000        1.0080           0
         4 W        2        TIP3     OH2      OT      -0.834000       15.9994           0
         5 W        2        TIP3     H1       HT       0.417000        1.0080           0
         6 W        2        TIP3     H2       HT       0.417000        1.0080           0
         7 I        1        SOD      SOD      SOD      1.000000       22.9898           0
         8 I        2        CLA      CLA      CLA     -1.000000       35.4500           0

         4 !NBOND: bonds
         1         2         1         3         4         5         4         6

         2 !NTHETA: angles
         2         1         3         5         4         6

         0 !NPHI: dihedrals


         0 !NIMPHI: impropers


         0 !NDON: donors


         0 !NACC: acceptors


         0 !NNB


         1         0 !NGRP NST2
         0         0         0

"""

CHARMM_PRM = """\
* CHARMM TIP3P water and ions
*

ATOMS
MASS  -1  HT      1.00800  H
MASS  -1  OT     15.99940  O
MASS  -1  SOD    22.98977  NA
MASS  -1  CLA    35.45000  CL

BONDS
OT   HT    450.0    0.9572

ANGLES
HT   OT   HT     55.0   104.52

DIHEDRALS

IMPROPER

NONBONDED nbxmod  5 atom cdiel fshift vatom vdistance vfswitch -
cutnb 14.0 ctofnb 12.0 ctonnb 10.0 eps 1.0 e14fac 1.0 wmin 1.5

OT     0.0   -0.1521    1.7682
HT     0.0   -0.0460    0.2245
SOD    0.0   -0.0469    1.41075
CLA    0.0   -0.150     2.27

END
"""

CHARMM_CRD = """\
* two TIP3 waters and a NaCl pair
*
    8
    1    1 TIP3 OH2    5.00000   5.00000   5.00000 W    1      0.00000
    2    1 TIP3 H1     5.95720   5.00000   5.00000 W    1      0.00000
    3    1 TIP3 H2     4.76000   5.92660   5.00000 W    1      0.00000
    4    2 TIP3 OH2   12.00000  11.00000  10.00000 W    2      0.00000
    5    2 TIP3 H1    12.95720  11.00000  10.00000 W    2      0.00000
    6    2 TIP3 H2    11.76000  11.92660  10.00000 W    2      0.00000
    7    3 SOD  SOD    8.00000  16.00000   4.00000 I    1      0.00000
    8    4 CLA  CLA   16.00000   6.00000  15.00000 I    2      0.00000
"""


def test_load_charmm_matches_openmm_reference(tmp_path):
    for name, text in (("w.psf", CHARMM_PSF), ("w.prm", CHARMM_PRM), ("w.crd", CHARMM_CRD)):
        (tmp_path / name).write_text(text)
    prepared = load_charmm(tmp_path / "w.psf", [str(tmp_path / "w.prm")], tmp_path / "w.crd",
                           box=(2.2, 2.2, 2.2))
    np.testing.assert_allclose(prepared.box, np.eye(3) * 2.2)
    np.testing.assert_allclose(prepared.positions[0], [0.5, 0.5, 0.5])
    assert_matches_openmm(prepared)
    with pytest.raises(PreparationError) as exc_info:
        load_inputs([tmp_path / "w.psf", tmp_path / "w.crd"])
    assert_one_line(exc_info, "--charmm-params")


# ------------------------------------------------------------------ output


def test_written_files_load_back(cube, tmp_path):
    folder = tmp_path / "out"
    written = write_prepared(cube, folder)
    assert set(written) == {"system.npz", "state.npz", "structure.pdb", "structure.cif",
                            "system.xml"}
    assert all(os.path.exists(path) for path in written.values())
    assert not [name for name in os.listdir(folder) if name.startswith(".")]  # no temporaries
    system = bencao.System.load(written["system.npz"])
    np.testing.assert_array_equal(system.masses, cube.system.masses)
    np.testing.assert_allclose(system.box, cube.box)
    state = load_state(written["state.npz"])
    np.testing.assert_array_equal(state["positions"], cube.positions)
    np.testing.assert_allclose(state["box"], cube.box)
    n = cube.system.n_particles
    assert mdtraj.load(written["structure.pdb"]).n_atoms == n
    assert app.PDBxFile(written["structure.cif"]).topology.getNumAtoms() == n
    xml = Path(written["system.xml"]).read_text()
    assert mm.XmlSerializer.deserialize(xml).getNumParticles() == n


# ------------------------------------------------------------------ user errors


def test_unknown_force_field_lists_the_known_ones():
    with pytest.raises(PreparationError) as exc_info:
        prepare_structure(data_path("1T2Y.pdb"), "amber99-nonsense")
    assert_one_line(exc_info, "amber99-nonsense", "amber14", "amber19", "charmm36")


@pytest.mark.parametrize("options, fragment", [
    ({"box_shape": "sphere"}, "sphere"),
    ({"padding": -0.5}, "padding"),
    ({"ionic_strength": -1.0}, "ionic strength"),
    ({"constraints": "hangles2"}, "hangles2"),
    ({"positive_ion": "Mg2+"}, "Mg2+"),
])
def test_bad_options_fail_before_any_work(options, fragment):
    with pytest.raises(PreparationError) as exc_info:
        prepare_structure(data_path("1T2Y.pdb"), **options)
    assert_one_line(exc_info, fragment)


def test_malformed_pdb_names_the_file(tmp_path):
    path = tmp_path / "garbage.pdb"
    path.write_text("this is not\na PDB file\n\x00\x01 at all\n")
    with pytest.raises(InputFileError) as exc_info:
        prepare_structure(path)
    assert_one_line(exc_info, f"{path}: no atoms could be read; is it a PDB file?")


def test_missing_file_names_the_file(tmp_path):
    with pytest.raises(InputFileError) as exc_info:
        prepare_structure(tmp_path / "absent.pdb")
    assert_one_line(exc_info, "absent.pdb: no such file")


def test_residue_without_template_is_named(tmp_path):
    # an unknown residue inside a chain (as in cryo-EM models) stays, and has no template
    text = Path(data_path("1T2Y.pdb")).read_text()
    lines = [line[:17] + "UNK" + line[20:] if line.startswith("ATOM") and line[17:26] == "SER A  24"
             else line for line in text.splitlines()]
    path = tmp_path / "unknown.pdb"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(PreparationError) as exc_info:
        prepare_structure(path, solvate=False)
    assert_one_line(exc_info, "residue UNK 24 (chain A) has no template in amber14",
                    "--ligand-residue UNK=SMILES", "--remove-residue UNK")


def test_unrecognised_input_combination():
    with pytest.raises(PreparationError) as exc_info:
        load_inputs(["a.xyz", "b.top"])
    assert_one_line(exc_info, "a.xyz + b.top", ".prmtop")


def test_the_same_structure_prepares_to_the_same_positions():
    # heavy atoms only (as from a crystal structure): every hydrogen is placed by preparation
    first = prepare_structure(data_path("t4l-l99a-pxylene.pdb"), solvate=False)
    again = prepare_structure(data_path("t4l-l99a-pxylene.pdb"), solvate=False)
    assert first.system.n_particles == again.system.n_particles > 2000
    np.testing.assert_array_equal(first.positions, again.positions)
