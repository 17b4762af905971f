"""``bencao report RUN_DIR``: a self-contained HTML page about a run (plots and a 3-D movie)."""

from __future__ import annotations

import argparse


def _positive_int(text: str) -> int:
    """An argparse type: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 (got {value})")
    return value


def _report(args) -> int:
    # imported here so that `bencao --help` does not load MDTraj and Matplotlib
    import os

    from bencao.report import build_report

    if os.path.exists(os.path.join(args.run_dir, "ensemble.json")):
        from bencao.report.ensemble import build_ensemble_report

        path = build_ensemble_report(args.run_dir, output=args.output)
    else:
        path = build_report(args.run_dir, output=args.output, max_frames=args.max_frames)
    print(path)
    return 0


def register(commands) -> None:
    """Add the ``report`` subcommand to the ``bencao`` parser's subcommands."""
    report = commands.add_parser(
        "report", help="write a self-contained HTML report of a run folder",
        description="Write RUN_DIR/report.html: summary, plots of log.csv, backbone RMSD and "
                    "radius of gyration of the trajectory, a 3-D movie of the protein, and for "
                    "a ligand its RMSD, displacement and contacts with protein residues; for an "
                    "ensemble run, the replicas' walks, exchange acceptance and round trips. The "
                    "page works offline.")
    report.add_argument("run_dir", metavar="RUN_DIR", help="a folder written by 'bencao run'")
    report.add_argument("-o", "--output", metavar="OUT.html", default=None,
                        help="where to write the report (default: RUN_DIR/report.html)")
    report.add_argument("--max-frames", type=_positive_int, default=60, metavar="N",
                        help="most trajectory frames in the 3-D movie (default 60)")
    report.set_defaults(handler=_report)
