"""Monte Carlo barostat (isotropic), as OpenMM's ``MonteCarloBarostat``.

Every ``frequency`` steps the box volume is changed by a random amount, every molecule's centre
is scaled with the box (molecules move rigidly), and the move is accepted with the Metropolis
probability of the isothermal–isobaric ensemble,

    w = dU + P dV - N_mol kT ln(V_new / V),   accept if w <= 0 or u < exp(-w / kT).

The width of the proposal adapts as in OpenMM: starting at 1% of the volume, every 10 attempts it
shrinks by 1.1 when fewer than 25% were accepted and grows by 1.1 (to at most 30% of the volume)
when more than 75% were.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from bencao.constants import BAR, BOLTZMANN


@dataclass
class MonteCarloBarostat:
    """Isotropic Monte Carlo pressure coupling.

    Parameters
    ----------
    pressure : float
        Target pressure, bar.
    temperature : float
        Temperature that enters the acceptance test, K (the thermostat's).
    frequency : int
        Attempt a volume move every this many steps.
    """

    pressure: float
    temperature: float
    frequency: int = 25

    def __post_init__(self):
        self.pressure = float(self.pressure)
        if not math.isfinite(self.pressure):
            raise ValueError(f"pressure must be finite (bar), got {self.pressure!r}")
        self.temperature = float(self.temperature)
        if not math.isfinite(self.temperature) or self.temperature <= 0:
            raise ValueError(f"temperature must be positive (K), got {self.temperature!r}")
        if int(self.frequency) != self.frequency or self.frequency < 1:
            raise ValueError(f"frequency must be a positive whole number of steps, got {self.frequency!r}")
        self.frequency = int(self.frequency)


class VolumeMoves:
    """The adaptive state of a Monte Carlo barostat during a run.

    Parameters
    ----------
    barostat : MonteCarloBarostat
        Settings.
    volume : float
        Initial box volume, nm^3.
    n_molecules : int
        Number of molecules moved rigidly.
    """

    def __init__(self, barostat: MonteCarloBarostat, volume: float, n_molecules: int):
        self.barostat = barostat
        self.kt = BOLTZMANN * barostat.temperature
        self.pressure = barostat.pressure * BAR
        self.n_molecules = n_molecules
        self.volume_scale = 0.01 * volume
        self.attempted = 0
        self.accepted = 0

    def propose(self, volume: float, uniform: float) -> float:
        """New volume (nm^3) for a uniform random number in [0, 1)."""
        return volume + self.volume_scale * 2.0 * (uniform - 0.5)

    def accept(self, energy_change: float, volume: float, new_volume: float, uniform: float) -> bool:
        """Metropolis test for a move from ``volume`` to ``new_volume`` (nm^3), energy in kJ/mol."""
        if not math.isfinite(energy_change) or new_volume <= 0:
            return False
        w = (energy_change + self.pressure * (new_volume - volume)
             - self.n_molecules * self.kt * math.log(new_volume / volume))
        return w <= 0 or uniform < math.exp(-w / self.kt)

    def record(self, accepted: bool, volume: float) -> None:
        """Count an attempt and adapt the proposal width every 10 attempts."""
        self.attempted += 1
        self.accepted += int(accepted)
        if self.attempted >= 10:
            if self.accepted < 0.25 * self.attempted:
                self.volume_scale /= 1.1
            elif self.accepted > 0.75 * self.attempted:
                self.volume_scale = min(self.volume_scale * 1.1, 0.3 * volume)
            self.attempted = 0
            self.accepted = 0

    def get_state(self) -> dict:
        """Adaptive state, for checkpoints."""
        return {"volume_scale": self.volume_scale, "attempted": self.attempted, "accepted": self.accepted}

    def set_state(self, state: dict) -> None:
        """Restore what ``get_state`` returned."""
        self.volume_scale = float(state["volume_scale"])
        self.attempted = int(state["attempted"])
        self.accepted = int(state["accepted"])


def box_volume(box: np.ndarray) -> float:
    """Volume of a reduced triclinic box (rows a, b, c), nm^3."""
    return float(box[0, 0] * box[1, 1] * box[2, 2])
