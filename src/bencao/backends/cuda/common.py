"""What the CUDA kernels share: launch geometry, device functions, fixed-point conversion."""

from __future__ import annotations

import types

from numba import cuda
from numba.core.dispatcher import Dispatcher

from bencao.backends.common.fixed_point import to_fixed as cpu_to_fixed
from bencao.backends.cuda.device import using_simulator

#: Threads per block: a multiple of the 32-thread warp, small enough that short term lists
#: (a few hundred bonds) still spread over several multiprocessors.
THREADS_PER_BLOCK = 128


#: Threads per block in Numba's CUDA simulator.  It runs a block's threads as Python threads
#: and guards every atomic add with one lock; with many threads a block can fall into a lock
#: convoy (the holder loses the GIL, the others queue on the lock): a 651-atom NoCutoff
#: evaluation took from 30 s to over 10 minutes from run to run.  One thread per block runs the
#: same kernels in sequence, in seconds, every time.  No kernel here uses shared memory or
#: barriers, so the block size changes nothing else.
SIMULATOR_THREADS_PER_BLOCK = 1


def launch_config(n_threads: int) -> tuple[int, int]:
    """(blocks, threads per block) for one thread per item of ``n_threads`` items (n > 0)."""
    per_block = SIMULATOR_THREADS_PER_BLOCK if using_simulator() else THREADS_PER_BLOCK
    return (n_threads + per_block - 1) // per_block, per_block


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


def _pure_python(function, done):
    """``function`` with every ``@njit`` dispatcher it names replaced by that dispatcher's Python
    source, recursively (``done`` memoises the copies, so shared helpers are copied once)."""
    if function in done:
        return done[function]
    namespace = dict(function.__globals__)
    copy = types.FunctionType(function.__code__, namespace, function.__name__,
                              function.__defaults__, function.__closure__)
    done[function] = copy
    for name in function.__code__.co_names:
        value = namespace.get(name)
        if isinstance(value, Dispatcher):
            namespace[name] = _pure_python(value.py_func, done)
    return copy


def device_version(function):
    """The device function that computes what ``function`` (a plain or ``@njit`` CPU function,
    possibly calling other ``@njit`` helpers) computes on the CPU: one source for both backends.

    On a GPU it is the Python source compiled with ``cuda.jit(device=True)``; the ``@njit``
    helpers it calls need nothing, Numba compiles a CPU dispatcher called from CUDA code for the
    CUDA target (checked without a GPU with ``cuda.compile_ptx`` for sm_90).  In Numba's CUDA
    simulator a kernel is plain Python and its arrays are the simulator's wrappers, which an
    ``@njit`` function cannot take: there the same source runs as Python, its helpers swapped
    for their Python source (:func:`device_function` is the simpler case without helpers).
    """
    python = getattr(function, "py_func", function)
    if using_simulator():
        return _pure_python(python, {})
    return cuda.jit(device=True)(python)


# The CPU's own conversion compiled for the GPU: same clamp, scale and truncation.
to_fixed = device_function(cpu_to_fixed.py_func)


def launch_kernel(kernel, n):
    """``kernel[blocks, threads]`` for one thread per item of ``n`` items."""
    return kernel[launch_config(max(int(n), 1))]
