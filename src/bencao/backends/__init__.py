"""Backends compile a System for one kind of hardware and own the hot state.

Each backend is named here by the class that builds it, imported only when asked for (the CPU
path must not need ``numba.cuda``); the layers above reach a backend only through
:func:`backend_class`, never by importing it.
"""

from __future__ import annotations

import importlib

#: Backend name -> "module:class" of its Backend (``bencao.backends.common.backend.Backend``).
BACKENDS = {
    "cpu": "bencao.backends.cpu.backend:CpuBackend",
    "cuda": "bencao.backends.cuda.backend:CudaBackend",
}


def backend_class(name: str):
    """The Backend class registered under ``name``; ValueError naming the choices otherwise."""
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; available: {', '.join(BACKENDS)}")
    module, cls = BACKENDS[name].split(":")
    return getattr(importlib.import_module(module), cls)
