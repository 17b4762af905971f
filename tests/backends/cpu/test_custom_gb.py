"""Implicit solvent and other CustomGBForce models on the CPU, against OpenMM's Reference
platform: every GB model of OpenMM's app layer on trp-cage, GBSAOBCForce, and a CustomGBForce
made to reach every code path (position-dependent values, exclusions, a periodic cutoff)."""

from __future__ import annotations

import numba
import numpy as np
import openmm as mm
import pytest
from implicit import assert_gb_matches, trpcage
from reference import check_against_openmm

import bencao
from bencao.backends.cpu.backend import CpuBackend
from bencao.forces import CustomGB
from bencao.io.openmm_import import UnsupportedForceError

#: OBC2 (the common choice) and GBn2 (tables); HCT, OBC1 and GBn are checked the same way in
#: tests/validation/test_implicit_solvent_validation.py, to keep this file quick.
MODELS = ["obc2", "gbn2"]


@pytest.mark.parametrize("model", MODELS)
def test_app_layer_models_match_reference(model):
    system, positions = trpcage(model)
    assert_gb_matches(system, positions)


def test_whole_implicit_protein_at_openmm_cpu_parity():
    system, positions = trpcage("gbn2")
    check_against_openmm(system, positions)


def test_gbsaobcforce_matches_reference():
    """A GBSAOBCForce with trp-cage's OBC2 radii and scales, with the ACE surface term."""
    custom, positions = trpcage("obc2")
    (gb,) = [f for f in custom.getForces() if isinstance(f, mm.CustomGBForce)]
    system = mm.XmlSerializer.deserialize(mm.XmlSerializer.serialize(custom))
    system.removeForce([i for i, f in enumerate(system.getForces())
                        if isinstance(f, mm.CustomGBForce)][0])
    obc = mm.GBSAOBCForce()
    for i in range(system.getNumParticles()):
        charge, offset_radius, scaled = gb.getParticleParameters(i)[:3]
        obc.addParticle(charge, offset_radius + 0.009, scaled / offset_radius)
    system.addForce(obc)
    assert_gb_matches(system, positions)


def _toy(method):
    """A CustomGBForce through every path: a pair value with exclusions, per-particle values
    using earlier values and the position, per-particle and pair terms with and without
    exclusions, a global parameter and a discrete table."""
    rng = np.random.default_rng(2)
    n = 40
    system = mm.System()
    system.setDefaultPeriodicBoxVectors(mm.Vec3(2.1, 0, 0), mm.Vec3(0, 2.1, 0), mm.Vec3(0, 0, 2.1))
    force = mm.CustomGBForce()
    force.addPerParticleParameter("q")
    force.addPerParticleParameter("kind")
    force.addGlobalParameter("scale", 0.7)
    force.addTabulatedFunction("weight", mm.Discrete1DFunction([0.5, 1.5, 2.5]))
    force.addComputedValue("I", "exp(-r^2)*q2*weight(kind2)", mm.CustomGBForce.ParticlePair)
    force.addComputedValue("B", "1 + I^2 + 0.1*x - 0.05*z", mm.CustomGBForce.SingleParticle)
    force.addComputedValue("C", "B*q + scale*I", mm.CustomGBForce.SingleParticle)
    force.addEnergyTerm("C^2 + 0.3*B*y", mm.CustomGBForce.SingleParticle)
    # Pair terms symmetric in 1 and 2: OpenMM's cutoff lists pairs in no particular order.
    force.addEnergyTerm("q1*q2*(B1*C2 + C1*B2)/r", mm.CustomGBForce.ParticlePair)
    force.addEnergyTerm("0.1*exp(-r)*I1*I2", mm.CustomGBForce.ParticlePairNoExclusions)
    for i in range(n):
        system.addParticle(12.0)
        force.addParticle([rng.uniform(-1, 1), float(i % 3)])
    for i in range(0, n - 1, 3):
        force.addExclusion(i, i + 1)
    force.setNonbondedMethod(method)
    force.setCutoffDistance(0.8)
    system.addForce(force)
    grid = np.stack(np.meshgrid(*[np.arange(4)] * 3, indexing="ij"), -1).reshape(-1, 3)[:n]
    positions = grid * 0.5 + rng.uniform(0.0, 0.15, (n, 3))
    return system, positions


