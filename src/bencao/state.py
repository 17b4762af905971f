"""A snapshot of a simulation: what ``Simulation.state`` returns."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class State:
    """Positions, velocities, box and energies at one step.

    Attributes
    ----------
    positions : (N, 3) float64 array
        Positions, nm (not wrapped into the box: molecules stay whole).
    velocities : (N, 3) float64 array
        Velocities as the integrator stores them, nm/ps (half a step behind the positions for
        ``VerletIntegrator``, as in OpenMM).
    box : (3, 3) float64 array or None
        Periodic box vectors as rows, nm.
    step : int
        Steps taken.
    time : float
        Simulated time, ps.
    potential_energy : float
        kJ/mol.
    kinetic_energy : float
        kJ/mol, with OpenMM's convention for the integrator.
    temperature : float
        Kinetic temperature 2 K / (Ndf k_B), K.
    degrees_of_freedom : int
        3 x (particles with mass) - constraints - 3 if centre-of-mass motion is removed.
    volume : float or None
        Box volume, nm^3.
    density : float or None
        Mass density, g/cm^3.
    conserved_energy : float
        The quantity the integrator conserves (K + U, plus the thermostat's share for
        Nosé–Hoover), kJ/mol.
    """

    positions: np.ndarray
    velocities: np.ndarray
    box: np.ndarray | None
    step: int
    time: float
    potential_energy: float
    kinetic_energy: float
    temperature: float
    degrees_of_freedom: int
    volume: float | None
    density: float | None
    conserved_energy: float

    @property
    def total_energy(self) -> float:
        """Potential + kinetic energy, kJ/mol."""
        return self.potential_energy + self.kinetic_energy
