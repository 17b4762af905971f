"""Dynamics throughput (ns/day), bencao's Simulation against OpenMM's CPU platform.

The settings are those of OpenMM's own benchmark script for DHFR: amber99sb + TIP3P, PME 0.9 nm,
bonds to hydrogen constrained, hydrogen mass 1.5 amu, LangevinMiddle at 300 K, 1/ps, 4 fs.
Both engines start from the same constrained positions and velocities, warm up, and then run
blocks of steps interleaved (so load from elsewhere on a shared machine hits both alike); the
median block gives ns/day.  GROMACS can run beside them (``compare_gromacs``, CPU only): one
``gmx mdrun`` of the same system and settings per repeat, interleaved with the blocks, its own
"Performance:" figure counting (see :mod:`bencao.bench.gromacs`).  Timings are never asserted in
tests.
"""

from __future__ import annotations

import statistics
import time

import numpy as np


def _ns_per_day(steps: int, timestep: float, seconds: float) -> float:
    """Simulated ns per day of wall time for ``steps`` steps of ``timestep`` ps."""
    return steps * timestep * 1e-3 * 86400.0 / seconds


def use_threads(threads: int | None) -> int:
    """Set Numba's thread count if ``threads`` is given; return the count in use."""
    import numba

    if threads is not None:
        numba.set_num_threads(threads)
    return numba.get_num_threads()


def bench_dynamics(system_name: str = "dhfr", steps: int = 50, repeats: int = 3,
                   threads: int | None = None, compare_openmm: bool = True,
                   timestep: float = 0.004, reciprocal_every: int = 1, seed: int = 1,
                   profile_steps: int = 0, backend: str = "cpu", compare_gromacs: bool = False,
                   gromacs_steps: int | None = None) -> dict:
    """Time LangevinMiddle dynamics of a benchmark system.

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
    profile_steps : int
        If positive, run this many more bencao steps under phase profiling after the timed
        blocks (see ``bencao.bench.profile.profile_steps``).
    backend : str
        bencao's backend, "cpu" or "cuda"; OpenMM runs on its platform of the same kind (CPU,
        or CUDA in mixed precision, OpenMM's benchmark setting).
    compare_gromacs : bool
        Also run GROMACS (``gmx`` on the PATH; CPU backend only).
    gromacs_steps : int or None
        Steps per GROMACS run; None picks enough for about ``GROMACS_SECONDS`` a run.

    Returns
    -------
    dict
        ``system`` and what :func:`time_dynamics` returns.
    """
    from bencao.bench.systems import SYSTEMS

    use_threads(threads)
    openmm_system, positions, box, topology = SYSTEMS[system_name](with_topology=True)
    report = {"system": system_name}
    report.update(time_dynamics(openmm_system, positions, box, steps=steps, repeats=repeats,
                                compare_openmm=compare_openmm, timestep=timestep,
                                reciprocal_every=reciprocal_every, seed=seed,
                                profile_steps=profile_steps, backend=backend,
                                compare_gromacs=compare_gromacs, topology=topology,
                                gromacs_steps=gromacs_steps))
    return report


#: OpenMM platform (and its properties) that runs beside each bencao backend.
OPENMM_PLATFORMS = {"cpu": "CPU", "cuda": "CUDA"}


def openmm_platform(backend: str, threads: int):
    """OpenMM's platform of the same kind as bencao's ``backend``, with its properties.

    Raises
    ------
    bencao.errors.DeviceError
        If OpenMM has no such platform here (its CUDA platform is an optional package).
    """
    import openmm as mm

    from bencao.errors import DeviceError

    name = OPENMM_PLATFORMS[backend]
    try:
        platform = mm.Platform.getPlatformByName(name)
    except Exception as error:  # OpenMM raises its own exception type
        raise DeviceError(
            f"OpenMM's {name} platform is not available here ({error}); install it (for CUDA: "
            "pip install openmm[cuda12]) or run without the comparison (--compare none)"
        ) from error
    properties = {"Threads": str(threads)} if name == "CPU" else {"Precision": "mixed"}
    return platform, properties


def _openmm_stepper(openmm_system, simulation, box, temperature, friction, timestep, seed, threads,
                    backend="cpu"):
    """An OpenMM context (the platform matching ``backend``) at bencao's positions and
    velocities: a function running n steps."""
    import openmm as mm
    from openmm import unit

    integrator = mm.LangevinMiddleIntegrator(temperature, friction, timestep)
    integrator.setRandomNumberSeed(seed)
    platform, properties = openmm_platform(backend, threads)
    context = mm.Context(openmm_system, integrator, platform, properties)
    if box is not None:  # implicit solvent has none
        context.setPeriodicBoxVectors(*[mm.Vec3(*row) for row in box])
    context.setPositions(simulation.positions * unit.nanometer)
    context.setVelocities(simulation.velocities * unit.nanometer / unit.picosecond)

    def run(steps: int) -> None:
        integrator.step(steps)
        # getState waits for the platform to finish the steps
        context.getState(getEnergy=False)

    return run


