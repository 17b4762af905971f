"""``bencao demo``: BPTI from PDB file to trajectory and report, in a few minutes."""

from __future__ import annotations


def _demo(args) -> int:
    from bencao.demo import run_demo

    result = run_demo(args.output, production_ps=args.production, frames=args.frames)
    print(f"trajectory, log and report in {result.output_dir}")
    if result.report:
        print(f"open the report: {result.report}")
    return 0 if result.completed else 130


def register(commands) -> None:
    """Add the ``demo`` subcommand."""
    demo = commands.add_parser(
        "demo", help="prepare and simulate BPTI in water, then write the report",
        description="Prepare BPTI (amber14 + TIP3P), minimize, heat, equilibrate and run a short "
                    "production; writes the trajectory, the CSV log and report.html.")
    demo.add_argument("-o", "--output", default="demo", help="output folder (default: demo)")
    demo.add_argument("--production", type=float, default=10.0, help="production length, ps")
    demo.add_argument("--frames", type=int, default=60, help="trajectory frames in production")
    demo.set_defaults(handler=_demo)
