"""Hydrogen-mass repartitioning on a System, as ``hydrogenMass=`` in OpenMM's ``createSystem``.

Every hydrogen bonded to a heavy atom gets the requested mass; the difference is taken from that
heavy atom, so the total mass (and the density) is unchanged.  Water hydrogens are left alone,
as OpenMM does (rigid water is solved by SETTLE, and its masses are part of the water model).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from bencao.dynamics.molecules import consecutive_pairs, find_molecules
from bencao.forces import HarmonicBonds

#: A particle whose mass lies in this range (amu) is a hydrogen (1.008 amu; deuterium is 2.014).
HYDROGEN_MASS_RANGE = (0.9, 1.1)


def _bonds(system) -> np.ndarray:
    """Pairs joined by a harmonic bond or a constraint, (B, 2) int64."""
    pairs = [np.asarray(system.constraint_atoms, np.int64).reshape(-1, 2)]
    for term in system.terms:
        if isinstance(term, HarmonicBonds):
            pairs.append(consecutive_pairs(term.atoms))
    return np.concatenate(pairs)


def _water_particles(system, is_hydrogen) -> np.ndarray:
    """Boolean mask of particles in water molecules (one oxygen-mass atom and two hydrogens)."""
    start, atoms = find_molecules(system)
    masses = system.masses
    mask = np.zeros(system.n_particles, bool)
    for m in range(len(start) - 1):
        members = atoms[start[m]:start[m + 1]]
        massive = members[masses[members] > 0]
        if len(massive) == 3 and is_hydrogen[massive].sum() == 2:
            heavy = massive[~is_hydrogen[massive]][0]
            if 15.0 < masses[heavy] < 17.0:
                mask[members] = True
    return mask


def repartition_hydrogen_mass(system, hydrogen_mass: float = 1.5):
    """A copy of ``system`` with hydrogen masses set to ``hydrogen_mass`` (amu).

    Parameters
    ----------
    system : bencao.System
        The system (unchanged).
    hydrogen_mass : float
        New mass of every non-water hydrogen, amu; 1.5 with 4 fs, 3-4 for 4-5 fs.

    Returns
    -------
    bencao.System

    Raises
    ------
    ValueError
        If a heavy atom would be left with a mass below 1 amu.
    """
    hydrogen_mass = float(hydrogen_mass)
    if not hydrogen_mass > 0:
        raise ValueError(f"hydrogen_mass must be positive (amu), got {hydrogen_mass!r}")
    masses = np.array(system.masses, dtype=np.float64)
    low, high = HYDROGEN_MASS_RANGE
    is_hydrogen = (masses > low) & (masses < high)
    water = _water_particles(system, is_hydrogen)
    for a, b in _bonds(system):
        if is_hydrogen[a]:
            a, b = b, a
        if is_hydrogen[b] and not is_hydrogen[a] and masses[a] > 0 and not water[b]:
            transfer = hydrogen_mass - masses[b]
            masses[b] = hydrogen_mass
            masses[a] -= transfer
            if masses[a] < 1.0:
                raise ValueError(f"hydrogen mass {hydrogen_mass} amu leaves particle {a} with "
                                 f"{masses[a]:.3f} amu; use a smaller hydrogen mass")
    return dataclasses.replace(system, masses=masses)
