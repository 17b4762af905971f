"""The ``[ensemble]`` table of a job file: replicas of the last stage, with or without exchanges.

::

    [ensemble]
    replicas = 4
    exchange = "temperature"            # "none", "temperature" or "rest2"
    temperature_range = [300, 400]      # a geometric ladder; or temperatures = [300, 330, ...]
    exchange_interval = "1 ps"

    [ensemble]                          # REST2: every replica at the stage's temperature
    exchange = "rest2"
    solute = "ligand"                   # "protein", or an MDTraj selection ("resid 0 to 2")
    solute_temperatures = [300, 350, 410, 480]   # or solute_temperature_range = [300, 480]

The stages before the last run once; then every replica runs the last stage from where they
ended, with velocities drawn afresh at its own temperature and seed, in segments of
``exchange_interval`` (for ``exchange = "none"`` the segments are simply how often replicas
checkpoint).
"""

from __future__ import annotations

import itertools
import math

from bencao.errors import JobFileError
from bencao.jobs.stages import EXCHANGES, Ensemble, Stage
from bencao.jobs.values import (
    Where,
    one_of,
    parse_time,
    show,
    unknown_key,
    whole_number,
)

ENSEMBLE_KEYS = ("replicas", "exchange", "temperatures", "temperature_range", "solute",
                 "solute_temperatures", "solute_temperature_range", "exchange_interval")
DEFAULT_EXCHANGE_INTERVAL = "1 ps"

# Relative tolerance when a length must be a whole number of segments (decimal round-off).
_WHOLE_RTOL = 1e-6


def geometric_ladder(low: float, high: float, count: int) -> tuple[float, ...]:
    """``count`` temperatures from ``low`` to ``high`` (K) in a constant ratio, the spacing that
    gives roughly equal exchange acceptance when the heat capacity does not change much."""
    if count == 1:
        return (float(low),)
    ratio = (high / low) ** (1.0 / (count - 1))
    ladder = [low * ratio**k for k in range(count)]
    ladder[-1] = float(high)
    return tuple(float(t) for t in ladder)


def ensemble_from_table(table, stages: list[Stage], where: Where) -> Ensemble:
    """Check an ``[ensemble]`` table against the job's stages and resolve it.

    Raises
    ------
    bencao.errors.JobFileError
        Naming the key: unknown keys, a ladder that is not increasing, REST2 without a solute, a
        last stage that cannot be replicated, a length that is not a whole number of segments.
    """
    where = where.at_stage("[ensemble]")
    if not isinstance(table, dict):
        raise where.error("'ensemble' must be a table ([ensemble])")
    for key in table:
        if key not in ENSEMBLE_KEYS:
            raise where.error(unknown_key(key, ENSEMBLE_KEYS))
    exchange = one_of(EXCHANGES)(table.get("exchange", "none"), "exchange", where)
    stage = stages[-1]
    _check_stage(stage, exchange, where)
    temperature = stage.temperature[1]

    ladder = _ladder(table, "temperatures", "temperature_range", where)
    solute_ladder = _ladder(table, "solute_temperatures", "solute_temperature_range", where)
    replicas = table.get("replicas")
    if replicas is not None:
        replicas = whole_number(1)(replicas, "replicas", where)
    if exchange == "rest2":
        if ladder is not None:
            raise where.error("'temperatures' do not apply to rest2 (every replica runs at the stage's "
                              "temperature); give 'solute_temperatures'")
        if solute_ladder is None:
            raise where.error("rest2 needs 'solute_temperatures' (or 'solute_temperature_range'), "
                              f"the first equal to the stage's temperature {temperature:g} K")
        if "solute" not in table:
            raise where.error("rest2 needs 'solute': 'ligand', 'protein' or an MDTraj selection")
        solute_ladder = _resolve(solute_ladder, replicas, "solute_temperature", where)
        if not math.isclose(solute_ladder[0], temperature, rel_tol=1e-9):
            raise where.error(f"the first solute temperature must be the stage's temperature "
                              f"{temperature:g} K (the unscaled state), got {solute_ladder[0]:g}")
        replicas = len(solute_ladder)
        ladder = (temperature,) * replicas
    else:
        for key in ("solute", "solute_temperatures", "solute_temperature_range"):
            if key in table:
                raise where.error(f"'{key}' applies only to exchange = 'rest2'")
        solute_ladder = None
        if exchange == "temperature" and ladder is None:
            raise where.error("temperature exchange needs 'temperatures' or 'temperature_range'")
        if ladder is None:
            if replicas is None:
                raise where.error("missing required key 'replicas' (how many replicas to run)")
            ladder = (temperature,) * replicas
        else:
            ladder = _resolve(ladder, replicas, "temperature", where)
        replicas = len(ladder)
    if exchange != "none" and replicas < 2:
        raise where.error(f"exchange = '{exchange}' needs at least 2 replicas")
    solute = table.get("solute")
    if solute is not None and (not isinstance(solute, str) or not solute.strip()):
        raise where.error(f"'solute' must be 'ligand', 'protein' or an MDTraj selection, got {show(solute)}")
    return Ensemble(replicas=replicas, exchange=exchange, temperatures=ladder, solute=solute,
                    solute_temperatures=solute_ladder,
                    segment_steps=_segment_steps(table, stage, where))


