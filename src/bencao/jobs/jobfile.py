"""Job files: a run described in TOML, in the spirit of GROMACS ``.mdp`` files, checked up front.

A job file names a prepared system folder (``bencao prepare`` writes it) and says what to do with
it: either a list of ``[[stage]]`` tables (minimize, nvt, npt, nve), or nothing more, in which
case the default protocol runs (minimize, heat under restraints, equilibrate under restraints,
production).  The shortest job file is one line::

    system = "system"

Everything is validated when the file is loaded, before any dynamics: every key is known, every
value has the right type, range and unit, every length and interval is a whole number of the
stage's time steps, and every stage's settings fit together (an NVE stage runs Verlet, an NPT stage
has a pressure...).  A problem is a :class:`~bencao.errors.JobFileError` whose message is one
line naming the file, the stage and the key, so that a long run never dies an hour in on a typo.

Units: times in ps (a bare number) or as ``"<number> <unit>"`` with fs, ps, ns, us (µs), or
``"<int> steps"`` for lengths and intervals; temperatures in K; pressures in bar; friction in 1/ps;
restraint force constants in kJ/mol/nm^2; minimizer tolerance in kJ/mol/nm.
"""

from __future__ import annotations

import pathlib
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from bencao.backends import BACKENDS as BACKEND_CLASSES
from bencao.dynamics.integrators import INTEGRATORS as INTEGRATOR_CLASSES
from bencao.errors import JobFileError
from bencao.jobs.ensemble_table import ensemble_from_table
from bencao.jobs.stages import Job, Stage
from bencao.jobs.values import (
    Where,
    boolean,
    checkpoint_interval,
    fmt,
    interval_value,
    length_value,
    nonnegative_number,
    one_line,
    one_of,
    optional_length,
    positive_number,
    restraint_choice,
    show,
    stage_temperature,
    string_value,
    timestep_value,
    top_pressure,
    unknown_key,
    whole_number,
)

STAGE_KINDS = ("minimize", "nvt", "npt", "nve")
INTEGRATORS = tuple(sorted(INTEGRATOR_CLASSES))
VELOCITIES = ("continue", "generate")
TRAJECTORY_FORMATS = ("xtc", "dcd")
BACKENDS = tuple(BACKEND_CLASSES)

# Files a prepared system folder must hold for a run to start (structure.pdb is optional here:
# only the trajectory writer's topology needs it, and the runner says so if it is missing).
SYSTEM_FILES = ("system.npz", "state.npz")

# Keys that a stage takes from the top level when it does not set them itself.
INHERITED_KEYS = (
    "temperature", "pressure", "timestep", "friction", "integrator", "reciprocal_every",
    "barostat_frequency", "restraint_k", "report_interval", "trajectory_interval",
)
PROTOCOL_KEYS = ("production", "heating", "equilibration")
TOP_LEVEL_KEYS = (
    "system", "output", "seed", *INHERITED_KEYS, "trajectory_format", "checkpoint_minutes",
    "checkpoint_interval", "threads", "backend", "pockets", *PROTOCOL_KEYS, "stage", "ensemble",
)
MINIMIZE_KEYS = ("kind", "name", "tolerance", "max_iterations", "restraints", "restraint_k")
DYNAMICS_KEYS = (
    "kind", "name", "length", "temperature", "pressure", "timestep", "integrator", "friction",
    "reciprocal_every", "barostat_frequency", "report_interval", "trajectory_interval",
    "restraints", "restraint_k", "velocities",
)
STAGE_KEYS = tuple(dict.fromkeys(MINIMIZE_KEYS + DYNAMICS_KEYS))

