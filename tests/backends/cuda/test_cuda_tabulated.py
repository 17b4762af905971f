"""CUDA tabulated pair potentials (CustomNonbondedForce tables) against OpenMM and the CPU backend.

The CUDA work runs in one subprocess (see ``cuda_harness``); OpenMM and the CPU backend are
evaluated here.  The systems, small for the simulator, are 48 particles of four types in a
triclinic box, with a CustomNonbondedForce in each of the forms OpenMM's app layer writes:

* AMBER 12-6-4 (``amber_file_parser``): CutoffPeriodic, switching, long-range correction;
* ForceField NBFIX (``forcefield.LennardJonesGenerator``): NoCutoff;
* CHARMM/AMBER LJ tables (``charmmpsffile``): CutoffNonPeriodic with switching.

Everything goes through ``bencao.make_backend(system, "cuda")``, so the backend's routing of
``TabulatedPairs`` is tested too.
"""

from __future__ import annotations

import cuda_harness
import numpy as np
import openmm as mm
import pytest
from reference import force_agreement, openmm_evaluation

import bencao
from bencao.backends.common.long_range_correction import table_coefficient
from bencao.constants import FORCE_SCALE
from bencao.evaluate import make_backend

# ------------------------------------------------------------------------------------------
# Cases, built the same way here and in the subprocess: (openmm System, positions nm, box nm)
# ------------------------------------------------------------------------------------------

#: A reduced triclinic box (rows, nm): every off-diagonal element non-zero.
TRICLINIC = np.array([[2.0, 0.0, 0.0], [0.6, 1.9, 0.0], [-0.5, 0.7, 1.8]])

#: The app layer's expressions, verbatim (amber_file_parser, forcefield, charmmpsffile).
AMBER_12_6_4 = ("(a/r6)^2-b/r6-c/r^4; r6=r^6;a=acoef(type1, type2);b=bcoef(type1, type2);"
                "c=ccoef(type1, type2)")
FORCEFIELD_NBFIX = "acoef(type1, type2)/r^12 - bcoef(type1, type2)/r^6;"
CHARMM_TABLE = "(a/r6)^2-b/r6; r6=r^6;a=acoef(type1, type2);b=bcoef(type1, type2)"

#: name -> (expression, CustomNonbondedForce method, switching distance nm or None)
CASES = {
    "periodic_12_6_4": (AMBER_12_6_4, mm.CustomNonbondedForce.CutoffPeriodic, 0.6),
    "nocutoff_nbfix": (FORCEFIELD_NBFIX, mm.CustomNonbondedForce.NoCutoff, None),
    "nonperiodic_table": (CHARMM_TABLE, mm.CustomNonbondedForce.CutoffNonPeriodic, 0.55),
}


def tables(n_types=4):
    """Symmetric acoef, bcoef, ccoef tables of the app layer: Lorentz-Berthelot LJ with one
    NBFIX override (types 1-2) and 12-6-4 C4 terms between type 0 (the "ion") and types 2, 3.

    Returns (c12, c6, c4) in kJ/mol nm^12, nm^6, nm^4 (acoef of the (a/r6)^2 forms is sqrt(c12)).
    """
    sigma = np.array([0.22, 0.32, 0.30, 0.34])[:n_types]
    epsilon = np.array([0.05, 0.65, 0.45, 0.30])[:n_types]
    s = 0.5 * (sigma[:, None] + sigma[None, :])
    e = np.sqrt(epsilon[:, None] * epsilon[None, :])
    s[1, 2] = s[2, 1] = 0.29  # NBFIX: a pair whose parameters are not the mixed ones
    e[1, 2] = e[2, 1] = 0.9
    c12 = 4.0 * e * s**12
    c6 = 4.0 * e * s**6
    c4 = np.zeros((n_types, n_types))
    # Li/Merz-sized C4 (~132 kcal/mol A^4 = 0.055 kJ/mol nm^4)
    c4[0, 2] = c4[2, 0] = 0.055
    c4[0, 3] = c4[3, 0] = 0.03
    return c12, c6, c4


