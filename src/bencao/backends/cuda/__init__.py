"""The CUDA backend (Numba-CUDA kernels): the CPU backend's interface on an NVIDIA GPU.

Importing this package does not need a GPU; building a :class:`CudaBackend` does (or Numba's CUDA
simulator, ``NUMBA_ENABLE_CUDASIM=1`` set before Python starts).
"""

from bencao.backends.cuda.device import cuda_available, require_cuda, using_simulator

__all__ = ["CudaBackend", "cuda_available", "require_cuda", "using_simulator"]


def __getattr__(name):
    # CudaBackend imports numba.cuda; load it only when asked for, so that
    # ``import bencao.backends.cuda`` stays cheap and safe on machines without CUDA.
    if name == "CudaBackend":
        from bencao.backends.cuda.backend import CudaBackend

        return CudaBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
