"""Energy minimization: convergence, constraints, virtual sites and blow-ups, checked against
OpenMM's LocalEnergyMinimizer and against forces evaluated independently by OpenMM."""

from __future__ import annotations

import functools

import numpy as np
import openmm as mm
import pytest
from openmm import app, unit
from reference import openmm_evaluation
from systems import alanine_dipeptide, water_box

import bencao
from bencao.backends.cpu.backend import BlowUpError
from bencao.backends.cpu.constraints import CpuConstraints
from bencao.dynamics.minimize import FIRST_STEP, minimize_energy

TOLERANCE = 10.0  # kJ/mol/nm, OpenMM's default
# Two minimizers from one start end in different local minima; in trials ours ended 0.2-3.3 % of
# the energy drop below OpenMM's (water boxes, alanine dipeptide), so 3 % above it is a real miss.
ENERGY_BAND = 0.03


@functools.cache
def water(model: str, rigid: bool):
    """A 1.5 nm box of water: (openmm System, bencao System, backend, positions nm)."""
    top, positions, _, ff = water_box(1.5, model)
    # 0.7 nm cutoff: PME needs the cutoff below half the 1.5 nm box
    system = ff.createSystem(
        top, nonbondedMethod=app.PME, nonbondedCutoff=0.7 * unit.nanometer,
        constraints=app.HBonds if rigid else None, rigidWater=rigid,
    )
    ours = bencao.System.from_openmm(system)
    return system, ours, bencao.make_backend(ours), positions


def energy_and_forces(backend):
    def compute(positions):
        evaluation = backend.compute(positions)
        return evaluation.energy, evaluation.forces

    return compute


def solver(ours):
    return CpuConstraints(ours.constraint_atoms, ours.constraint_lengths, ours.masses)


@functools.cache
def minimized(model: str, rigid: bool):
    _, ours, backend, positions = water(model, rigid)
    constraints = solver(ours) if rigid else None
    return minimize_energy(energy_and_forces(backend), positions, ours.masses, constraints, TOLERANCE)


def openmm_minimum(system, positions):
    """OpenMM's LocalEnergyMinimizer (CPU platform, default constraint tolerance 1e-5)."""
    context = mm.Context(
        system, mm.VerletIntegrator(0.001), mm.Platform.getPlatformByName("CPU"), {"Threads": "2"}
    )
    context.setPositions(positions * unit.nanometer)
    mm.LocalEnergyMinimizer.minimize(context, TOLERANCE, 0)
    return context.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(unit.nanometer)


def reference_energy(system, positions):
    return openmm_evaluation(system, positions)[0]


def rigid_body_rms(system, positions, forces, molecules):
    """RMS per-particle force left after removing what rigid molecules cannot feel, kJ/mol/nm.

    For a molecule held rigid by its constraints the allowed motions are the rigid-body ones
    (v_i = a + w x r_i), so the useful force is the least-squares fit of that form to the forces:
    an independent route to the constrained force that the minimizer reports.
    """
    massive = np.array([system.getParticleMass(i).value_in_unit(unit.dalton) > 0
                        for i in range(system.getNumParticles())])
    total, count = 0.0, 0
    for atoms in molecules:
        atoms = [a for a in atoms if massive[a]]
        r = positions[atoms] - positions[atoms].mean(axis=0)
        basis = np.zeros((3 * len(atoms), 6))
        for row, ri in enumerate(r):
            basis[3 * row:3 * row + 3, :3] = np.eye(3)
            basis[3 * row:3 * row + 3, 3:] = -np.array(
                [[0, -ri[2], ri[1]], [ri[2], 0, -ri[0]], [-ri[1], ri[0], 0]]
            )
        fitted = basis @ np.linalg.lstsq(basis, forces[atoms].ravel(), rcond=None)[0]
        total += float(fitted @ fitted)
        count += len(atoms)
    return np.sqrt(total / count)


def molecules_of(model):
    top = water_box(1.5, model)[0]
    return [[atom.index for atom in residue.atoms()] for residue in top.residues()]


# ---------------------------------------------------------------------------------------------
# convergence, against OpenMM
# ---------------------------------------------------------------------------------------------


