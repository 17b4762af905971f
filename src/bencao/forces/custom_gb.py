"""Generalized Born and other many-body forces from expressions (OpenMM CustomGBForce; OpenMM's
GBSAOBCForce is imported as the CustomGBForce it is equal to).

The force first computes per-particle values (a Born radius ...): the first may be a sum over
pairs, the others functions of a particle's parameters, earlier values and position; then its
energy terms, each a sum over particles or over pairs, may use every value.  Expressions are in
OpenMM's expression language; Discrete1D/2D/3D tabulated functions are held here as tables.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bencao.forces.custom import _normalise_parameters, index_pairs
from bencao.forces.registry import term_record

#: Kinds of computed value and energy term, with OpenMM's ``CustomGBForce`` enum order.
GB_TYPES = ("single", "pair", "pair_no_exclusions")


@term_record
@dataclass(frozen=True)
class CustomGB:
    """A CustomGBForce.

    Parameters
    ----------
    parameters : (N, P) float64 array
        Per-particle parameters, columns in the order of ``parameter_names``.
    value_names, value_expressions, value_types : tuple of str
        The computed values in order: name, expression, kind (:data:`GB_TYPES`).
    energy_expressions, energy_types : tuple of str
        The energy terms (kJ/mol) and their kinds.
    parameter_names, global_names, global_values, derivative_names : tuple
        As for ``forces.custom.CustomListedTerm``.
    exclusions : (M, 2) int64 array
        Pairs left out of "pair" values and energy terms.
    method : str
        "NoCutoff", "CutoffNonPeriodic" or "CutoffPeriodic".
    cutoff : float
        Cutoff, nm.
    table_names : tuple of str
        Discrete tabulated functions the expressions call.
    table_shapes : tuple of tuple of int
        Their sizes per dimension (1 to 3 dimensions).
    table_values : (T,) float64 array
        Their values concatenated, each in OpenMM's order (x fastest).
    """

    parameters: np.ndarray
    value_names: tuple
    value_expressions: tuple
    value_types: tuple
    energy_expressions: tuple
    energy_types: tuple
    parameter_names: tuple = ()
    global_names: tuple = ()
    global_values: tuple = ()
    derivative_names: tuple = ()
    exclusions: np.ndarray = None
    method: str = "NoCutoff"
    cutoff: float = 1.0
    table_names: tuple = ()
    table_shapes: tuple = ()
    table_values: np.ndarray = None

    name = "CustomGBForce"

    def __post_init__(self):
        _normalise_parameters(self)
        for key in ("value_names", "value_expressions", "value_types", "energy_expressions",
                    "energy_types", "table_names"):
            object.__setattr__(self, key, tuple(str(v) for v in getattr(self, key)))
        object.__setattr__(self, "table_shapes",
                           tuple(tuple(int(n) for n in shape) for shape in self.table_shapes))
        object.__setattr__(self, "exclusions", index_pairs(self.exclusions))
        values = np.zeros(0) if self.table_values is None else self.table_values
        object.__setattr__(self, "table_values", np.asarray(values, np.float64).reshape(-1))
        for kind in (*self.value_types, *self.energy_types):
            if kind not in GB_TYPES:
                raise ValueError(f"{self.name}: unknown kind {kind!r}; expected one of {GB_TYPES}")

    @property
    def periodic(self) -> bool:
        """True when the method uses periodic boundary conditions."""
        return self.method == "CutoffPeriodic"

    def tables(self) -> list[np.ndarray]:
        """Each tabulated function's values as an array of its shape (x fastest, as OpenMM)."""
        out, start = [], 0
        for shape in self.table_shapes:
            size = int(np.prod(shape))
            out.append(self.table_values[start:start + size].reshape(shape[::-1]))
            start += size
        return out


@term_record
@dataclass(frozen=True)
class GBSAOBC(CustomGB):
    """OpenMM's GBSAOBCForce, held as the CustomGBForce it equals (``io.openmm_gb_import``); a
    record of its own so that its energy keeps OpenMM's key."""

    name = "GBSAOBCForce"