DEFAULTS = {
    "temperature": 300.0,          # K
    "pressure": 1.0,               # bar
    "timestep": "2 fs",
    "friction": 1.0,               # 1/ps
    "integrator": "langevin",
    "reciprocal_every": 1,
    "barostat_frequency": 25,      # steps
    "restraint_k": 1000.0,         # kJ/mol/nm^2
    "report_interval": "1 ps",
    "trajectory_interval": "10 ps",
    "trajectory_format": "xtc",
    "checkpoint_minutes": 10.0,    # wall-clock minutes
    "backend": "cpu",
    "pockets": False,              # run bencao pockets on the trajectory at the end
    "production": "1 ns",
    "heating": "20 ps",
    "equilibration": "100 ps",
}
MINIMIZE_TOLERANCE = 10.0          # kJ/mol/nm, as OpenMM's default
HEATING_START = 50.0               # K: the default heating ramp starts here (or at T if lower)

# Relative tolerance when a time must be a whole number of time steps: wide enough for the
# round-off of decimal times ("0.002 ps"), far too narrow for a genuine mismatch.
WHOLE_STEPS_RTOL = 1e-6

_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


# ---------------------------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------------------------


def load_job(path) -> Job:
    """Read and validate a job file.

    Parameters
    ----------
    path : str or os.PathLike
        The TOML job file.  ``system`` and ``output`` are relative to its folder.

    Returns
    -------
    Job

    Raises
    ------
    JobFileError
        The file cannot be read or is not a valid job (the message names the key).
    """
    path = pathlib.Path(path)
    label = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise JobFileError(one_line(f"{label}: no such job file")) from None
    except IsADirectoryError:
        raise JobFileError(one_line(f"{label}: is a folder, not a job file")) from None
    except UnicodeDecodeError as error:
        message = f"{label}: not valid TOML: not UTF-8 text ({error.reason})"
        raise JobFileError(one_line(message)) from None
    except OSError as error:
        message = f"{label}: cannot read the job file: {error.strerror or error}"
        raise JobFileError(one_line(message)) from None
    path = path.resolve()
    return _build_job(text, path.parent, label, path.stem, path)


def job_from_text(text: str, base_dir, name: str = "job.toml") -> Job:
    """Validate a job given as TOML text.

    Parameters
    ----------
    text : str
        The job file's contents.
    base_dir : str or os.PathLike
        Folder that ``system`` and ``output`` are relative to.
    name : str
        What to call the job in messages; its stem is the default output folder.

    Returns
    -------
    Job
        With ``path`` None.
    """
    base_dir = pathlib.Path(base_dir).resolve()
    return _build_job(text, base_dir, name, pathlib.Path(name).stem, None)


_TOP_LEVEL_CHECKS: dict[str, Callable] = {
    "system": string_value,
    "output": string_value,
    "seed": whole_number(0),   # TOML integers fit NumPy seeds
    "temperature": positive_number(" in K"),
    "pressure": top_pressure,
    "timestep": timestep_value,
    "friction": nonnegative_number(" in 1/ps"),
    "integrator": one_of(INTEGRATORS),
    "reciprocal_every": whole_number(1),
    "barostat_frequency": whole_number(1),
    "restraint_k": positive_number(" in kJ/mol/nm^2"),
    "report_interval": interval_value,
    "trajectory_interval": interval_value,
    "trajectory_format": one_of(TRAJECTORY_FORMATS),
    "checkpoint_minutes": positive_number(" of minutes"),
    "checkpoint_interval": checkpoint_interval,
    "threads": whole_number(1),
    "backend": one_of(BACKENDS),
    "pockets": boolean,
    "production": length_value,
    "heating": optional_length,
    "equilibration": optional_length,
}

_STAGE_CHECKS: dict[str, Callable] = {
    "length": length_value,
    "temperature": stage_temperature,
    "pressure": positive_number(" in bar"),
    "timestep": timestep_value,
    "integrator": one_of(INTEGRATORS),
    "friction": nonnegative_number(" in 1/ps"),
    "reciprocal_every": whole_number(1),
    "barostat_frequency": whole_number(1),
    "report_interval": interval_value,
    "trajectory_interval": interval_value,
    "restraints": restraint_choice,
    "restraint_k": positive_number(" in kJ/mol/nm^2"),
    "velocities": one_of(VELOCITIES),
    "tolerance": positive_number(" in kJ/mol/nm"),
    "max_iterations": whole_number(0),
}


