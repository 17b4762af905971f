"""Is there a CUDA device to run on: a real GPU, or Numba's CUDA simulator?

Numba reads ``NUMBA_ENABLE_CUDASIM`` once, when ``numba`` is first imported, and ``numba.cuda``
then becomes either the real CUDA target or the simulator (every thread run by the Python
interpreter: slow, but it runs the same kernels without a GPU, which is how the tests run them).
Everything here imports ``numba.cuda`` lazily so that importing bencao never needs CUDA.
"""

from __future__ import annotations

import os

from bencao.errors import DeviceError

NO_DEVICE_MESSAGE = (
    "no CUDA GPU found; install bencao[cuda] and a CUDA driver, or set NUMBA_ENABLE_CUDASIM=1 "
    "to run the kernels in Numba's simulator (slow, for testing)"
)


def using_simulator() -> bool:
    """True if ``numba.cuda`` is Numba's CUDA simulator rather than a real GPU target.

    This is what Numba itself decided at import, not the current environment: setting
    ``NUMBA_ENABLE_CUDASIM`` after ``numba`` was imported has no effect.
    """
    from numba import config

    return bool(config.ENABLE_CUDASIM)


def cuda_available() -> bool:
    """True if CUDA kernels can run here: a usable GPU and driver, or the simulator."""
    if using_simulator():
        return True
    from numba import cuda

    # is_available() itself turns a missing or broken driver into False.
    return bool(cuda.is_available())


def require_cuda() -> None:
    """Raise a DeviceError (a RuntimeError) that says what to install if there is neither a GPU
    nor the simulator.

    Raises
    ------
    bencao.errors.DeviceError
        With :data:`NO_DEVICE_MESSAGE`, and a hint when the simulator variable was set too late.
    """
    if cuda_available():
        return
    message = NO_DEVICE_MESSAGE
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        # The variable is only read when numba is first imported (see the module docstring).
        message += (
            " (NUMBA_ENABLE_CUDASIM=1 is set, but only after numba was imported: set it before "
            "starting Python)"
        )
    raise DeviceError(message)
