"""What the CPU and CUDA terms of a CustomNonbondedForce expression share on the host: the
parameter table with its global columns, the interaction-group masks, the switch, and the
long-range correction."""

from __future__ import annotations

import numpy as np

from bencao.backends.common.custom_long_range import CustomLongRangeCorrection
from bencao.backends.common.global_parameters import GlobalParameters, parameter_table
from bencao.backends.common.laws.custom import custom_law
from bencao.backends.common.laws.tabulated import table_specs


def group_masks(term, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Interaction-group bit masks of a CustomPairs term: bit g of ``first[k]`` (``second[k]``)
    is set when particle k is in set 1 (set 2) of group g; zeros without groups."""
    first = np.zeros(max(n, 1), np.int64)
    second = np.zeros(max(n, 1), np.int64)
    for g, (set1, set2) in enumerate(term.interaction_groups()):
        first[np.asarray(set1, np.int64)] |= np.int64(1) << g
        second[np.asarray(set2, np.int64)] |= np.int64(1) << g
    return first, second


class CustomPairTables(GlobalParameters):
    """Mixin of the custom pair terms: call :meth:`init_custom_pairs` first.

    Attributes
    ----------
    compiled : CustomLaw
        The generated laws.
    params : (N, P + G) float64 array
        Per-particle parameters then the global values (original particle order).
    masks : tuple of two (N,) int64 arrays
        Interaction-group masks (:func:`group_masks`).
    grouped : bool
        The force has interaction groups.
    switch : tuple of float
        (switch distance or 0, cutoff or 0), as the generated law reads them.
    long_range : CustomLongRangeCorrection or None
        The correction, when the force asks for it and is periodic.
    """

    def init_custom_pairs(self, term) -> None:
        """Compile the law and build the tables of ``term`` (a CustomPairs)."""
        self.compiled = custom_law("pair", term.expression, term.parameter_names,
                                   term.global_names, term.derivative_names, term.name,
                                   tables=table_specs(term))
        self.name = term.name
        self.term = term
        self.n = int(np.asarray(term.parameters).shape[0])  # (N, P), P may be 0
        self.params, columns = parameter_table(term, self.n)
        self.init_globals(term, columns)
        self.masks = group_masks(term, self.n)
        self.grouped = bool(len(term.group_first_sizes))
        cutoff = term.method != "NoCutoff"
        switching = cutoff and 0.0 < term.switch_distance < term.cutoff
        self.switch = (float(term.switch_distance) if switching else 0.0,
                       float(term.cutoff) if cutoff else 0.0)
        self.long_range = None
        if term.long_range_correction and term.periodic:
            self.long_range = CustomLongRangeCorrection(term, self.compiled)

    def _long_range(self, box) -> dict[str, float]:
        """{"": the correction energy, name: its dE/dp} at this box, kJ/mol; {} without one."""
        if self.long_range is None:
            return {}
        values = tuple(self._global_values[name] for name in self.term.global_names)
        volume = abs(np.linalg.det(box))
        return {k: c / volume for k, c in self.long_range.coefficients(values).items()}

    def long_range_energy(self, box) -> float:
        """The long-range correction energy at this box, kJ/mol (0 without one)."""
        return self._long_range(box).get("", 0.0)

    def long_range_derivatives(self, box) -> dict[str, float]:
        """dE/dp of the long-range correction for each derivative asked for."""
        return {k: v for k, v in self._long_range(box).items() if k}
