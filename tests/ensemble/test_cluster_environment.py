"""A local Dask cluster gives its workers their thread counts without changing them in this
process (Dask's nannies set them here before spawning; left set, the next Numba compile in this
process would fail: Numba refuses a new NUMBA_NUM_THREADS once its threads run)."""

import os

from bencao.ensemble.cluster import open_executor

NAMES = ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "PYTHONHASHSEED")


def test_local_cluster_leaves_this_process_thread_variables_as_they_were(monkeypatch):
    monkeypatch.delenv("NUMBA_NUM_THREADS", raising=False)
    monkeypatch.delenv("PYTHONHASHSEED", raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    before = {name: os.environ.get(name) for name in NAMES}
    with open_executor(replicas=1, workers=1, threads_per_worker=2) as executor:
        assert "local Dask cluster of 1 workers x 2 threads" in executor.description
        # the worker itself runs with the cluster's values
        worker = executor.client.run(lambda: os.environ.get("NUMBA_NUM_THREADS"))
        assert list(worker.values()) == ["2"]
        assert {name: os.environ.get(name) for name in NAMES} == before  # while it runs
    assert {name: os.environ.get(name) for name in NAMES} == before  # and after
