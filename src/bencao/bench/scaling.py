"""How the cost of a step grows with system size: cubic TIP3P water boxes, bencao beside OpenMM.

Each box (see ``bencao.bench.systems.water_box_openmm``) runs PME with a 0.9 nm cutoff, rigid
water and LangevinMiddle dynamics at 300 K, 1/ps and 2 fs in bencao and, in the same run and
from the same state, on OpenMM's CPU platform (see ``bencao.bench.dynamics.time_dynamics``).
The growth exponent p of ms/step ~ N^p is the least-squares slope of log ms/step against
log N: 1 is the linear scaling of cutoff pairs, PME adds a little (N log N).  Timings are never
asserted in tests.
"""

from __future__ import annotations

import gc
import time

import numpy as np

DEFAULT_SIZES = (3_000, 10_000, 30_000, 100_000, 300_000)
CUTOFF_NM = 0.9
TIMESTEP_PS = 0.002
TEMPERATURE_K = 300.0
FRICTION_PER_PS = 1.0
ENGINES = ("bencao", "openmm")


def growth_exponent(atoms, ms_per_step) -> float | None:
    """Least-squares slope of log(ms/step) against log(atoms).

    Parameters
    ----------
    atoms : sequence of int
        System sizes.
    ms_per_step : sequence of float
        Time per step at each size.

    Returns
    -------
    float or None
        The exponent p of ms/step ~ atoms^p; None with fewer than two distinct sizes.
    """
    atoms = np.asarray(atoms, np.float64)
    ms_per_step = np.asarray(ms_per_step, np.float64)
    if len(np.unique(atoms)) < 2:
        return None
    slope, _ = np.polyfit(np.log(atoms), np.log(ms_per_step), 1)
    return float(slope)


def _bench_one_size(size: int, steps: int, repeats: int, compare_openmm: bool, seed: int,
                    profile: bool, progress) -> dict:
    """Build the water box of about ``size`` atoms and time it; the row of the report."""
    from bencao.bench.dynamics import time_dynamics
    from bencao.bench.systems import water_box_openmm

    progress(f"building a TIP3P box of about {size:,} atoms")
    start = time.perf_counter()
    system, positions, box = water_box_openmm(size, cutoff=CUTOFF_NM)
    build_seconds = time.perf_counter() - start
    progress(f"timing {len(positions):,} atoms ({box[0, 0]:.2f} nm box)")
    row = {"requested_atoms": int(size), "box_nm": float(box[0, 0]), "build_s": build_seconds}
    row.update(time_dynamics(system, positions, box, steps=steps, repeats=repeats,
                             compare_openmm=compare_openmm, timestep=TIMESTEP_PS, seed=seed,
                             profile_steps=steps if profile else 0, temperature=TEMPERATURE_K,
                             friction=FRICTION_PER_PS))
    return row


