"""REST2 scaled Hamiltonians: per-term energies and forces against OpenMM with the same scaling
applied independently through OpenMM's own API, and the lambda-dependence of the energy."""

import math

import mdtraj
import numpy as np
import openmm as mm
import pytest
from openmm import app, unit
from reference import data_path, force_agreement, openmm_evaluation
from systems import alanine_dipeptide

import bencao
from bencao.ensemble.rest2 import scale_solute, solute_atoms
from bencao.errors import JobFileError

SCALE = 0.6


@pytest.fixture(scope="module")
def dipeptide():
    """Alanine dipeptide in TIP3P with PME, and its solute: the central ALA residue (so that
    torsions and 1-4 pairs straddle the solute's boundary)."""
    system, positions, box = alanine_dipeptide(nonbondedMethod=app.PME,
                                               nonbondedCutoff=0.9 * unit.nanometer,
                                               constraints=app.HBonds)
    topology = mdtraj.load_prmtop(data_path("alanine-dipeptide-explicit.prmtop"))
    return system, positions, box, topology, solute_atoms(topology, "resname ALA")


def _openmm_rest2(system: mm.System, solute, scale: float) -> mm.System:
    """REST2 written directly on an OpenMM System (the test's own implementation)."""
    system = mm.XmlSerializer.deserialize(mm.XmlSerializer.serialize(system))
    hot = {int(i) for i in solute}
    root = math.sqrt(scale)

    def factor(atoms):
        inside = [a in hot for a in atoms]
        return scale if all(inside) else root if any(inside) else 1.0

    for force in system.getForces():
        if isinstance(force, mm.NonbondedForce):
            for i in hot:
                q, sigma, eps = force.getParticleParameters(i)
                force.setParticleParameters(i, q * root, sigma, eps * scale)
            for k in range(force.getNumExceptions()):
                i, j, qq, sigma, eps = force.getExceptionParameters(k)
                f = factor((i, j))
                force.setExceptionParameters(k, i, j, qq * f, sigma, eps * f)
        elif isinstance(force, mm.PeriodicTorsionForce):
            for k in range(force.getNumTorsions()):
                *atoms, n, phase, barrier = force.getTorsionParameters(k)
                force.setTorsionParameters(k, *atoms, n, phase, barrier * factor(atoms))
    return system


def test_scaled_energies_and_forces_match_openmm(dipeptide):
    system, positions, box, _, solute = dipeptide
    expected, expected_forces, expected_terms, _ = openmm_evaluation(
        _openmm_rest2(system, solute, SCALE), positions, box)
    scaled = scale_solute(bencao.System.from_openmm(system), solute, SCALE)
    result = bencao.evaluate(scaled, positions, box)
    # per-term agreement as for the unscaled system: float32 pair forces and the PME grid
    # leave ~1e-6 relative; the tolerances below are those of the import tests
    for name in ("PeriodicTorsionForce", "NonbondedForce", "HarmonicBondForce"):
        assert result.terms[name] == pytest.approx(expected_terms[name], rel=2e-5, abs=2e-3), name
    assert result.energy == pytest.approx(expected, rel=2e-5)
    median, p99 = force_agreement(result.forces, expected_forces)
    assert median < 1e-5 and p99 < 1e-3


def test_energy_is_lambda_uss_plus_root_lambda_usw_plus_uww(dipeptide):
    """U(lambda) = lambda U_ss + sqrt(lambda) U_sw + U_ww for torsions and non-bonded pairs
    without PME's grid (reaction-field cutoff, so every pair term is exactly bilinear in the
    scaled parameters): three lambdas fix the three parts, a fourth must follow from them."""
    _system, positions, box, _, solute = dipeptide
    openmm_system, *_ = alanine_dipeptide(nonbondedMethod=app.CutoffPeriodic,
                                          nonbondedCutoff=0.9 * unit.nanometer)
    base = bencao.System.from_openmm(openmm_system)
    lambdas = [1.0, 0.81, 0.49, 0.3]
    energies = []
    for lam in lambdas:
        terms = bencao.evaluate(scale_solute(base, solute, lam), positions, box).terms
        energies.append(terms["NonbondedForce"] + terms["PeriodicTorsionForce"])
    design = np.array([[lam, math.sqrt(lam), 1.0] for lam in lambdas])
    parts = np.linalg.solve(design[:3], energies[:3])
    assert design[3] @ parts == pytest.approx(energies[3], rel=1e-6, abs=1e-3)
    assert abs(parts[0]) > 1.0 and abs(parts[1]) > 1.0   # both solute parts are really there


def test_unscaled_terms_and_lambda_one_are_untouched(dipeptide):
    system, *_, solute = dipeptide
    base = bencao.System.from_openmm(system)
    assert scale_solute(base, solute, 1.0) is base
    scaled = scale_solute(base, solute, SCALE)
    for old, new in zip(base.terms, scaled.terms):
        if type(old).__name__ in ("HarmonicBonds", "HarmonicAngles"):
            assert new is old


def test_solute_choices(dipeptide):
    topology = dipeptide[3]
    assert len(solute_atoms(topology, "protein")) == 22
    assert len(solute_atoms(topology, "resname ALA")) == 10
    with pytest.raises(JobFileError, match="selects no atoms"):
        solute_atoms(topology, "ligand")
    with pytest.raises(JobFileError, match="not an MDTraj selection"):
        solute_atoms(topology, "resname and and")