@pytest.mark.parametrize("method", [0, 1, 2], ids=["NoCutoff", "CutoffNonPeriodic",
                                                   "CutoffPeriodic"])
def test_every_path_of_a_custom_gb_force_matches_reference(method):
    system, positions = _toy(method)
    box = np.diag([2.1] * 3) if method == 2 else None
    backend = assert_gb_matches(system, positions, box)
    backend.set_parameter("scale", -0.4)
    assert backend.get_parameter("scale") == -0.4


def test_forces_are_bit_identical_on_one_and_two_threads():
    system, positions = trpcage("gbn2")
    backend = CpuBackend(bencao.System.from_openmm(system))
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = backend.compute(positions)
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        two = backend.compute(positions)
    finally:
        numba.set_num_threads(before)
    np.testing.assert_array_equal(one.forces, two.forces)
    assert one.energy == two.energy


def test_a_bad_expression_fails_on_import_naming_the_value():
    system, _ = _toy(0)
    (force,) = system.getForces()
    force.setComputedValueParameters(1, "B", "1 + I^2 + undefined", mm.CustomGBForce.SingleParticle)
    with pytest.raises(UnsupportedForceError, match="computed value 'B'.*'undefined'"):
        bencao.System.from_openmm(system)


def test_system_file_round_trip(tmp_path):
    system, positions = _toy(2)
    ours = bencao.System.from_openmm(system)
    ours.save(tmp_path / "gb.npz")
    loaded = bencao.System.load(tmp_path / "gb.npz")
    (term,) = loaded.terms
    assert isinstance(term, CustomGB) and term.table_shapes == ((3,),)
    box = np.diag([2.1] * 3)
    assert CpuBackend(loaded).compute(positions, box).energy == \
        CpuBackend(ours).compute(positions, box).energy


def toy_with_derivative(method):
    """The toy force with its global ``scale`` in the pair value, a per-particle value, and
    per-particle and pair energy terms, and dE/dscale asked (OpenMM's
    ``addEnergyParameterDerivative``)."""
    system, positions = _toy(method)
    force = system.getForce(0)
    force.setComputedValueParameters(0, "I", "exp(-scale*r^2)*q2*weight(kind2)",
                                     mm.CustomGBForce.ParticlePair)
    force.setEnergyTermParameters(0, "C^2 + 0.3*B*y*scale", mm.CustomGBForce.SingleParticle)
    force.setEnergyTermParameters(2, "0.1*exp(-r*scale)*I1*I2",
                                  mm.CustomGBForce.ParticlePairNoExclusions)
    force.addEnergyParameterDerivative("scale")
    return system, positions


@pytest.mark.parametrize("method", [0, 2], ids=["NoCutoff", "CutoffPeriodic"])
def test_parameter_derivative_matches_reference(method):
    """dE/dp through every path: explicit in the energy terms, and through the values (the
    pair sum I, then B and C built on it)."""
    system, positions = toy_with_derivative(method)
    box = np.diag([2.1] * 3) if method == 2 else None
    context = mm.Context(system, mm.VerletIntegrator(0.001),
                         mm.Platform.getPlatformByName("Reference"))
    context.setPositions(positions)
    expected = context.getState(getParameterDerivatives=True).getEnergyParameterDerivatives()
    backend = CpuBackend(bencao.System.from_openmm(system))
    evaluation = backend.compute(positions, box, parameter_derivatives=True)
    # float64 on both sides over the same N^2 sums in other orders
    assert evaluation.parameter_derivatives["scale"] == pytest.approx(expected["scale"],
                                                                      rel=1e-10)
    # and at another value of the parameter, set at run time
    backend.set_parameter("scale", 1.3)
    context.setParameter("scale", 1.3)
    expected = context.getState(getParameterDerivatives=True).getEnergyParameterDerivatives()
    evaluation = backend.compute(positions, box, parameter_derivatives=True)
    assert evaluation.parameter_derivatives["scale"] == pytest.approx(expected["scale"],
                                                                      rel=1e-10)