def bench_scaling(sizes=DEFAULT_SIZES, steps: int = 20, repeats: int = 3,
                  threads: int | None = None, compare_openmm: bool = True, seed: int = 1,
                  profile: bool = False, progress=None) -> dict:
    """Time dynamics of water boxes of several sizes.

    Parameters
    ----------
    sizes : sequence of int
        Approximate numbers of atoms, run smallest first.
    steps : int
        Steps per timed block.
    repeats : int
        Timed blocks per engine and size (interleaved; the median counts).
    threads : int or None
        Threads for both engines; None uses Numba's default (all cores).
    compare_openmm : bool
        Also time OpenMM's CPU platform on each box.
    seed : int
        Random seed (velocities, Langevin noise).
    profile : bool
        Also profile ``steps`` bencao steps per size (see ``bencao.bench.profile``).
    progress : callable or None
        Called with a line of text as each box is built and timed (e.g. print to stderr).

    Returns
    -------
    dict
        The settings (``water_model``, ``nonbonded``, ``integrator``, ``temperature_K``,
        ``friction_per_ps``, ``timestep_fs``, ``steps_per_block``, ``repeats``, ``threads``),
        ``results``, one row per size with ``requested_atoms``, ``atoms``, ``box_nm``,
        ``build_s`` and the fields of ``bencao.bench.dynamics.time_dynamics``, and
        ``growth_exponent`` per engine (None where it cannot be fitted).
    """
    from bencao.bench.dynamics import use_threads

    progress = progress or (lambda line: None)
    threads = use_threads(threads)
    results = []
    for size in sorted(sizes):
        results.append(_bench_one_size(size, steps, repeats, compare_openmm, seed, profile,
                                       progress))
        gc.collect()  # free one box's engines before the next, larger one is built
    engines = ENGINES if compare_openmm else ENGINES[:1]
    return {
        "benchmark": "scaling",
        "water_model": "TIP3P (amber14/tip3p.xml), rigid",
        "nonbonded": f"PME, cutoff {CUTOFF_NM:g} nm",
        "integrator": "LangevinMiddleIntegrator",
        "temperature_K": TEMPERATURE_K,
        "friction_per_ps": FRICTION_PER_PS,
        "timestep_fs": 1e3 * TIMESTEP_PS,
        "steps_per_block": steps,
        "repeats": repeats,
        "threads": threads,
        "results": results,
        "growth_exponent": {
            engine: growth_exponent([row["atoms"] for row in results],
                                    [row[f"{engine}_ms_per_step"] for row in results])
            for engine in engines
        },
    }


def _grid_text(row: dict) -> str:
    grid = row.get("settings", {}).get("pme_grid")
    return "n/a" if grid is None else "x".join(str(n) for n in grid)


def _markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A Markdown table, columns right-aligned and padded so that it also reads as plain text."""
    widths = [max(len(cells[column]) for cells in [header, *rows]) for column in range(len(header))]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(cell.rjust(width) for cell, width in zip(cells, widths)) + " |"

    return [line(header), "|" + "|".join("-" * (w + 1) + ":" for w in widths) + "|",
            *[line(cells) for cells in rows]]


def format_scaling(report: dict) -> list[str]:
    """The scaling report as lines of text: a heading, a Markdown table, the exponents and
    bencao's settings on the largest box."""
    from bencao.bench.profile import format_settings

    compared = "openmm" in report["growth_exponent"]
    heading = (f"Scaling on cubic water boxes: {report['water_model']}, {report['nonbonded']}, "
               f"LangevinMiddle {report['temperature_K']:g} K {report['friction_per_ps']:g}/ps at "
               f"{report['timestep_fs']:g} fs, {report['threads']} threads, median of "
               f"{report['repeats']} x {report['steps_per_block']} steps")
    lines = [heading, ""]
    header = ["atoms", "box (nm)", "PME grid", "bencao ms/step", "bencao ns/day"]
    if compared:
        header += ["OpenMM ms/step", "OpenMM ns/day", "speed bencao/OpenMM"]
    rows = []
    for row in report["results"]:
        cells = [f"{row['atoms']:,}", f"{row['box_nm']:.2f}", _grid_text(row),
                 f"{row['bencao_ms_per_step']:.2f}", f"{row['bencao_ns_per_day']:.2f}"]
        if compared:
            cells += [f"{row['openmm_ms_per_step']:.2f}", f"{row['openmm_ns_per_day']:.2f}",
                      f"{row['speed_ratio']:.2f}"]
        rows.append(cells)
    lines += _markdown_table(header, rows)
    lines.append("")
    names = {"bencao": "bencao", "openmm": "OpenMM"}
    exponents = ", ".join(
        names[engine] + " " + ("n/a (one size)" if value is None else f"{value:.2f}")
        for engine, value in report["growth_exponent"].items())
    lines.append(f"Growth exponent p of ms/step ~ N^p (least-squares slope of log ms/step vs "
                 f"log N): {exponents}")
    if report["results"]:
        largest = report["results"][-1]
        lines.append(f"bencao settings, largest box: {format_settings(largest['settings'])}")
    return lines
