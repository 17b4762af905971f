"""Bonded terms: parameter tables for bonds, angles, torsions, impropers, CMAP and LJ pairs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bencao.forces.registry import term_record


@term_record
@dataclass(frozen=True)
class HarmonicBonds:
    """E = 1/2 k (r - length)^2 per bond (OpenMM HarmonicBondForce).

    Parameters
    ----------
    atoms : (M, 2) int64 array
        Particle indices of each bond.
    length : (M,) float64 array
        Equilibrium length, nm.
    k : (M,) float64 array
        Force constant, kJ/mol/nm^2.
    """

    atoms: np.ndarray
    length: np.ndarray
    k: np.ndarray
    name = "HarmonicBondForce"


@term_record
@dataclass(frozen=True)
class HarmonicAngles:
    """E = 1/2 k (theta - angle)^2 per angle (OpenMM HarmonicAngleForce).

    Parameters
    ----------
    atoms : (M, 3) int64 array
        Particle indices; the middle one is the vertex.
    angle : (M,) float64 array
        Equilibrium angle, rad.
    k : (M,) float64 array
        Force constant, kJ/mol/rad^2.
    """

    atoms: np.ndarray
    angle: np.ndarray
    k: np.ndarray
    name = "HarmonicAngleForce"


@term_record
@dataclass(frozen=True)
class PeriodicTorsions:
    """E = k (1 + cos(n phi - phase)) per torsion (OpenMM PeriodicTorsionForce).

    Parameters
    ----------
    atoms : (M, 4) int64 array
        Particle indices.
    periodicity : (M,) int64 array
        Multiplicity n.
    phase : (M,) float64 array
        Phase, rad.
    k : (M,) float64 array
        Barrier constant, kJ/mol.
    """

    atoms: np.ndarray
    periodicity: np.ndarray
    phase: np.ndarray
    k: np.ndarray
    name = "PeriodicTorsionForce"


@term_record
@dataclass(frozen=True)
class HarmonicImpropers:
    """E = k d^2 with d = theta - theta0 (CustomTorsionForce, the harmonic improper form).

    With ``wrap`` the difference is taken on the circle, d = min(|dtheta|, 2 pi - |dtheta|), as
    CHARMM psf files and GROMACS type-2 dihedrals ask; without it, literally (charmm36.xml).  The
    torsion angle theta is OpenMM's, in (-pi, pi].

    Parameters
    ----------
    atoms : (M, 4) int64 array
        Particle indices.
    theta0 : (M,) float64 array
        Equilibrium improper angle, rad.
    k : (M,) float64 array
        Force constant including any prefactor of the expression (k of E = k d^2), kJ/mol/rad^2.
    wrap : bool
        Take the periodic (minimum) difference.
    name : str
        Energy key (the OpenMM force class).
    """

    atoms: np.ndarray
    theta0: np.ndarray
    k: np.ndarray
    wrap: bool
    name = "CustomTorsionForce"


@term_record
@dataclass(frozen=True)
class CMAPTorsions:
    """CMAP correction maps on pairs of torsions (OpenMM CMAPTorsionForce).

    Parameters
    ----------
    map_sizes : (K,) int64 array
        Grid points per dimension of each map.
    map_offsets : (K,) int64 array
        Start of each map inside ``map_energies``.
    map_energies : (sum size^2,) float64 array
        Energies, kJ/mol, in OpenMM's layout: value for (phi_i, psi_j) at ``offset + i + size * j``,
        with grid point i at angle i * 2 pi / size (from 0, angles taken modulo 2 pi; OpenMM's
        convention — CHARMM files start at -180 degrees and are shifted by size/2 on reading).
    torsion_map : (M,) int64 array
        Map index of each torsion pair.
    atoms : (M, 8) int64 array
        Four atoms of phi then four atoms of psi.
    """

    map_sizes: np.ndarray
    map_offsets: np.ndarray
    map_energies: np.ndarray
    torsion_map: np.ndarray
    atoms: np.ndarray
    name = "CMAPTorsionForce"


@term_record
@dataclass(frozen=True)
class LJPairs:
    """E = c12 / r^12 - c6 / r^6 between listed pairs (CustomBondForce: scaled 1-4 LJ of CHARMM XML
    force fields, GROMACS pairs).

    Parameters
    ----------
    atoms : (M, 2) int64 array
        Particle indices.
    c12 : (M,) float64 array
        Repulsive coefficient, kJ/mol nm^12.
    c6 : (M,) float64 array
        Dispersion coefficient, kJ/mol nm^6.
    """

    atoms: np.ndarray
    c12: np.ndarray
    c6: np.ndarray
    name = "CustomBondForce"


@term_record
@dataclass(frozen=True)
class PositionRestraints:
    """E = 1/2 k |x - x0|^2 per restrained particle, |x - x0| the periodic minimum-image distance
    (GROMACS position restraints; OpenMM's CustomExternalForce
    ``0.5*k*periodicdistance(x,y,z,x0,y0,z0)^2``).

    The reference positions stay fixed when a barostat rescales the box, as in OpenMM.

    Parameters
    ----------
    atoms : (M,) int64 array
        Restrained particle indices.
    reference : (M, 3) float64 array
        Reference positions, nm.
    k : (M,) float64 array
        Force constants, kJ/mol/nm^2.
    """

    atoms: np.ndarray
    reference: np.ndarray
    k: np.ndarray
    name = "PositionRestraints"
