"""The kinds of force term a System can hold: each record registers itself here.

A term record is a frozen dataclass of NumPy arrays whose ``name`` is the OpenMM force class it
corresponds to (the key of its energy in evaluations).  Decorating it with :func:`term_record`
makes it known to ``System`` files (saved by record type) without a list kept elsewhere; its
OpenMM importer registers itself in ``bencao.io.openmm_import`` and its kernels in the backends.
"""

from __future__ import annotations

#: Record class name -> record class, in the order they were registered.
TERM_TYPES: dict[str, type] = {}


def term_record(cls):
    """Class decorator: register a force-term record (see the module notes)."""
    TERM_TYPES[cls.__name__] = cls
    return cls
