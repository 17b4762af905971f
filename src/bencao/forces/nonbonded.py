"""Non-bonded terms: Coulomb + Lennard-Jones (NonbondedForce) and type-tabulated pair potentials."""

from __future__ import annotations

import dataclasses
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
    offset_names : tuple of str
        Global parameters that shift particle and exception parameters (OpenMM's parameter
        offsets, the alchemical form of NonbondedForce); empty for none.
    offset_values : tuple of float
        Their default values.
    particle_offsets : (K, 2) int64 array
        (parameter index into ``offset_names``, particle) of each particle offset.
    particle_offset_scales : (K, 3) float64 array
        Charge (e), sigma (nm) and epsilon (kJ/mol) added per unit of the parameter.
    exception_offsets : (L, 2) int64 array
        (parameter index, exception index) of each exception offset.
    exception_offset_scales : (L, 3) float64 array
        Charge product (e^2), sigma (nm) and epsilon (kJ/mol) added per unit of the parameter.
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
    offset_names: tuple = ()
    offset_values: tuple = ()
    particle_offsets: np.ndarray = None
    particle_offset_scales: np.ndarray = None
    exception_offsets: np.ndarray = None
    exception_offset_scales: np.ndarray = None
    name = "NonbondedForce"

    def __post_init__(self):
        object.__setattr__(self, "offset_names", tuple(str(n) for n in self.offset_names))
        object.__setattr__(self, "offset_values", tuple(float(v) for v in self.offset_values))
        for key, dtype, width in (("particle_offsets", np.int64, 2),
                                  ("particle_offset_scales", np.float64, 3),
                                  ("exception_offsets", np.int64, 2),
                                  ("exception_offset_scales", np.float64, 3)):
            value = getattr(self, key)
            value = np.zeros((0, width), dtype) if value is None else value
            object.__setattr__(self, key, np.asarray(value, dtype).reshape(-1, width))

    @property
    def periodic(self) -> bool:
        """True when the method uses periodic boundary conditions."""
        return self.method in PERIODIC_METHODS

    @property
    def has_offsets(self) -> bool:
        """True when global parameters shift some particle or exception parameters."""
        return bool(self.offset_names)

    def at(self, values: dict) -> Nonbonded:
        """The plain term (no offsets) at global parameter ``values`` (name -> value; missing
        names take their defaults): parameter = base + sum of value * scale, as OpenMM."""
        current = np.array([values.get(n, d) for n, d in zip(self.offset_names,
                                                            self.offset_values)], np.float64)
        particles = np.stack([self.charges, self.sigma, self.epsilon], axis=1).astype(np.float64)
        exceptions = np.stack([self.exception_chargeprod, self.exception_sigma,
                               self.exception_epsilon], axis=1).astype(np.float64)
        for table, offsets, scales in ((particles, self.particle_offsets,
                                        self.particle_offset_scales),
                                       (exceptions, self.exception_offsets,
                                        self.exception_offset_scales)):
            for (parameter, index), scale in zip(offsets, scales):
                table[index] += current[parameter] * scale
        return dataclasses.replace(
            self, charges=particles[:, 0], sigma=particles[:, 1], epsilon=particles[:, 2],
            exception_chargeprod=exceptions[:, 0], exception_sigma=exceptions[:, 1],
            exception_epsilon=exceptions[:, 2], offset_names=(), offset_values=(),
            particle_offsets=None, particle_offset_scales=None, exception_offsets=None,
            exception_offset_scales=None)


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
