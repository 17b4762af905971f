"""Energy + force evaluation timing, bencao's CPU backend against OpenMM's CPU platform.

Both engines evaluate the same configuration repeatedly (neighbour lists built, caches warm),
interleaved so that load from elsewhere on a shared machine hits both alike; the median of the
repeats is reported.  Timings are never asserted in tests.
"""

from __future__ import annotations

import statistics
import time

import numpy as np


def _time(function, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return times


def bench_forces(system_name: str = "dhfr", repeats: int = 10, threads: int | None = None,
                 compare_openmm: bool = True) -> dict:
    """Time one energy + force evaluation (and one without energies).

    Parameters
    ----------
    system_name : str
        Benchmark system (see ``bencao.bench.systems.SYSTEMS``).
    repeats : int
        Timed evaluations per engine (after two warm-up calls).
    threads : int or None
        Threads for both engines; None uses Numba's default (all cores).
    compare_openmm : bool
        Also time OpenMM's CPU platform.

    Returns
    -------
    dict
        ``atoms``, ``bencao_ms`` (median, ms), ``bencao_forces_only_ms`` (the same without
        energies, as dynamics evaluates) and ``energy_cost_ratio`` (their ratio), and with
        OpenMM ``openmm_ms`` and ``ratio``
        (bencao time / OpenMM time: below 1 means bencao is faster), plus the agreement of the
        forces with OpenMM's CPU platform.
    """
    import numba

    import bencao
    from bencao.bench.systems import SYSTEMS

    if threads is not None:
        numba.set_num_threads(threads)
    threads = numba.get_num_threads()
    openmm_system, positions, box = SYSTEMS[system_name]()
    backend = bencao.make_backend(bencao.System.from_openmm(openmm_system))
    ours = lambda: backend.compute(positions, box)
    forces_only = lambda: backend.compute(positions, box, energy=False)
    for _ in range(2):
        result = ours()
        forces_only()
    report = {"system": system_name, "atoms": len(positions), "threads": threads}
    engines = {"bencao_ms": ours, "bencao_forces_only_ms": forces_only}
    if compare_openmm:
        import openmm as mm
        from openmm import unit

        context = mm.Context(
            openmm_system, mm.VerletIntegrator(0.001), mm.Platform.getPlatformByName("CPU"),
            {"Threads": str(threads)},
        )
        context.setPeriodicBoxVectors(*[mm.Vec3(*row) for row in box])
        context.setPositions(positions * unit.nanometer)
        engines["openmm_ms"] = lambda: context.getState(getEnergy=True, getForces=True)
        for _ in range(2):
            state = engines["openmm_ms"]()
    times = {name: [] for name in engines}
    for _ in range(repeats):  # interleaved, so that load from elsewhere hits all alike
        for name, function in engines.items():
            times[name] += _time(function, 1)
    report.update({name: 1e3 * statistics.median(values) for name, values in times.items()})
    if compare_openmm:
        reference = state.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer)
        a = np.linalg.norm(result.forces, axis=1)
        b = np.linalg.norm(reference, axis=1)
        keep = a + b > 0
        metric = 2 * np.linalg.norm(result.forces - reference, axis=1)[keep] / (a + b)[keep]
        report["force_agreement_with_openmm_cpu_median"] = float(np.median(metric))
        report["ratio"] = report["bencao_ms"] / report["openmm_ms"]
    report["energy_cost_ratio"] = report["bencao_ms"] / report["bencao_forces_only_ms"]
    return report
