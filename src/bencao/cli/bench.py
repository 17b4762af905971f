"""``bencao bench``: dynamics, force and scaling benchmarks against OpenMM (and, for dynamics,
GROMACS) in the same run."""

from __future__ import annotations

import json
import sys

DEFAULT_STEPS = {"dhfr": 50, "alanine": 250, "scaling": 20, "gbn2": 50}

NO_GMX = ("bencao bench: --compare gromacs needs GROMACS's gmx on the PATH "
          "(Debian/Ubuntu: apt install gromacs; conda: gromacs)")


def _compared(args) -> set:
    """The engines to compare with: ``--compare`` given any number of times, "openmm" when never
    given; "none" adds nothing (alone, it means no comparison)."""
    return set(args.compare or ["openmm"]) - {"none"}


def _gromacs_refusal(args) -> str | None:
    """Why ``--compare gromacs`` cannot run as asked (one line), or None."""
    import importlib.util

    from bencao.bench.gromacs import find_gmx

    if args.what not in ("dhfr", "alanine"):
        return "bencao bench: --compare gromacs is for the dynamics benchmarks (dhfr, alanine)"
    if args.backend != "cpu":
        return "bencao bench: --compare gromacs runs beside the CPU backend only (--backend cpu)"
    if find_gmx() is None:
        return NO_GMX
    if importlib.util.find_spec("parmed") is None:  # writes GROMACS's files
        return "bencao bench: --compare gromacs needs ParmEd (pip install parmed)"
    return None


def _bench(args) -> int:
    args.compared = _compared(args)
    if "gromacs" in args.compared:  # before any timing: a missing gmx must not cost minutes
        refusal = _gromacs_refusal(args)
        if refusal is not None:
            print(refusal, file=sys.stderr)
            return 2
    if args.repeats is None:
        args.repeats = 10 if args.what in ("forces", "custom-lj") else 3
    if args.steps is None:
        args.steps = DEFAULT_STEPS.get(args.what, 50)
    from bencao.bench.load import background_load

    with background_load(args.background_load):
        if args.what == "forces":
            return _bench_forces(args)
        if args.what == "scaling":
            return _bench_scaling(args)
        if args.what == "custom-lj":
            return _bench_custom_lj(args)
        return _bench_dynamics(args)


def _progress(line: str) -> None:
    """Progress of a long benchmark, on stderr so that --json output stays clean."""
    print(f"bencao bench: {line}", file=sys.stderr, flush=True)


def _load(args) -> str:
    """The header's note of a background load, if any."""
    n = args.background_load
    return f", {n} busy background process{'es' if n > 1 else ''}" if n else ""


def _bench_dynamics(args) -> int:
    from bencao.bench.dynamics import bench_dynamics
    from bencao.bench.profile import format_profile, format_settings

    report = bench_dynamics(args.what, steps=args.steps, repeats=args.repeats, threads=args.threads,
                            compare_openmm="openmm" in args.compared,
                            reciprocal_every=args.reciprocal_every,
                            profile_steps=args.steps if args.profile else 0,
                            backend=args.backend, compare_gromacs="gromacs" in args.compared,
                            gromacs_steps=args.gromacs_steps)
    report["background_load_processes"] = args.background_load
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    mts = f", reciprocal space every {args.reciprocal_every} steps" if args.reciprocal_every > 1 else ""
    print(f"{report['system']}: {report['atoms']} atoms, {report['threads']} threads, "
          f"LangevinMiddle {1e3 * report['timestep_ps']:g} fs{mts}, median of {args.repeats} x "
          f"{args.steps} steps (each after {report['settle_steps']} untimed){_load(args)}")
    print(f"  bencao ({report['backend']}){' ' * (6 - len(report['backend']))}"
          f"{report['bencao_ns_per_day']:7.2f} ns/day  {report['bencao_ms_per_step']:7.1f} ms/step")
    if "openmm_ns_per_day" in report:
        platform = f"({report['openmm_platform']})"
        print(f"  OpenMM {platform:<8}{report['openmm_ns_per_day']:7.2f} ns/day  "
              f"{report['openmm_ms_per_step']:7.1f} ms/step")
        print(f"  speed ratio bencao/OpenMM  {report['speed_ratio']:.2f}")
    if "gromacs_ns_per_day" in report:
        _print_gromacs(report)
    print(f"  settings: {format_settings(report['settings'])}")
    if "profile" in report:
        print("\n".join(format_profile(report["profile"])))
    return 0


def _print_gromacs(report: dict) -> None:
    """The GROMACS lines of a dynamics report: speed, ratio, pair list and run settings."""
    from bencao.bench.gromacs_log import format_pair_list

    name = f"GROMACS {report['gromacs_version'] or '?'} ({report['gromacs_simd'] or '?'})"
    runs = len(report["gromacs_runs_ns_per_day"])
    print(f"  {name}  {report['gromacs_ns_per_day']:.2f} ns/day  "
          f"{report['gromacs_ms_per_step']:7.1f} ms/step  (median of {runs} runs x "
          f"{report['gromacs_steps_per_run']} steps, second halves)")
    print(f"  speed ratio bencao/GROMACS  {report['speed_ratio_gromacs']:.2f}")
    print(f"  GROMACS pair list: {format_pair_list(report['gromacs_pair_list'])}")
    settings = report["gromacs_settings"]
    grid = "x".join(str(settings[f"fourier-n{axis}"]) for axis in "xyz")
    print(f"  GROMACS settings: {settings['integrator']} {1e3 * settings['dt']:g} fs, "
          f"PME order {settings['pme-order']} grid {grid} ewald-rtol {settings['ewald-rtol']}, "
          f"constraints {settings['constraints']} ({settings['constraint-algorithm']}) + SETTLE, "
          f"DispCorr {settings['DispCorr']}; {settings['mdrun']}")


