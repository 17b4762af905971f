"""CUDA constraints (SETTLE, SHAKE, RATTLE) against the CPU class, failures, bit-identical reruns.

The CUDA work runs in one subprocess (see ``cuda_harness``), which pickles inputs and outputs;
the tests compare them with :class:`~bencao.backends.cpu.constraints.CpuConstraints` run here on
the same inputs.  The cases are small for the simulator: alanine dipeptide in TIP3P (749 rigid
waters for SETTLE, 6 SHAKE clusters from its X-H bonds) and its 22-atom solute alone with H-angle
constraints (larger coupled clusters, where the Gauss-Seidel order matters).
"""

from __future__ import annotations

import re

import cuda_harness
import numpy as np
import pytest

from bencao.backends.cpu.constraints import ConstraintError, CpuConstraints

KT = 2.494  # kJ/mol at 300 K
STEP = 0.002  # ps
TOLERANCE = 1e-5  # relative, the default


# ------------------------------------------------------------------------------------------
# Cases (built in the subprocess, which pickles them with the results)
# ------------------------------------------------------------------------------------------


def make_case(solute_only: bool, seed: int) -> dict:
    """Constraint table, masses, a constrained reference and the state one step later.

    ``positions`` = reference + STEP * thermal velocities (fixed seed): what a time step hands to
    SHAKE/SETTLE.  ``velocities`` are thermal velocities to be constrained at the reference.
    """
    from openmm import app, unit
    from systems import alanine_dipeptide

    constraints = app.HAngles if solute_only else app.HBonds
    system, positions, _ = alanine_dipeptide(nonbondedMethod=app.NoCutoff,
                                             constraints=constraints, rigidWater=True)
    n = system.getNumParticles()
    masses = np.array([system.getParticleMass(i).value_in_unit(unit.dalton) for i in range(n)])
    parameters = [system.getConstraintParameters(c) for c in range(system.getNumConstraints())]
    pairs = np.array([p[:2] for p in parameters], dtype=np.int64)
    lengths = np.array([p[2].value_in_unit(unit.nanometer) for p in parameters])
    if solute_only:
        n = 22  # ACE-ALA-NME; the waters follow
        keep = (pairs < n).all(axis=1)
        assert not (pairs < n).any(axis=1)[~keep].any()  # no constraint leaves the solute
        pairs, lengths, masses, positions = pairs[keep], lengths[keep], masses[:n], positions[:n]
    # A reference that satisfies the constraints (the input file does so only to ~1e-4)
    reference = np.ascontiguousarray(positions, dtype=np.float64)
    CpuConstraints(pairs, lengths, masses, tolerance=1e-12).apply_positions(reference, reference)
    rng = np.random.default_rng(seed)
    thermal = rng.normal(size=reference.shape) * np.sqrt(KT / masses)[:, None]  # nm/ps
    velocities = rng.normal(size=reference.shape) * np.sqrt(KT / masses)[:, None]
    return {"pairs": pairs, "lengths": lengths, "masses": masses, "reference": reference,
            "positions": reference + STEP * thermal, "velocities": velocities}


def stretched_waters(case: dict, constraints) -> tuple[np.ndarray, list]:
    """The case's positions with the O of two waters (the 6th and the 3rd) moved 0.2 nm along the
    normal of the water plane: SETTLE cannot tilt the rigid triangle that far (the new O is
    more than ra ~ 0.0066 nm out of the reference plane relative to the centre of mass, i.e.
    sin(phi) > 1), so both waters fail; the 3rd is the one to report."""
    positions = case["reference"].copy()
    waters = [constraints._water_atoms[5], constraints._water_atoms[2]]
    for o, h1, h2 in waters:
        normal = np.cross(positions[h1] - positions[o], positions[h2] - positions[o])
        positions[o] += 0.2 * normal / np.linalg.norm(normal)
    return positions, [tuple(int(a) for a in w) for w in waters]


def _outcome(call) -> tuple:
    try:
        call()
    except ConstraintError as error:
        return ("ConstraintError", str(error))
    except ValueError as error:
        return ("ValueError", str(error))
    return ("ok", "")


