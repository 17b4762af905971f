"""Job files: defaults, stages and inheritance, units, and one-line errors naming the key."""

import pytest

from bencao.errors import BencaoError, JobFileError
from bencao.jobs import Job, Stage, job_from_text, load_job, parse_time


def job(folder, text, name="md.toml") -> Job:
    return job_from_text('system = "system"\n' + text, folder, name)


def error(folder, text, name="md.toml") -> str:
    """The message of the JobFileError the text raises, checked to be one line."""
    with pytest.raises(JobFileError) as raised:
        job_from_text(text, folder, name)
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(f"{name}: ")
    return message


# --- the default protocol -------------------------------------------------------------------


def test_shortest_job_runs_the_default_protocol(folder):
    result = job(folder, "")
    assert [stage.name for stage in result.stages] == ["minimize", "heat", "equilibrate", "production"]
    assert [stage.kind for stage in result.stages] == ["minimize", "nvt", "npt", "npt"]
    minimize, heat, equilibrate, production = result.stages
    assert (minimize.steps, minimize.tolerance, minimize.max_iterations) == (0, 10.0, 0)
    assert not minimize.is_dynamics and minimize.length_ps == 0
    assert heat.steps == 10_000 and heat.temperature == (50.0, 300.0) and heat.restraints == "heavy"
    assert equilibrate.steps == 50_000 and equilibrate.restraints == "heavy"
    assert equilibrate.pressure == 1.0 and heat.pressure is None
    assert production.steps == 500_000 and production.restraints == "none"   # 1 ns at 2 fs
    assert production.length_ps == pytest.approx(1000.0)
    assert production.temperature == (300.0, 300.0)
    assert (production.report_every, production.trajectory_every) == (500, 5000)
    assert production.integrator == "langevin" and production.friction == 1.0
    assert result.total_steps == 560_000
    assert result.system_dir == (folder / "system").resolve()
    assert result.output_dir == (folder / "md").resolve()
    assert result.seed is None and result.threads is None and result.path is None
    assert result.trajectory_format == "xtc" and result.backend == "cpu"
    assert (result.checkpoint_minutes, result.checkpoint_interval_ps) == (10.0, None)
    assert result.text.startswith('system = "system"')


def test_default_protocol_lengths_and_temperature(folder):
    result = job(folder, 'production = "10 ns"\nheating = "50 ps"\nequilibration = 200\n'
                         'temperature = 310\ntimestep = "4 fs"')
    heat, equilibrate, production = result.stages[1:]
    assert production.steps == 2_500_000 and production.timestep == 0.004
    assert heat.steps == 12_500 and heat.temperature == (50.0, 310.0)
    assert equilibrate.steps == 50_000


def test_heating_ramp_starts_at_the_target_when_it_is_below_50_k(folder):
    assert job(folder, "temperature = 20").stages[1].temperature == (20.0, 20.0)


def test_zero_heating_leaves_the_stage_out(folder):
    names = [stage.name for stage in job(folder, "heating = 0").stages]
    assert names == ["minimize", "equilibrate", "production"]


def test_pressure_false_turns_the_default_protocol_into_nvt(folder):
    stages = job(folder, "pressure = false").stages
    assert [stage.kind for stage in stages] == ["minimize", "nvt", "nvt", "nvt"]
    assert all(stage.pressure is None for stage in stages)


def test_top_level_settings(folder, tmp_path):
    result = job(folder, 'output = "runs/one"\nseed = 7\nthreads = 2\ntrajectory_format = "dcd"\n'
                         'checkpoint_minutes = 0.5\ncheckpoint_interval = "10 ps"\nbackend = "cuda"')
    assert result.output_dir == (tmp_path / "runs" / "one").resolve()
    assert (result.seed, result.threads, result.trajectory_format) == (7, 2, "dcd")
    assert result.backend == "cuda"
    assert (result.checkpoint_minutes, result.checkpoint_interval_ps) == (0.5, 10.0)


