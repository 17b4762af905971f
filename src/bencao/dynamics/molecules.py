"""Molecules: groups of particles joined by bonded terms, exceptions, constraints or virtual sites.

The Monte Carlo barostat moves molecules rigidly, so it must know them; OpenMM finds them the
same way (every pair a force reports as bonded, plus constraints and virtual-site parents).
"""

from __future__ import annotations

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components


def consecutive_pairs(atoms: np.ndarray) -> np.ndarray:
    """Consecutive pairs (a0-a1, a1-a2, ...) of each row of an (M, k) index table."""
    atoms = np.asarray(atoms, np.int64)
    if atoms.ndim != 2 or atoms.shape[1] < 2 or len(atoms) == 0:
        return np.zeros((0, 2), np.int64)
    pairs = [atoms[:, [k, k + 1]] for k in range(atoms.shape[1] - 1)]
    return np.concatenate(pairs)


def bonded_pairs(system) -> np.ndarray:
    """All particle pairs that tie two particles into one molecule, (P, 2) int64."""
    pairs = [np.asarray(system.constraint_atoms, np.int64).reshape(-1, 2)]
    for term in system.terms:
        if hasattr(term, "atoms"):
            pairs.append(consecutive_pairs(term.atoms))
        if hasattr(term, "exception_atoms"):
            pairs.append(np.asarray(term.exception_atoms, np.int64).reshape(-1, 2))
    sites = system.virtual_sites
    for column in range(sites.parents.shape[1] if len(sites) else 0):
        parent = sites.parents[:, column]
        used = parent >= 0
        pairs.append(np.stack([sites.site[used], parent[used]], axis=1))
    return np.concatenate(pairs).astype(np.int64)


def find_molecules(system) -> tuple[np.ndarray, np.ndarray]:
    """Molecules as a CSR table.

    Parameters
    ----------
    system : bencao.System
        The system.

    Returns
    -------
    start : (M + 1,) int64 array
        Molecule m owns ``atoms[start[m]:start[m + 1]]``.
    atoms : (N,) int64 array
        Particle indices grouped by molecule, ascending within each molecule; molecules ordered
        by their first particle.
    """
    n = system.n_particles
    pairs = bonded_pairs(system)
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    # Renumber molecules by their lowest particle so the order does not depend on SciPy.
    first = np.full(labels.max() + 1 if n else 0, n, np.int64)
    np.minimum.at(first, labels, np.arange(n))
    rank = np.empty_like(first)
    rank[np.argsort(first, kind="stable")] = np.arange(len(first))
    labels = rank[labels]
    atoms = np.argsort(labels, kind="stable").astype(np.int64)
    start = np.zeros(len(first) + 1, np.int64)
    np.cumsum(np.bincount(labels, minlength=len(first)), out=start[1:])
    return start, atoms
