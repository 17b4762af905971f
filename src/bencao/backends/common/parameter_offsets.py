"""NonbondedForce with parameter offsets (the alchemical form): the backend's own kernel of the
term at the current global values, rebuilt when a value changes.

OpenMM shifts particle and exception parameters by global parameters times per-offset scales
(``addParticleParameterOffset``, ``addExceptionParameterOffset``).  A change of lambda happens
once per window or exchange, not per step, so rebuilding the kernel (its tables, the Ewald self
energy) costs nothing that matters and keeps every kernel unaware of offsets.

The dispersion correction stays the one of the default global values, as in OpenMM, which
computes it when the Context is created and not again when a parameter changes (checked with
OpenMM 8.6: after ``setParameter`` the correction keeps its first value; a Context created with
other defaults has the other value).  Alchemical factories put the Lennard-Jones terms that
change in a CustomNonbondedForce, whose long-range correction does follow lambda.
"""

from __future__ import annotations

import numpy as np


class OffsetNonbonded:
    """A Nonbonded term with offsets, as a backend term: every attribute but the global
    parameters is the inner kernel's (built by ``build(term.at(values))``).

    Parameters
    ----------
    term : bencao.forces.Nonbonded
        The term with its offsets and default global values.
    build : callable
        ``build(plain_term)`` -> the backend's kernel of a term without offsets.
    """

    derivative_names = ()

    def __init__(self, term, build):
        self._term = term
        self._build = build
        self._values = dict(zip(term.offset_names, term.offset_values))
        self.inner = build(term.at(self._values))
        # OpenMM's correction of the defaults, kept whatever the values become (module notes).
        self._dispersion = getattr(self.inner, "dispersion_coefficient", None)

    def __getattr__(self, name):
        # Only for attributes this wrapper lacks: the inner kernel's (compute, reciprocal ...).
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    @property
    def global_parameters(self) -> dict[str, float]:
        """Current value of each global parameter of the offsets."""
        return dict(self._values)

    def set_parameter(self, name: str, value: float) -> None:
        """Set a global parameter and rebuild the kernel with the shifted parameters
        (KeyError if the term has no such parameter)."""
        if name not in self._values:
            raise KeyError(name)
        if self._values[name] == float(value):
            return
        self._values[name] = float(value)
        self.inner = self._build(self._term.at(self._values))
        if self._dispersion is not None:
            self.inner.dispersion_coefficient = self._dispersion

    def get_state(self) -> dict:
        """The inner kernel's state and the global values, for checkpoints."""
        state = self.inner.get_state() if hasattr(self.inner, "get_state") else {}
        return {**state, **{f"parameter.{k}": np.float64(v) for k, v in self._values.items()}}

    def set_state(self, state: dict) -> None:
        """Restore the values (rebuilding the kernel), then the inner kernel's state."""
        for name in self._values:
            value = state.get(f"parameter.{name}")
            if value is not None:
                self.set_parameter(name, float(value))
        if hasattr(self.inner, "set_state"):
            self.inner.set_state({k: v for k, v in state.items()
                                  if not k.startswith("parameter.")})
