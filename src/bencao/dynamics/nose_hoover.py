"""The Nosé–Hoover chain of ``NoseHooverIntegrator`` (Martyna, Tuckerman & Klein, 1996).

The chain is propagated for half a time step before and after each velocity-Verlet step, with
``chain_steps`` substeps and Suzuki–Yoshida weights; it returns the factor by which the particle
velocities are scaled, so the particles are touched once.
"""

from __future__ import annotations

import math

import numpy as np

from bencao.constants import BOLTZMANN


def suzuki_yoshida_weights(order: int) -> np.ndarray:
    """Weights of the Suzuki–Yoshida factorisation of the given order (1, 3, 5 or 7)."""
    if order == 1:
        return np.array([1.0])
    if order == 3:
        w = 1.0 / (2.0 - 2.0 ** (1.0 / 3.0))
        return np.array([w, 1.0 - 2.0 * w, w])
    if order == 5:
        w = 1.0 / (4.0 - 4.0 ** (1.0 / 3.0))
        return np.array([w, w, 1.0 - 4.0 * w, w, w])
    if order == 7:
        w1, w2, w3 = 0.784513610477560, 0.235573213359357, -1.17767998417887
        w4 = 1.0 - 2.0 * (w1 + w2 + w3)
        return np.array([w1, w2, w3, w4, w3, w2, w1])
    raise ValueError(f"Suzuki-Yoshida order must be 1, 3, 5 or 7, got {order}")


class NoseHooverChain:
    """State and propagation of one thermostat chain.

    Parameters
    ----------
    temperature : float
        Target temperature, K.
    collision_frequency : float
        Coupling frequency w, 1/ps; masses Q1 = Ndf kT / w^2, Qj = kT / w^2 (kJ/mol ps^2).
    degrees_of_freedom : int
        Number of degrees of freedom the chain thermostats.
    chain_length, chain_steps, yoshida_suzuki : int
        Chain length, substeps per half step, Suzuki–Yoshida order.
    """

    def __init__(self, temperature, collision_frequency, degrees_of_freedom, chain_length=3,
                 chain_steps=3, yoshida_suzuki=7):
        self.kt = BOLTZMANN * temperature
        self.ndf = int(degrees_of_freedom)
        q = self.kt / collision_frequency**2
        self.masses = np.full(chain_length, q)
        self.masses[0] = self.ndf * q
        self.positions = np.zeros(chain_length)
        self.velocities = np.zeros(chain_length)
        self.chain_steps = int(chain_steps)
        self.weights = suzuki_yoshida_weights(yoshida_suzuki)

    def energy(self) -> float:
        """The chain's share of the conserved quantity, kJ/mol."""
        kinetic = 0.5 * float(np.sum(self.masses * self.velocities**2))
        potential = self.ndf * self.kt * self.positions[0] + self.kt * float(np.sum(self.positions[1:]))
        return kinetic + potential

    def propagate(self, kinetic_energy: float, duration: float) -> float:
        """Advance the chain by ``duration`` (ps) given the particles' kinetic energy (kJ/mol).

        Returns
        -------
        float
            Factor by which every particle velocity must be multiplied.
        """
        if self.ndf <= 0:
            return 1.0
        v = self.velocities
        m = len(v)
        scale = 1.0
        kinetic2 = 2.0 * kinetic_energy
        for _ in range(self.chain_steps):
            for w in self.weights:
                h = w * duration / self.chain_steps
                # outside in: the last thermostat first, each damped by the next one
                v[m - 1] += 0.5 * h * self._force(m - 1, kinetic2)
                for j in range(m - 2, -1, -1):
                    damp = math.exp(-0.25 * h * v[j + 1])
                    v[j] = damp * (damp * v[j] + 0.5 * h * self._force(j, kinetic2))
                factor = math.exp(-h * v[0])
                scale *= factor
                kinetic2 *= factor * factor
                self.positions += h * v
                for j in range(m - 1):
                    damp = math.exp(-0.25 * h * v[j + 1])
                    v[j] = damp * (damp * v[j] + 0.5 * h * self._force(j, kinetic2))
                v[m - 1] += 0.5 * h * self._force(m - 1, kinetic2)
        return scale

    def _force(self, j: int, kinetic2: float) -> float:
        """G_j: the generalised force on thermostat j, 1/ps^2."""
        if j == 0:
            return (kinetic2 - self.ndf * self.kt) / self.masses[0]
        return (self.masses[j - 1] * self.velocities[j - 1] ** 2 - self.kt) / self.masses[j]

    def get_state(self) -> dict:
        """Chain positions and velocities, for checkpoints."""
        return {"positions": self.positions.copy(), "velocities": self.velocities.copy()}

    def set_state(self, state: dict) -> None:
        """Restore what ``get_state`` returned."""
        self.positions[:] = state["positions"]
        self.velocities[:] = state["velocities"]
