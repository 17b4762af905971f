"""NonbondedForce parameter offsets (OpenMM's alchemical form): bencao at a global value equals
bencao on the same force with the shifted parameters written in, bit for bit, and matches
OpenMM's Reference platform as it changes."""

from __future__ import annotations

import numpy as np
import openmm as mm
import pytest
from openmm import app, unit
from systems import alanine_dipeptide

import bencao
from bencao.backends.cpu.backend import CpuBackend
from bencao.forces import Nonbonded

#: The solute: the 22 atoms of alanine dipeptide.
SOLUTE = range(22)


def alchemical(system):
    """``system`` with the solute's charges and LJ switched by ``lambda_elec`` and
    ``lambda_lj`` (1 = fully on), and its 1-4 exceptions' charge products by ``lambda_elec``:
    the offsets move each parameter from its full value at 1 to zero (sigma kept) at 0."""
    force = next(f for f in system.getForces() if isinstance(f, mm.NonbondedForce))
    force.addGlobalParameter("lambda_elec", 1.0)
    force.addGlobalParameter("lambda_lj", 1.0)
    for i in SOLUTE:
        charge, sigma, epsilon = force.getParticleParameters(i)
        force.setParticleParameters(i, 0.0, sigma, 0.0)
        force.addParticleParameterOffset("lambda_elec", i, charge, 0.0, 0.0)
        force.addParticleParameterOffset("lambda_lj", i, 0.0, 0.0, epsilon)
    for k in range(force.getNumExceptions()):
        i, j, chargeprod, sigma, epsilon = force.getExceptionParameters(k)
        if i in SOLUTE and j in SOLUTE and chargeprod._value != 0.0:
            force.setExceptionParameters(k, i, j, 0.0, sigma, epsilon)
            force.addExceptionParameterOffset("lambda_elec", k, chargeprod, 0.0, 0.0)
    return system


@pytest.fixture(scope="module")
def case():
    system, positions, box = alanine_dipeptide(nonbondedMethod=app.PME,
                                               nonbondedCutoff=0.9 * unit.nanometer)
    return alchemical(system), positions, box


def test_offsets_are_imported(case):
    system, _, _ = case
    term = next(t for t in bencao.System.from_openmm(system).terms if isinstance(t, Nonbonded))
    assert term.offset_names == ("lambda_elec", "lambda_lj")
    assert len(term.particle_offsets) == 44 and len(term.exception_offsets) > 0


@pytest.mark.parametrize("lambda_elec, lambda_lj", [(1.0, 1.0), (0.5, 0.6), (0.0, 0.2)])
def test_offsets_equal_the_shifted_parameters_bit_for_bit(case, lambda_elec, lambda_lj):
    """Everything but the dispersion correction, which OpenMM keeps at the default values."""
    system, positions, box = case
    ours = bencao.System.from_openmm(system)
    backend = CpuBackend(ours)
    backend.set_parameter("lambda_elec", lambda_elec)
    backend.set_parameter("lambda_lj", lambda_lj)
    shifted = []
    for term in ours.terms:
        shifted.append(term.at({"lambda_elec": lambda_elec, "lambda_lj": lambda_lj})
                       if isinstance(term, Nonbonded) else term)
    plain = CpuBackend(bencao.System(**{**ours.__dict__, "terms": tuple(shifted)}))
    first, second = backend.compute(positions, box), plain.compute(positions, box)
    volume = abs(np.linalg.det(box))
    stale = (backend.terms[3].inner.dispersion_coefficient
             - plain.terms[3].dispersion_coefficient) / volume
    # Taking the stale correction back out is one more rounding of a ~1e4 kJ/mol sum: 1e-15.
    assert first.energy - stale == pytest.approx(second.energy, rel=1e-15, abs=0)
    assert (stale == 0.0) == (lambda_lj == 1.0)
    np.testing.assert_array_equal(first.forces, second.forces)


def test_energies_follow_openmm_as_lambda_changes(case):
    system, positions, box = case
    context = mm.Context(system, mm.VerletIntegrator(0.001), mm.Platform.getPlatformByName("Reference"))
    context.setPositions(positions)
    context.setPeriodicBoxVectors(*box)
    backend = CpuBackend(bencao.System.from_openmm(system))
    energies = []
    for lambda_elec, lambda_lj in [(1.0, 1.0), (0.5, 0.6), (0.0, 0.2), (0.0, 0.0)]:
        context.setParameter("lambda_elec", lambda_elec)
        context.setParameter("lambda_lj", lambda_lj)
        backend.set_parameter("lambda_elec", lambda_elec)
        backend.set_parameter("lambda_lj", lambda_lj)
        reference = context.getState(getEnergy=True).getPotentialEnergy()._value
        energy = backend.compute(positions, box).energy
        energies.append(energy)
        # The PME pair kernel is float32 (as OpenMM's CPU platform): ~1e-7 of the energy.
        assert energy == pytest.approx(reference, rel=2e-7)
    # The solute's interactions are hundreds of kJ/mol: the windows must differ by that much.
    assert abs(energies[0] - energies[-1]) > 50.0


def test_parameter_change_survives_a_checkpoint(case):
    system, positions, box = case
    ours = bencao.System.from_openmm(system)

    def simulation():
        return bencao.Simulation(ours, bencao.LangevinMiddleIntegrator(300.0, 1.0, 0.002),
                                 positions, box, seed=3)

    sim = simulation()
    sim.set_parameter("lambda_elec", 0.3)
    sim.step(3)
    arrays, values = sim.get_checkpoint_state()
    sim.step(5)
    restarted = simulation()
    restarted.set_checkpoint_state(arrays, values)
    assert restarted.get_parameter("lambda_elec") == 0.3
    restarted.step(5)
    np.testing.assert_array_equal(restarted.positions, sim.positions)
