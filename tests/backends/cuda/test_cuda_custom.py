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
from cuda_harness import assert_same_bits, bits, record
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


def cpu_items(term, kernel, positions, box):
    """The values ``kernel`` (a CPU term's law loop) gives each item of ``term`` alone: the loop
    over a one-row slice returns 0.0 + e, which is e exactly."""
    values = []
    for m in range(term.atoms.shape[0]):
        scratch = np.zeros((len(positions), 3), np.int64)
        arguments = (positions, term.atoms[m:m + 1], term.params[m:m + 1], scratch)
        if term.n_atoms == 1:
            arguments += (box, True)
        values.append(float(kernel(*arguments)))
    return np.array(values)


@pytest.fixture(scope="module")
def cpu_run():
    """lam -> the CPU backend's evaluation record (``record``), its per-item energies by term
    name and its per-item dE/dp values by parameter name."""
    system, positions = case()
    backend = CpuBackend(bencao.System.from_openmm(system))
    assert backend.system.periodic  # the external force's periodicdistance makes it periodic
    runs = {}
    for lam in LAMS:
        backend.set_parameter("lam", lam)
        evaluation = record(backend.compute(positions, parameter_derivatives=True))
        energies = {term.name: cpu_items(term, term._kernel, positions, BOX)
                    for term in backend.terms}
        derivatives = {name: cpu_items(term, kernel, positions, BOX)
                       for term in backend.terms
                       for name, kernel in term._derivative_kernels.items()}
        runs[lam] = {"evaluation": evaluation, "energy_items": energies,
                     "derivative_items": derivatives}
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


def left_to_right(values) -> float:
    """``values`` added one after the other, as the CPU's loops add their items."""
    total = 0.0
    for value in values:
        total += float(value)
    return total


def summation_bound(values) -> float:
    """Bound on |fsum - left-to-right sum| of ``values``: the left-to-right sum of n terms is
    within (n - 1) u sum|x| of the exact sum (u = 2^-53, Higham's bound to first order), and
    fsum within half an ulp of it."""
    values = np.abs(np.asarray(values, np.float64))
    exact = math.fsum(values)
    return (len(values) - 1) * 2.0**-53 * exact * 1.01 + np.spacing(exact)


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
    # every branch of min(r, 0.3)*step(r-0.1): r < 0.1, 0.1 < r < 0.3 and r > 0.3
    assert (r < 0.1).any() and ((r > 0.1) & (r < 0.3)).any() and (r > 0.3).any()


def test_backend_routes_custom_records_to_the_cuda_term(cuda_run):
    assert cuda_run["term_types"] == ["CudaCustomListedTerm"] * 4
    assert cuda_run["term_names"] == list(FORCE_NAMES)
    assert cuda_run["parameters_before"] == {"lam": LAM_DEFAULT, "lam2": LAM2_DEFAULT}


@pytest.mark.parametrize("lam", LAMS)
def test_forces_match_cpu_backend_bit_for_bit(cuda_run, cpu_run, lam):
    forces = cuda_run["evaluations"][lam]["first"][1]
    cpu_forces = cpu_run[lam]["evaluation"][1]
    assert np.abs(cpu_forces).max() > 10.0  # the case really has forces to compare
    if cuda_run["simulator"]:
        # Both backends run the same generated law in float64 and convert each contribution to
        # fixed point the same way; integer sums commute: the very same forces.
        assert forces.tobytes() == cpu_forces.tobytes()
    else:
        # On a real GPU, libdevice's exp/erf/cos and FMA contraction may round an ulp away from
        # the host's libm, and a fixed-point conversion can then flip its last unit: 2 units
        # per contribution, 10 contributions at most per particle.
        np.testing.assert_allclose(forces, cpu_forces, rtol=0, atol=20 / FORCE_SCALE)


