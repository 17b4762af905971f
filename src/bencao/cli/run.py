"""``bencao run JOB.toml``: run a job's stages, with checkpoints, ``--resume`` and a report."""

from __future__ import annotations


def _run(args) -> int:
    from bencao.errors import JobFileError
    from bencao.jobs import load_job
    from bencao.jobs.runner import JobRunner

    job = load_job(args.job)
    if job.ensemble is not None:
        from bencao.ensemble import EnsembleRunner

        runner = EnsembleRunner(job, resume=args.resume, overwrite=args.overwrite,
                                write_report=not args.no_report, workers=args.workers,
                                threads_per_worker=args.threads_per_worker,
                                scheduler=args.scheduler)
    else:
        if args.workers is not None or args.scheduler is not None:
            raise JobFileError(f"{args.job}: --workers and --scheduler run the replicas of an "
                               "[ensemble] table, and this job has none")
        runner = JobRunner(job, resume=args.resume, overwrite=args.overwrite,
                           write_report=not args.no_report)
    result = runner.run()
    if result.stopped_by == "SIGINT":
        return 130
    if result.stopped_by == "SIGTERM":
        return 143
    return 0


def _whole(minimum: int):
    """An argparse type: a whole number of at least ``minimum``."""
    def parse(text: str) -> int:
        import argparse

        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be a whole number >= {minimum}, got {text!r}")
        return value
    return parse


def register(commands) -> None:
    """Add the ``run`` subcommand."""
    run = commands.add_parser(
        "run", help="run a job file (minimize, heat, equilibrate, production)",
        description="Run the stages of a TOML job file. SIGINT/SIGTERM write a checkpoint and "
                    "stop; --resume continues bit-identically from the last checkpoint.")
    run.add_argument("job", help="the job file (TOML)")
    run.add_argument("--resume", action="store_true",
                     help="continue from the run folder's last checkpoint")
    run.add_argument("--overwrite", action="store_true",
                     help="start again even if the run folder holds a previous run")
    run.add_argument("--no-report", action="store_true", help="do not write report.html at the end")
    cluster = run.add_argument_group(
        "ensembles", "where the replicas of an [ensemble] job run (Dask; the run folder must be on "
                     "a file system the workers share)")
    cluster.add_argument("--workers", type=_whole(0), metavar="W",
                         help="local worker processes (default: cores / threads per worker; 0 runs "
                              "the replicas one after another in this process)")
    cluster.add_argument("--threads-per-worker", type=_whole(1), metavar="T", default=None,
                         help="Numba threads of each worker (default 1)")
    cluster.add_argument("--scheduler", metavar="ADDRESS",
                         help="a running Dask scheduler (tcp://host:8786), e.g. one that "
                              "dask-jobqueue started on SLURM or PBS")
    run.set_defaults(handler=_run)