def test_load_job_reads_the_file(folder):
    path = folder / "equil.toml"
    path.write_text('system = "system"\nproduction = "20 ps"\n')
    result = load_job(path)
    assert result.path == path.resolve()
    assert result.output_dir == (folder / "equil").resolve()
    assert result.stages[-1].steps == 10_000


def test_missing_job_file(tmp_path):
    with pytest.raises(JobFileError, match="nothere.toml"):
        load_job(tmp_path / "nothere.toml")
    assert issubclass(JobFileError, BencaoError)


# --- explicit stages ------------------------------------------------------------------------

STAGES = """
temperature = 310
timestep = "4 fs"
friction = 2.0
report_interval = "2 ps"

[[stage]]
kind = "minimize"
tolerance = 5.0
max_iterations = 100
restraints = "backbone"

[[stage]]
kind = "nvt"
name = "heat"
length = "20 ps"
temperature = [100, 310]
restraints = "backbone+ligand"
restraint_k = 500
velocities = "generate"

[[stage]]
kind = "npt"
length = "5000 steps"
pressure = 2.5
barostat_frequency = 50
timestep = "2 fs"
trajectory_interval = false

[[stage]]
kind = "nvt"
length = "1 ns"
integrator = "nose-hoover"

[[stage]]
kind = "nve"
length = 4
trajectory_interval = "100 steps"

[[stage]]
kind = "nvt"
length = "1 ps"
"""


def test_explicit_stages_inherit_from_the_top_level(folder):
    stages = job(folder, STAGES).stages
    assert [stage.name for stage in stages] == ["minimize", "heat", "npt", "nvt", "nve", "nvt-2"]
    minimize, heat, npt, nvt, nve, nvt2 = stages
    assert (minimize.tolerance, minimize.max_iterations, minimize.restraints) == (5.0, 100, "backbone")
    assert minimize.restraint_k == 1000.0

    assert heat.steps == 5000 and heat.timestep == 0.004
    assert heat.temperature == (100.0, 310.0)
    assert (heat.restraints, heat.restraint_k, heat.generate_velocities) == ("backbone+ligand", 500.0,
                                                                              True)
    assert (heat.friction, heat.report_every, heat.trajectory_every) == (2.0, 500, 2500)

    assert npt.steps == 5000 and npt.timestep == 0.002 and npt.length_ps == pytest.approx(10.0)
    assert (npt.pressure, npt.barostat_frequency, npt.trajectory_every) == (2.5, 50, 0)
    assert npt.report_every == 1000 and npt.temperature == (310.0, 310.0)
    assert not npt.generate_velocities and npt.restraints == "none"

    assert nvt.integrator == "nose-hoover" and nvt.steps == 250_000 and nvt.pressure is None
    assert nve.integrator == "verlet" and nve.steps == 1000 and nve.trajectory_every == 100
    assert nvt2.integrator == "langevin" and nvt2.steps == 250


def test_total_steps_counts_dynamics_only(folder):
    result = job(folder, STAGES)
    assert result.total_steps == sum(stage.steps for stage in result.stages)
    assert result.total_steps == 5000 + 5000 + 250_000 + 1000 + 250


def test_stage_and_job_are_frozen(folder):
    result = job(folder, "")
    with pytest.raises(AttributeError):
        result.seed = 1
    with pytest.raises(AttributeError):
        result.stages[0].steps = 3
    assert isinstance(result.stages[0], Stage)


# --- times ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (2, 2.0), (0.5, 0.5), ("2 fs", 0.002), ("2fs", 0.002), ("100 ps", 100.0), ("1 ns", 1000.0),
        ("1.5 ns", 1500.0), ("1e3 fs", 1.0), ("2 us", 2e6), ("2 µs", 2e6), ("5000 steps", ("steps", 5000)),
        ("1 step", ("steps", 1)),
    ],
)
def test_parse_time(value, expected):
    assert parse_time(value, "length") == expected


