"""Values in job files: times with units, numbers with ranges, choices, and messages that name
the file, the stage and the key (shared by :mod:`bencao.jobs.jobfile` and the ensemble table)."""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable
from dataclasses import dataclass

from bencao.errors import JobFileError
from bencao.prep.restraints import RESTRAINT_CHOICES, restraint_parts

#: A parsed time: ps, or ``("steps", n)`` to be converted with a stage's time step.
Time = float | tuple

PS_PER_UNIT = {"fs": 1e-3, "ps": 1.0, "ns": 1e3, "us": 1e6, "µs": 1e6, "μs": 1e6}
TIME_PATTERN = re.compile(
    r"^\s*(?P<number>[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)\s*(?P<unit>[^\d\s.+-]+)\s*$"
)


def parse_time(value, key: str, *, allow_steps: bool = True) -> Time:
    """Parse a time value from a job file.

    Parameters
    ----------
    value : int, float or str
        A number (ps), ``"<number> <unit>"`` with unit fs, ps, ns, us or µs, or (when
        ``allow_steps``) ``"<int> steps"``.
    key : str
        The key the value belongs to, for messages.
    allow_steps : bool
        Whether a number of steps is acceptable (lengths and intervals; not a time step).

    Returns
    -------
    float or tuple
        The time in ps (>= 0), or ``("steps", n)`` with n >= 0.

    Raises
    ------
    JobFileError
        With a message (no file or stage prefix) naming the key.
    """
    example = "'100 ps', '1 ns' or '5000 steps'" if allow_steps else "'2 fs', '100 ps' or 0.002 (ps)"
    problem = f"'{key}' must be a time like {example}, got {show(value)}"
    if is_number(value):
        if not math.isfinite(value):
            raise JobFileError(problem)
        if value < 0:
            raise JobFileError(f"'{key}' must not be negative, got {show(value)}")
        return float(value)
    if not isinstance(value, str):
        raise JobFileError(problem)
    match = TIME_PATTERN.match(value)
    if match is None:
        raise JobFileError(problem)
    number, unit = match["number"], match["unit"]
    unit = unit.lower()
    if unit in ("step", "steps") and allow_steps:
        if not number.isdigit():
            raise JobFileError(f"'{key}' must be a whole number of steps, got {show(value)}")
        return ("steps", int(number))
    if unit not in PS_PER_UNIT:
        raise JobFileError(problem)
    ps = to_ps(float(number), unit)
    if not math.isfinite(ps):
        raise JobFileError(problem)
    if ps < 0:
        raise JobFileError(f"'{key}' must not be negative, got {show(value)}")
    return ps


# ---------------------------------------------------------------------------------------------
# Messages
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Where:
    """Where a value sits (file, and stage if any): prefixes every message."""

    file: str
    stage: str | None = None   # e.g. "stage 'heat'" or "stage 3"

    def at_stage(self, label: str) -> Where:
        return Where(self.file, label)

    def error(self, message: str) -> JobFileError:
        parts = [self.file] + ([self.stage] if self.stage else []) + [message]
        return JobFileError(one_line(": ".join(parts)))


def one_line(message: str) -> str:
    """The CLI prints errors as one line: fold any line breaks (from TOML strings, say)."""
    return " ".join(message.splitlines())


