"""Exclusion tables: which particle pairs a pair term skips, shared by every backend."""

from __future__ import annotations

import numpy as np


def exclusion_table(n_particles: int, pairs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric CSR table of excluded partners.

    Parameters
    ----------
    n_particles : int
        Number of particles.
    pairs : (M, 2) int array
        Excluded pairs (either order, duplicates allowed).

    Returns
    -------
    start : (N + 1,) int64 array
    partners : (2M,) int64 array
        Partners of atom a are ``partners[start[a]:start[a + 1]]``, sorted.
    """
    pairs = np.asarray(pairs, np.int64).reshape(-1, 2)
    a = np.concatenate([pairs[:, 0], pairs[:, 1]])
    b = np.concatenate([pairs[:, 1], pairs[:, 0]])
    keys = np.unique(a * n_particles + b)
    a, b = keys // n_particles, keys % n_particles
    start = np.zeros(n_particles + 1, np.int64)
    np.add.at(start, a + 1, 1)
    return np.cumsum(start), b.astype(np.int64)
