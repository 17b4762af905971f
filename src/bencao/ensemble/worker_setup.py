"""Preloaded into each local Dask worker process: leave stop signals to the driver.

Ctrl-C in a terminal sends SIGINT to the whole process group, the local workers included; a
worker that took it would close cleanly and not be restarted, and the round it was running
would wait for it forever.  The driver turns SIGINT into "stop after this round" instead.
"""

import signal


def dask_setup(worker) -> None:
    """Called by Dask when the worker starts (the ``preload`` protocol)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
