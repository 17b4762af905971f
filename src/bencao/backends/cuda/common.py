"""What the CUDA kernels share: launch geometry, device functions, fixed-point conversion."""

from __future__ import annotations

from numba import cuda

from bencao.backends.cpu.fixed_point import to_fixed as cpu_to_fixed
from bencao.backends.cuda.device import using_simulator

#: Threads per block: a multiple of the 32-thread warp, small enough that short term lists
#: (a few hundred bonds) still spread over several multiprocessors.
THREADS_PER_BLOCK = 128


def launch_config(n_threads: int) -> tuple[int, int]:
    """(blocks, threads per block) for one thread per item of ``n_threads`` items (n > 0)."""
    return (n_threads + THREADS_PER_BLOCK - 1) // THREADS_PER_BLOCK, THREADS_PER_BLOCK


def device_function(function):
    """``cuda.jit(device=True)(function)`` on a GPU; the plain Python function in Numba's CUDA
    simulator, for a pure function (no ``cuda.*`` inside).

    The simulator runs kernels as Python anyway, but wraps every device-function call in a swap
    of the module's globals (~4 us a call, more than the arithmetic of a pair); calling the
    function directly computes the same thing and keeps the simulated tests fast.
    """
    if using_simulator():
        return function
    return cuda.jit(device=True)(function)


# The CPU's own conversion compiled for the GPU: same clamp, scale and truncation.
to_fixed = device_function(cpu_to_fixed.py_func)


def launch_kernel(kernel, n):
    """``kernel[blocks, threads]`` for one thread per item of ``n`` items."""
    return kernel[launch_config(max(int(n), 1))]