#: Wall time a GROMACS run aims at, s: mdrun starts up for a second or two and counts only its
#: second half (-resethway), so its runs are longer than bencao's blocks.
GROMACS_SECONDS = 15.0
#: Steps of the untimed first GROMACS run, which warms the file cache and sizes the timed runs.
GROMACS_CALIBRATION_STEPS = 100


def _start_gromacs(openmm_system, topology, positions, box, threads, timestep, temperature,
                   friction, seed, steps):
    """A :class:`bencao.bench.gromacs.GromacsRun` after one untimed run, and the steps per timed
    run (``steps``, or enough for about ``GROMACS_SECONDS`` at the untimed run's speed)."""
    from bencao.bench.gromacs import GromacsRun, steps_for

    gromacs = GromacsRun(openmm_system, topology, positions, box, threads, timestep=timestep,
                         temperature=temperature, friction=friction, seed=seed)
    try:
        first = gromacs.run(GROMACS_CALIBRATION_STEPS)
    except BaseException:
        gromacs.close()
        raise
    return gromacs, steps or steps_for(GROMACS_SECONDS, first["ns_per_day"], timestep)


def _gromacs_report(gromacs, runs: list, bencao_ns_per_day: float) -> dict:
    """The report's GROMACS entries from the timed runs (see :func:`time_dynamics`)."""
    from bencao.bench.gromacs import gromacs_info

    info = gromacs_info(gromacs.gmx) or {}
    last = runs[-1]
    ns_per_day = statistics.median(run["ns_per_day"] for run in runs)
    pair_list = ("pair_list", "nstlist_requested", "rlist_requested_nm", "nstlist", "rlist_nm",
                 "buffer_nm", "nstlist_prune", "rlist_inner_nm", "buffer_inner_nm")
    return {
        "gromacs_ns_per_day": ns_per_day,
        "gromacs_ms_per_step": 1e3 * gromacs.timestep * 1e-3 * 86400.0 / ns_per_day,
        "gromacs_runs_ns_per_day": [run["ns_per_day"] for run in runs],
        "gromacs_steps_per_run": last["steps"],
        "gromacs_timed_wall_s": [run["wall_s"] for run in runs],
        "gromacs_process_wall_s": [run["process_wall_s"] for run in runs],
        "gromacs_version": info.get("version"),
        "gromacs_simd": info.get("simd"),
        "gromacs_executable": gromacs.gmx,
        "gromacs_settings": gromacs.essentials(),
        "gromacs_pair_list": {key: last.get(key) for key in pair_list},
        "gromacs_grompp_notes": gromacs.notes,
        "speed_ratio_gromacs": bencao_ns_per_day / ns_per_day,
    }


