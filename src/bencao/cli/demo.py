"""``bencao demo [bpti|ligand]``: a protein (or a protein-ligand complex) from PDB file to
trajectory and report, in a few minutes."""

from __future__ import annotations


def _demo(args) -> int:
    from bencao.demo import run_demo

    output = args.output or ("demo" if args.which == "bpti" else f"demo-{args.which}")
    result = run_demo(output, production_ps=args.production, frames=args.frames,
                      demo=args.which)
    print(f"trajectory, log and report in {result.output_dir}")
    if result.report:
        print(f"open the report: {result.report}")
    return 0 if result.completed else 130


def register(commands) -> None:
    """Add the ``demo`` subcommand."""
    demo = commands.add_parser(
        "demo", help="prepare and simulate BPTI (or a protein-ligand complex) in water, then "
                     "write the report",
        description="Prepare BPTI, or T4 lysozyme L99A with p-xylene ('ligand': GAFF2/AM1-BCC "
                    "with AmberTools), with amber14 + TIP3P; minimize, heat, equilibrate and run "
                    "a short production; writes the trajectory, the CSV log and report.html.")
    demo.add_argument("which", nargs="?", choices=["bpti", "ligand"], default="bpti",
                      help="which demo (default: bpti)")
    demo.add_argument("-o", "--output", default=None,
                      help="output folder (default: demo, or demo-ligand)")
    demo.add_argument("--production", type=float, default=10.0, help="production length, ps")
    demo.add_argument("--frames", type=int, default=60, help="trajectory frames in production")
    demo.set_defaults(handler=_demo)
