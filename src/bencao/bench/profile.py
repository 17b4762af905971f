"""Where a step's time goes, and the settings that decide it.

:func:`profile_steps` runs a block of steps inside :func:`bencao.profiling.profiling` and turns
the phase timings into ms/step; :func:`simulation_settings` collects what a reader needs to judge
a timing (atoms, threads, cutoff, Verlet buffer, PME grid...).  Both read the backend's objects
through ``getattr``: the CPU backend's internals change as it is optimised, and a profile should
still come out (with a missing setting shown as None) when an attribute moves.
"""

from __future__ import annotations

import os
import time

OTHER = "other (Python)"


def pair_terms(simulation) -> list:
    """The backend's terms that keep a neighbour list (those with a ``.neighbors``)."""
    terms = getattr(simulation.backend, "terms", [])
    return [term for term in terms if getattr(term, "neighbors", None) is not None]


def neighbor_list_builds(simulation) -> int:
    """Neighbour-list builds so far, summed over the pair terms."""
    return sum(int(getattr(term.neighbors, "builds", 0)) for term in pair_terms(simulation))


def _main_pair_term(simulation):
    """The pair term that sets cutoff and reciprocal space: the one with a reciprocal part if
    any (NonbondedForce with PME/Ewald), else the first pair term, else None."""
    terms = pair_terms(simulation)
    with_reciprocal = [term for term in terms if getattr(term, "reciprocal", None) is not None]
    return (with_reciprocal or terms or [None])[0]


def _as_float(value):
    return None if value is None else float(value)


def _grid(reciprocal):
    """PME grid dimensions as a list of ints, or None (plain Ewald has no grid)."""
    grid = getattr(reciprocal, "grid", None)
    return None if grid is None else [int(n) for n in grid]


def _threading_layer() -> str | None:
    """Numba's threading layer ("omp", "tbb", "workqueue"), None before any parallel kernel ran.

    Worth reporting: with the OpenMP layer's default spin-waiting a step can take several times
    longer when another process takes a core, where the other layers slow down gracefully.
    """
    import numba

    try:
        return numba.threading_layer()
    except ValueError:
        return None