def _check_stage(stage: Stage, exchange: str, where: Where) -> None:
    if not stage.is_dynamics:
        raise where.error("the ensemble runs the job's last stage, which must be dynamics "
                          f"(nvt or npt), but stage '{stage.name}' is {stage.kind}")
    if exchange == "none":
        return
    if stage.kind == "nve":
        raise where.error(f"exchange = '{exchange}' needs a thermostat, but the last stage "
                          f"'{stage.name}' is nve")
    if stage.integrator != "langevin":
        raise where.error(f"exchange = '{exchange}' needs integrator = 'langevin' on the last stage "
                          f"'{stage.name}' (a Nose-Hoover chain's state would not survive the swap)")
    if stage.temperature[0] != stage.temperature[1]:
        raise where.error(f"the last stage '{stage.name}' must run at one temperature, not a ramp")


def _ladder(table: dict, list_key: str, range_key: str, where: Where):
    """("list", temperatures) or ("range", (low, high)) or None, checked."""
    if list_key in table and range_key in table:
        raise where.error(f"give either '{list_key}' or '{range_key}', not both")
    if list_key in table:
        values = table[list_key]
        if (not isinstance(values, list) or not values
                or not all(_is_temperature(t) for t in values)):
            raise where.error(f"'{list_key}' must be a list of temperatures in K, got {show(values)}")
        if any(b <= a for a, b in itertools.pairwise(values)):
            raise where.error(f"'{list_key}' must increase from the first state, got {show(values)}")
        return ("list", tuple(float(t) for t in values))
    if range_key in table:
        values = table[range_key]
        if (not isinstance(values, list) or len(values) != 2
                or not all(_is_temperature(t) for t in values) or values[1] <= values[0]):
            raise where.error(f"'{range_key}' must be [lowest, highest] in K, lowest first, "
                              f"got {show(values)}")
        return ("range", (float(values[0]), float(values[1])))
    return None


def _resolve(ladder, replicas, name: str, where: Where) -> tuple[float, ...]:
    kind, values = ladder
    if kind == "range":
        if replicas is None:
            raise where.error(f"'{name}_range' needs 'replicas' (how many rungs on the ladder)")
        return geometric_ladder(values[0], values[1], replicas)
    if replicas is not None and replicas != len(values):
        raise where.error(f"'replicas' is {replicas} but '{name}s' lists {len(values)} temperatures")
    return values


def _is_temperature(value) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value) and value > 0)


def _segment_steps(table: dict, stage: Stage, where: Where) -> int:
    raw = table.get("exchange_interval", DEFAULT_EXCHANGE_INTERVAL)
    try:
        interval = parse_time(raw, "exchange_interval")
    except JobFileError as error:
        raise where.error(str(error)) from None
    if isinstance(interval, tuple):
        steps = interval[1]
    else:
        ratio = interval / stage.timestep
        steps = round(ratio)
        if steps < 1 or abs(ratio - steps) > _WHOLE_RTOL * ratio:
            raise where.error(f"'exchange_interval' {show(raw)} is not a whole number of the last "
                              f"stage's {stage.timestep * 1e3:g} fs steps")
    if steps < 1:
        raise where.error("'exchange_interval' must be longer than zero")
    if stage.steps % steps:
        raise where.error(f"the last stage '{stage.name}' ({stage.steps} steps) is not a whole "
                          f"number of exchange intervals ({steps} steps)")
    return steps
