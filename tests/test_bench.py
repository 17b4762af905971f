"""Benchmark reporting: water boxes, the scaling bench, phase profiles and run settings.

Timings are never compared with thresholds here (the machine may be shared): the tests check
that the reports hold what they promise and that the numbers in them agree with each other.
"""

import json

import numpy as np
import pytest
from scipy.spatial import cKDTree

import bencao
from bencao.bench.profile import profile_steps, simulation_settings
from bencao.bench.scaling import growth_exponent
from bencao.bench.systems import water_box_openmm
from bencao.cli import main
from bencao.profiling import profiling


@pytest.fixture(scope="module")
def small_water_box():
    """About 1,500 atoms of TIP3P: (openmm System, positions nm, box nm)."""
    return water_box_openmm(1500)


def _simulation(box_system, integrator=None, barostat=None, seed=5):
    system, positions, box = box_system
    integrator = integrator or bencao.LangevinMiddleIntegrator(300.0, 1.0, 0.002)
    simulation = bencao.Simulation(bencao.System.from_openmm(system), integrator, positions, box,
                                   seed=seed, barostat=barostat)
    simulation.set_velocities_to_temperature(300.0)
    return simulation


def _bench_json(capsys, *arguments) -> dict:
    assert main(["bench", *arguments, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


# -- growth exponent and water boxes ---------------------------------------------------------


def test_growth_exponent_recovers_a_power_law_and_needs_two_sizes():
    atoms = [3_000, 10_000, 30_000, 100_000]
    assert growth_exponent(atoms, [0.02 * n**1.3 for n in atoms]) == pytest.approx(1.3)
    assert growth_exponent(atoms, [5.0] * 4) == pytest.approx(0.0, abs=1e-12)
    assert growth_exponent([3_000, 3_000], [1.0, 2.0]) is None


def test_tiled_water_box_has_the_requested_size_and_no_clashes_at_the_seams():
    # above 5 nm a side the box is 2 x 2 x 2 copies of one Modeller cube
    system, positions, box = water_box_openmm(13_000)
    n = len(positions)
    assert abs(n / 13_000 - 1) < 0.1
    assert n % 3 == 0 and system.getNumParticles() == n
    assert system.getNumConstraints() == n  # rigid TIP3P: three constraints per water
    assert np.allclose(box, np.eye(3) * box[0, 0]) and box[0, 0] > 5.0
    oxygens = positions[::3] % box[0, 0]
    distance, _ = cKDTree(oxygens, boxsize=box[0, 0]).query(oxygens, k=2)
    # liquid water: no two oxygens closer than ~0.24 nm, across the periodic seams too
    assert distance[:, 1].min() > 0.22
    hydrogens = positions.reshape(-1, 3, 3)[:, 1:] - positions.reshape(-1, 3, 3)[:, :1]
    assert np.allclose(np.linalg.norm(hydrogens, axis=2), 0.09572, atol=1e-3)  # whole molecules


def test_a_box_narrower_than_twice_the_cutoff_is_refused():
    with pytest.raises(ValueError, match="too narrow"):
        water_box_openmm(400)


# -- profiles and settings ------------------------------------------------------------------


def test_profile_of_langevin_dynamics_accounts_for_the_wall_time(small_water_box):
    simulation = _simulation(small_water_box)
    simulation.step(3)
    profile = profile_steps(simulation, 6)
    phases = profile["phases_ms_per_step"]
    assert {"nonbonded", "integration", "constraints", "random numbers"} <= set(phases)
    assert phases["nonbonded"] > 0
    assert all(ms >= 0 for ms in phases.values())
    assert sum(phases.values()) <= profile["total_ms_per_step"]
    assert sum(phases.values()) + profile["other_ms_per_step"] == pytest.approx(
        profile["total_ms_per_step"])
    assert list(phases.values()) == sorted(phases.values(), reverse=True)
    assert profile["calls_per_step"]["random numbers"] == 1.0  # one draw of noise per step
    assert profile["neighbor_list_builds"] >= 0
    assert profile["neighbor_list_builds_per_step"] == profile["neighbor_list_builds"] / 6


def test_nose_hoover_and_barostat_steps_are_profiled(small_water_box):
    integrator = bencao.NoseHooverIntegrator(300.0, 1.0, 0.002)
    barostat = bencao.MonteCarloBarostat(1.0, 300.0, frequency=2)
    simulation = _simulation(small_water_box, integrator, barostat)
    simulation.step(2)
    profile = profile_steps(simulation, 4)
    assert {"thermostat", "barostat", "nonbonded"} <= set(profile["phases_ms_per_step"])
    assert profile["calls_per_step"]["thermostat"] == 2.0  # a half step before and after
    assert profile["calls_per_step"]["barostat"] == 1.0  # before and after the trial energy
    assert "random numbers" not in profile["phases_ms_per_step"]


def test_profiling_leaves_the_trajectory_unchanged(small_water_box):
    plain = _simulation(small_water_box, barostat=bencao.MonteCarloBarostat(1.0, 300.0, frequency=2))
    profiled = _simulation(small_water_box,
                           barostat=bencao.MonteCarloBarostat(1.0, 300.0, frequency=2))
    plain.step(4)
    with profiling() as profile:
        profiled.step(4)
    assert profile.seconds  # the phases were timed...
    np.testing.assert_array_equal(plain.positions, profiled.positions)  # ...and nothing else changed
    np.testing.assert_array_equal(plain.box, profiled.box)


def test_settings_name_cutoff_buffer_pme_and_constraints(small_water_box):
    simulation = _simulation(small_water_box)
    settings = simulation_settings(simulation)
    assert settings["atoms"] == len(small_water_box[1])
    assert settings["cutoff_nm"] == pytest.approx(0.9)
    assert settings["verlet_buffer_nm"] > 0
    assert len(settings["pme_grid"]) == 3 and min(settings["pme_grid"]) > 0
    assert 2.0 < settings["ewald_alpha_per_nm"] < 5.0  # OpenMM's choice for 0.9 nm, 5e-4
    assert settings["timestep_fs"] == pytest.approx(2.0)
    assert settings["integrator"] == "LangevinMiddleIntegrator"
    assert settings["constraints"] == settings["atoms"]
    assert settings["threads"] >= 1


# -- the command ----------------------------------------------------------------------------


def test_scaling_json_on_one_small_box_with_a_profile(capsys):
    report = _bench_json(capsys, "scaling", "--sizes", "1500", "--compare", "none",
                         "--steps", "4", "--repeats", "1", "--profile")
    assert report["timestep_fs"] == pytest.approx(2.0)
    assert report["nonbonded"] == "PME, cutoff 0.9 nm"
    assert report["growth_exponent"] == {"bencao": None}  # one size: nothing to fit
    (row,) = report["results"]
    assert row["requested_atoms"] == 1500
    assert abs(row["atoms"] / 1500 - 1) < 0.1 and row["atoms"] % 3 == 0
    assert row["settings"]["atoms"] == row["atoms"]
    assert row["finite"]
    assert row["bencao_ms_per_step"] > 0
    # ns/day and ms/step describe the same blocks of 2 fs steps
    assert row["bencao_ns_per_day"] == pytest.approx(0.002 * 86400 / row["bencao_ms_per_step"])
    assert "openmm_ms_per_step" not in row
    profile = row["profile"]
    assert profile["steps"] == 4
    assert profile["phases_ms_per_step"]["nonbonded"] > 0
    assert all(ms >= 0 for ms in profile["phases_ms_per_step"].values())
    assert sum(profile["phases_ms_per_step"].values()) <= profile["total_ms_per_step"]
    assert profile["neighbor_list_builds"] >= 0


def test_scaling_table_compares_openmm_and_fits_exponents(capsys):
    assert main(["bench", "scaling", "--sizes", "2400", "1500", "--steps", "2",
                 "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "LangevinMiddle 300 K 1/ps at 2 fs" in out and "PME, cutoff 0.9 nm" in out
    table = [line for line in out.splitlines() if line.startswith("|")]
    assert len(table) == 4  # header, alignment row, two sizes
    assert len({line.count("|") for line in table}) == 1
    assert "OpenMM ms/step" in table[0]
    atoms = [int(line.split("|")[1].replace(",", "")) for line in table[2:]]
    assert atoms == sorted(atoms) and atoms[0] < 2000 < atoms[1]  # smallest first
    exponents = [line for line in out.splitlines() if line.startswith("Growth exponent")]
    assert len(exponents) == 1 and "bencao" in exponents[0] and "OpenMM" in exponents[0]
    assert "n/a" not in exponents[0]


def test_dhfr_profile_reports_settings_and_phases(capsys):
    report = _bench_json(capsys, "dhfr", "--compare", "none", "--steps", "2", "--repeats", "1",
                         "--profile")
    settings = report["settings"]
    assert settings["atoms"] == report["atoms"] == 23558
    assert settings["timestep_fs"] == pytest.approx(4.0)
    assert settings["constraints"] > 0 and settings["pme_grid"] is not None
    profile = report["profile"]
    assert {"nonbonded", "bonded", "constraints"} <= set(profile["phases_ms_per_step"])
    assert sum(profile["phases_ms_per_step"].values()) <= profile["total_ms_per_step"]
    assert profile["neighbor_list_builds"] >= 0


def test_a_profile_waits_for_the_device_at_the_end_of_every_phase():
    """GPU kernels return before they finish: ``synchronize`` must run inside each phase's
    timing, or their time would land in whichever phase next waits for the device."""
    import time

    from bencao.profiling import phase

    pending = []

    def synchronize():  # stands in for cuda.synchronize: "finishes" the work queued so far
        while pending:
            time.sleep(pending.pop())

    with profiling(synchronize) as profile:
        with phase("pairs"):
            pending.append(0.05)  # an asynchronous 50 ms kernel
        with phase("integration"):
            pass
    assert profile.seconds["pairs"] >= 0.05
    assert profile.seconds["integration"] < 0.05


def test_the_small_system_benchmark_is_solvated_alanine_dipeptide_at_dhfr_settings(capsys):
    report = _bench_json(capsys, "alanine", "--compare", "none", "--steps", "2", "--repeats", "1")
    settings = report["settings"]
    assert report["system"] == "alanine" and settings["atoms"] == 2269
    assert settings["cutoff_nm"] == pytest.approx(0.9)
    assert settings["timestep_fs"] == pytest.approx(4.0)  # HMR 1.5 amu, as the DHFR benchmark
    # 749 rigid waters (two O-H and the H-H each) and the solute's 12 bonds to hydrogen
    assert settings["constraints"] == 3 * 749 + 12
    assert report["bencao_ns_per_day"] > 0


def test_custom_lj_benchmark_compares_the_same_physics():
    """The two forms of ``bench custom-lj`` are one potential: bencao's energies and forces of
    the built-in and the expression agree (built-in pair kernel: float32, ~1e-6 relative)."""
    import numpy as np

    import bencao
    from bencao.bench.custom import lj_fluid

    evaluations = []
    for custom in (False, True):
        system, positions, box = lj_fluid(600, custom)
        evaluations.append(bencao.evaluate(bencao.System.from_openmm(system), positions, box))
    builtin, expression = evaluations
    assert np.isfinite(expression.energy)
    assert expression.energy == pytest.approx(builtin.energy, rel=1e-5)
    scale = np.abs(builtin.forces).max()
    np.testing.assert_allclose(expression.forces, builtin.forces, rtol=0, atol=1e-5 * scale)