@pytest.mark.parametrize("value", ["10 parsecs", "10", "ps", True, [1], "1.5 steps", -1, "-2 ps"])
def test_parse_time_rejects(value):
    with pytest.raises(JobFileError, match="'length'"):
        parse_time(value, "length")


def test_parse_time_without_steps():
    with pytest.raises(JobFileError, match="'timestep'"):
        parse_time("10 steps", "timestep", allow_steps=False)


def test_lengths_in_every_unit(folder):
    text = 'timestep = "2 fs"\n' + "".join(
        f'[[stage]]\nkind = "nvt"\nlength = {length}\n'
        for length in ('"20 fs"', "0.02", '"0.00002 ns"', '"10 steps"')
    )
    assert [stage.steps for stage in job(folder, text).stages] == [10, 10, 10, 10]


def test_steps_round_decimal_times(folder):
    # 0.1 ps / 0.002 ps is 49.99999999999999 in floating point: still 50 steps.
    assert job(folder, '[[stage]]\nkind = "nvt"\nlength = 0.1\n').stages[0].steps == 50


# --- errors ---------------------------------------------------------------------------------

S = 'system = "system"\n'


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("system = \"system\"\nx = = 1", ["not valid TOML", "line 2"]),
        ('output = "x"', ["missing required key 'system'"]),
        (S + "temprature = 300", ["unknown key 'temprature'", "did you mean 'temperature'?"]),
        (S + "temperature = 'hot'", ["'temperature' must be a positive number in K, got 'hot'"]),
        (S + "temperature = true", ["'temperature'", "got true"]),
        (S + "temperature = -3", ["'temperature'"]),
        (S + "temperature = nan", ["'temperature'"]),
        (S + "pressure = true", ["'pressure'"]),
        (S + "seed = -1", ["'seed'"]),
        (S + "seed = 1.5", ["'seed'"]),
        (S + "threads = 0", ["'threads'"]),
        (S + "reciprocal_every = 0", ["'reciprocal_every'"]),
        (S + "integrator = 'leapfrog'", ["'integrator'", "'langevin'"]),
        (S + "trajectory_format = 'pdb'", ["'trajectory_format'"]),
        (S + "backend = 'gpu'", ["'backend'", "'cuda'"]),
        (S + "checkpoint_minutes = 0", ["'checkpoint_minutes'"]),
        (S + "[[stage]]\nkind = 'nvt'\nlength = '1 ps'\nrestraints = 'backbone+ligands'",
         ["'restraints'", "'ligand'", "joined with '+'"]),
        (S + "checkpoint_interval = '100 steps'", ["'checkpoint_interval'", "steps"]),
        (S + "timestep = '2 steps'", ["'timestep'"]),
        (S + "timestep = 0", ["'timestep'"]),
        (S + "production = '10 parsecs'",
         ["'production' must be a time like '100 ps', '1 ns' or '5000 steps', got '10 parsecs'"]),
        (S + "production = 0", ["'production'"]),
        (S + "report_interval = '3 fs'", ["stage 'heat'", "'report_interval'", "whole number of 2 fs steps"]),
        (S + "report_interval = '1 fs'", ["stage 'heat'", "'report_interval'", "shorter than one 2 fs step"]),
        (S + "checkpoint_interval = '1.001 ps'", ["stage 'heat'", "'checkpoint_interval'"]),
        (S + "production = '1.001 ps'", ["stage 'production'", "'production'", "not a whole number"]),
        (S + "integrator = 'verlet'", ["stage 'heat'", "'integrator'", "thermostat"]),
        (S + "integrator = 'nose-hoover'\nreciprocal_every = 2", ["stage 'heat'", "'reciprocal_every'"]),
        (S + "production = '1 ns'\n[[stage]]\nkind = 'nvt'\nlength = 1",
         ["'production'", "use either [[stage]] tables or the default protocol"]),
        (S + "[stage]\nkind = 'nvt'\nlength = 1", ["'stage'", "[[stage]]"]),
        (S + "stage = []", ["'stage'"]),
    ],
)
def test_top_level_errors(folder, text, expected):
    message = error(folder, text)
    for part in expected:
        assert part in message