def test_flexible_water_converges_to_openmm_quality_minimum():
    system, _, _, start = water("tip3p", rigid=False)
    result = minimized("tip3p", rigid=False)
    assert result.converged and result.constraint_error == 0.0

    # the RMS force criterion holds for forces computed by OpenMM itself at our positions
    energy, forces, _, _ = openmm_evaluation(system, result.positions)
    independent = np.sqrt(np.mean(np.sum(forces**2, axis=1)))
    assert independent < TOLERANCE
    # bencao and OpenMM Reference forces agree to ~1e-5 relative: 1 % leaves ample room
    assert result.rms_force == pytest.approx(independent, rel=1e-2)

    initial = reference_energy(system, start)
    theirs = reference_energy(system, openmm_minimum(system, start))
    assert energy < initial - 1000.0  # a 1.5 nm Modeller box drops by ~10^4 kJ/mol
    assert energy <= theirs + ENERGY_BAND * (initial - theirs)


def test_rigid_tip4p_water_keeps_constraints_and_virtual_sites():
    system, ours, _, start = water("tip4pew", rigid=True)
    result = minimized("tip4pew", rigid=True)
    assert result.converged
    # SETTLE puts every water back exactly (to rounding), far inside the 1e-5 tolerance
    assert result.constraint_error <= solver(ours).tolerance
    # massless M sites are not degrees of freedom: their rows come back as given
    sites = ours.masses == 0
    assert sites.sum() == len(ours.virtual_sites) > 0
    np.testing.assert_array_equal(result.positions[sites], start[sites])

    # OpenMM places the M sites itself and moves their forces onto O and H
    energy, forces, _, placed = openmm_evaluation(system, result.positions)
    independent = rigid_body_rms(system, placed, forces, molecules_of("tip4pew"))
    assert independent < TOLERANCE
    # the minimizer's projection onto the constraints and the rigid-body fit are the same
    # projection done two ways; forces of the two engines differ by ~1e-5 relative
    assert result.rms_force == pytest.approx(independent, rel=1e-2)

    initial = reference_energy(system, start)
    theirs = reference_energy(system, openmm_minimum(system, start))
    assert energy <= theirs + ENERGY_BAND * (initial - theirs)


def test_a_minimized_structure_needs_no_iterations():
    _, ours, backend, _ = water("tip3p", rigid=False)
    first = minimized("tip3p", rigid=False)
    again = minimize_energy(energy_and_forces(backend), first.positions, ours.masses, None, TOLERANCE)
    assert again.iterations == 0 and again.converged
    np.testing.assert_array_equal(again.positions, first.positions)


# ---------------------------------------------------------------------------------------------
# max_iterations, constraints of a solute (SHAKE clusters) and waters
# ---------------------------------------------------------------------------------------------


def test_max_iterations_bounds_the_work_and_constraints_still_hold():
    system, start, _ = alanine_dipeptide(
        nonbondedMethod=app.PME, nonbondedCutoff=0.9 * unit.nanometer, constraints=app.HBonds
    )
    ours = bencao.System.from_openmm(system)
    backend = bencao.make_backend(ours)
    constraints = solver(ours)
    calls = []

    def compute(positions):
        calls.append(1)
        evaluation = backend.compute(positions)
        return evaluation.energy, evaluation.forces

    before = start.copy()
    result = minimize_energy(compute, start, ours.masses, constraints, TOLERANCE, max_iterations=15)
    np.testing.assert_array_equal(start, before)  # the input is not modified
    # this system needs ~1500 iterations, so 15 cannot converge and must all be used
    assert result.iterations == 15 and not result.converged
    # at most 20 line-search evaluations per iteration (SciPy's maxls) plus start and finish
    assert len(calls) <= 21 * 15 + 4
    assert result.constraint_error <= constraints.tolerance
    # the first iterations remove the worst strain: > 10^3 kJ/mol of the ~10^4 total drop
    assert result.energy < backend.compute(start).energy - 1000.0
    # the energy reported is that of the positions returned (after the final projection);
    # bencao and OpenMM Reference agree on this system to ~1e-3 kJ/mol (of ~-3e4)
    assert result.energy == pytest.approx(reference_energy(system, result.positions), abs=0.05)