def _timed(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def time_dynamics(openmm_system, positions, box, steps: int = 50, repeats: int = 3,
                  compare_openmm: bool = True, timestep: float = 0.004, reciprocal_every: int = 1,
                  seed: int = 1, profile_steps: int = 0, temperature: float = 300.0,
                  friction: float = 1.0, warmup_steps: int = 10, settle_steps: int = 10,
                  backend: str = "cpu",
                  compare_gromacs: bool = False, topology=None,
                  gromacs_steps: int | None = None) -> dict:
    """Time LangevinMiddle dynamics of one OpenMM System in bencao, OpenMM and GROMACS.

    Both engines start from the same constrained positions and Maxwell–Boltzmann velocities, run
    ``warmup_steps`` (compilation, neighbour lists), then ``repeats`` blocks of ``steps``
    interleaved, each after ``settle_steps`` untimed ones; the median block counts.  Threads are Numba's current count, for both.

    Parameters
    ----------
    openmm_system : openmm.System
    positions : (N, 3) array
        Positions, nm.
    box : (3, 3) array or None
        Box vectors as rows, nm.
    steps, repeats, compare_openmm, timestep, reciprocal_every, seed, profile_steps
        As in :func:`bench_dynamics`.
    temperature : float
        Thermostat temperature, K.
    friction : float
        Friction coefficient, 1/ps.
    warmup_steps : int
        Untimed steps per engine before the timed blocks.
    settle_steps : int
        Untimed steps per engine before each timed block: the engines take turns, and each
        finds the caches filled by the other (and its threads asleep); GROMACS likewise times
        only the second half of each run (``-resethway``).
    backend : str
        bencao's backend ("cpu" or "cuda"); OpenMM runs on the matching platform.
    compare_gromacs : bool
        Also time GROMACS (CPU backend only): one ``gmx mdrun`` per repeat after each bencao
        (and OpenMM) block, with as many threads, after one untimed run.
    topology : openmm.app.Topology or None
        The System's topology, needed to write GROMACS's files.
    gromacs_steps : int or None
        Steps per GROMACS run; None: about ``GROMACS_SECONDS`` of running each.

    Returns
    -------
    dict
        ``atoms``, ``threads``, ``timestep_ps``, ``steps_per_block``, ``repeats``,
        ``reciprocal_every``, ``bencao_ns_per_day``, ``bencao_ms_per_step``,
        ``bencao_temperature_K``, ``finite``, ``settings`` (see
        ``bencao.bench.profile.simulation_settings``), with OpenMM ``openmm_ns_per_day``,
        ``openmm_ms_per_step`` and ``speed_ratio`` (bencao ns/day over OpenMM ns/day: above 1
        means bencao is faster), and with ``profile_steps`` a ``profile``.  With GROMACS:
        ``gromacs_ns_per_day`` (median of the runs' own "Performance:" figures, over their
        second halves), ``gromacs_ms_per_step``, ``gromacs_runs_ns_per_day``,
        ``gromacs_steps_per_run``, ``gromacs_timed_wall_s`` (the timed halves) and
        ``gromacs_process_wall_s`` (whole processes, start-up included), ``gromacs_version``,
        ``gromacs_simd``, ``gromacs_executable``, ``gromacs_settings`` (the .mdp essentials and
        the mdrun command), ``gromacs_pair_list`` (rlist and nstlist as md.log states them),
        ``gromacs_grompp_notes`` and ``speed_ratio_gromacs`` (bencao ns/day over GROMACS's).

    Raises
    ------
    ValueError
        If GROMACS is asked for with another backend than "cpu" or without a topology.
    """
    import numba

    import bencao
    from bencao.bench.profile import profile_steps as run_profile
    from bencao.bench.profile import simulation_settings

    if compare_gromacs and (backend != "cpu" or topology is None):
        raise ValueError("GROMACS runs beside the CPU backend only, and needs the System's topology")
    threads = numba.get_num_threads()
    integrator = bencao.LangevinMiddleIntegrator(temperature, friction, timestep,
                                                 reciprocal_every=reciprocal_every)
    simulation = bencao.Simulation(bencao.System.from_openmm(openmm_system), integrator, positions,
                                   box, seed=seed, backend=backend)
    simulation.set_velocities_to_temperature(temperature)
    theirs = None
    if compare_openmm:
        theirs = _openmm_stepper(openmm_system, simulation, box, temperature, friction, timestep,
                                 seed, threads, backend)
        theirs(warmup_steps)
    simulation.step(warmup_steps)  # compile and build the neighbour list
    gromacs, gromacs_runs = None, []
    if compare_gromacs:
        gromacs, gromacs_steps = _start_gromacs(openmm_system, topology, positions, box, threads,
                                                timestep, temperature, friction, seed,
                                                gromacs_steps)
    ours_times, theirs_times = [], []
    try:
        for _ in range(repeats):  # interleaved, so that load from elsewhere hits all alike
            simulation.step(settle_steps)
            ours_times.append(_timed(lambda: simulation.step(steps)))
            if theirs is not None:
                theirs(settle_steps)
                theirs_times.append(_timed(lambda: theirs(steps)))
            if gromacs is not None:
                gromacs_runs.append(gromacs.run(gromacs_steps))
    finally:
        if gromacs is not None:
            gromacs.close()
    report = {"backend": backend, "openmm_platform": OPENMM_PLATFORMS[backend],
              "atoms": len(positions), "threads": threads, "timestep_ps": timestep,
              "steps_per_block": steps, "settle_steps": settle_steps, "repeats": repeats,
              "reciprocal_every": reciprocal_every}
    seconds = statistics.median(ours_times)
    report["bencao_ns_per_day"] = _ns_per_day(steps, timestep, seconds)
    report["bencao_ms_per_step"] = 1e3 * seconds / steps
    if theirs is not None:
        seconds = statistics.median(theirs_times)
        report["openmm_ns_per_day"] = _ns_per_day(steps, timestep, seconds)
        report["openmm_ms_per_step"] = 1e3 * seconds / steps
        report["speed_ratio"] = report["bencao_ns_per_day"] / report["openmm_ns_per_day"]
    if gromacs is not None:
        report.update(_gromacs_report(gromacs, gromacs_runs, report["bencao_ns_per_day"]))
    if profile_steps > 0:
        report["profile"] = run_profile(simulation, profile_steps)
    report["settings"] = simulation_settings(simulation)
    report["bencao_temperature_K"] = simulation.state.temperature
    report["finite"] = bool(np.isfinite(simulation.positions).all())
    return report
