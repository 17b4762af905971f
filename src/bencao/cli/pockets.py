"""``bencao pockets``: find and track drug pockets along a trajectory (or in one structure)."""

from __future__ import annotations


def _pockets(args) -> int:
    from bencao.analysis.pockets import analyse_pockets

    analyse_pockets(args.source, topology=args.top, output=args.output, stride=args.stride,
                    workers=args.workers)
    return 0


def register(commands) -> None:
    """Add the ``pockets`` subcommand."""
    from bencao.cli.report import _positive_int

    pockets = commands.add_parser(
        "pockets", help="find and track pockets along a trajectory (fpocket/mdpocket-style)",
        description="Alpha spheres of the protein's heavy atoms in every frame (superposed on "
                    "the first frame's C-alpha atoms), clustered into pockets, scored, tracked "
                    "over the frames. Writes OUT/pockets.csv, tracks.csv, pocket_frequency.dx "
                    "(OpenDX, Angstrom) and pockets.json; bencao report shows them.")
    pockets.add_argument("source", metavar="RUN_DIR|STRUCTURE|TRAJ",
                         help="a run folder, a structure (PDB/mmCIF) or a trajectory with --top")
    pockets.add_argument("--top", metavar="TOPOLOGY", help="topology of a trajectory")
    pockets.add_argument("-o", "--output", metavar="OUT",
                         help="output folder (default RUN_DIR/pockets or <name>_pockets)")
    pockets.add_argument("--stride", type=_positive_int, default=1, metavar="K",
                         help="use every K-th frame")
    pockets.add_argument("--workers", type=_positive_int, default=None, metavar="N",
                         help="processes (default: one per core)")
    pockets.set_defaults(handler=_pockets)
