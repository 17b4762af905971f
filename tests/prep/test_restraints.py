"""Position restraints: energies and forces against OpenMM Reference, and atom selection."""

import mdtraj
import numpy as np
import openmm as mm
import pytest
from openmm import app
from reference import data_path, openmm_evaluation
from systems import alanine_dipeptide

import bencao
from bencao.errors import JobFileError
from bencao.prep.restraints import restrained_atoms, with_position_restraints


def test_restraint_energy_and_forces_match_openmm_reference_through_the_box_boundary():
    openmm_system, positions, box = alanine_dipeptide(
        nonbondedMethod=app.PME, nonbondedCutoff=0.9 * mm.unit.nanometer)
    atoms = np.arange(0, 22)   # the dipeptide
    rng = np.random.default_rng(3)
    reference = positions.copy()
    reference[atoms] += rng.normal(0.0, 0.05, (len(atoms), 3))
    reference[atoms[:3]] += box[0]          # an image away: only the minimum image counts
    k = 1000.0
    restraint = mm.CustomExternalForce("0.5*k*periodicdistance(x,y,z,x0,y0,z0)^2")
    restraint.addGlobalParameter("k", k)
    for name in ("x0", "y0", "z0"):
        restraint.addPerParticleParameter(name)
    for i in atoms:
        restraint.addParticle(int(i), list(reference[i]))
    restraint_only = mm.System()
    for _ in range(openmm_system.getNumParticles()):
        restraint_only.addParticle(1.0)
    restraint_only.setDefaultPeriodicBoxVectors(*[mm.Vec3(*row) for row in box])
    restraint_only.addForce(restraint)
    expected_energy, expected_forces, _, _ = openmm_evaluation(restraint_only, positions, box)

    base = bencao.System.from_openmm(alanine_dipeptide(
        nonbondedMethod=app.PME, nonbondedCutoff=0.9 * mm.unit.nanometer)[0])
    system = with_position_restraints(base, atoms, reference, k)
    backend = bencao.make_backend(system)
    term = backend.terms[-1]
    fixed = np.zeros((system.n_particles, 3), np.int64)
    energy = term.compute(positions, box, fixed)
    forces = fixed / 2.0**32
    # fixed-point forces carry 2^-32 kJ/mol/nm resolution; energies are float64 sums of ~22 terms
    assert abs(energy - expected_energy) <= 1e-9 * max(1.0, abs(expected_energy))
    np.testing.assert_allclose(forces, expected_forces, rtol=0, atol=1e-6)
    assert energy > 1.0  # the restraints are actually stretched
    total = bencao.evaluate(system, positions, box)
    assert total.terms["PositionRestraints"] == energy


def test_restraint_choices_select_the_expected_atoms():
    topology = mdtraj.load_prmtop(data_path("alanine-dipeptide-explicit.prmtop"))
    heavy = restrained_atoms(topology, "heavy")
    backbone = restrained_atoms(topology, "backbone")
    protein = restrained_atoms(topology, "protein")
    assert len(restrained_atoms(topology, "none")) == 0
    # ACE-ALA-NME: 22 atoms of which 10 heavy; water is never restrained
    assert len(heavy) == 10 and heavy.max() < 22
    assert all(topology.atom(i).element.symbol != "H" for i in heavy)
    assert {topology.atom(i).name for i in backbone} <= {"N", "CA", "C", "O"}
    assert set(backbone) <= set(protein) and len(protein) <= 22


def test_ligand_restraints_hold_its_heavy_atoms():
    # T4 lysozyme L99A with p-xylene (residue TMP, heavy atoms only, as in a crystal structure)
    topology = mdtraj.load_pdb(data_path("t4l-l99a-pxylene.pdb")).topology
    ligand = restrained_atoms(topology, "ligand")
    assert [topology.atom(i).residue.name for i in ligand] == ["TMP"] * 8
    heavy = restrained_atoms(topology, "heavy")
    assert set(ligand) <= set(heavy)
    combined = restrained_atoms(topology, "backbone+ligand")
    backbone = restrained_atoms(topology, "backbone")
    assert set(combined) == set(backbone) | set(ligand)
    assert len(combined) == len(backbone) + 8
    assert np.all(np.diff(combined) > 0)


def test_unknown_restraint_choice_lists_the_choices():
    topology = mdtraj.load_prmtop(data_path("alanine-dipeptide-explicit.prmtop"))
    with pytest.raises(JobFileError) as exc_info:
        restrained_atoms(topology, "backbone+ligands")
    assert "ligand" in str(exc_info.value) and "'+'" in str(exc_info.value)
