"""``bencao bench``: dynamics, force and scaling benchmarks against OpenMM in the same run."""

from __future__ import annotations

import json
import sys

DEFAULT_STEPS = {"dhfr": 50, "alanine": 250, "scaling": 20}


def _bench(args) -> int:
    if args.repeats is None:
        args.repeats = 10 if args.what == "forces" else 3
    if args.steps is None:
        args.steps = DEFAULT_STEPS.get(args.what, 50)
    if args.what == "forces":
        return _bench_forces(args)
    if args.what == "scaling":
        return _bench_scaling(args)
    return _bench_dynamics(args)


def _progress(line: str) -> None:
    """Progress of a long benchmark, on stderr so that --json output stays clean."""
    print(f"bencao bench: {line}", file=sys.stderr, flush=True)


def _bench_dynamics(args) -> int:
    from bencao.bench.dynamics import bench_dynamics
    from bencao.bench.profile import format_profile, format_settings

    report = bench_dynamics(args.what, steps=args.steps, repeats=args.repeats, threads=args.threads,
                            compare_openmm=args.compare == "openmm",
                            reciprocal_every=args.reciprocal_every,
                            profile_steps=args.steps if args.profile else 0,
                            backend=args.backend)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    mts = f", reciprocal space every {args.reciprocal_every} steps" if args.reciprocal_every > 1 else ""
    print(f"{report['system']}: {report['atoms']} atoms, {report['threads']} threads, "
          f"LangevinMiddle {1e3 * report['timestep_ps']:g} fs{mts}, median of {args.repeats} x "
          f"{args.steps} steps")
    print(f"  bencao ({report['backend']}){' ' * (6 - len(report['backend']))}"
          f"{report['bencao_ns_per_day']:7.2f} ns/day  {report['bencao_ms_per_step']:7.1f} ms/step")
    if "openmm_ns_per_day" in report:
        platform = f"({report['openmm_platform']})"
        print(f"  OpenMM {platform:<8}{report['openmm_ns_per_day']:7.2f} ns/day  "
              f"{report['openmm_ms_per_step']:7.1f} ms/step")
        print(f"  speed ratio bencao/OpenMM  {report['speed_ratio']:.2f}")
    print(f"  settings: {format_settings(report['settings'])}")
    if "profile" in report:
        print("\n".join(format_profile(report["profile"])))
    return 0


def _bench_scaling(args) -> int:
    from bencao.bench.profile import format_profile
    from bencao.bench.scaling import DEFAULT_SIZES, bench_scaling, format_scaling

    report = bench_scaling(args.sizes or DEFAULT_SIZES, steps=args.steps, repeats=args.repeats,
                           threads=args.threads, compare_openmm=args.compare == "openmm",
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


def _bench_forces(args) -> int:
    from bencao.bench.forces import bench_forces

    report = bench_forces(args.system, repeats=args.repeats, threads=args.threads,
                          compare_openmm=args.compare == "openmm")
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"{report['system']}: {report['atoms']} atoms, {report['threads']} threads, "
          f"energy + forces, median of {args.repeats}")
    print(f"  bencao (cpu)      {report['bencao_ms']:8.1f} ms")
    if "openmm_ms" in report:
        print(f"  OpenMM (CPU)      {report['openmm_ms']:8.1f} ms")
        print(f"  time ratio bencao/OpenMM  {report['ratio']:.2f}  "
              f"(force agreement with OpenMM CPU, median {report['force_agreement_with_openmm_cpu_median']:.1e})")
    return 0


def register(commands) -> None:
    """Add the ``bench`` subcommand to the ``bencao`` parser's subcommands."""
    bench = commands.add_parser("bench", help="benchmarks against OpenMM's CPU platform")
    bench.add_argument("what", choices=["dhfr", "alanine", "forces", "scaling"],
                       help="dhfr (23,558 atoms) or alanine (alanine dipeptide in water, 2,269 "
                            "atoms): dynamics in ns/day; forces: one energy + force evaluation; "
                            "scaling: dynamics of TIP3P water boxes of growing size")
    bench.add_argument("--system", default="dhfr", choices=["dhfr", "alanine"],
                       help="system for 'forces'")
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
    bench.add_argument("--compare", choices=["openmm", "none"], default="openmm",
                       help="time OpenMM's CPU platform in the same run")
    bench.add_argument("--json", action="store_true", help="print the report as JSON")
    bench.set_defaults(handler=_bench)