def cuda_results(path):
    """Run every case on the CUDA backend and pickle inputs and results to ``path``."""
    from numba import cuda

    from bencao.backends.cuda import using_simulator
    from bencao.backends.cuda.constraints import CudaConstraints

    results = {"simulator": using_simulator()}
    for name, solute_only in (("solvated", False), ("solute", True)):
        case = make_case(solute_only, seed=2024)
        table = (case["pairs"], case["lengths"], case["masses"])
        device = CudaConstraints(*table)
        runs = []
        # Twice on one object (device tables and flags reused), once on a fresh object
        for constraints in (device, device, CudaConstraints(*table)):
            reference = cuda.to_device(case["reference"])
            positions = cuda.to_device(case["positions"])
            velocities = cuda.to_device(case["velocities"])
            constraints.apply_positions(reference, positions)
            constraints.apply_velocities(reference, velocities)
            runs.append((positions.copy_to_host(), velocities.copy_to_host()))
        # The reference aliasing the positions, twice: the scratch copy is made once
        positions = cuda.to_device(case["positions"])
        device.apply_positions(positions, positions)
        scratch = device._scratch
        aliased = positions.copy_to_host()
        positions = cuda.to_device(case["positions"])
        device.apply_positions(positions, positions)
        results[name] = {
            "case": case, "runs": runs, "aliased": (aliased, positions.copy_to_host()),
            "scratch_kept": scratch is not None and device._scratch is scratch,
            "counts": (device.n_constraints, device.n_waters, device.n_clusters),
        }

    # SETTLE failure: raised at once with check=True; with check=False only by check()
    case = results["solvated"]["case"]
    device = CudaConstraints(case["pairs"], case["lengths"], case["masses"])
    stretched, waters = stretched_waters(case, device._host)
    reference = cuda.to_device(case["reference"])
    positions = cuda.to_device(stretched)
    settle = {"waters": waters, "stretched": stretched}
    settle["immediate"] = _outcome(lambda: device.apply_positions(reference, positions))
    positions = cuda.to_device(stretched)
    settle["deferred_apply"] = _outcome(
        lambda: device.apply_positions(reference, positions, check=False))
    settle["deferred_check"] = _outcome(lambda: device.check(positions))
    settle["second_check"] = _outcome(lambda: device.check(positions))  # flags were cleared
    # After a failure the object still works
    positions = cuda.to_device(case["positions"])
    settle["after"] = _outcome(lambda: device.apply_positions(reference, positions))
    settle["host_arrays"] = _outcome(
        lambda: device.apply_positions(case["reference"], case["positions"].copy()))
    results["settle_failure"] = settle

    # SHAKE and RATTLE failures: one sweep cannot satisfy the coupled H-angle clusters
    case = results["solute"]["case"]
    device = CudaConstraints(case["pairs"], case["lengths"], case["masses"], max_iterations=1)
    reference = cuda.to_device(case["reference"])
    positions = cuda.to_device(case["positions"])
    velocities = cuda.to_device(case["velocities"])
    shake = {}
    shake["positions_deferred"] = _outcome(
        lambda: device.apply_positions(reference, positions, check=False))
    shake["velocities_deferred"] = _outcome(
        lambda: device.apply_velocities(reference, velocities, check=False))
    shake["shaken"] = positions.copy_to_host()
    shake["rattled"] = velocities.copy_to_host()
    shake["check"] = _outcome(lambda: device.check(positions, velocities))  # SHAKE first
    positions = cuda.to_device(case["positions"])
    velocities = cuda.to_device(case["velocities"])
    shake["velocities"] = _outcome(lambda: device.apply_velocities(reference, velocities))
    results["shake_failure"] = shake

    cuda_harness.save(results, path)


# ------------------------------------------------------------------------------------------
# The subprocess (cuda_harness)
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cuda(tmp_path_factory):
    """The pickled results of :func:`cuda_results`, on the GPU if there is one."""
    path = tmp_path_factory.mktemp("cuda") / "constraints.pkl"
    return cuda_harness.cuda_results("test_cuda_constraints", path)


