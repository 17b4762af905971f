"""CUDA custom listed terms (OpenMM Custom{Bond,Angle,Torsion,External}Force with global
parameters) against the CPU backend and OpenMM.

The CUDA work runs in one subprocess (see ``cuda_harness``); the CPU backend and OpenMM's
Reference platform are evaluated here.  The case, small for the simulator, is 8 particles in a
2 nm rectangular box with one force of each custom listed kind:

* a CustomBondForce with ``min``, ``step``, ``exp`` and ``erf`` and the global ``lam`` (dU/dlam
  asked), bonds along the chain;
* a CustomAngleForce of cos(theta);
* a CustomTorsionForce with ``abs(theta)`` and the global ``lam2`` (dU/dlam2 asked);
* a CustomExternalForce with ``periodicdistance`` and ``lam`` again, with reference points more
  than half a box away from some particles, so that the minimum image matters.

Each is evaluated at two values of ``lam`` (set through ``Backend.set_parameter``).
"""

from __future__ import annotations

import math

import cuda_harness
import numpy as np
import openmm as mm
import pytest
from openmm import unit

import bencao
from bencao.backends.cpu.backend import CpuBackend
from bencao.constants import FORCE_SCALE

# ------------------------------------------------------------------------------------------
# The case, built the same way here and in the subprocess
# ------------------------------------------------------------------------------------------

N_PARTICLES = 8
#: Edge of the cubic box, nm
BOX_EDGE = 2.0
BOX = np.diag([BOX_EDGE] * 3)

BOND = "lam*0.5*k*(r-r0)^2 + min(r, 0.3)*step(r-0.1) + exp(-r)*erf(r)"
ANGLE = "k*(cos(theta)-cos(t0))^2"
TORSION = "k*(1+cos(3*theta-ph)) + lam2*abs(theta)"
EXTERNAL = "0.5*kx*periodicdistance(x,y,z,x0,y0,z0)^2 + lam*x"

#: Default of ``lam`` (both the bond and the external force declare it) and of ``lam2``
LAM_DEFAULT = 0.7
LAM2_DEFAULT = 0.3
#: The values of ``lam`` evaluated, in order (the default first)
LAMS = (0.7, 0.2)

#: Force class names, in the order the forces are added (and the bencao terms come out)
FORCE_NAMES = ("CustomBondForce", "CustomAngleForce", "CustomTorsionForce",
               "CustomExternalForce")