def simulation_settings(simulation) -> dict:
    """The settings a timing of ``simulation`` depends on.

    Parameters
    ----------
    simulation : bencao.Simulation

    Returns
    -------
    dict
        ``atoms``, ``threads``, ``cutoff_nm``, ``verlet_buffer_nm``, ``pme_grid`` ([nx, ny, nz]),
        ``ewald_alpha_per_nm``, ``timestep_fs``, ``integrator`` (class name),
        ``temperature_K`` and ``friction_per_ps`` (thermostatted integrators), ``constraints``,
        ``reciprocal_every``, ``barostat``, and Numba's ``threading_layer`` with the
        ``OMP_WAIT_POLICY`` and ``GOMP_SPINCOUNT`` it runs under.  Anything the backend does not expose is None.
    """
    import numba

    integrator = simulation.integrator
    term = _main_pair_term(simulation)
    neighbors = getattr(term, "neighbors", None)
    reciprocal = getattr(term, "reciprocal", None)
    cutoff = getattr(term, "cutoff", getattr(neighbors, "cutoff", None))
    return {
        "atoms": int(simulation.system.n_particles),
        "threads": int(numba.get_num_threads()),
        "threading_layer": _threading_layer(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "gomp_spincount": os.environ.get("GOMP_SPINCOUNT"),
        "cutoff_nm": _as_float(cutoff),
        "verlet_buffer_nm": _as_float(getattr(neighbors, "buffer", None)),
        "pme_grid": _grid(reciprocal),
        "ewald_alpha_per_nm": _as_float(getattr(reciprocal, "alpha", None)),
        "timestep_fs": 1e3 * float(integrator.timestep),
        "integrator": type(integrator).__name__,
        "temperature_K": _as_float(getattr(integrator, "temperature", None)),
        "friction_per_ps": _as_float(getattr(integrator, "friction", None)),
        "constraints": len(simulation.system.constraint_atoms),
        "reciprocal_every": int(getattr(integrator, "reciprocal_every", 1)),
        "barostat": None if simulation.barostat is None else type(simulation.barostat).__name__,
    }


def profile_steps(simulation, steps: int) -> dict:
    """Run ``steps`` steps with phase profiling on; where the time went, per step.

    Parameters
    ----------
    simulation : bencao.Simulation
        A warmed-up simulation (kernels compiled, neighbour list built), so that the block
        measures steady stepping.
    steps : int
        Steps in the profiled block.

    Returns
    -------
    dict
        ``steps``; ``total_ms_per_step`` (wall time of the block); ``phases_ms_per_step``, the
        exclusive time of each marked phase, largest first; ``other_ms_per_step``, the rest
        (Python between the kernels, unmarked work: ``OTHER`` in the printed table);
        ``calls_per_step`` of each phase; ``neighbor_list_builds`` in the block and
        ``neighbor_list_builds_per_step``.
    """
    from bencao.profiling import profiling

    if steps < 1:
        raise ValueError(f"a profile needs at least one step, got {steps}")
    builds_before = neighbor_list_builds(simulation)
    synchronize = getattr(simulation.backend, "synchronize", None)
    with profiling(synchronize) as profile:
        start = time.perf_counter()
        simulation.step(steps)
        total = time.perf_counter() - start
    builds = neighbor_list_builds(simulation) - builds_before

    def per_step(seconds: float) -> float:
        return 1e3 * seconds / steps

    phases = {name: per_step(seconds)
              for name, seconds in sorted(profile.seconds.items(), key=lambda item: -item[1])}
    return {
        "steps": int(steps),
        "total_ms_per_step": per_step(total),
        "phases_ms_per_step": phases,
        # never negative: the phases are timed inside the block and exclusively
        "other_ms_per_step": max(0.0, per_step(total - sum(profile.seconds.values()))),
        "calls_per_step": {name: profile.calls[name] / steps for name in phases},
        "neighbor_list_builds": int(builds),
        "neighbor_list_builds_per_step": builds / steps,
    }


def _number(value, unit: str, missing: str = "n/a") -> str:
    return missing if value is None else f"{value:g} {unit}"


def format_settings(settings: dict) -> str:
    """One line naming the settings of :func:`simulation_settings`."""
    grid = settings.get("pme_grid")
    alpha = settings.get("ewald_alpha_per_nm")
    integrator = settings["integrator"]
    if settings.get("temperature_K") is not None:
        friction = settings.get("friction_per_ps")
        coupling = "" if friction is None else f", {friction:g}/ps"
        integrator += f" ({settings['temperature_K']:g} K{coupling})"
    mts = settings.get("reciprocal_every", 1)
    threading = settings.get("threading_layer") or "n/a"
    if settings.get("omp_wait_policy"):
        threading += f", OMP_WAIT_POLICY={settings['omp_wait_policy']}"
    if settings.get("gomp_spincount"):
        threading += f", GOMP_SPINCOUNT={settings['gomp_spincount']}"
    parts = [
        f"{settings['atoms']:,} atoms",
        f"{settings['threads']} threads ({threading})",
        f"cutoff {_number(settings.get('cutoff_nm'), 'nm')}",
        f"Verlet buffer {_number(settings.get('verlet_buffer_nm'), 'nm')}",
        "PME grid " + ("n/a" if grid is None else "x".join(str(n) for n in grid)),
        "alpha " + ("n/a" if alpha is None else f"{alpha:.4g} /nm"),
        f"time step {settings['timestep_fs']:g} fs" + (f" (reciprocal every {mts})" if mts > 1 else ""),
        integrator,
        f"{settings['constraints']:,} constraints",
    ]
    if settings.get("barostat"):
        parts.append(settings["barostat"])
    return ", ".join(parts)


def format_profile(profile: dict, indent: str = "  ") -> list[str]:
    """The lines of a profile table: ms/step and share of each phase, largest first."""
    total = profile["total_ms_per_step"]

    def share(ms: float) -> float:
        return 100.0 * ms / total if total > 0 else 0.0

    rows = list(profile["phases_ms_per_step"].items()) + [(OTHER, profile["other_ms_per_step"])]
    width = max(len(name) for name, _ in rows)
    lines = [f"{indent}profile of {profile['steps']} steps, {total:.2f} ms/step wall time:"]
    for name, ms in rows:
        lines.append(f"{indent}  {name:<{width}}  {ms:9.3f} ms/step  {share(ms):5.1f} %")
    lines.append(f"{indent}  neighbour-list rebuilds: {profile['neighbor_list_builds_per_step']:.3f} "
                 f"per step ({profile['neighbor_list_builds']} in {profile['steps']} steps)")
    return lines