def case(name):
    """48 particles of four types on a jittered lattice in ``TRICLINIC``, with exclusions,
    and only the CustomNonbondedForce of ``CASES[name]`` (cutoff 0.7 nm, long-range correction
    requested: OpenMM and bencao apply it only with CutoffPeriodic)."""
    expression, method, switch = CASES[name]
    rng = np.random.default_rng(5)
    grid = np.stack(np.meshgrid(*[np.arange(k) for k in (4, 4, 3)], indexing="ij"), -1)
    fractional = (grid.reshape(-1, 3) + 0.5) / np.array([4, 4, 3])
    positions = fractional @ TRICLINIC + rng.normal(scale=0.04, size=(48, 3))
    types = np.arange(48) % 4
    rng.shuffle(types)
    c12, c6, c4 = tables()
    sqrt_form = expression.startswith("(a/r6)^2")
    values = {"acoef": np.sqrt(c12) if sqrt_form else c12, "bcoef": c6, "ccoef": c4}
    system = mm.System()
    force = mm.CustomNonbondedForce(expression)
    for table_name in ("acoef", "bcoef", "ccoef"):
        if table_name + "(" in expression:
            table = values[table_name]
            # Discrete2DFunction(x, y) is values[x + xsize * y]
            force.addTabulatedFunction(table_name, mm.Discrete2DFunction(
                4, 4, np.ascontiguousarray(table.T).ravel().tolist()))
    force.addPerParticleParameter("type")
    for t in types:
        system.addParticle(12.0)
        force.addParticle([float(t)])
    for i in range(0, 48, 4):
        force.addExclusion(i, i + 1)
        force.addExclusion(i, i + 2)
    force.setNonbondedMethod(method)
    # 0.7 nm, not more: OpenMM 8.6's Reference platform depends on where the box origin is in a
    # triclinic box for cutoffs near half the box width (0.89 nm here); see test_cuda_nonbonded
    force.setCutoffDistance(0.7)
    if switch is not None:
        force.setUseSwitchingFunction(True)
        force.setSwitchingDistance(switch)
    force.setUseLongRangeCorrection(True)
    system.addForce(force)
    system.setDefaultPeriodicBoxVectors(*(mm.Vec3(*row) for row in TRICLINIC))
    box = TRICLINIC if force.usesPeriodicBoundaryConditions() else None
    return system, positions, box


def moved(positions, scale, seed):
    """Positions moved by a Gaussian of ``scale`` nm per coordinate."""
    return positions + np.random.default_rng(seed).normal(scale=scale, size=positions.shape)


#: Positions of the periodic case's steps: the start, again (bit-identical rerun), 0.08 nm moves
#: (more than the 0.2 nm buffer for the two largest together: a list rebuild).
PERIODIC_STEPS = (("start", 0.0, 0), ("again", 0.0, 0), ("rebuilt", 0.08, 2))


def periodic_positions(positions, scale, seed):
    return positions if scale == 0.0 else moved(positions, scale, seed)


# ------------------------------------------------------------------------------------------
# The CUDA side (runs in the subprocess)
# ------------------------------------------------------------------------------------------


def cuda_results(path):
    """Evaluate every case on the CUDA backend and pickle the results to ``path``."""
    from bencao.backends.cuda import using_simulator
    from bencao.backends.cuda.tabulated import CudaTabulatedPairs

    results = {"simulator": using_simulator()}

    system, positions, box = case("periodic_12_6_4")
    bencao_system = bencao.System.from_openmm(system)
    backend = make_backend(bencao_system, "cuda")
    results["term_types"] = [type(term).__name__ for term in backend.terms]
    term = backend.terms[0]
    assert isinstance(term, CudaTabulatedPairs)
    steps = []
    for _, scale, seed in PERIODIC_STEPS:
        evaluation = backend.compute(periodic_positions(positions, scale, seed), box)
        steps.append((evaluation.energy, evaluation.forces, dict(evaluation.terms),
                      term.neighbors.builds))
    results["periodic_12_6_4"] = steps
    current = periodic_positions(positions, *PERIODIC_STEPS[-1][1:])
    no_energy = backend.compute(current, box, energy=False)
    results["no_energy"] = (no_energy.energy, no_energy.forces)
    # A checkpoint restored into a fresh backend rebuilds the list as it was: same forces
    checkpoint = backend.get_state()
    restored = make_backend(bencao_system, "cuda")
    restored.set_state(checkpoint)
    again = restored.compute(current, box)
    results["restored"] = (again.energy, again.forces, restored.terms[0].neighbors.builds,
                           sorted(checkpoint))
    results["has_reciprocal"] = backend.has_reciprocal

    for name in ("nocutoff_nbfix", "nonperiodic_table"):
        system, positions, box = case(name)
        evaluation = make_backend(bencao.System.from_openmm(system), "cuda").compute(positions, box)
        results[name] = (evaluation.energy, evaluation.forces)

    cuda_harness.save(results, path)


@pytest.fixture(scope="module")
def cuda_run(tmp_path_factory):
    """The pickled results of :func:`cuda_results`, on a real GPU if there is one."""
    path = tmp_path_factory.mktemp("cuda_tabulated") / "results.pkl"
    return cuda_harness.cuda_results("test_cuda_tabulated", path)


# ------------------------------------------------------------------------------------------
# Tests
# ------------------------------------------------------------------------------------------


