"""Forces from expressions against the built-in kernels: a CustomNonbondedForce Lennard-Jones
expression beside NonbondedForce's own Lennard-Jones on the same fluid, in the same run.

The fluid: ``atoms`` Lennard-Jones particles (sigma 0.3 nm, epsilon 0.6 kJ/mol) on a jittered
cubic lattice at 33 particles per nm^3 (the density of water's oxygens and hydrogens), periodic,
0.9 nm cutoff, no charges, no switching, no long-range correction.  Each engine evaluates forces
only; blocks of evaluations alternate between the two forms so that load from elsewhere hits
both alike, and the medians give the time ratio.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

#: The Lennard-Jones expression, as users write it for a CustomNonbondedForce.
LJ_EXPRESSION = ("4*epsilon*((sigma/r)^12-(sigma/r)^6); sigma=0.5*(sigma1+sigma2); "
                 "epsilon=sqrt(epsilon1*epsilon2)")


def lj_fluid(atoms: int, custom: bool, seed: int = 0):
    """(openmm.System, positions nm, box nm) of the fluid with the LJ as NonbondedForce or as a
    CustomNonbondedForce expression."""
    import openmm as mm

    edge = (atoms / 33.0) ** (1.0 / 3.0)
    per_side = int(np.ceil(atoms ** (1.0 / 3.0)))
    lattice = np.stack(np.meshgrid(*[np.arange(per_side)] * 3, indexing="ij"), -1)
    rng = np.random.default_rng(seed)
    positions = lattice.reshape(-1, 3)[:atoms] * (edge / per_side)
    positions = positions + rng.uniform(-0.02, 0.02, positions.shape)
    system = mm.System()
    system.setDefaultPeriodicBoxVectors(mm.Vec3(edge, 0, 0), mm.Vec3(0, edge, 0),
                                        mm.Vec3(0, 0, edge))
    if custom:
        force = mm.CustomNonbondedForce(LJ_EXPRESSION)
        force.addPerParticleParameter("sigma")
        force.addPerParticleParameter("epsilon")
        force.setNonbondedMethod(mm.CustomNonbondedForce.CutoffPeriodic)
    else:
        force = mm.NonbondedForce()
        force.setNonbondedMethod(mm.NonbondedForce.CutoffPeriodic)
        force.setUseDispersionCorrection(False)
    force.setCutoffDistance(0.9)
    for _ in range(atoms):
        system.addParticle(40.0)
        if custom:
            force.addParticle([0.3, 0.6])
        else:
            force.addParticle(0.0, 0.3, 0.6)
    system.addForce(force)
    return system, positions, np.eye(3) * edge


def bench_custom_lj(atoms: int = 10000, repeats: int = 10, threads: int | None = None,
                    compare_openmm: bool = True) -> dict:
    """Forces-only time of the LJ fluid as NonbondedForce and as a CustomNonbondedForce
    expression, bencao (CPU) and optionally OpenMM's CPU platform, interleaved.

    Returns
    -------
    dict
        Median ms per evaluation for each engine and form, and the ratios custom/built-in.
    """
    import bencao
    from bencao.bench.dynamics import use_threads

    threads = use_threads(threads)
    runs = {}
    for form, custom in (("builtin", False), ("custom", True)):
        system, positions, box = lj_fluid(atoms, custom)
        backend = bencao.make_backend(bencao.System.from_openmm(system))
        backend.compute(positions, box, energy=False)  # compile, build the lists
        runs[("bencao", form)] = (lambda b=backend, x=positions, v=box:
                                  b.compute(x, v, energy=False))
        if compare_openmm:
            runs[("openmm", form)] = _openmm_forces(system, positions, box, threads)
    times = {key: [] for key in runs}
    for _ in range(repeats):
        for key, run in runs.items():
            start = time.perf_counter()
            run()
            times[key].append(time.perf_counter() - start)
    report = {"atoms": atoms, "threads": threads, "repeats": repeats,
              "expression": LJ_EXPRESSION}
    for (engine, form), values in times.items():
        report[f"{engine}_{form}_ms"] = 1e3 * statistics.median(values)
    for engine in ("bencao", "openmm"):
        if f"{engine}_custom_ms" in report:
            report[f"{engine}_custom_over_builtin"] = (report[f"{engine}_custom_ms"]
                                                       / report[f"{engine}_builtin_ms"])
    return report


def _openmm_forces(system, positions, box, threads):
    """A function evaluating forces on OpenMM's CPU platform at ``positions``."""
    import openmm as mm
    from openmm import unit

    context = mm.Context(system, mm.VerletIntegrator(0.001), mm.Platform.getPlatformByName("CPU"),
                         {"Threads": str(threads)})
    context.setPeriodicBoxVectors(*[mm.Vec3(*row) for row in box])
    context.setPositions(positions * unit.nanometer)
    context.getState(getForces=True)

    def run():
        context.getState(getForces=True)

    return run


def format_custom_lj(report: dict) -> list[str]:
    """The lines ``bencao bench custom-lj`` prints."""
    lines = [f"Lennard-Jones fluid: {report['atoms']} particles, {report['threads']} threads, "
             f"forces only, median of {report['repeats']}",
             f"  bencao  NonbondedForce {report['bencao_builtin_ms']:8.2f} ms   "
             f"CustomNonbondedForce {report['bencao_custom_ms']:8.2f} ms   "
             f"custom/built-in {report['bencao_custom_over_builtin']:.2f}"]
    if "openmm_custom_ms" in report:
        lines.append(f"  OpenMM  NonbondedForce {report['openmm_builtin_ms']:8.2f} ms   "
                     f"CustomNonbondedForce {report['openmm_custom_ms']:8.2f} ms   "
                     f"custom/built-in {report['openmm_custom_over_builtin']:.2f}")
    lines.append(f"  expression: {report['expression']}")
    return lines
