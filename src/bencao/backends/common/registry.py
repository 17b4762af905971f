"""Which backend computes which force term: kernels register themselves for a term record type.

A backend module decorates each of its term classes with :func:`register_kernel`; the backend
asks :func:`kernel_for` for the kernel of each term of a System.  A record with no kernel on a
backend is refused with a message that lists what that backend has.
"""

from __future__ import annotations

_KERNELS: dict[str, dict[type, type]] = {}


def register_kernel(backend: str, record_type: type):
    """Class decorator: ``cls`` computes ``record_type`` terms on ``backend`` ("cpu", "cuda").

    The class is built as ``cls.from_term(term, system, **options)`` when it defines that
    (terms that need the box or backend options), otherwise as ``cls(term)``.
    """

    def register(cls):
        _KERNELS.setdefault(backend, {})[record_type] = cls
        return cls

    return register


def registered(backend: str) -> list[str]:
    """Names of the term records ``backend`` has kernels for, sorted."""
    return sorted(record.__name__ for record in _KERNELS.get(backend, {}))


def kernel_for(backend: str, term, system, **options):
    """The compiled kernel of ``term`` (a record from ``bencao.forces``) on ``backend``.

    Raises
    ------
    TypeError
        If ``backend`` has no kernel for the term's record type; the message lists those it has.
    """
    cls = _KERNELS.get(backend, {}).get(type(term))
    if cls is None:
        raise TypeError(
            f"the {backend.upper()} backend has no kernel for {type(term).__name__} "
            f"({getattr(term, 'name', '?')}); it has kernels for: {', '.join(registered(backend))}"
        )
    if hasattr(cls, "from_term"):
        return cls.from_term(term, system, **options)
    return cls(term)
