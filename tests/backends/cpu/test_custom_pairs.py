"""CustomNonbondedForce with an expression of its own on the CPU: against OpenMM for each
method, with exclusions, switching, globals and dU/dp; bit-identical on any thread count; what
is not supported yet is refused by name."""

from __future__ import annotations

import dataclasses

import numba
import numpy as np
import openmm as mm
import pytest

import bencao
from bencao.backends.cpu.backend import CpuBackend
from bencao.forces import CustomPairs, TabulatedPairs
from bencao.io.openmm_import import UnsupportedForceError

LJ = ("lam*4*eps*((sig/r)^12-(sig/r)^6); sig=0.5*(sigma1+sigma2); "
      "eps=sqrt(epsilon1*epsilon2)")
WCA = "step(rc-r)*(4*eps*((s/r)^12-(s/r)^6)+eps); rc=2^(1/6)*s; s=0.32; eps=0.6"
EDGE = 2.6  # box edge, nm


def fluid(expression=LJ, method=2, n=216, seed=5, derivative=True):
    """``n`` particles on a jittered 6x6x6 grid (0.43 nm apart) in a cubic box, one
    CustomNonbondedForce (dU/dlam asked if ``derivative``); returns (openmm.System, force,
    positions)."""
    rng = np.random.default_rng(seed)
    system = mm.System()
    system.setDefaultPeriodicBoxVectors(mm.Vec3(EDGE, 0, 0), mm.Vec3(0, EDGE, 0),
                                        mm.Vec3(0, 0, EDGE))
    force = mm.CustomNonbondedForce(expression)
    if "sigma1" in expression:
        force.addPerParticleParameter("sigma")
        force.addPerParticleParameter("epsilon")
        force.addGlobalParameter("lam", 0.8)
        if derivative:
            force.addEnergyParameterDerivative("lam")
    for i in range(n):
        system.addParticle(40.0)
        force.addParticle([rng.uniform(0.30, 0.34), rng.uniform(0.5, 0.7)]
                          if "sigma1" in expression else [])
    for i in range(0, n - 1, 7):
        force.addExclusion(i, i + 1)
    force.setNonbondedMethod(method)
    force.setCutoffDistance(0.9)
    force.setUseSwitchingFunction(True)
    force.setSwitchingDistance(0.75)
    system.addForce(force)
    grid = np.stack(np.meshgrid(*[np.arange(6)] * 3, indexing="ij"), -1).reshape(-1, 3)[:n]
    positions = grid * (EDGE / 6) + rng.uniform(-0.06, 0.06, (n, 3))
    return system, force, positions


def reference(system, positions, parameters=None):
    context = mm.Context(system, mm.VerletIntegrator(1.0), mm.Platform.getPlatformByName("Reference"))
    context.setPositions(positions)
    for name, value in (parameters or {}).items():
        context.setParameter(name, value)
    state = context.getState(getEnergy=True, getForces=True, getParameterDerivatives=True)
    return (state.getPotentialEnergy()._value, state.getForces(asNumpy=True)._value,
            dict(state.getEnergyParameterDerivatives()))


@pytest.mark.parametrize("method", [0, 1, 2], ids=["NoCutoff", "CutoffNonPeriodic",
                                                   "CutoffPeriodic"])
@pytest.mark.parametrize("lam", [0.8, 0.3])
def test_lennard_jones_expression_matches_openmm(method, lam):
    system, _, positions = fluid(method=method)
    ours = bencao.System.from_openmm(system)
    assert isinstance(ours.terms[0], CustomPairs)
    backend = CpuBackend(ours)
    backend.set_parameter("lam", lam)
    evaluation = backend.compute(positions, parameter_derivatives=True)
    energy, forces, derivatives = reference(system, positions, {"lam": lam})
    # float64 on both sides, summed in different orders over ~10^4 pairs: ~1e-13 relative.
    assert evaluation.energy == pytest.approx(energy, rel=1e-11)
    assert evaluation.parameter_derivatives["lam"] == pytest.approx(derivatives["lam"], rel=1e-11)
    # Each particle sums up to N pair forces, each truncated to 2^-32 kJ/mol/nm in fixed point.
    np.testing.assert_allclose(evaluation.forces, forces, rtol=1e-10, atol=len(positions) * 2**-31)