def case():
    """(openmm.System, positions (8, 3) nm): the four custom forces described in the module
    notes, with parameters and positions from a fixed seed."""
    rng = np.random.default_rng(20240632)
    positions = rng.uniform(0.0, 1.0, size=(N_PARTICLES, 3))
    system = mm.System()
    for _ in range(N_PARTICLES):
        system.addParticle(12.0)
    system.setDefaultPeriodicBoxVectors(*(mm.Vec3(*row) for row in BOX))

    bonds = mm.CustomBondForce(BOND)
    bonds.addPerBondParameter("k")
    bonds.addPerBondParameter("r0")
    bonds.addGlobalParameter("lam", LAM_DEFAULT)
    bonds.addEnergyParameterDerivative("lam")
    for i in range(N_PARTICLES - 1):
        bonds.addBond(i, i + 1, [rng.uniform(100.0, 500.0), rng.uniform(0.1, 0.3)])
    system.addForce(bonds)

    angles = mm.CustomAngleForce(ANGLE)
    angles.addPerAngleParameter("k")
    angles.addPerAngleParameter("t0")
    for i in range(N_PARTICLES - 2):
        angles.addAngle(i, i + 1, i + 2, [rng.uniform(20.0, 80.0), rng.uniform(1.6, 2.2)])
    system.addForce(angles)

    torsions = mm.CustomTorsionForce(TORSION)
    torsions.addPerTorsionParameter("k")
    torsions.addPerTorsionParameter("ph")
    torsions.addGlobalParameter("lam2", LAM2_DEFAULT)
    torsions.addEnergyParameterDerivative("lam2")
    for i in range(N_PARTICLES - 3):
        torsions.addTorsion(i, i + 1, i + 2, i + 3,
                            [rng.uniform(1.0, 5.0), rng.uniform(-np.pi, np.pi)])
    system.addForce(torsions)

    external = mm.CustomExternalForce(EXTERNAL)
    external.addPerParticleParameter("kx")
    for name in ("x0", "y0", "z0"):
        external.addPerParticleParameter(name)
    external.addGlobalParameter("lam", LAM_DEFAULT)
    for i in range(N_PARTICLES):
        # Even particles: a reference 1.1-1.6 nm away along one axis (more than half the box,
        # so the minimum image is another copy); odd ones: within 0.3 nm.
        offset = rng.uniform(-0.3, 0.3, size=3)
        if i % 2 == 0:
            offset[i // 2 % 3] = rng.choice([-1.0, 1.0]) * rng.uniform(1.1, 1.6)
        reference = positions[i] + offset
        external.addParticle(i, [rng.uniform(50.0, 200.0), *reference])
    system.addForce(external)
    return system, positions


# ------------------------------------------------------------------------------------------
# The CUDA side (runs in the subprocess)
# ------------------------------------------------------------------------------------------


def record(evaluation):
    """What the tests compare of an Evaluation: (energy, forces, terms, parameter derivatives)."""
    return (evaluation.energy, evaluation.forces, dict(evaluation.terms),
            dict(evaluation.parameter_derivatives))


def slots(term):
    """A CUDA term's per-item energy slots, copied to the host."""
    return term._energies.copy_to_host()[: term.n_terms].copy()


def cuda_results(path):
    """Evaluate the case on the CUDA backend and pickle the results to ``path``."""
    from bencao.backends.cuda import using_simulator
    from bencao.backends.cuda.backend import CudaBackend

    results = {"simulator": using_simulator()}
    system, positions = case()
    backend = CudaBackend(bencao.System.from_openmm(system))
    results["term_types"] = [type(term).__name__ for term in backend.terms]
    results["term_names"] = [term.name for term in backend.terms]
    results["parameters_before"] = backend.parameters
    evaluations = {}
    for lam in LAMS:
        backend.set_parameter("lam", lam)
        first = backend.compute(positions, parameter_derivatives=True)
        # Each term's per-item slots (private, read for the comparison with the CPU's sums):
        # after an evaluation with derivatives, a term asked for one derivative holds its
        # dE/dp items (the last law it ran); after one without, every term holds its energies
        derivative_slots = {}
        for term in backend.terms:
            if term.derivative_names:
                assert len(term.derivative_names) == 1
                derivative_slots[term.derivative_names[0]] = slots(term)
        again = backend.compute(positions, parameter_derivatives=True)
        energy_only = backend.compute(positions)
        evaluations[lam] = {
            "first": record(first), "again": record(again),
            "parameters": backend.parameters, "get_parameter": backend.get_parameter("lam"),
            "energy_only": record(energy_only),
            "energy_slots": {term.name: slots(term) for term in backend.terms},
            "derivative_slots": derivative_slots,
        }
    results["evaluations"] = evaluations
    try:
        backend.set_parameter("nonexistent", 1.0)
        results["unknown_parameter"] = None
    except ValueError as error:
        results["unknown_parameter"] = str(error)
    cuda_harness.save(results, path)


@pytest.fixture(scope="module")
def cuda_run(tmp_path_factory):
    """The pickled results of :func:`cuda_results`, on a real GPU if there is one."""
    path = tmp_path_factory.mktemp("cuda_custom") / "results.pkl"
    return cuda_harness.cuda_results("test_cuda_custom", path)


# ------------------------------------------------------------------------------------------
# References evaluated here
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cpu_run():
    """lam -> record of the CPU backend's evaluation (same order of set_parameter calls)."""
    system, positions = case()
    backend = CpuBackend(bencao.System.from_openmm(system))
    runs = {}
    for lam in LAMS:
        backend.set_parameter("lam", lam)
        runs[lam] = record(backend.compute(positions, parameter_derivatives=True))
    return runs


@pytest.fixture(scope="module")
def openmm_run():
    """lam -> (energy, forces, per-force energies, parameter derivatives) on OpenMM Reference."""
    system, positions = case()
    for group, force in enumerate(system.getForces()):
        force.setForceGroup(group)
    context = mm.Context(system, mm.VerletIntegrator(0.001),
                         mm.Platform.getPlatformByName("Reference"))
    context.setPositions(positions * unit.nanometer)
    runs = {}
    for lam in LAMS:
        context.setParameter("lam", lam)
        state = context.getState(getEnergy=True, getForces=True, getParameterDerivatives=True)
        terms = {name: context.getState(getEnergy=True, groups=1 << group)
                 .getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
                 for group, name in enumerate(FORCE_NAMES)}
        runs[lam] = (state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole),
                     state.getForces(asNumpy=True).value_in_unit(
                         unit.kilojoule_per_mole / unit.nanometer),
                     terms, dict(state.getEnergyParameterDerivatives()))
    return runs


