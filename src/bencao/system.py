"""The System: our own immutable description of a molecular system, as NumPy arrays.

A System holds masses, the force terms (``bencao.forces``), constraints, virtual sites and the
default periodic box.  It contains no OpenMM objects: it is saved to and loaded from a single
``.npz`` file without OpenMM installed.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from dataclasses import dataclass, field

import numpy as np

from bencao.forces import TERM_TYPES, VirtualSites
from bencao.io.files import array_checksum, publish, read_npz

FORMAT_VERSION = 1


@dataclass(frozen=True)
class System:
    """A parametrised molecular system.

    Parameters
    ----------
    masses : (N,) float64 array
        Particle masses, amu (0 for virtual sites and fixed particles).
    terms : tuple
        Force terms, instances of the dataclasses in ``bencao.forces``.
    constraint_atoms : (C, 2) int64 array
        Pairs of particles held at a fixed distance.
    constraint_lengths : (C,) float64 array
        Constrained distances, nm.
    virtual_sites : VirtualSites
        Virtual sites and how they are built from their parents.
    box : (3, 3) float64 array or None
        Default periodic box vectors as rows, nm, in OpenMM's reduced form; None for a
        non-periodic system.
    cm_motion_removal : int
        Remove centre-of-mass motion every this many steps; 0 means never.
    """

    masses: np.ndarray
    terms: tuple = ()
    constraint_atoms: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.int64))
    constraint_lengths: np.ndarray = field(default_factory=lambda: np.zeros(0))
    virtual_sites: VirtualSites = field(default_factory=VirtualSites.empty)
    box: np.ndarray | None = None
    cm_motion_removal: int = 0

    @property
    def n_particles(self) -> int:
        """Number of particles, virtual sites included."""
        return len(self.masses)

    @property
    def periodic(self) -> bool:
        """True if any term uses periodic boundary conditions."""
        return any(getattr(term, "periodic", False) for term in self.terms)

    @classmethod
    def from_openmm(cls, openmm_system) -> System:
        """Import an ``openmm.System`` (see :func:`bencao.io.openmm_import.system_from_openmm`)."""
        from bencao.io.openmm_import import system_from_openmm

        return system_from_openmm(openmm_system)

    # ------------------------------------------------------------------ persistence

    def save(self, path: str | os.PathLike) -> None:
        """Write the system to ``path`` (a NumPy ``.npz`` archive), atomically.

        The file is written to a temporary name in the same folder and renamed into place, so a
        crash never leaves a truncated file under the final name.
        """
        arrays: dict[str, np.ndarray] = {
            "masses": self.masses,
            "constraint_atoms": self.constraint_atoms,
            "constraint_lengths": self.constraint_lengths,
        }
        for f in dataclasses.fields(VirtualSites):
            arrays[f"virtual_sites.{f.name}"] = getattr(self.virtual_sites, f.name)
        header = {
            "format": "bencao.System",
            "version": FORMAT_VERSION,
            "box": None if self.box is None else np.asarray(self.box).tolist(),
            "cm_motion_removal": int(self.cm_motion_removal),
            "terms": [],
        }
        for index, term in enumerate(self.terms):
            scalars = {}
            for f in dataclasses.fields(term):
                value = getattr(term, f.name)
                if isinstance(value, np.ndarray):
                    arrays[f"term{index}.{f.name}"] = value
                else:
                    scalars[f.name] = value
            header["terms"].append({"type": type(term).__name__, "scalars": scalars})
        header["sha256"] = array_checksum(arrays)
        arrays["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
        _atomic_savez(path, arrays)

    @classmethod
    def load(cls, path: str | os.PathLike) -> System:
        """Read a system written by :meth:`save`.

        Raises
        ------
        ValueError
            If the file is not a bencao System file or was written by a newer format.
        """
        data, header = read_npz(path, "not a bencao System file, or a damaged or truncated one")
        if header.get("format") != "bencao.System" or header.get("version", 0) > FORMAT_VERSION:
            raise ValueError(f"{path}: not a bencao System file of a version this bencao reads")
        terms = []
        for index, entry in enumerate(header["terms"]):
            term_type = TERM_TYPES.get(entry["type"])
            if term_type is None:
                raise ValueError(f"{path}: unknown term type {entry['type']!r}")
            kwargs = dict(entry["scalars"])
            for f in dataclasses.fields(term_type):
                key = f"term{index}.{f.name}"
                if key in data:
                    kwargs[f.name] = data[key]
            terms.append(term_type(**kwargs))
        vsites = VirtualSites(
            **{f.name: data[f"virtual_sites.{f.name}"] for f in dataclasses.fields(VirtualSites)}
        )
        box = header["box"]
        return cls(
            masses=data["masses"],
            terms=tuple(terms),
            constraint_atoms=data["constraint_atoms"],
            constraint_lengths=data["constraint_lengths"],
            virtual_sites=vsites,
            box=None if box is None else np.array(box, dtype=np.float64),
            cm_motion_removal=header["cm_motion_removal"],
        )


def _atomic_savez(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> None:
    """Write an uncompressed ``.npz`` to a temporary file beside ``path`` and rename it in place."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=folder)
    try:
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, **arrays)
            handle.flush()
            os.fsync(handle.fileno())
        publish(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