def cpu_run(case, max_iterations=1000):
    """The CPU class on the case: (constraints, constrained positions, constrained velocities)."""
    constraints = CpuConstraints(case["pairs"], case["lengths"], case["masses"],
                                 max_iterations=max_iterations)
    positions = case["positions"].copy()
    velocities = case["velocities"].copy()
    constraints.apply_positions(case["reference"], positions)
    constraints.apply_velocities(case["reference"], velocities)
    return constraints, positions, velocities


def cpu_message(call) -> str:
    with pytest.raises(ConstraintError) as error:
        call()
    return str(error.value)


def atoms_named(message: str) -> tuple[int, int]:
    match = re.search(r"between atoms (\d+) and (\d+)", message)
    assert match, message
    return int(match[1]), int(match[2])


# Both sides run the same float64 source: in the simulator the identical operations in Python
# (bit-identical in practice), on a GPU compiled by NVVM, which fuses a*b+c into FMAs and may
# round sqrt differently, i.e. ~1 ulp per operation.  SETTLE is a few hundred operations on
# ~0.1 nm coordinates (ulp ~1e-17 nm); SHAKE's sweeps contract, so differences do not grow:
# 1e-12 nm is ~1000x that, while a wrong atom, sign or sweep order is off by >= 1e-7 nm
# (the SHAKE tolerance times a bond length; a missing copy of an aliased reference, ~1e-5 nm).
# (On a GPU an ulp could in principle flip one "within tolerance" test and change the sweep
# count, but only if an error lands within ~1e-16 of the threshold: not with a fixed seed.)
POSITION_ATOL = 1e-12  # nm
# Velocities ~1 nm/ps, same reasoning (ulp ~1e-16 nm/ps).
VELOCITY_ATOL = 1e-12  # nm/ps


# ------------------------------------------------------------------------------------------
# Tests
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["solvated", "solute"])
def test_positions_and_velocities_match_cpu(cuda, name):
    result = cuda[name]
    case = result["case"]
    constraints, positions, velocities = cpu_run(case)
    assert result["counts"] == (constraints.n_constraints, constraints.n_waters,
                                constraints.n_clusters)
    if name == "solvated":
        assert constraints.n_waters == 749 and constraints.n_clusters > 0
    else:
        assert constraints.n_waters == 0 and constraints.n_clusters > 0
    # The step really breaks the constraints (else agreement would prove nothing): thermal
    # displacements of a few 1e-3 nm stretch 0.1 nm bonds by several percent
    assert constraints.max_relative_error(case["positions"]) > 1e-3
    cuda_positions, cuda_velocities = result["runs"][0]
    np.testing.assert_allclose(cuda_positions, positions, rtol=0, atol=POSITION_ATOL)
    np.testing.assert_allclose(cuda_velocities, velocities, rtol=0, atol=VELOCITY_ATOL)
    # And the CUDA result satisfies the constraints: SHAKE to the tolerance, SETTLE to rounding
    # (~1e-15 relative; 1e-12 allows for the rounding of ~0.1 nm coordinates and of the lengths)
    errors = constraints.relative_errors(cuda_positions)
    settled = constraints.settled
    assert errors[~settled].max() <= TOLERANCE
    if settled.any():
        assert errors[settled].max() <= 1e-12
    # RATTLE: |v_rel . r| / d0^2 <= tolerance / (1 ps); SETTLE's velocity part is exact
    # (a 3x3 solve, ~1e-15 relative of the ~10/ps bond rates: 1e-10/ps is generous)
    pairs, lengths = case["pairs"], case["lengths"]
    r = case["reference"][pairs[:, 0]] - case["reference"][pairs[:, 1]]
    v = cuda_velocities[pairs[:, 0]] - cuda_velocities[pairs[:, 1]]
    rates = np.abs(np.einsum("ij,ij->i", r, v)) / lengths**2
    assert rates[~settled].max() <= TOLERANCE
    if settled.any():
        assert rates[settled].max() <= 1e-10