def bits(value) -> bytes:
    return np.float64(value).tobytes()


# ------------------------------------------------------------------------------------------
# Tests
# ------------------------------------------------------------------------------------------


def test_case_exercises_the_branches():
    # Not a test of the backends: the case must reach what it claims to test.
    system, positions = case()
    external = system.getForces()[3]
    far = 0
    for i in range(N_PARTICLES):
        _, (_, *reference) = external.getParticleParameters(i)
        far += np.abs(positions[i] - np.array(reference)).max() > 0.5 * BOX_EDGE
    assert far >= 3  # the minimum image changes these particles' distances
    r = np.linalg.norm(np.diff(positions, axis=0), axis=1)
    assert (r > 0.3).any() and (r < 0.3).any()  # both sides of min(r, 0.3)


def test_backend_routes_custom_records_to_the_cuda_term(cuda_run):
    assert cuda_run["term_types"] == ["CudaCustomListedTerm"] * 4
    assert cuda_run["term_names"] == list(FORCE_NAMES)
    assert cuda_run["parameters_before"] == {"lam": LAM_DEFAULT, "lam2": LAM2_DEFAULT}


@pytest.mark.parametrize("lam", LAMS)
def test_matches_cpu_backend_bit_for_bit(cuda_run, cpu_run, lam):
    (energy, forces, terms, derivatives), *_ = cuda_run["evaluations"][lam]
    cpu_energy, cpu_forces, cpu_terms, cpu_derivatives = cpu_run[lam]
    if not cuda_run["simulator"]:
        # On a real GPU, libdevice's exp/erf/cos and FMA contraction round differently from the
        # host's libm by an ulp or so (1e-16 relative), and a fixed-point conversion can then
        # flip its last unit: 1e-12 relative and 2 units per contribution (10 at most per
        # particle) would still catch any wrong formula, which is off by O(1).
        assert energy == pytest.approx(cpu_energy, rel=1e-12)
        np.testing.assert_allclose(forces, cpu_forces, rtol=0, atol=20 / FORCE_SCALE)
        for name, value in cpu_derivatives.items():
            assert derivatives[name] == pytest.approx(value, rel=1e-12)
        return
    # In the simulator both backends run the same generated law in float64 and convert each
    # contribution to fixed point the same way; integer sums commute: the very same forces.
    assert forces.tobytes() == cpu_forces.tobytes()
    assert set(terms) == set(cpu_terms) == set(FORCE_NAMES)
    assert set(derivatives) == set(cpu_derivatives) == {"lam", "lam2"}
    # The only difference is how item energies are summed: CUDA adds its per-item slots with
    # math.fsum (exactly rounded, order-free), the CPU loop adds them left to right.  Those
    # item energies are identical (checked in test_item_energies_are_the_cpus), and with these
    # few items both sums happen to round to the same double, which this asserts exactly.
    for name in FORCE_NAMES:
        assert bits(terms[name]) == bits(cpu_terms[name]), name
    for name in cpu_derivatives:
        assert bits(derivatives[name]) == bits(cpu_derivatives[name]), name
    assert bits(energy) == bits(cpu_energy)


@pytest.mark.parametrize("lam", LAMS)
def test_item_energies_are_the_cpus(cuda_run, cpu_run, lam):
    # The CUDA term energy is fsum of its slots; the CPU term energy is the left-to-right sum of
    # its item energies.  If the slots are the CPU's item energies, the left-to-right sum of the
    # slots is the CPU's term energy bit for bit.
    *_, slots = cuda_run["evaluations"][lam]
    (_, _, terms, _), *_ = cuda_run["evaluations"][lam]
    _, _, cpu_terms, _ = cpu_run[lam]
    for name, values in zip(FORCE_NAMES, slots):
        assert bits(math.fsum(values)) == bits(terms[name]), name
        if cuda_run["simulator"]:
            sequential = 0.0
            for value in values:
                sequential += float(value)
            assert bits(sequential) == bits(cpu_terms[name]), name