# ---------------------------------------------------------------------------------------------
# blow-ups
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("failure", ["raise", "nan"])
def test_a_line_search_step_into_a_blow_up_is_backed_off(failure):
    # Two particles joined by a spring of rest length 0.15 nm; below 0.1 nm the "backend" fails
    # as a real one does for overlapping atoms.  L-BFGS's first trial step has length FIRST_STEP
    # in the 6 coordinates, shortening the distance by sqrt(2) FIRST_STEP: from this start it
    # lands at 0.07 nm, inside the failing region.
    k, rest, cliff = 1000.0, 0.15, 0.1
    trials = []

    def compute(x):
        d = x[1] - x[0]
        r = np.linalg.norm(d)
        trials.append(r)
        if r < cliff:
            if failure == "raise":
                raise BlowUpError("overlapping atoms")
            return np.nan, np.full((2, 3), np.nan)
        force = k * (r - rest) * d / r
        return 0.5 * k * (r - rest) ** 2, np.array([force, -force])

    start = np.array([[0.0, 0.0, 0.0], [0.07 + np.sqrt(2) * FIRST_STEP, 0.0, 0.0]])
    result = minimize_energy(compute, start, np.ones(2), tolerance=1e-3)
    assert min(trials) < cliff  # the failing region was really visited
    assert result.converged
    # rms force 1e-3 on a k = 1000 spring leaves the length within ~1e-6 nm of its rest length
    assert np.linalg.norm(result.positions[1] - result.positions[0]) == pytest.approx(rest, abs=1e-5)


def test_a_start_with_coincident_atoms_is_refused_clearly():
    _, ours, backend, start = water("tip3p", rigid=False)
    clash = start.copy()
    clash[3] = clash[0]  # the oxygen of water 1 onto the oxygen of water 0
    with pytest.raises(BlowUpError, match="overlapping"):
        minimize_energy(energy_and_forces(backend), clash, ours.masses)

    def corrupt(positions):
        return np.nan, np.zeros_like(positions)

    with pytest.raises(BlowUpError, match="starting structure"):
        minimize_energy(corrupt, start, ours.masses)


@pytest.mark.parametrize("rigid", [False, True])
def test_a_close_clash_is_minimized_away(rigid):
    _, ours, backend, start = water("tip3p", rigid)
    clash = start.copy()
    # move water 1 rigidly so that its oxygen sits 0.1 nm from the oxygen of water 0:
    # LJ of ~10^6 kJ/mol and forces of ~10^8 kJ/mol/nm, still representable by the backend
    towards = (clash[3] - clash[0]) / np.linalg.norm(clash[3] - clash[0])
    clash[3:6] += clash[0] + 0.1 * towards - clash[3]
    assert backend.compute(clash).energy > 1e6
    constraints = solver(ours) if rigid else None
    # in trials 20 iterations opened every such clash; 30 leave a margin
    result = minimize_energy(energy_and_forces(backend), clash, ours.masses, constraints, TOLERANCE,
                             max_iterations=30)
    oxygens = result.positions[0::3]
    gaps = np.linalg.norm(oxygens[:, None] - oxygens[None], axis=-1) + 10 * np.eye(len(oxygens))
    # water oxygens sit >= ~0.25 nm apart once relaxed (TIP3P's O-O contact is ~0.28 nm)
    assert gaps.min() > 0.24
    # forces of an unrelaxed liquid (~10^3 kJ/mol/nm), not of a clash (~10^8)
    assert result.max_force < 1e4
    assert result.energy < -1000.0  # the cohesive energy of the liquid is back


# ---------------------------------------------------------------------------------------------
# input checks
# ---------------------------------------------------------------------------------------------


def test_bad_arguments_are_refused():
    def compute(positions):
        return 0.0, np.zeros_like(positions)

    with pytest.raises(ValueError, match="masses"):
        minimize_energy(compute, np.zeros((3, 3)), np.ones(2))
    with pytest.raises(ValueError, match="tolerance"):
        minimize_energy(compute, np.zeros((3, 3)), np.ones(3), tolerance=0.0)
    with pytest.raises(ValueError, match="max_iterations"):
        minimize_energy(compute, np.zeros((3, 3)), np.ones(3), max_iterations=-1)
