"""What an evaluation of energies and forces returns, on every backend."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: The force groups a backend evaluates: everything, everything but reciprocal space (the fast
#: group of multiple time stepping), or reciprocal space with the Ewald self energy (the slow one).
PARTS = ("all", "direct", "reciprocal")


def check_parts(parts: str) -> str:
    """``parts`` if it names a force group; ValueError naming the choices otherwise."""
    if parts not in PARTS:
        raise ValueError(f"parts must be one of {PARTS}, got {parts!r}")
    return parts


@dataclass
class Evaluation:
    """Energy and forces of one configuration.

    Attributes
    ----------
    energy : float
        Total potential energy, kJ/mol.
    forces : (N, 3) float64 array
        Forces, kJ/mol/nm.  A virtual site's force is moved onto its parents; the site's own row
        still shows the force acting on it, as OpenMM reports it.
    terms : dict[str, float]
        Energy of each kind of term (keyed by the OpenMM force class), kJ/mol.
    parameter_derivatives : dict[str, float]
        dU/dp for each global parameter p a force asked the derivative of (OpenMM's
        ``addEnergyParameterDerivative``), kJ/mol per unit of p; empty unless asked for.
    """

    energy: float
    forces: np.ndarray
    terms: dict
    parameter_derivatives: dict = field(default_factory=dict)

    def plus(self, other: Evaluation) -> Evaluation:
        """The sum of two force groups' evaluations at the same positions (energies per term)."""
        terms = dict(self.terms)
        for name, energy in other.terms.items():
            terms[name] = terms.get(name, 0.0) + energy
        derivatives = dict(self.parameter_derivatives)
        for name, value in other.parameter_derivatives.items():
            derivatives[name] = derivatives.get(name, 0.0) + value
        return Evaluation(energy=self.energy + other.energy, forces=self.forces + other.forces,
                          terms=terms, parameter_derivatives=derivatives)