# ---------------------------------------------------------------------------------------------
# Building the job
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Setting:
    """A normalized value and how to name it in messages (the key, and where it was set)."""

    value: Any
    label: str


def _build_job(text: str, base_dir: pathlib.Path, label: str, stem: str, path) -> Job:
    where = Where(label)
    table = _parse_toml(text, where)
    _check_keys(table, TOP_LEVEL_KEYS, where)
    if "system" not in table:
        raise where.error("missing required key 'system' (the folder bencao prepare wrote)")
    if "stage" in table:
        protocol_keys = [key for key in PROTOCOL_KEYS if key in table]
        if protocol_keys:
            raise where.error(
                f"'{protocol_keys[0]}': use either [[stage]] tables or the default protocol's "
                "production/heating/equilibration keys, not both"
            )
    top = {key: _TOP_LEVEL_CHECKS[key](table[key], key, where) for key in table
           if key not in ("stage", "ensemble")}
    top = _with_defaults(top, where)

    system_dir = _system_dir(table["system"], base_dir, where)
    output_dir = _output_dir(top.get("output"), base_dir, stem, system_dir, where)
    periodic = _is_periodic(system_dir)
    if not periodic:
        # Implicit solvent or vacuum: no box, so no barostat; the default protocol runs NVT.
        if "pressure" in table and top["pressure"] is not None:
            raise where.error(f"'pressure': the system in {show(table['system'])} has no periodic "
                              "box (implicit solvent or vacuum), so it cannot run at a pressure; "
                              "remove 'pressure' or set it to false")
        if "stage" not in table:
            top["pressure"] = None

    if "stage" in table:
        stages = _explicit_stages(table["stage"], top, where)
    else:
        stages = _default_stages(top, where)
    if not periodic:
        for stage in stages:
            if stage.kind == "npt":
                raise where.at_stage(f"stage '{stage.name}'").error(
                    "an npt stage needs a periodic box, and this system has none (implicit "
                    "solvent or vacuum); use kind = 'nvt'")
    _check_checkpoint_interval(top["checkpoint_interval"], stages, where)
    ensemble = None
    if "ensemble" in table:
        ensemble = ensemble_from_table(table["ensemble"], stages, where)

    return Job(
        path=path,
        text=text,
        system_dir=system_dir,
        output_dir=output_dir,
        seed=top.get("seed"),
        stages=tuple(stages),
        trajectory_format=top["trajectory_format"],
        checkpoint_minutes=top["checkpoint_minutes"],
        checkpoint_interval_ps=top["checkpoint_interval"],
        threads=top.get("threads"),
        backend=top["backend"],
        ensemble=ensemble,
        pockets=top["pockets"],
    )


def _parse_toml(text: str, where: Where) -> dict:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise where.error(f"not valid TOML: {error}") from None


def _check_keys(table: dict, known, where: Where) -> None:
    for key in table:
        if key not in known:
            raise where.error(unknown_key(key, known))


def _with_defaults(top: dict, where: Where) -> dict:
    """Fill in defaults for the keys the file leaves out (through the same checks)."""
    top = dict(top)
    for key, default in DEFAULTS.items():
        if key not in top:
            top[key] = _TOP_LEVEL_CHECKS[key](default, key, where)
    top.setdefault("checkpoint_interval", None)
    return top


def _system_dir(raw: str, base_dir: pathlib.Path, where: Where) -> pathlib.Path:
    folder = (base_dir / pathlib.Path(raw).expanduser()).resolve()
    if not folder.exists():
        raise where.error(
            f"'system' folder {show(raw)} does not exist (looked for {folder}; make it with bencao prepare)"
        )
    if not folder.is_dir():
        raise where.error(f"'system' {show(raw)} is a file, not a folder written by bencao prepare")
    for name in SYSTEM_FILES:
        if not (folder / name).is_file():
            raise where.error(f"'system' folder {show(raw)} has no {name} (make one with bencao prepare)")
    return folder


