"""The CPU backend (Numba)."""

from bencao.backends.cpu.backend import BlowUpError, CpuBackend, Evaluation

__all__ = ["BlowUpError", "CpuBackend", "Evaluation"]