@pytest.mark.parametrize("lam", LAMS)
def test_item_energies_and_derivatives_match_cpu_bit_for_bit(cuda_run, cpu_run, lam):
    run = cuda_run["evaluations"][lam]
    cpu = cpu_run[lam]
    assert set(run["energy_slots"]) == set(cpu["energy_items"]) == set(FORCE_NAMES)
    assert set(run["derivative_slots"]) == set(cpu["derivative_items"]) == {"lam", "lam2"}
    pairs = [(run["energy_slots"][n], cpu["energy_items"][n], n) for n in FORCE_NAMES]
    pairs += [(run["derivative_slots"][n], cpu["derivative_items"][n], "d/d" + n)
              for n in ("lam", "lam2")]
    for device_values, host_values, name in pairs:
        assert len(device_values) == len(host_values) > 0, name
        if cuda_run["simulator"]:
            # the same generated law, in float64, on the same inputs (no item is zero, so the
            # CPU's 0.0 + e cannot have turned a -0.0 into 0.0)
            assert device_values.tobytes() == host_values.tobytes(), name
        else:
            # libdevice vs libm and FMA: an ulp or so per item, 1e-13 relative is ample
            np.testing.assert_allclose(device_values, host_values, rtol=1e-13, atol=1e-13,
                                       err_msg=name)


@pytest.mark.parametrize("lam", LAMS)
def test_sums_match_cpu_to_the_summation_order(cuda_run, cpu_run, lam):
    # The backends add the same items differently: CUDA's CudaTerm.compute and
    # parameter_derivatives add the per-item slots with math.fsum (exactly rounded, so
    # independent of thread order), the CPU's serial loops add them left to right.  So the
    # CUDA sums are fsum of the items and the CPU sums the left-to-right sums, each bit for
    # bit, and they differ by at most the left-to-right rounding error (measured in the
    # simulator: at lam = 0.2 the CustomExternalForce energy, and so the total, differ by 1 ulp;
    # every other sum rounds alike).
    run = cuda_run["evaluations"][lam]
    energy, _, terms, derivatives = run["first"]
    cpu_energy, _, cpu_terms, cpu_derivatives = cpu_run[lam]["evaluation"]
    for sums, cpu_sums, slots_, items in (
            (terms, cpu_terms, run["energy_slots"], cpu_run[lam]["energy_items"]),
            (derivatives, cpu_derivatives, run["derivative_slots"],
             cpu_run[lam]["derivative_items"])):
        assert set(sums) == set(cpu_sums) == set(slots_)
        for name in sums:
            assert bits(sums[name]) == bits(math.fsum(slots_[name])), name
            assert bits(cpu_sums[name]) == bits(left_to_right(items[name])), name
            if cuda_run["simulator"]:
                # the same items: only the order of summation separates the two
                assert abs(sums[name] - cpu_sums[name]) <= summation_bound(items[name]), name
            else:
                # items an ulp or so apart on a real GPU (see above), summed: 1e-12 relative
                assert sums[name] == pytest.approx(cpu_sums[name], rel=1e-12), name
    # The total is the plain sum of the per-term energies in the same order on both backends
    assert bits(energy) == bits(sum(terms.values()))
    assert bits(cpu_energy) == bits(sum(cpu_terms.values()))
    if all(bits(terms[n]) == bits(cpu_terms[n]) for n in terms):
        assert bits(energy) == bits(cpu_energy)
    # Otherwise the totals differ by the terms' differences plus the rounding of two sums of
    # four terms (3 u sum|E| each, u = 2^-53)
    rounding = 2 * 3 * 2.0**-53 * sum(abs(v) for v in terms.values())
    difference = sum(abs(terms[n] - cpu_terms[n]) for n in terms)
    assert abs(energy - cpu_energy) <= difference + rounding


@pytest.mark.parametrize("lam", LAMS)
def test_matches_openmm_reference(cuda_run, openmm_run, lam):
    energy, forces, terms, derivatives = cuda_run["evaluations"][lam]["first"]
    ref_energy, ref_forces, ref_terms, ref_derivatives = openmm_run[lam]
    # Both float64; the formulas are the same up to the order of operations of two symbolic
    # differentiators and simplifiers (SymPy here, Lepton in OpenMM): a few ulp of each item
    assert energy == pytest.approx(ref_energy, rel=1e-12)
    for name in FORCE_NAMES:
        # each term as the total, with an absolute floor of rounding for a term near zero
        assert terms[name] == pytest.approx(ref_terms[name], rel=1e-12, abs=1e-12), name
    # Fixed point truncates each of a particle's contributions by under 1/FORCE_SCALE = 2^-32
    # (2.3e-10) kJ/mol/nm, and a particle gets at most 2 bonds + 3 angles + 4 torsions +
    # 1 external = 10 of them; plus float64 rounding of the forces themselves, 1e-12 of the
    # largest (a few ulp of each contribution): 2.4e-9 kJ/mol/nm in all, under 1e-8
    scale = np.abs(ref_forces).max()
    assert scale > 10.0  # the case really has forces to compare
    bound = 10 / FORCE_SCALE + 1e-12 * scale
    assert np.abs(forces - ref_forces).max() < bound, np.abs(forces - ref_forces).max()
    # OpenMM has no dU/dp for CustomExternalForce: both report the bond's dU/dlam only
    assert set(derivatives) == set(ref_derivatives) == {"lam", "lam2"}
    for name, value in ref_derivatives.items():
        # float64 sums of a few items of the analytic derivative: rounding only
        assert derivatives[name] == pytest.approx(value, rel=1e-12), name