@pytest.mark.parametrize("lam", LAMS)
def test_matches_openmm_reference(cuda_run, openmm_run, lam):
    (energy, forces, terms, derivatives), *_ = cuda_run["evaluations"][lam]
    ref_energy, ref_forces, ref_terms, ref_derivatives = openmm_run[lam]
    # Both float64; the formulas are the same up to the order of operations of two symbolic
    # differentiators (SymPy here, Lepton in OpenMM): a few ulp of each item, summed
    assert energy == pytest.approx(ref_energy, rel=1e-12)
    for name in FORCE_NAMES:
        # per-term energies as the total, with an absolute floor for a term near zero
        assert terms[name] == pytest.approx(ref_terms[name], rel=1e-12, abs=1e-12), name
    # Fixed point truncates each of a particle's contributions by under 1/FORCE_SCALE = 2^-32
    # (2.3e-10) kJ/mol/nm: at most 2 bonds + 3 angles + 4 torsions + 1 external = 10 of them;
    # plus float64 rounding of the force itself (1e-12 of the largest force)
    scale = np.abs(ref_forces).max()
    assert scale > 10.0  # the case really has forces to compare
    bound = 10 / FORCE_SCALE + 1e-12 * scale
    assert np.abs(forces - ref_forces).max() < bound, np.abs(forces - ref_forces).max()
    # OpenMM has no dU/dp for CustomExternalForce: both report the bond's dU/dlam only
    assert set(derivatives) == set(ref_derivatives) == {"lam", "lam2"}
    for name, value in ref_derivatives.items():
        # float64 sums of a few items of the analytic derivative: rounding only
        assert derivatives[name] == pytest.approx(value, rel=1e-12), name


def test_changing_lam_changes_energy_and_parameters(cuda_run):
    evaluations = cuda_run["evaluations"]
    before, after = (evaluations[lam] for lam in LAMS)
    # lam enters the bond and external energies; the angles and torsions do not see it
    for name in ("CustomAngleForce", "CustomTorsionForce"):
        assert bits(before[0][2][name]) == bits(after[0][2][name])
    for name in ("CustomBondForce", "CustomExternalForce"):
        assert before[0][2][name] != after[0][2][name]
    for lam, (_, _, parameters, value, _) in evaluations.items():
        assert parameters == {"lam": lam, "lam2": LAM2_DEFAULT}
        assert value == lam
    # dU/dlam of the bond term (lam * 0.5 k (r - r0)^2 is linear in lam) is the energy change
    # of the bond's harmonic part per unit lam: exactly what the two bond energies differ by,
    # up to float64 rounding of energies of this size (1e-12 relative)
    bond_change = before[0][2]["CustomBondForce"] - after[0][2]["CustomBondForce"]
    assert bond_change == pytest.approx((LAMS[0] - LAMS[1]) * before[0][3]["lam"], rel=1e-12)
    assert before[0][3]["lam"] == after[0][3]["lam"]  # and it does not depend on lam


def test_unknown_parameter_error_names_it_and_the_known_ones(cuda_run):
    message = cuda_run["unknown_parameter"]
    assert message is not None  # a ValueError was raised
    assert "'nonexistent'" in message
    assert "lam, lam2" in message


@pytest.mark.parametrize("lam", LAMS)
def test_bit_identical_reruns(cuda_run, lam):
    first, again, *_ = cuda_run["evaluations"][lam]
    energy, forces, terms, derivatives = first
    energy2, forces2, terms2, derivatives2 = again
    assert forces.tobytes() == forces2.tobytes()
    assert bits(energy) == bits(energy2)
    assert {k: bits(v) for k, v in terms.items()} == {k: bits(v) for k, v in terms2.items()}
    assert ({k: bits(v) for k, v in derivatives.items()}
            == {k: bits(v) for k, v in derivatives2.items()})
