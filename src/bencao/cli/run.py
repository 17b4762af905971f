"""``bencao run JOB.toml``: run a job's stages, with checkpoints, ``--resume`` and a report."""

from __future__ import annotations


def _run(args) -> int:
    from bencao.jobs import load_job
    from bencao.jobs.runner import JobRunner

    job = load_job(args.job)
    result = JobRunner(job, resume=args.resume, overwrite=args.overwrite,
                       write_report=not args.no_report).run()
    if result.stopped_by == "SIGINT":
        return 130
    if result.stopped_by == "SIGTERM":
        return 143
    return 0


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
    run.set_defaults(handler=_run)
