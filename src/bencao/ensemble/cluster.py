"""Where segments run: a Dask cluster (local processes, a running scheduler, or dask-jobqueue on
SLURM/PBS), or this process.

A local cluster is sized to this machine: ``workers x threads_per_worker`` cores, each worker one
process running one segment at a time with its Numba threads pinned to ``threads_per_worker``, so
replicas never oversubscribe the cores.  On a cluster the run folder must be on a file system
that the workers share: segments read and write their checkpoints there, and that is all the
state there is.

HPC with dask-jobqueue (``pip install dask-jobqueue``), from Python or a script on the login
node; the run then goes to that scheduler::

    from dask_jobqueue import SLURMCluster
    cluster = SLURMCluster(cores=8, processes=1, memory="8GB", walltime="12:00:00",
                           job_script_prologue=["export NUMBA_NUM_THREADS=8"])
    cluster.scale(jobs=4)
    print(cluster.scheduler_address)     # bencao run job.toml --scheduler tcp://...
"""

from __future__ import annotations

import contextlib
import logging
import os

from bencao.errors import BencaoError


class ClusterError(BencaoError):
    """The Dask cluster cannot be reached or lost a segment for good."""


class InProcess:
    """Runs each task at once in this process (``--workers 0``): no Dask, for debugging."""

    description = "in this process"

    def map(self, function, tasks) -> list:
        return [function(task) for task in tasks]


class DaskExecutor:
    """Runs tasks on a ``dask.distributed`` client; a task lost with its worker is rerun."""

    def __init__(self, client, description: str):
        self.client = client
        self.description = description

    def map(self, function, tasks) -> list:
        from distributed import KilledWorker

        futures = [self.client.submit(function, task, pure=False) for task in tasks]
        try:
            return self.client.gather(futures)
        except KilledWorker as exc:
            raise ClusterError(
                f"a segment was lost with its worker too many times ({exc}); resume the run with "
                "--resume once the workers are healthy") from exc


def default_workers(replicas: int, threads_per_worker: int) -> int:
    """Workers of a local cluster: one per ``threads_per_worker`` cores, no more than replicas."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(int(replicas), (cores or 1) // max(1, int(threads_per_worker))))


@contextlib.contextmanager
def open_executor(replicas: int, workers: int | None = None, threads_per_worker: int | None = None,
                  scheduler: str | None = None):
    """The executor segments run on, for the length of a run.

    Parameters
    ----------
    replicas : int
        Replicas of the run (a local cluster has no more workers than this).
    workers : int or None
        Local worker processes; None sizes the cluster to this machine's cores; 0 runs
        everything in this process.
    threads_per_worker : int or None
        Numba threads of each worker (default 1).
    scheduler : str or None
        Address of a running Dask scheduler (``tcp://host:8786``) to use instead of a local
        cluster.
    """
    threads = int(threads_per_worker or 1)
    if workers == 0 and scheduler is None:
        yield InProcess()
        return
    try:
        from distributed import Client, LocalCluster
    except ImportError as exc:   # pragma: no cover - dask is a dependency
        raise ClusterError("running replicas on Dask needs dask.distributed: "
                           "pip install 'dask[distributed]'") from exc
    if scheduler is not None:
        try:
            client = Client(scheduler, timeout="30s")
        except (OSError, TimeoutError) as exc:
            raise ClusterError(f"cannot reach the Dask scheduler at {scheduler} ({exc})") from exc
        with client:
            n = len(client.scheduler_info().get("workers", {}))
            yield DaskExecutor(client, f"the Dask cluster at {scheduler} ({n} workers)")
        return
    import dask

    count = int(workers) if workers is not None else default_workers(replicas, threads)
    # Each worker runs one segment at a time (one Dask thread) with `threads` Numba threads,
    # set in its environment before the process starts (Numba reads it once, at import).
    environ = {"NUMBA_NUM_THREADS": str(threads), "OMP_NUM_THREADS": "1"}
    # Dask's nannies live in this process and set those variables in its own environment
    # before each spawn; left there, the next Numba compile in this process fails ("Cannot
    # set NUMBA_NUM_THREADS to a different value once the threads have been launched"), so
    # this process gets its own values back once the workers are up and when the run ends.
    own = {name: os.environ.get(name) for name in (*environ, "PYTHONHASHSEED")}
    try:
        with dask.config.set({"distributed.nanny.pre-spawn-environ": environ}):
            cluster = LocalCluster(n_workers=count, threads_per_worker=1, processes=True,
                                   dashboard_address=":0", silence_logs=logging.CRITICAL,
                                   preload=["bencao.ensemble.worker_setup"])
        _restore_environment(own)
        with cluster, Client(cluster) as client:
            yield DaskExecutor(client,
                               f"a local Dask cluster of {count} workers x {threads} threads")
    finally:
        _restore_environment(own)


def _restore_environment(values: dict) -> None:
    """Set each variable back to its value in ``values`` (None: unset)."""
    for name, value in values.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
