"""Which law computes which listed bonded term: the table both backends build their kernels from.

A listed term is a table of items (bonds, angles, torsions ...), each acting on a fixed tuple of
atoms with its own parameters.  Its record type (``bencao.forces.bonded``) is registered here
with :func:`register_listed_law`: how many atoms an item has (2, 3 or 4, the shape), the law (an
``@njit`` function of the internal coordinate, see :class:`ListedLaw`) and how to read the
item parameters from a record.  Each backend has one loop per shape and one term class for all
listed terms; it calls :func:`for_each_listed_law` once, which hands it every record registered
before and after, so a new term needs no edit in any backend.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

#: Atoms per item of the shapes the backends have a loop for.
SHAPES = (2, 3, 4)


@dataclass(frozen=True)
class ListedLaw:
    """A listed term: its shape, law and parameter table.

    Attributes
    ----------
    record : type
        The term record (a dataclass of ``bencao.forces``, with ``atoms`` and ``name``).
    n_atoms : int
        Atoms per item: 2 (a law of the separation vector), 3 (of the angle, middle atom the
        vertex) or 4 (of the torsion angle).
    law : numba dispatcher
        ``@njit(cache=True, inline="always")`` function ``law(x, params, m)``, with ``params``
        the (M, P) float64 table and ``m`` the item, returning ``(energy, derivative)`` in
        kJ/mol.  For 2 atoms ``x`` is the separation ``dx, dy, dz`` = x_j - x_i (nm, three
        arguments) and the derivative is f, kJ/mol/nm^2, with F_i = f d, F_j = -f d (f = 0: no
        force); for 3 and 4 atoms ``x`` is the angle (rad) and the derivative dE/dtheta,
        kJ/mol/rad.
    parameters : callable
        ``parameters(record)`` -> the columns of the table, in the order the law reads them:
        (M,) arrays or scalars (a scalar is the same for every item).
    """

    record: type
    n_atoms: int
    law: object
    parameters: Callable

    def tables(self, term) -> tuple[np.ndarray, np.ndarray]:
        """The atoms and parameters of ``term`` as the kernels take them.

        Returns
        -------
        atoms : (M, n_atoms) int64 array
            C-contiguous.
        params : (M, P) float64 array
            C-contiguous; integer parameters become floats (exact below 2^53).

        Raises
        ------
        ValueError
            If a parameter column does not have one entry per item.
        """
        atoms = np.ascontiguousarray(
            np.asarray(term.atoms, dtype=np.int64).reshape(-1, self.n_atoms))
        count = atoms.shape[0]
        columns = []
        for column in self.parameters(term):
            values = np.asarray(column, dtype=np.float64)
            if values.ndim == 0:
                values = np.full(count, values)
            values = values.reshape(-1)
            if len(values) != count:
                raise ValueError(f"{self.record.__name__}: {count} items but a parameter column "
                                 f"of {len(values)} entries")
            columns.append(values)
        if not columns:  # a law without parameters still gets its (M, 0) table
            return atoms, np.zeros((count, 0))
        params = np.ascontiguousarray(np.stack(columns, axis=1).reshape(count, len(columns)))
        return atoms, params


_LAWS: dict[type, ListedLaw] = {}
_LISTENERS: list[Callable] = []


def register_listed_law(record: type, n_atoms: int, law, parameters: Callable) -> ListedLaw:
    """Register the law of the listed term ``record`` (see :class:`ListedLaw` for the arguments).

    Every backend that asked :func:`for_each_listed_law` learns of it at once.

    Raises
    ------
    ValueError
        If ``n_atoms`` is not a shape the backends have a loop for.
    """
    if n_atoms not in SHAPES:
        raise ValueError(f"{record.__name__}: {n_atoms} atoms per item; the backends have loops "
                         f"for {SHAPES}")
    entry = ListedLaw(record, n_atoms, law, parameters)
    _LAWS[record] = entry
    for listener in _LISTENERS:
        listener(entry)
    return entry


def listed_law(record: type) -> ListedLaw:
    """The registered law of the record type ``record`` (KeyError if it has none)."""
    return _LAWS[record]


def for_each_listed_law(listener: Callable) -> None:
    """Call ``listener(entry)`` for each :class:`ListedLaw` registered so far and from now on."""
    _LISTENERS.append(listener)
    for entry in list(_LAWS.values()):
        listener(entry)