@pytest.mark.parametrize("name", ["solvated", "solute"])
def test_reruns_are_bit_identical(cuda, name):
    # Each water and cluster is solved by one thread in a fixed order: no scheduling enters.
    runs = cuda[name]["runs"]
    for positions, velocities in runs[1:]:
        assert positions.tobytes() == runs[0][0].tobytes()
        assert velocities.tobytes() == runs[0][1].tobytes()


@pytest.mark.parametrize("name", ["solvated", "solute"])
def test_reference_may_alias_positions(cuda, name):
    result = cuda[name]
    case = result["case"]
    constraints = CpuConstraints(case["pairs"], case["lengths"], case["masses"])
    expected = case["positions"].copy()
    constraints.apply_positions(expected, expected)  # the CPU copies the reference
    first, second = result["aliased"]
    np.testing.assert_allclose(first, expected, rtol=0, atol=POSITION_ATOL)  # reason as above
    assert first.tobytes() == second.tobytes()
    assert result["scratch_kept"]  # one scratch array, reused by the second call
    assert constraints.max_relative_error(first) <= TOLERANCE


def test_settle_failure_names_the_first_water(cuda):
    settle = cuda["settle_failure"]
    case = cuda["solvated"]["case"]
    (o, h1, h2) = settle["waters"][1]  # the lower-numbered water of the two broken ones
    kind, message = settle["immediate"]
    assert kind == "ConstraintError"
    assert message.startswith(f"SETTLE found no solution for the water of atoms ({o}, {h1}, {h2})")
    assert "use a smaller time step" in message
    # The CPU class says the same about the same water
    constraints = CpuConstraints(case["pairs"], case["lengths"], case["masses"])
    expected = cpu_message(lambda: constraints.apply_positions(case["reference"],
                                                               settle["stretched"].copy()))
    assert atoms_named(message) == atoms_named(expected)
    assert message.split(":")[0] == expected.split(":")[0]
    if cuda["simulator"]:  # same arithmetic, so the same lengths to the printed 6 digits
        assert message == expected


def test_deferred_check_raises_once(cuda):
    settle = cuda["settle_failure"]
    assert settle["deferred_apply"] == ("ok", "")  # check=False: no host sync, no error yet
    kind, message = settle["deferred_check"]
    assert kind == "ConstraintError" and message.startswith("SETTLE found no solution")
    assert message == settle["immediate"][1]
    assert settle["second_check"] == ("ok", "")  # check() cleared the flags
    assert settle["after"] == ("ok", "")  # and the object works on


def test_host_arrays_are_refused(cuda):
    kind, message = cuda["settle_failure"]["host_arrays"]
    assert kind == "ValueError"
    assert "reference: expected a C-contiguous float64 device array" in message


def test_shake_and_rattle_failures_match_cpu(cuda):
    shake = cuda["shake_failure"]
    case = cuda["solute"]["case"]
    assert shake["positions_deferred"] == ("ok", "")
    assert shake["velocities_deferred"] == ("ok", "")
    # One sweep each, as the CPU with max_iterations=1 (it raises after its sweep)
    constraints = CpuConstraints(case["pairs"], case["lengths"], case["masses"], max_iterations=1)
    positions = case["positions"].copy()
    expected = cpu_message(lambda: constraints.apply_positions(case["reference"], positions))
    np.testing.assert_allclose(shake["shaken"], positions, rtol=0, atol=POSITION_ATOL)
    kind, message = shake["check"]
    assert kind == "ConstraintError"
    assert message.startswith("Constraints did not converge: the constraint between atoms")
    assert "(tolerance 1e-05, 1 iterations)" in message
    assert atoms_named(message) == atoms_named(expected)  # the first cluster's worst constraint
    if cuda["simulator"]:
        assert message == expected

    velocities = case["velocities"].copy()
    expected = cpu_message(lambda: constraints.apply_velocities(case["reference"], velocities))
    np.testing.assert_allclose(shake["rattled"], velocities, rtol=0, atol=VELOCITY_ATOL)
    kind, message = shake["velocities"]
    assert kind == "ConstraintError"
    assert message.startswith("Velocity constraints did not converge: the constraint between")
    assert "relative speed along it" in message and "nm/ps" in message
    assert atoms_named(message) == atoms_named(expected)
    if cuda["simulator"]:
        assert message == expected