def _output_dir(raw: str | None, base_dir: pathlib.Path, stem: str, system_dir: pathlib.Path,
                where: Where) -> pathlib.Path:
    folder = (base_dir / (pathlib.Path(raw).expanduser() if raw is not None else stem)).resolve()
    shown = show(raw) if raw is not None else f"{show(stem)} (the default: the job file's name)"
    if folder.exists() and not folder.is_dir():
        raise where.error(f"'output' {shown} is a file, not a folder")
    # The run writes its own state.npz and checkpoints: keep it away from the prepared inputs.
    if folder == system_dir:
        raise where.error(f"'output' {shown} is the system folder; choose another run folder")
    return folder


# ---------------------------------------------------------------------------------------------
# Stages
# ---------------------------------------------------------------------------------------------


def _is_periodic(system_dir: pathlib.Path) -> bool:
    """Whether the prepared system in ``system_dir`` has a periodic box (True when the file
    cannot be read here: the runner reads it before any work and names what is wrong)."""
    from bencao.system import System

    try:
        return System.load(system_dir / "system.npz").box is not None
    except (OSError, ValueError):
        return True


def _default_stages(top: dict, where: Where) -> list[Stage]:
    """The default protocol: minimize, heat, equilibrate, production.

    Heating is NVT with a linear ramp from min(50 K, T) to T; equilibration and production are
    NPT, or NVT when the top-level pressure is false.  Heating and equilibration hold heavy atoms
    with restraints; a zero heating or equilibration length leaves that stage out.
    """
    temperature = top["temperature"]
    ensemble = "npt" if top["pressure"] is not None else "nvt"
    stages = [_minimize_stage("minimize", {}, top, where.at_stage("stage 'minimize'"))]
    plan = [
        ("heat", "nvt", "heating", (min(HEATING_START, temperature), temperature), "heavy"),
        ("equilibrate", ensemble, "equilibration", (temperature, temperature), "heavy"),
        ("production", ensemble, "production", (temperature, temperature), "none"),
    ]
    for name, kind, length_key, ramp, restraints in plan:
        if top[length_key] is None:
            continue   # heating = 0 or equilibration = 0 leaves the stage out
        settings = _inherited(top, kind)
        settings["length"] = _Setting(top[length_key], f"'{length_key}'")
        settings["temperature"] = _Setting(ramp, "'temperature'")
        settings["restraints"] = _Setting(restraints, "'restraints'")
        stages.append(_dynamics_stage(name, kind, settings, where.at_stage(f"stage '{name}'")))
    return stages


def _explicit_stages(tables, top: dict, where: Where) -> list[Stage]:
    if not isinstance(tables, list) or not all(isinstance(table, dict) for table in tables):
        raise where.error("'stage' must be written as [[stage]] tables (an array of tables)")
    if not tables:
        raise where.error("'stage' is empty: give at least one [[stage]] table")
    names = _stage_names(tables, where)
    stages = []
    for table, name in zip(tables, names):
        stage_where = where.at_stage(f"stage '{name}'")
        kind = table["kind"]
        _check_keys(table, STAGE_KEYS, stage_where)
        if kind == "minimize":
            _reject_foreign_keys(table, MINIMIZE_KEYS, kind, stage_where)
            stages.append(_minimize_stage(name, table, top, stage_where))
        else:
            _reject_foreign_keys(table, DYNAMICS_KEYS, kind, stage_where)
            settings = _stage_settings(table, kind, top, stage_where)
            stages.append(_dynamics_stage(name, kind, settings, stage_where))
    return stages