def test_external_force_uses_the_minimum_image(cuda_run):
    # Without the minimum image the far particles' restraint energies would be
    # 0.5 * kx * (1.1..1.6 nm)^2 = 30..250 kJ/mol each; with it they are
    # 0.5 * kx * (0.4..0.9 nm)^2.  OpenMM agreeing (test above) pins the image; this guards
    # against a case that would not tell them apart.
    system, positions = case()
    external = system.getForces()[3]
    plain = minimum = 0.0
    for i in range(N_PARTICLES):
        _, (kx, *reference) = external.getParticleParameters(i)
        d = positions[i] - np.array(reference)
        plain += 0.5 * kx * d @ d
        d -= BOX_EDGE * np.round(d / BOX_EDGE)
        minimum += 0.5 * kx * d @ d
    lam = LAMS[0]
    restraint = cuda_run["evaluations"][lam]["first"][2]["CustomExternalForce"] \
        - lam * positions[:, 0].sum()
    # the lam*x part removed, the rest is the minimum-image restraint to rounding (1e-12)
    assert restraint == pytest.approx(minimum, rel=1e-12)
    assert plain - minimum > 50.0


def test_changing_lam_changes_energy_and_parameters(cuda_run):
    evaluations = cuda_run["evaluations"]
    before, after = (evaluations[lam]["first"] for lam in LAMS)
    # lam enters the bond and external energies; the angles and torsions do not see it
    for name in ("CustomAngleForce", "CustomTorsionForce"):
        assert bits(before[2][name]) == bits(after[2][name])
    for name in ("CustomBondForce", "CustomExternalForce"):
        assert before[2][name] != after[2][name]
    for lam, run in evaluations.items():
        assert run["parameters"] == {"lam": lam, "lam2": LAM2_DEFAULT}
        assert run["get_parameter"] == lam
    # The bond's energy is linear in lam with slope dU/dlam (0.5 k (r - r0)^2 summed), so the
    # change of its energy is (0.7 - 0.2) dU/dlam, to float64 rounding of sums of this size
    bond_change = before[2]["CustomBondForce"] - after[2]["CustomBondForce"]
    assert bond_change == pytest.approx((LAMS[0] - LAMS[1]) * before[3]["lam"], rel=1e-12)
    assert bits(before[3]["lam"]) == bits(after[3]["lam"])  # and the slope is lam-free
    # The external force's lam*x changes by (0.7 - 0.2) sum(x), to rounding
    _, positions = case()
    external_change = before[2]["CustomExternalForce"] - after[2]["CustomExternalForce"]
    assert external_change == pytest.approx((LAMS[0] - LAMS[1]) * positions[:, 0].sum(),
                                            rel=1e-12)


def test_unknown_parameter_error_names_it_and_the_known_ones(cuda_run):
    message = cuda_run["unknown_parameter"]
    assert message is not None  # a ValueError was raised
    assert "'nonexistent'" in message
    assert "(it has: lam, lam2)" in message


@pytest.mark.parametrize("lam", LAMS)
def test_bit_identical_reruns(cuda_run, lam):
    run = cuda_run["evaluations"][lam]
    assert_same_bits(run["first"], run["again"])
    # without derivatives: the same energies and forces (the derivative laws add zero forces)
    assert_same_bits(run["first"], run["energy_only"], derivatives=False)
    assert run["energy_only"][3] == {}