def test_piecewise_expression_without_parameters_matches_openmm():
    system, _, positions = fluid(WCA)
    evaluation = CpuBackend(bencao.System.from_openmm(system)).compute(positions)
    energy, forces, _ = reference(system, positions)
    assert energy > 0  # some pairs are inside the WCA range, or the test would prove nothing
    # As above: float64 throughout, fixed-point force sums.
    assert evaluation.energy == pytest.approx(energy, rel=1e-11)
    np.testing.assert_allclose(evaluation.forces, forces, rtol=1e-10, atol=len(positions) * 2**-31)


def test_forces_are_bit_identical_on_one_and_two_threads():
    system, _, positions = fluid()
    backend = CpuBackend(bencao.System.from_openmm(system))
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = backend.compute(positions, parameter_derivatives=True)
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        two = backend.compute(positions, parameter_derivatives=True)
    finally:
        numba.set_num_threads(before)
    np.testing.assert_array_equal(one.forces, two.forces)
    assert one.energy == two.energy
    assert one.parameter_derivatives == two.parameter_derivatives


def test_type_table_forms_keep_their_own_kernel():
    system, force, positions = fluid("acoef(type1,type2)/r^12-bcoef(type1,type2)/r^6", n=8)
    force.addPerParticleParameter("type")
    for i in range(8):
        force.setParticleParameters(i, [i % 2])
    force.addTabulatedFunction("acoef", mm.Discrete2DFunction(2, 2, [1e-6, 2e-6, 2e-6, 3e-6]))
    force.addTabulatedFunction("bcoef", mm.Discrete2DFunction(2, 2, [1e-3, 2e-3, 2e-3, 3e-3]))
    assert isinstance(bencao.System.from_openmm(system).terms[0], TabulatedPairs)


#: Interaction groups: disjoint sets, overlapping sets (pairs in both counted once per group)
#: and one group of everything (which OpenMM counts differently in the long-range correction).
GROUPS = {
    "disjoint+overlapping": [(range(30), range(30, 216)), (range(30), range(40))],
    "everything": [(range(216), range(216))],
    "none": [],
}


@pytest.mark.parametrize("groups", list(GROUPS))
@pytest.mark.parametrize("correction", [False, True], ids=["plain", "long-range-correction"])
def test_interaction_groups_and_long_range_correction_match_openmm(groups, correction):
    system, force, positions = fluid()
    force.setUseLongRangeCorrection(correction)
    for first, second in GROUPS[groups]:
        force.addInteractionGroup(list(first), list(second))
    backend = CpuBackend(bencao.System.from_openmm(system))
    backend.set_parameter("lam", 0.45)
    evaluation = backend.compute(positions, parameter_derivatives=True)
    energy, forces, derivatives = reference(system, positions, {"lam": 0.45})
    # Pairs as above (1e-13); OpenMM 8.6 evaluates the correction's integrand in float32
    # (bencao in float64, the same quadrature), ~4e-8 of a correction that is ~8% of E.
    tolerance = 1e-8 if correction else 1e-11
    assert evaluation.energy == pytest.approx(energy, rel=tolerance)
    assert evaluation.parameter_derivatives["lam"] == pytest.approx(derivatives["lam"],
                                                                    rel=tolerance)
    # The correction adds no force; pair forces as above.
    np.testing.assert_allclose(evaluation.forces, forces, rtol=1e-10, atol=len(positions) * 2**-31)


def test_long_range_correction_follows_the_volume_and_lambda():
    system, force, positions = fluid()
    force.setUseLongRangeCorrection(True)
    backend = CpuBackend(bencao.System.from_openmm(system))
    box = np.diag([EDGE] * 3)
    term = backend.terms[0]
    small, large = term.long_range_energy(box), term.long_range_energy(2 * box)
    assert small < 0 and large == pytest.approx(small / 8, rel=1e-14)  # C / V
    backend.set_parameter("lam", 0.4)
    assert term.long_range_energy(box) == pytest.approx(0.5 * small, rel=1e-14)  # E is linear in lam