def _stage_names(tables: list, where: Where) -> list[str]:
    """Each stage's name (explicit, or kind, kind-2, kind-3 ...), checking 'kind' and 'name'."""
    names, repeats = [], {}
    for number, table in enumerate(tables, start=1):
        name = table.get("name")
        label = f"stage '{name}'" if isinstance(name, str) else f"stage {number}"
        stage_where = where.at_stage(label)
        if "kind" not in table:
            _check_keys(table, STAGE_KEYS, stage_where)   # a misspelt 'kind' reads better so
            raise stage_where.error(f"missing required key 'kind' ({_choices(STAGE_KINDS)})")
        kind = one_of(STAGE_KINDS)(table["kind"], "kind", stage_where)
        if name is None:
            repeats[kind] = repeats.get(kind, 0) + 1
            name = kind if repeats[kind] == 1 else f"{kind}-{repeats[kind]}"
        elif not isinstance(name, str) or not _NAME_PATTERN.match(name):
            raise stage_where.error(
                f"'name' must be letters, digits, '.', '_' or '-' (it names files), got {show(name)}"
            )
        if name in names:
            raise where.at_stage(f"stage {number}").error(
                f"'name' {show(name)} is already the name of stage {names.index(name) + 1}; "
                "stage names must be unique"
            )
        names.append(name)
    return names


def _choices(choices) -> str:
    return "one of " + ", ".join(f"'{choice}'" for choice in choices)


def _reject_foreign_keys(table: dict, own_keys, kind: str, where: Where) -> None:
    """Refuse keys that belong to other kinds of stage, naming the key and why."""
    for key in table:
        if key not in own_keys:
            other = "dynamics (nvt, npt, nve)" if kind == "minimize" else "minimize"
            raise where.error(f"'{key}' applies only to {other} stages, and this stage is {kind}")


def _minimize_stage(name: str, table: dict, top: dict, where: Where) -> Stage:
    values = {key: _STAGE_CHECKS[key](table[key], key, where) for key in table if key in _STAGE_CHECKS}
    temperature = top["temperature"]
    return Stage(
        name=name,
        kind="minimize",
        steps=0,
        timestep=top["timestep"],
        temperature=(temperature, temperature),
        pressure=None,
        integrator=top["integrator"],
        friction=top["friction"],
        reciprocal_every=top["reciprocal_every"],
        barostat_frequency=top["barostat_frequency"],
        report_every=0,
        trajectory_every=0,
        restraints=values.get("restraints", "none"),
        restraint_k=values.get("restraint_k", top["restraint_k"]),
        tolerance=values.get("tolerance", MINIMIZE_TOLERANCE),
        max_iterations=values.get("max_iterations", 0),
        generate_velocities=False,
    )


def _inherited(top: dict, kind: str) -> dict[str, _Setting]:
    """The top-level settings a dynamics stage of this kind starts from."""
    settings = {key: _Setting(top[key], f"'{key}' (from the top level)") for key in INHERITED_KEYS}
    temperature = top["temperature"]
    settings["temperature"] = _Setting((temperature, temperature), settings["temperature"].label)
    if kind == "nve":
        # NVE means Verlet: the top-level integrator is the thermostatted stages' choice.
        settings["integrator"] = _Setting("verlet", "'integrator'")
    settings["restraints"] = _Setting("none", "'restraints'")
    settings["velocities"] = _Setting("continue", "'velocities'")
    return settings


def _stage_settings(table: dict, kind: str, top: dict, where: Where) -> dict[str, _Setting]:
    """A dynamics stage's own keys, checked, over the top-level ones it inherits."""
    if "length" not in table:
        raise where.error("missing required key 'length' (a time like '100 ps', '1 ns' or '5000 steps')")
    if kind != "npt":
        for key in ("pressure", "barostat_frequency"):
            if key in table:
                raise where.error(f"'{key}' applies only to npt stages, and this stage is {kind}")
    if kind == "nve":
        if "integrator" in table and table["integrator"] != "verlet":
            raise where.error(
                "'integrator' must be 'verlet' on an nve stage (no thermostat), "
                f"got {show(table['integrator'])}"
            )
        if "friction" in table:
            raise where.error("'friction' has no effect on an nve stage (Verlet has no thermostat)")
    settings = _inherited(top, kind)
    for key, value in table.items():
        if key not in ("kind", "name"):
            settings[key] = _Setting(_STAGE_CHECKS[key](value, key, where), f"'{key}'")
    if kind == "nve" and settings["temperature"].value[0] != settings["temperature"].value[1]:
        raise where.error("'temperature' cannot be a ramp on an nve stage (there is no thermostat)")
    return settings


