"""Atomic file writes and our State file (positions, velocities, box) as ``.npz``.

Every output bencao writes goes to a temporary file in the destination folder, is flushed to disk
and renamed over the final name: a crash, a kill or a full disk never leaves a truncated file that
looks complete under the final name.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import tempfile
import zipfile
import zlib

import numpy as np

from bencao.errors import InputFileError, OutputError

STATE_FORMAT_VERSION = 1


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def publish(tmp: str, path: str) -> None:
    """Give a finished temporary file the permissions a new file would get, and rename it in
    place (``mkstemp`` creates files readable by their owner only)."""
    os.chmod(tmp, 0o666 & ~_umask())
    os.replace(tmp, path)


def describe_os_error(exc: OSError, path) -> str:
    """One line naming the path and what went wrong, with a hint for the common cases."""
    reason = exc.strerror or str(exc)
    if exc.errno == errno.ENOSPC:
        reason = "the disk is full"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        reason = "permission denied (choose a folder you can write to)"
    elif exc.errno == errno.ENOTDIR:
        reason = "a file is in the way where a folder is needed"
    return f"cannot write {os.fspath(path)}: {reason}"


@contextlib.contextmanager
def atomic_write(path, mode: str = "wb"):
    """Open a temporary file beside ``path``; on success fsync it and rename it to ``path``.

    On any exception the temporary file is removed and ``path`` is left as it was.  OS errors
    (permissions, full disk) are raised as :class:`bencao.errors.OutputError` naming ``path``.

    Examples
    --------
    >>> with atomic_write("out.csv", "w") as handle:   # doctest: +SKIP
    ...     handle.write("a,b\\n")
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=os.path.basename(path), dir=folder)
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        publish(tmp, path)
        tmp = None
    except OSError as exc:
        raise OutputError(describe_os_error(exc, path)) from exc
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def ensure_output_folder(folder) -> str:
    """Create ``folder`` (and parents) and check that files can be written in it.

    Raises
    ------
    bencao.errors.OutputError
        If the folder cannot be created or written to.
    """
    folder = os.fspath(folder)
    try:
        os.makedirs(folder, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OutputError(describe_os_error(exc, folder)) from exc
    return folder


def array_checksum(arrays: dict) -> str:
    """SHA-256 over the names, dtypes, shapes and bytes of ``arrays`` (in name order)."""
    digest = hashlib.sha256()
    for key in sorted(arrays):
        value = np.ascontiguousarray(arrays[key])
        digest.update(f"{key}|{value.dtype.str}|{value.shape}|".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def save_npz(path, arrays: dict, header: dict) -> None:
    """Write ``arrays`` plus a JSON ``header`` as an uncompressed ``.npz``, atomically.

    The header carries a SHA-256 of the arrays (``sha256``), which :func:`load_npz` checks: a
    file damaged after it was written (a truncated copy, a bad disk) is refused by name.
    """
    arrays = dict(arrays)
    header = dict(header, sha256=array_checksum(arrays))
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    with atomic_write(path, "wb") as handle:
        np.savez(handle, **arrays)


#: What NumPy raises on a truncated or corrupted ``.npz`` (a zip archive).
DAMAGED_NPZ_ERRORS = (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile, zlib.error)


def read_npz(path, unreadable: str = "not a readable bencao file, damaged or truncated"):
    """(arrays, header) of an ``.npz`` with a JSON header, read whole and checked against the
    header's SHA-256 when it has one; ``unreadable`` says what a file that cannot be read is.

    Raises
    ------
    ValueError
        Naming ``path``: unreadable, damaged or truncated, or contents that do not match the
        checksum.
    """
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
        header = json.loads(bytes(arrays.pop("header")).decode())
    except DAMAGED_NPZ_ERRORS as exc:
        raise ValueError(f"{os.fspath(path)}: {unreadable} ({type(exc).__name__}: {exc})") from exc
    if "sha256" in header and header["sha256"] != array_checksum(arrays):
        raise ValueError(f"{os.fspath(path)}: damaged (its checksum does not match its contents)")
    return arrays, header


def load_npz(path, expected_format: str, version: int) -> tuple[dict, dict]:
    """Read a file written by :func:`save_npz`; return (arrays, header).

    Raises
    ------
    bencao.errors.InputFileError
        If the file is missing, unreadable, damaged (truncated, or its checksum does not match),
        of another format or of a newer version.
    """
    try:
        arrays, header = read_npz(path)
    except ValueError as exc:
        raise InputFileError(str(exc)) from exc
    if header.get("format") != expected_format or header.get("version", 0) > version:
        raise InputFileError(
            f"{os.fspath(path)}: not a {expected_format} file of a version this bencao reads"
        )
    return arrays, header


def save_state(path, positions, box=None, velocities=None, step: int = 0, time: float = 0.0) -> None:
    """Write positions (nm), optional velocities (nm/ps) and box (nm) to a State file, atomically."""
    arrays = {"positions": np.asarray(positions, np.float64)}
    if velocities is not None:
        arrays["velocities"] = np.asarray(velocities, np.float64)
    if box is not None:
        arrays["box"] = np.asarray(box, np.float64)
    save_npz(path, arrays, {"format": "bencao.State", "version": STATE_FORMAT_VERSION,
                            "step": int(step), "time": float(time)})


def load_state(path) -> dict:
    """Read a State file: a dict with positions, velocities (or None), box (or None), step, time."""
    arrays, header = load_npz(path, "bencao.State", STATE_FORMAT_VERSION)
    return {
        "positions": arrays["positions"],
        "velocities": arrays.get("velocities"),
        "box": arrays.get("box"),
        "step": int(header.get("step", 0)),
        "time": float(header.get("time", 0.0)),
    }
