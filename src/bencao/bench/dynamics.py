"""Dynamics throughput (ns/day), bencao's Simulation against OpenMM's CPU platform.

The settings are those of OpenMM's own benchmark script for DHFR: amber99sb + TIP3P, PME 0.9 nm,
bonds to hydrogen constrained, hydrogen mass 1.5 amu, LangevinMiddle at 300 K, 1/ps, 4 fs.
Both engines start from the same constrained positions and velocities, warm up, and then run
blocks of steps interleaved (so load from elsewhere on a shared machine hits both alike); the
median block gives ns/day.  Timings are never asserted in tests.
"""

from __future__ import annotations

import statistics
import time

import numpy as np


def _ns_per_day(steps: int, timestep: float, seconds: float) -> float:
    """Simulated ns per day of wall time for ``steps`` steps of ``timestep`` ps."""
    return steps * timestep * 1e-3 * 86400.0 / seconds


def bench_dynamics(system_name: str = "dhfr", steps: int = 50, repeats: int = 3,
                   threads: int | None = None, compare_openmm: bool = True,
                   timestep: float = 0.004, reciprocal_every: int = 1, seed: int = 1) -> dict:
    """Time LangevinMiddle dynamics.

    Parameters
    ----------
    system_name : str
        Benchmark system (see ``bencao.bench.systems.SYSTEMS``).
    steps : int
        Steps per timed block.
    repeats : int
        Timed blocks per engine.
    threads : int or None
        Threads for both engines; None uses Numba's default (all cores).
    compare_openmm : bool
        Also run OpenMM's CPU platform.
    timestep : float
        Time step, ps.
    reciprocal_every : int
        Multiple time stepping for bencao: reciprocal space every this many steps (OpenMM
        always runs single stepping here).
    seed : int
        Random seed.

    Returns
    -------
    dict
        ``atoms``, ``threads``, ``bencao_ns_per_day``, ``bencao_ms_per_step`` and, with OpenMM,
        ``openmm_ns_per_day``, ``openmm_ms_per_step`` and ``speed_ratio`` (bencao ns/day over
        OpenMM ns/day: above 1 means bencao is faster).
    """
    import numba

    import bencao
    from bencao.bench.systems import SYSTEMS

    if threads is not None:
        numba.set_num_threads(threads)
    threads = numba.get_num_threads()
    openmm_system, positions, box = SYSTEMS[system_name]()
    temperature, friction = 300.0, 1.0
    integrator = bencao.LangevinMiddleIntegrator(temperature, friction, timestep,
                                                 reciprocal_every=reciprocal_every)
    simulation = bencao.Simulation(bencao.System.from_openmm(openmm_system), integrator, positions,
                                   box, seed=seed)
    simulation.set_velocities_to_temperature(temperature)
    simulation.step(10)  # compile and build the neighbour list
    ours = lambda: simulation.step(steps)
    report = {"system": system_name, "atoms": len(positions), "threads": threads,
              "timestep_ps": timestep, "steps_per_block": steps, "reciprocal_every": reciprocal_every}
    ours_times, theirs_times = [], []
    if compare_openmm:
        import openmm as mm
        from openmm import unit

        their_integrator = mm.LangevinMiddleIntegrator(temperature, friction, timestep)
        their_integrator.setRandomNumberSeed(seed)
        context = mm.Context(openmm_system, their_integrator, mm.Platform.getPlatformByName("CPU"),
                             {"Threads": str(threads)})
        context.setPeriodicBoxVectors(*[mm.Vec3(*row) for row in box])
        context.setPositions(simulation.positions * unit.nanometer)
        context.setVelocities(simulation.velocities * unit.nanometer / unit.picosecond)
        their_integrator.step(10)
        theirs = lambda: their_integrator.step(steps)
    for _ in range(repeats):  # interleaved
        start = time.perf_counter()
        ours()
        ours_times.append(time.perf_counter() - start)
        if compare_openmm:
            start = time.perf_counter()
            theirs()
            # getState waits for the platform to finish the steps
            context.getState(getEnergy=False)
            theirs_times.append(time.perf_counter() - start)
    seconds = statistics.median(ours_times)
    report["bencao_ns_per_day"] = _ns_per_day(steps, timestep, seconds)
    report["bencao_ms_per_step"] = 1e3 * seconds / steps
    report["bencao_temperature_K"] = simulation.state.temperature
    if compare_openmm:
        seconds = statistics.median(theirs_times)
        report["openmm_ns_per_day"] = _ns_per_day(steps, timestep, seconds)
        report["openmm_ms_per_step"] = 1e3 * seconds / steps
        report["speed_ratio"] = report["bencao_ns_per_day"] / report["openmm_ns_per_day"]
    report["finite"] = bool(np.isfinite(simulation.positions).all())
    return report