def _dynamics_stage(name: str, kind: str, settings: dict[str, _Setting], where: Where) -> Stage:
    """Resolve a dynamics stage: steps from times, and the checks that span several keys."""
    timestep = settings["timestep"].value
    integrator = settings["integrator"]
    pressure = settings["pressure"]
    chosen = INTEGRATOR_CLASSES[integrator.value]
    if kind in ("nvt", "npt") and not chosen.thermostatted:
        thermostatted = " or ".join(f"'{name}'" for name in INTEGRATORS
                                    if INTEGRATOR_CLASSES[name].thermostatted)
        raise where.error(
            f"{integrator.label} '{integrator.value}' has no thermostat: an {kind} stage needs {thermostatted}"
        )
    if chosen.friction_is_collision_frequency and settings["friction"].value <= 0:
        raise where.error(
            f"{settings['friction'].label} is the Nose-Hoover collision frequency and must be positive"
        )
    if not chosen.supports_mts and settings["reciprocal_every"].value != 1:
        with_mts = " or ".join(f"'{name}'" for name in INTEGRATORS
                               if INTEGRATOR_CLASSES[name].supports_mts)
        raise where.error(
            f"{settings['reciprocal_every'].label} must be 1 with the {integrator.value} integrator "
            f"(multiple time stepping needs {with_mts})"
        )
    if kind == "npt" and pressure.value is None:
        raise where.error(
            f"an npt stage needs a pressure, but {pressure.label} is false; set 'pressure' or use kind = 'nvt'"
        )
    return Stage(
        name=name,
        kind=kind,
        steps=_steps(settings["length"], timestep, where),
        timestep=timestep,
        temperature=settings["temperature"].value,
        pressure=pressure.value if kind == "npt" else None,
        integrator=integrator.value,
        friction=settings["friction"].value,
        reciprocal_every=settings["reciprocal_every"].value,
        barostat_frequency=settings["barostat_frequency"].value,
        report_every=_steps(settings["report_interval"], timestep, where),
        trajectory_every=_steps(settings["trajectory_interval"], timestep, where),
        restraints=settings["restraints"].value,
        restraint_k=settings["restraint_k"].value,
        tolerance=MINIMIZE_TOLERANCE,
        max_iterations=0,
        generate_velocities=settings["velocities"].value == "generate",
    )


def _steps(setting: _Setting, timestep: float, where: Where) -> int:
    """A length or interval as a whole number (>= 1) of time steps; None (never) is 0."""
    time = setting.value
    if time is None:
        return 0
    if isinstance(time, tuple):   # ("steps", n): already steps; zero was turned into None
        return time[1]
    return _whole_steps(time, timestep, setting.label, where)


def _whole_steps(time: float, timestep: float, label: str, where: Where) -> int:
    ratio = time / timestep
    steps = round(ratio)
    step_text = f"{fmt(timestep * 1000)} fs"
    if steps < 1:
        raise where.error(f"{label} {fmt(time)} ps is shorter than one {step_text} step")
    if abs(ratio - steps) > WHOLE_STEPS_RTOL * ratio:
        raise where.error(f"{label} {fmt(time)} ps is not a whole number of {step_text} steps")
    return steps


def _check_checkpoint_interval(interval: float | None, stages: list[Stage], where: Where) -> None:
    """The runner converts the interval with each stage's time step: check that it can."""
    if interval is None:
        return
    for stage in stages:
        if stage.is_dynamics:
            stage_where = where.at_stage(f"stage '{stage.name}'")
            _whole_steps(interval, stage.timestep, "'checkpoint_interval'", stage_where)