def stage(body: str, name: str = "heat") -> str:
    return S + f"[[stage]]\nname = '{name}'\n" + body


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (stage("kind = 'nvt'\nlength = 10\ntemprature = 3"),
         ["stage 'heat': unknown key 'temprature' (did you mean 'temperature'?)"]),
        (stage("length = 10"), ["stage 'heat'", "missing required key 'kind'"]),
        (stage("kind = 'md'\nlength = 10"), ["stage 'heat'", "'kind'", "'nvt'"]),
        (stage("kind = 'nvt'"), ["stage 'heat'", "missing required key 'length'"]),
        (stage("kind = 'nvt'\nlength = '10 parsecs'"),
         ["stage 'heat'", "'length' must be a time like '100 ps', '1 ns' or '5000 steps', got '10 parsecs'"]),
        (stage("kind = 'nvt'\nlength = 0"), ["stage 'heat'", "'length'"]),
        (stage("kind = 'nvt'\nlength = '10.001 ps'\ntimestep = '4 fs'"),
         ["stage 'heat': 'length' 10.001 ps is not a whole number of 4 fs steps"]),
        (stage("kind = 'nvt'\nlength = 10\nreport_interval = '3 fs'"),
         ["stage 'heat'", "'report_interval'", "not a whole number of 2 fs steps"]),
        (stage("kind = 'nvt'\nlength = 10\ntrajectory_interval = '1 fs'"),
         ["stage 'heat'", "'trajectory_interval'", "shorter than one"]),
        (stage("kind = 'nvt'\nlength = 10\ntemperature = 'hot'"), ["stage 'heat'", "'temperature'", "'hot'"]),
        (stage("kind = 'nvt'\nlength = 10\ntemperature = [50]"), ["stage 'heat'", "'temperature'"]),
        (stage("kind = 'nvt'\nlength = 10\ntemperature = [50, false]"), ["stage 'heat'", "'temperature'"]),
        (stage("kind = 'nvt'\nlength = 10\npressure = 1"), ["stage 'heat'", "'pressure'", "npt"]),
        (stage("kind = 'nve'\nlength = 10\npressure = 1"), ["stage 'heat'", "'pressure'", "npt"]),
        (stage("kind = 'nvt'\nlength = 10\nbarostat_frequency = 10"), ["stage 'heat'", "'barostat_frequency'"]),
        (stage("kind = 'npt'\nlength = 10\npressure = 0"), ["stage 'heat'", "'pressure'"]),
        (stage("kind = 'nve'\nlength = 10\nintegrator = 'langevin'"),
         ["stage 'heat'", "'integrator'", "'verlet'"]),
        (stage("kind = 'nve'\nlength = 10\nfriction = 1"), ["stage 'heat'", "'friction'"]),
        (stage("kind = 'nve'\nlength = 10\ntemperature = [50, 300]"), ["stage 'heat'", "'temperature'"]),
        (stage("kind = 'nvt'\nlength = 10\nintegrator = 'verlet'"), ["stage 'heat'", "'integrator'"]),
        (stage("kind = 'nvt'\nlength = 10\nintegrator = 'nose-hoover'\nfriction = 0"),
         ["stage 'heat'", "'friction'"]),
        (stage("kind = 'nvt'\nlength = 10\nrestraints = 'ca'"), ["stage 'heat'", "'restraints'", "'backbone'"]),
        (stage("kind = 'nvt'\nlength = 10\nrestraint_k = -1"), ["stage 'heat'", "'restraint_k'"]),
        (stage("kind = 'nvt'\nlength = 10\nvelocities = 'random'"), ["stage 'heat'", "'velocities'"]),
        (stage("kind = 'nvt'\nlength = 10\nreciprocal_every = 1.5"), ["stage 'heat'", "'reciprocal_every'"]),
        (stage("kind = 'nvt'\nlength = 10\ntolerance = 1"), ["stage 'heat'", "'tolerance'", "minimize"]),
        (stage("kind = 'minimize'\nlength = 10", "em"), ["stage 'em'", "'length'", "dynamics"]),
        (stage("kind = 'minimize'\ntemperature = 300", "em"), ["stage 'em'", "'temperature'"]),
        (stage("kind = 'minimize'\nmax_iterations = -1", "em"), ["stage 'em'", "'max_iterations'"]),
        (stage("kind = 'minimize'\ntolerance = 0", "em"), ["stage 'em'", "'tolerance'"]),
        (stage("kind = 'nvt'\nlength = 10", "a b"), ["'name'", "'a b'"]),
        (S + "pressure = false\n[[stage]]\nkind = 'npt'\nname = 'eq'\nlength = 10",
         ["stage 'eq'", "'pressure'", "false"]),
        (S + "[[stage]]\nkind = 'nvt'\nlength = 10\n[[stage]]\nkind = 'nvt'\nname = 'nvt'\nlength = 10",
         ["stage 2", "'name'", "'nvt'", "unique"]),
    ],
)
def test_stage_errors(folder, text, expected):
    message = error(folder, text)
    for part in expected:
        assert part in message


