"""Non-bonded terms: Coulomb + Lennard-Jones (NonbondedForce) and type-tabulated pair potentials."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bencao.forces.registry import term_record

#: Non-bonded methods, with OpenMM's names.
METHODS = ("NoCutoff", "CutoffNonPeriodic", "CutoffPeriodic", "Ewald", "PME")
PERIODIC_METHODS = ("CutoffPeriodic", "Ewald", "PME")


@term_record
@dataclass(frozen=True)
class Nonbonded:
    """Coulomb and Lennard-Jones with Lorentz-Berthelot mixing (OpenMM NonbondedForce).

    Parameters
    ----------
    charges : (N,) float64 array
        Partial charges, e.
    sigma : (N,) float64 array
        LJ sigma, nm.
    epsilon : (N,) float64 array
        LJ well depth, kJ/mol.
    exception_atoms : (M, 2) int64 array
        Pairs whose interaction is replaced by the exception parameters (1-2, 1-3 exclusions with
        zero parameters, scaled 1-4 pairs).  Excluded from the regular pair sum.
    exception_chargeprod : (M,) float64 array
        Charge product, e^2.
    exception_sigma : (M,) float64 array
        Sigma, nm.
    exception_epsilon : (M,) float64 array
        Epsilon, kJ/mol.
    method : str
        One of ``METHODS``.
    cutoff : float
        Cutoff distance, nm (ignored for NoCutoff).
    switch_distance : float
        LJ switching starts here, nm; 0 means no switching function.
    reaction_field_dielectric : float
        Dielectric constant beyond the cutoff for the Cutoff methods.
    ewald_error_tolerance : float
        Relative error tolerance that sets alpha and grid when they are automatic.
    ewald_alpha : float
        Ewald separation parameter, 1/nm; 0 means automatic (from the tolerance, as OpenMM).
    ewald_grid : (3,) int64 array
        PME grid (or Ewald kmax for Ewald); zeros mean automatic.
    dispersion_correction : bool
        Add the analytic long-range dispersion correction (periodic methods only).
    exceptions_use_periodic : bool
        Apply minimum image to exceptions.
    """

    charges: np.ndarray
    sigma: np.ndarray
    epsilon: np.ndarray
    exception_atoms: np.ndarray
    exception_chargeprod: np.ndarray
    exception_sigma: np.ndarray
    exception_epsilon: np.ndarray
    method: str
    cutoff: float
    switch_distance: float
    reaction_field_dielectric: float
    ewald_error_tolerance: float
    ewald_alpha: float
    ewald_grid: np.ndarray
    dispersion_correction: bool
    exceptions_use_periodic: bool
    name = "NonbondedForce"

    @property
    def periodic(self) -> bool:
        """True when the method uses periodic boundary conditions."""
        return self.method in PERIODIC_METHODS


@term_record
@dataclass(frozen=True)
class TabulatedPairs:
    """E = A(ti,tj)/r^12 - B(ti,tj)/r^6 - C(ti,tj)/r^4 over all non-excluded pairs.

    The CustomNonbondedForce forms OpenMM's app layer writes for CHARMM NBFIX, AMBER LJ tables and
    AMBER 12-6-4 ion terms (acoef/bcoef/ccoef tables indexed by per-atom type).

    Parameters
    ----------
    types : (N,) int64 array
        Type of each particle.
    c12 : (T, T) float64 array
        Repulsive coefficient A, kJ/mol nm^12.
    c6 : (T, T) float64 array
        Dispersion coefficient B, kJ/mol nm^6.
    c4 : (T, T) float64 array
        Ion-induced-dipole coefficient C, kJ/mol nm^4.
    exclusions : (M, 2) int64 array
        Excluded pairs.
    method : str
        "NoCutoff", "CutoffNonPeriodic" or "CutoffPeriodic".
    cutoff : float
        Cutoff distance, nm.
    switch_distance : float
        Switching starts here, nm; 0 means none.
    long_range_correction : bool
        Add the analytic long-range correction (periodic only).
    """

    types: np.ndarray
    c12: np.ndarray
    c6: np.ndarray
    c4: np.ndarray
    exclusions: np.ndarray
    method: str
    cutoff: float
    switch_distance: float
    long_range_correction: bool
    name = "CustomNonbondedForce"

    @property
    def periodic(self) -> bool:
        """True when the method uses periodic boundary conditions."""
        return self.method == "CutoffPeriodic"