def show(value) -> str:
    """A value as the user wrote it in TOML, for messages."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(show(item) for item in value) + "]"
    if isinstance(value, dict):
        return "a table"
    if hasattr(value, "isoformat"):   # TOML dates and times
        return value.isoformat()
    return repr(value)


def fmt(number: float) -> str:
    """A float without round-off noise (0.002 * 3 -> '0.006')."""
    return f"{number:.10g}"


def unknown_key(key: str, known) -> str:
    message = f"unknown key {show(key)}"
    close = difflib.get_close_matches(key, known, n=1)
    if close:
        message += f" (did you mean '{close[0]}'?)"
    return message


# ---------------------------------------------------------------------------------------------
# Value checks: each takes (value, key, where) and returns the normalized value
# ---------------------------------------------------------------------------------------------


def is_number(value) -> bool:
    # TOML booleans are Python bools, which are ints: 'true' is not a temperature.
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def to_ps(number: float, unit: str) -> float:
    # Divide by 1000 rather than multiply by 1e-3 so that "2 fs" is exactly the float 0.002.
    if unit == "fs":
        return number / 1000.0
    return number * PS_PER_UNIT[unit]


def is_positive(value) -> bool:
    return is_number(value) and math.isfinite(value) and value > 0


def positive_number(unit: str) -> Callable:
    def check(value, key, where) -> float:
        if not is_positive(value):
            raise where.error(f"'{key}' must be a positive number{unit}, got {show(value)}")
        return float(value)
    return check


def nonnegative_number(unit: str) -> Callable:
    def check(value, key, where) -> float:
        if not is_number(value) or not math.isfinite(value) or value < 0:
            raise where.error(f"'{key}' must be a number >= 0{unit}, got {show(value)}")
        return float(value)
    return check


def whole_number(minimum: int) -> Callable:
    def check(value, key, where) -> int:
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise where.error(f"'{key}' must be a whole number >= {minimum}, got {show(value)}")
        return value
    return check


def one_of(choices) -> Callable:
    def check(value, key, where) -> str:
        if not isinstance(value, str) or value not in choices:
            options = ", ".join(f"'{choice}'" for choice in choices)
            raise where.error(f"'{key}' must be one of {options}, got {show(value)}")
        return value
    return check


def restraint_choice(value, key, where) -> str:
    """One of RESTRAINT_CHOICES, or several joined with '+' ("backbone+ligand")."""
    try:
        return "+".join(restraint_parts(value if isinstance(value, str) else ""))
    except JobFileError:
        options = ", ".join(f"'{choice}'" for choice in RESTRAINT_CHOICES)
        raise where.error(f"'{key}' must be one of {options}, or several joined with '+' "
                          f"(e.g. 'backbone+ligand'), got {show(value)}") from None


def string_value(value, key, where) -> str:
    if not isinstance(value, str) or not value.strip():
        raise where.error(f"'{key}' must be a non-empty string, got {show(value)}")
    return value


def timestep_value(value, key, where) -> float:
    ps = time_value(value, key, where, allow_steps=False)
    if ps <= 0:
        raise where.error(f"'{key}' must be positive, got {show(value)}")
    return ps


def time_value(value, key, where, allow_steps=True) -> Time:
    try:
        return parse_time(value, key, allow_steps=allow_steps)
    except JobFileError as error:
        raise where.error(str(error)) from None


def length_value(value, key, where) -> Time:
    length = time_value(value, key, where)
    if is_zero(length):
        raise where.error(f"'{key}' must be longer than zero, got {show(value)}")
    return length


def optional_length(value, key, where) -> Time | None:
    """A default-protocol stage length: 0 leaves the stage out."""
    length = time_value(value, key, where)
    return None if is_zero(length) else length


def interval_value(value, key, where) -> Time | None:
    """A reporting interval; 0 or false mean never (None)."""
    if value is False:
        return None
    interval = time_value(value, key, where)
    return None if is_zero(interval) else interval


def checkpoint_interval(value, key, where) -> float | None:
    # Stored in ps and converted per stage by the runner, so it cannot be a number of steps
    # (stages may differ in time step).
    if value is False:
        return None
    if isinstance(value, str) and value.rstrip().endswith(("step", "steps")):
        raise where.error(
            f"'{key}' must be a time like '100 ps', not a number of steps (stages may differ in "
            f"time step), got {show(value)}"
        )
    ps = time_value(value, key, where, allow_steps=False)
    return None if ps == 0 else ps


def is_zero(time: Time) -> bool:
    return time == ("steps", 0) or time == 0


def top_pressure(value, key, where) -> float | None:
    if value is False:
        return None   # no pressure coupling: the default protocol runs NVT
    if not is_number(value) or not math.isfinite(value) or value <= 0:
        raise where.error(f"'{key}' must be a positive number in bar or false, got {show(value)}")
    return float(value)


def stage_temperature(value, key, where) -> tuple[float, float]:
    """A number (K), or a [start, end] list for a linear ramp (heating or cooling)."""
    if isinstance(value, list):
        if len(value) != 2 or not all(is_positive(item) for item in value):
            raise where.error(
                f"'{key}' must be a positive number in K or a [start, end] ramp, got {show(value)}"
            )
        return (float(value[0]), float(value[1]))
    temperature = positive_number(" in K")(value, key, where)
    return (temperature, temperature)




def boolean(value, key, where) -> bool:
    """true or false."""
    if not isinstance(value, bool):
        raise where.error(f"'{key}' must be true or false, got {show(value)}")
    return value
