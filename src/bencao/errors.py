"""Errors a user can act on.

Anything raised as a :class:`BencaoError` carries a message that names the problem (the file, the
key, the residue, the atoms) and what to do about it.  The ``bencao`` command prints such an error
as one line and exits non-zero; other exceptions are bugs and show a traceback with ``--debug``.
"""


class BencaoError(Exception):
    """An error whose message is meant for the user (one line, actionable)."""


class InputFileError(BencaoError):
    """An input file is missing, unreadable or malformed."""


class PreparationError(BencaoError):
    """A structure could not be prepared (unknown force field, residue without a template...)."""


class JobFileError(BencaoError):
    """A job file is invalid: a bad key, value or unit.  The message names the key."""


class OutputError(BencaoError):
    """An output file or folder cannot be written (permissions, full disk, not a folder)."""


class DeviceError(BencaoError, RuntimeError):
    """The requested device (a CUDA GPU, or OpenMM's platform for it) is not available here."""


class ConstraintError(RuntimeError):
    """Constraints could not be satisfied during dynamics: an iteration did not converge, or
    SETTLE failed (raised by every backend's solver; the layers above catch it without importing
    a backend)."""


class BlowUpError(FloatingPointError):
    """Forces or energy are not finite, or too large to represent: the structure has exploded
    (raised by every backend; the layers above name the atoms and the term from it).

    Attributes
    ----------
    particles : list of int
        The particles with the largest forces, largest first.
    term : str or None
        The force term responsible (its OpenMM force class name).
    """

    def __init__(self, message: str, particles=(), term=None):
        super().__init__(message)
        self.particles = [int(i) for i in particles]
        self.term = term