def _bench_scaling(args) -> int:
    from bencao.bench.profile import format_profile
    from bencao.bench.scaling import DEFAULT_SIZES, bench_scaling, format_scaling

    report = bench_scaling(args.sizes or DEFAULT_SIZES, steps=args.steps, repeats=args.repeats,
                           threads=args.threads, compare_openmm="openmm" in args.compared,
                           profile=args.profile, progress=_progress)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print("\n".join(format_scaling(report)))
    for row in report["results"]:
        if "profile" in row:
            print(f"\n{row['atoms']:,} atoms (bencao):")
            print("\n".join(format_profile(row["profile"])))
    return 0


def _bench_custom_lj(args) -> int:
    from bencao.bench.custom import bench_custom_lj, format_custom_lj

    report = bench_custom_lj(args.atoms, repeats=args.repeats, threads=args.threads,
                             compare_openmm="openmm" in args.compared)
    report["background_load_processes"] = args.background_load
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print("\n".join(format_custom_lj(report)))
    return 0


def _bench_forces(args) -> int:
    from bencao.bench.forces import bench_forces

    report = bench_forces(args.system, repeats=args.repeats, threads=args.threads,
                          compare_openmm="openmm" in args.compared)
    report["background_load_processes"] = args.background_load
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"{report['system']}: {report['atoms']} atoms, {report['threads']} threads, "
          f"energy + forces, median of {args.repeats}{_load(args)}")
    print(f"  bencao (cpu)      {report['bencao_ms']:8.1f} ms   (forces only "
          f"{report['bencao_forces_only_ms']:.1f} ms: energies cost x{report['energy_cost_ratio']:.2f})")
    if "openmm_ms" in report:
        print(f"  OpenMM (CPU)      {report['openmm_ms']:8.1f} ms")
        print(f"  time ratio bencao/OpenMM  {report['ratio']:.2f}  "
              f"(force agreement with OpenMM CPU, median {report['force_agreement_with_openmm_cpu_median']:.1e})")
    return 0


def register(commands) -> None:
    """Add the ``bench`` subcommand to the ``bencao`` parser's subcommands."""
    bench = commands.add_parser("bench", help="benchmarks against OpenMM's CPU platform (and "
                                              "GROMACS)")
    bench.add_argument("what", choices=["dhfr", "alanine", "gbn2", "forces", "scaling",
                                        "custom-lj"],
                       help="dhfr (23,558 atoms), alanine (alanine dipeptide in water, 2,269 "
                            "atoms) or gbn2 (BPTI in GBn2 implicit solvent, 892 atoms): dynamics "
                            "in ns/day; forces: one energy + force evaluation; scaling: dynamics "
                            "of TIP3P water boxes of growing size; custom-lj: a "
                            "CustomNonbondedForce Lennard-Jones expression beside the built-in "
                            "kernel on an LJ fluid")
    bench.add_argument("--system", default="dhfr", choices=["dhfr", "alanine"],
                       help="system for 'forces'")
    bench.add_argument("--atoms", type=int, default=10000,
                       help="particles of the custom-lj fluid (default 10000)")
    bench.add_argument("--repeats", type=int, default=None,
                       help="timed repeats per engine (default 10 evaluations, 3 blocks of steps)")
    bench.add_argument("--steps", type=int, default=None,
                       help="steps per timed block (default 50 for dhfr, 250 for alanine, 20 "
                            "for scaling)")
    bench.add_argument("--sizes", type=int, nargs="+", default=None, metavar="ATOMS",
                       help="approximate atoms of each water box (scaling; default "
                            "3000 10000 30000 100000 300000)")
    bench.add_argument("--profile", action="store_true",
                       help="after the timed blocks, profile as many steps again: ms/step by "
                            "phase and neighbour-list rebuilds (dhfr, alanine, scaling)")
    bench.add_argument("--reciprocal-every", type=int, default=1,
                       help="multiple time stepping: reciprocal space every k steps (dhfr, "
                            "alanine)")
    bench.add_argument("--threads", type=int, default=None, help="threads (default: all cores)")
    bench.add_argument("--backend", choices=["cpu", "cuda"], default="cpu",
                       help="bencao's backend for 'dhfr' and 'alanine'; OpenMM runs on the matching platform "
                            "(CUDA: mixed precision)")
    bench.add_argument("--compare", choices=["openmm", "gromacs", "none"], action="append",
                       default=None,
                       help="engines timed in the same run, repeatable (default: openmm; none: "
                            "bencao alone); gromacs (dhfr, alanine, CPU backend) runs GROMACS's "
                            "gmx as a separate program")
    bench.add_argument("--gromacs-steps", type=int, default=None, metavar="N",
                       help="steps per GROMACS run (default: about 15 s of running each)")
    bench.add_argument("--background-load", type=int, default=0, metavar="N",
                       help="run N busy processes (one core's worth of demand each) while timing, "
                            "as on a shared machine (default 0)")
    bench.add_argument("--json", action="store_true", help="print the report as JSON")
    bench.set_defaults(handler=_bench)