def assert_matches_openmm(system, positions, box, energy, forces):
    """Energy and forces against OpenMM's Reference platform, forces no worse than OpenMM's CPU
    platform (the project's bar, the metric of the other CUDA tests)."""
    ref_energy, ref_forces, _, _ = openmm_evaluation(system, positions, box)
    # The pair sums agree to rounding; OpenMM integrates the long-range correction numerically
    # (5e-7 of it, 2.5e-7 of the total here): 1e-6 leaves room for that, none for a wrong term
    assert energy == pytest.approx(ref_energy, rel=1e-6)
    # float64 throughout, so only fixed point separates the two: each component of an atom's
    # force is at most N conversions, each truncated by under 2^-32 kJ/mol/nm (+1e-10 for
    # float64 rounding of forces of tens of kJ/mol/nm)
    bound = len(positions) / FORCE_SCALE + 1e-10
    assert np.abs(forces - ref_forces).max() < bound, np.abs(forces - ref_forces).max()
    median, p99 = force_agreement(forces, ref_forces)
    _, cpu_forces, _, _ = openmm_evaluation(system, positions, box, platform="CPU")
    cpu_median, cpu_p99 = force_agreement(cpu_forces, ref_forces)
    assert median <= cpu_median and p99 <= cpu_p99, (median, p99, cpu_median, cpu_p99)


def assert_matches_cpu_backend(system, positions, box, energy, forces):
    """Against bencao's CPU backend (float32 pair arithmetic, float64 energy sum)."""
    cpu = make_backend(bencao.System.from_openmm(system), "cpu").compute(positions, box)
    median, p99 = force_agreement(forces, cpu.forces)
    # the CPU kernel is float32 (relative error ~1e-6 per pair force): 1e-4 at p99 leaves room
    # for cancellation in an atom's sum and still catches a wrong term, which is off by O(1)
    assert median < 1e-5 and p99 < 1e-4, (median, p99)
    # float32 pair energies (~1e-7 relative each) summed in float64, with cancellation between
    # repulsion and attraction in the total (measured <= 1.5e-8): 1e-5 of the total
    assert energy == pytest.approx(cpu.energy, rel=1e-5)


def test_backend_routes_tabulated_pairs_to_the_cuda_term(cuda_run):
    assert cuda_run["term_types"] == ["CudaTabulatedPairs"]
    assert cuda_run["has_reciprocal"] is False


@pytest.mark.parametrize("step", range(len(PERIODIC_STEPS)))
def test_periodic_12_6_4_matches_openmm_and_cpu(cuda_run, step):
    system, positions, box = case("periodic_12_6_4")
    current = periodic_positions(positions, *PERIODIC_STEPS[step][1:])
    energy, forces, terms, _ = cuda_run["periodic_12_6_4"][step]
    assert terms == {"CustomNonbondedForce": energy}
    assert_matches_openmm(system, current, box, energy, forces)
    assert_matches_cpu_backend(system, current, box, energy, forces)


def test_long_range_correction_is_the_cpu_terms(cuda_run):
    # The CUDA energy is OpenMM's without the correction plus C / V, C from the CPU term's
    # helper: the pair sums are both float64 (in different orders), so to rounding, 1e-9 kJ/mol.
    system, positions, box = case("periodic_12_6_4")
    energy = cuda_run["periodic_12_6_4"][0][0]
    for force in system.getForces():
        force.setUseLongRangeCorrection(False)
    without, _, _, _ = openmm_evaluation(system, positions, box)
    term = bencao.System.from_openmm(case("periodic_12_6_4")[0]).terms[0]
    coefficient = table_coefficient(term.types, term.c12, term.c6, term.c4, term.cutoff,
                                    term.switch_distance)
    correction = coefficient / abs(np.linalg.det(box))
    assert abs(correction) > 1e-3  # large enough to be seen at the tolerance below
    assert energy - without == pytest.approx(correction, rel=0, abs=1e-9)


def test_list_is_reused_then_rebuilt(cuda_run):
    # the same positions keep the list; 0.08 nm moves exceed the 0.2 nm buffer and rebuild it
    assert [builds for *_, builds in cuda_run["periodic_12_6_4"]] == [1, 1, 2]


def test_forces_and_energy_bit_identical_run_to_run(cuda_run):
    (e1, f1, _, _), (e2, f2, _, _), (_, f3, _, _) = cuda_run["periodic_12_6_4"]
    assert f1.tobytes() == f2.tobytes()
    assert np.float64(e1).tobytes() == np.float64(e2).tobytes()
    # Without the energy: NaN, and the very same forces
    energy, forces = cuda_run["no_energy"]
    assert np.isnan(energy)
    assert forces.tobytes() == f3.tobytes()


def test_checkpoint_restores_the_list_bit_identically(cuda_run):
    e3, f3, _, _ = cuda_run["periodic_12_6_4"][-1]
    energy, forces, builds, keys = cuda_run["restored"]
    assert keys == ["term0.box", "term0.reference"]
    assert builds == 1  # rebuilt once from the checkpoint, not again at the same positions
    assert forces.tobytes() == f3.tobytes()
    assert np.float64(energy).tobytes() == np.float64(e3).tobytes()


@pytest.mark.parametrize("name", ["nocutoff_nbfix", "nonperiodic_table"])
def test_nonperiodic_forms_match_openmm_and_cpu(cuda_run, name):
    system, positions, box = case(name)
    energy, forces = cuda_run[name]
    assert_matches_openmm(system, positions, box, energy, forces)
    assert_matches_cpu_backend(system, positions, box, energy, forces)
