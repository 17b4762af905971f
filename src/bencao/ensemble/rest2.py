"""REST2: replica exchange with solute tempering as a transformation of the System.

State k scales the solute's part of the Hamiltonian by lambda_k = T0 / T_k (Wang, Friesner and
Berne, J. Phys. Chem. B 115, 9431 (2011)): solute charges by sqrt(lambda) and solute LJ well
depths by lambda, so that with the geometric combination rule solute-solute non-bonded
interactions scale by lambda and solute-solvent ones by sqrt(lambda); torsions (proper, improper,
CMAP) with every atom in the solute by lambda, those that straddle the boundary by sqrt(lambda).
Bonds, angles and solvent-solvent interactions are untouched, so the energy of state k is

    U_k = lambda U_ss + sqrt(lambda) U_sw + U_ww

and only the solute is "heated" to T0 / lambda, whatever the size of the solvent.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from bencao.errors import JobFileError
from bencao.forces import (
    CMAPTorsions,
    HarmonicImpropers,
    LJPairs,
    Nonbonded,
    PeriodicTorsions,
)
from bencao.selections import is_ligand

#: Terms REST2 leaves as they are: bonds and angles (stiff, and not what barriers are made of),
#: position restraints (the same in every state).
_UNSCALED = ("HarmonicBonds", "HarmonicAngles", "PositionRestraints")


def solute_atoms(topology, solute: str) -> np.ndarray:
    """Indices of the REST2 solute.

    Parameters
    ----------
    topology : mdtraj.Topology
    solute : str
        "ligand" (every atom of the ligand residues), "protein", or an MDTraj selection.

    Raises
    ------
    bencao.errors.JobFileError
        If the selection is invalid or selects nothing.
    """
    if solute == "ligand":
        atoms = [a.index for a in topology.atoms if is_ligand(a.residue)]
    elif solute == "protein":
        atoms = [a.index for a in topology.atoms if a.residue.is_protein]
    else:
        try:
            atoms = topology.select(solute)
        except Exception as exc:  # noqa: BLE001 (MDTraj raises several kinds on a bad selection)
            raise JobFileError(f"[ensemble] 'solute' {solute!r} is not an MDTraj selection "
                               f"({exc})") from None
    atoms = np.asarray(atoms, np.int64)
    if len(atoms) == 0:
        raise JobFileError(f"[ensemble] 'solute' {solute!r} selects no atoms of this system")
    return atoms


def scale_solute(system, atoms, scale: float):
    """The System of a REST2 state: the solute's Hamiltonian scaled by ``scale`` (lambda).

    Parameters
    ----------
    system : bencao.System
    atoms : (M,) int array
        The solute's particles.
    scale : float
        lambda in (0, 1]; 1 returns ``system`` itself.

    Raises
    ------
    bencao.errors.JobFileError
        For a term REST2 cannot scale yet (tabulated pair potentials).
    """
    if scale == 1.0:
        return system
    if not 0.0 < scale <= 1.0:
        raise ValueError(f"the REST2 scale must be in (0, 1], got {scale}")
    solute = np.zeros(system.n_particles, bool)
    solute[np.asarray(atoms, np.int64)] = True
    terms = []
    for term in system.terms:
        kind = type(term).__name__
        if isinstance(term, Nonbonded):
            term = _scale_nonbonded(term, solute, scale)
        elif isinstance(term, (PeriodicTorsions, HarmonicImpropers)):
            term = dataclasses.replace(term, k=term.k * _factors(term.atoms, solute, scale))
        elif isinstance(term, LJPairs):
            factors = _factors(term.atoms, solute, scale)
            term = dataclasses.replace(term, c12=term.c12 * factors, c6=term.c6 * factors)
        elif isinstance(term, CMAPTorsions):
            term = _scale_cmap(term, solute, scale)
        elif kind not in _UNSCALED:
            raise JobFileError(f"REST2 cannot scale the system's {term.name} yet; "
                               "use exchange = 'temperature'")
        terms.append(term)
    return dataclasses.replace(system, terms=tuple(terms))


def _factors(atoms: np.ndarray, solute: np.ndarray, scale: float) -> np.ndarray:
    """Per-interaction factor: lambda if every atom is solute, sqrt(lambda) if some are, else 1."""
    inside = solute[np.asarray(atoms, np.int64)]
    if inside.ndim == 1:
        inside = inside[:, None]
    every, some = inside.all(axis=1), inside.any(axis=1)
    return np.where(every, scale, np.where(some, math.sqrt(scale), 1.0))


def _scale_nonbonded(term: Nonbonded, solute: np.ndarray, scale: float) -> Nonbonded:
    root = math.sqrt(scale)
    factors = _factors(term.exception_atoms, solute, scale)
    # An exception's charge product is q_i q_j and its epsilon sqrt(eps_i eps_j) (OpenMM's 1-4
    # rule), so both take the pair's factor, as the regular pairs do through the per-atom values.
    return dataclasses.replace(
        term,
        charges=np.where(solute, term.charges * root, term.charges),
        epsilon=np.where(solute, term.epsilon * scale, term.epsilon),
        exception_chargeprod=term.exception_chargeprod * factors,
        exception_epsilon=term.exception_epsilon * factors,
    )


def _scale_cmap(term: CMAPTorsions, solute: np.ndarray, scale: float) -> CMAPTorsions:
    """Scaled copies of the maps, for the torsion pairs inside (lambda) or across (sqrt) the
    solute boundary."""
    factors = _factors(term.atoms, solute, scale)
    sizes, offsets, energies = list(term.map_sizes), list(term.map_offsets), [term.map_energies]
    torsion_map = term.torsion_map.copy()
    end = len(term.map_energies)
    n_maps = len(term.map_sizes)
    copies = {}
    for index in np.flatnonzero(factors != 1.0):
        key = (int(term.torsion_map[index]), float(factors[index]))
        if key not in copies:
            source, factor = key
            start, size = int(term.map_offsets[source]), int(term.map_sizes[source])
            energies.append(term.map_energies[start:start + size * size] * factor)
            sizes.append(size)
            offsets.append(end)
            end += size * size
            copies[key] = n_maps + len(copies)
        torsion_map[index] = copies[key]
    return dataclasses.replace(term, map_sizes=np.array(sizes, np.int64),
                               map_offsets=np.array(offsets, np.int64),
                               map_energies=np.concatenate(energies), torsion_map=torsion_map)
