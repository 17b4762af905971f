"""Job files: runs described in TOML (``bencao run md.toml``), validated before anything runs."""

from bencao.jobs.jobfile import Job, Stage, job_from_text, load_job
from bencao.jobs.values import parse_time

__all__ = ["Job", "Stage", "job_from_text", "load_job", "parse_time"]
