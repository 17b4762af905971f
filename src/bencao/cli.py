"""The ``bencao`` command line."""

from __future__ import annotations

import argparse
import json
import sys


def _bench(args) -> int:
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


def main(argv=None) -> int:
    """Entry point of the ``bencao`` command."""
    parser = argparse.ArgumentParser(prog="bencao", description="bencao molecular dynamics")
    commands = parser.add_subparsers(dest="command", required=True)
    bench = commands.add_parser("bench", help="benchmarks (energy + forces for now)")
    bench.add_argument("what", choices=["forces"], help="what to time")
    bench.add_argument("--system", default="dhfr", choices=["dhfr"], help="benchmark system")
    bench.add_argument("--repeats", type=int, default=10, help="timed evaluations per engine")
    bench.add_argument("--threads", type=int, default=None, help="threads (default: all cores)")
    bench.add_argument("--compare", choices=["openmm", "none"], default="openmm",
                       help="time OpenMM's CPU platform in the same run")
    bench.add_argument("--json", action="store_true", help="print the report as JSON")
    bench.set_defaults(handler=_bench)
    args = parser.parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
