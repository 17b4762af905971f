"""CustomNonbondedForce with any expression on the GPU: the CPU's generated pair law
(``backends.common.laws.custom``, kind "pair") compiled for the device and run by the shared
pair loops (``cuda.pair_loops``), so both backends evaluate one source."""

from __future__ import annotations

import functools
import math

import numpy as np
from numba import cuda

from bencao.backends.common.custom_pair_tables import CustomPairTables
from bencao.backends.common.global_parameters import GlobalParameters
from bencao.backends.common.registry import register_kernel
from bencao.backends.cuda.common import device_function, device_version
from bencao.backends.cuda.pair_loops import (
    DEFAULT_BUFFER,
    CudaPairTerm,
    pair_loop_kernels,
)
from bencao.forces.custom import CustomPairs


@device_function
def _load_index(parameters, i):
    """The generated law reads its rows itself: the pair loops hand it the atom index."""
    return i


@functools.cache
def _kernels(law):
    """The pair loops for ``law`` (built once per law; compiled at the first launch)."""
    return pair_loop_kernels(_load_index, device_version(law))


@register_kernel("cuda", CustomPairs)
class CudaCustomPairs(CustomPairTables, CudaPairTerm):
    """A CustomNonbondedForce expression on the GPU.

    Parameters
    ----------
    term : CustomPairs
        Expression, per-particle and global parameters, exclusions, cutoff and switch.
    buffer : float
        Verlet buffer, nm.
    """

    reciprocal = None

    @classmethod
    def from_term(cls, term, system):
        """The kernel of ``system``'s ``term`` (the backend builds every pair term this way)."""
        return cls(term)

    def __init__(self, term: CustomPairs, buffer=DEFAULT_BUFFER):
        self.init_custom_pairs(term)
        self.periodic = term.periodic
        self._init_pairs(None if term.method == "NoCutoff" else term.cutoff, buffer,
                         term.exclusions)
        self.device_params = cuda.to_device(self.params if self.n else np.zeros((1, 1)))
        masks = tuple(cuda.to_device(m) for m in self.masks)
        self._parameters = (self.device_params, *self.switch, *masks, self.grouped)
        self._kernels = _kernels(self.compiled.law)
        self._derivative_kernels = {name: _kernels(law)
                                    for name, law in self.compiled.derivative_laws.items()}

    def upload_params(self) -> None:
        """Copy the host table (a global parameter changed) to the device."""
        if self.n:
            self.device_params.copy_to_device(self.params)

    def compute(self, state, box, energy=True):
        """Add the pair forces to ``state.forces``; return the energy with the long-range
        correction, kJ/mol (NaN if ``energy`` is False)."""
        total = self._pair_energy(self._kernels, self._parameters, state, box, energy)
        return total + self.long_range_energy(box) if energy else math.nan

    def parameter_derivatives(self, state, box) -> dict[str, float]:
        """dE/dp for each global parameter p asked for (the derivative laws add zero forces)."""
        tail = self.long_range_derivatives(box)
        return {name: self._pair_energy(kernels, self._parameters, state, box, True)
                + tail.get(name, 0.0) for name, kernels in self._derivative_kernels.items()}

    def get_state(self) -> dict:
        """The neighbour list and the global parameter values, for checkpoints."""
        return {**CudaPairTerm.get_state(self), **GlobalParameters.get_state(self)}

    def set_state(self, state: dict) -> None:
        """Restore what :meth:`get_state` saved."""
        GlobalParameters.set_state(self, state)
        CudaPairTerm.set_state(self, {k: v for k, v in state.items()
                                      if not k.startswith("parameter.")})
