"""Global parameters of a compiled term: values that change at run time without recompiling.

A term that has global parameters (the custom terms) keeps their current values in columns of
its parameter table, after its per-item columns (``backends.common.laws.custom``).  The
:class:`GlobalParameters` mixin gives every backend's term classes the same bookkeeping: read
and set a value (rewriting its column, then letting the term upload the table where it lives
elsewhere), and save the values in checkpoints through the term's ``get_state``.
"""

from __future__ import annotations

import numpy as np


def custom_tables(term) -> tuple[np.ndarray, np.ndarray, dict]:
    """A custom listed term's tables as the kernels take them.

    Returns
    -------
    atoms : (M, n) int64 array
        C-contiguous.
    params : (M, P + G) float64 array
        Per-item parameters, then one column per global parameter holding its default value.
    columns : dict[str, int]
        Global parameter name -> its column.

    Raises
    ------
    ValueError
        If the parameter table does not have one row per item and one column per name.
    """
    atoms = np.ascontiguousarray(np.asarray(term.atoms, np.int64).reshape(-1, term.n_atoms))
    params, columns = parameter_table(term, atoms.shape[0])
    return atoms, params, columns


def parameter_table(term, count: int) -> tuple[np.ndarray, dict]:
    """(params, columns) of :func:`custom_tables` for a term of ``count`` items or particles."""
    width = len(term.parameter_names)
    per_item = np.asarray(term.parameters, np.float64)
    if per_item.size != count * width:
        raise ValueError(f"{term.name}: {count} items with {width} parameters each, but a "
                         f"parameter table of shape {per_item.shape}")
    params = np.empty((count, width + len(term.global_names)))
    params[:, :width] = per_item.reshape(count, width)
    params[:, width:] = np.asarray(term.global_values, np.float64)
    columns = {name: width + g for g, name in enumerate(term.global_names)}
    return np.ascontiguousarray(params), columns


class GlobalParameters:
    """Mixin: global parameter values of a term, held in columns of ``self.params``.

    A term calls :meth:`init_globals` once it has its host table ``self.params``; a backend
    whose kernels read a device copy overrides :meth:`upload_params`.
    """

    def init_globals(self, term, columns: dict) -> None:
        """Take the global parameters of ``term`` (defaults) and their ``columns`` in the table."""
        self.global_columns = dict(columns)
        self.derivative_names = tuple(term.derivative_names)
        self._global_values = dict(zip(term.global_names, term.global_values))

    @property
    def global_parameters(self) -> dict[str, float]:
        """Current value of each global parameter."""
        return dict(self._global_values)

    def set_parameter(self, name: str, value: float) -> None:
        """Set global parameter ``name`` to ``value`` (KeyError if the term has no such one)."""
        column = self.global_columns[name]
        self.params[:, column] = float(value)
        self._global_values[name] = float(value)
        self.upload_params()

    def upload_params(self) -> None:
        """Make the kernels see ``self.params`` (nothing to do when they read the host table)."""

    def get_state(self) -> dict:
        """Global parameter values for checkpoints, as {"parameter.<name>": value}."""
        return {f"parameter.{name}": np.float64(value) for name, value in self._global_values.items()}

    def set_state(self, state: dict) -> None:
        """Restore values saved by :meth:`get_state` (other keys are ignored)."""
        for name in self.global_columns:
            value = state.get(f"parameter.{name}")
            if value is not None:
                self.set_parameter(name, float(value))