#: Computed values (``addComputedValue``) that use a parameter, a global and a definition of
#: their own named as one of the energy's, so that renaming per particle is exercised.
COMPUTED = ("lam*4*eps*((sig/r)^12-(sig/r)^6); sig=0.5*(s1+s2); eps=e1*e2; e=0",
            [("s", "sigma"), ("e", "sqrt(epsilon)*e; e=1+0.3*lam")])


@pytest.mark.parametrize("correction", [False, True], ids=["plain", "long-range-correction"])
def test_computed_values_match_openmm(correction):
    # OpenMM computes no parameter derivatives of a force with computed values; bencao does,
    # checked below against central differences of OpenMM's energies.
    system, force, positions = fluid(derivative=False)
    force.setEnergyFunction(COMPUTED[0])
    for name, expression in COMPUTED[1]:
        force.addComputedValue(name, expression)
    force.setUseLongRangeCorrection(correction)
    ours = bencao.System.from_openmm(system)
    (term,) = ours.terms
    ours = dataclasses.replace(ours, terms=(dataclasses.replace(term, derivative_names=("lam",)),))
    backend = CpuBackend(ours)
    backend.set_parameter("lam", 0.45)
    evaluation = backend.compute(positions, parameter_derivatives=True)
    energy, forces, _ = reference(system, positions, {"lam": 0.45})
    # As in the test above: pairs in float64, OpenMM's correction integrand in float32.
    tolerance = 1e-8 if correction else 1e-11
    assert evaluation.energy == pytest.approx(energy, rel=tolerance)
    np.testing.assert_allclose(evaluation.forces, forces, rtol=1e-10, atol=len(positions) * 2**-31)
    if correction:
        # OpenMM's float32 correction (1e-9 of E) differs between lam +- h by its rounding,
        # which a difference quotient amplifies ~1e4-fold: no reference for dU/dlam here.
        return
    # lam enters the computed value e: dU/dlam checks the chain rule through it.  E is a cubic
    # in lam, so a central difference with h = 1e-4 is off by ~h^2 = 1e-8 relative at most.
    h = 1e-4
    plus, minus = (reference(system, positions, {"lam": 0.45 + d})[0] for d in (h, -h))
    assert evaluation.parameter_derivatives["lam"] == pytest.approx((plus - minus) / (2 * h),
                                                                    rel=1e-6)


@pytest.mark.parametrize("change, message", [
    (lambda f: f.addComputedValue("v", "sigma*k"), "computed value 'v': 'k' in 'sigma*k' is "
                                                   "neither"),
    (lambda f: f.setEnergyFunction("lam*foo(r)"), "unknown function 'foo'"),
    (lambda f: f.setEnergyFunction("sigma*r"), "'sigma' in 'sigma*r' is neither"),
])
def test_what_is_not_supported_is_refused_by_name(change, message):
    system, force, _ = fluid()
    change(force)
    with pytest.raises(UnsupportedForceError, match="^CustomNonbondedForce: ") as error:
        bencao.System.from_openmm(system)
    assert message in str(error.value)


def test_parameter_and_pair_list_survive_a_checkpoint():
    system, force, positions = fluid(n=64)
    force.setUseLongRangeCorrection(True)
    ours = bencao.System.from_openmm(system)
    box = np.diag([EDGE] * 3)

    def simulation():
        return bencao.Simulation(ours, bencao.LangevinMiddleIntegrator(300.0, 1.0, 0.002),
                                 positions, box, seed=5)

    first = simulation()
    first.set_parameter("lam", 0.3)
    first.step(20)
    arrays, values = first.get_checkpoint_state()
    first.step(30)
    restarted = simulation()
    restarted.set_checkpoint_state(arrays, values)
    assert restarted.get_parameter("lam") == 0.3
    restarted.step(30)
    np.testing.assert_array_equal(restarted.positions, first.positions)