def test_misspelt_kind_is_suggested(folder):
    message = error(folder, S + "[[stage]]\nknd = 'nvt'\nlength = 10")
    assert "stage 1" in message and "did you mean 'kind'?" in message


def test_multiline_values_still_give_one_line(folder):
    error(folder, S + 'temperature = """very\nhot"""')


# --- the system and output folders ----------------------------------------------------------


def test_missing_system_folder(folder):
    message = error(folder, 'system = "elsewhere"', name="job.toml")
    assert "'system'" in message and "'elsewhere'" in message and "bencao prepare" in message


@pytest.mark.parametrize("missing", ["system.npz", "state.npz"])
def test_system_folder_without_its_files(folder, missing):
    (folder / "system" / missing).unlink()
    message = error(folder, S, name="job.toml")
    assert message == f"job.toml: 'system' folder 'system' has no {missing} (make one with bencao prepare)"


def test_output_must_not_be_a_file_or_the_system_folder(folder):
    (folder / "taken").write_text("")
    assert "'output'" in error(folder, S + 'output = "taken"')
    assert "'output'" in error(folder, S + 'output = "system"')


# --- systems without a box (implicit solvent, vacuum) ------------------------------------------


@pytest.fixture
def boxless(tmp_path):
    """A job folder whose prepared system has no periodic box."""
    import numpy as np

    import bencao
    from bencao.forces import HarmonicBonds

    folder = tmp_path / "boxless"
    (folder / "system").mkdir(parents=True)
    system = bencao.System(masses=np.ones(2), terms=(HarmonicBonds(
        atoms=np.array([[0, 1]]), length=np.array([0.1]), k=np.array([1000.0])),))
    system.save(folder / "system" / "system.npz")
    (folder / "system" / "state.npz").write_bytes(b"")
    return folder


def test_default_protocol_of_a_system_without_a_box_is_nvt(boxless):
    stages = job(boxless, "").stages
    assert [stage.kind for stage in stages] == ["minimize", "nvt", "nvt", "nvt"]


def test_pressure_or_npt_without_a_box_is_refused_up_front(boxless):
    message = error(boxless, 'system = "system"\npressure = 1.0')
    assert "'pressure'" in message and "no periodic box" in message
    message = error(boxless, 'system = "system"\n[[stage]]\nname = "eq"\nkind = "npt"\n'
                             'length = "2 ps"\n')
    assert "stage 'eq'" in message and "use kind = 'nvt'" in message
