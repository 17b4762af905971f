"""Listed terms whose energy is an expression: OpenMM's CustomBondForce, CustomAngleForce,
CustomTorsionForce and CustomExternalForce.

Each record holds the expression text (OpenMM's expression language, see
``bencao.expressions``), the per-item parameter table and the global parameters with their
default values; the backends compile the expression into a law
(``bencao.backends.common.laws.custom``).  Global parameter values can change at run time
(``Backend.set_parameter``); the record keeps the defaults.  Units are OpenMM's: nm, rad,
kJ/mol, and whatever units the expression gives its parameters.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bencao.forces.registry import term_record


@dataclass(frozen=True)
class CustomListedTerm:
    """Fields common to the custom listed terms (a base, not a term itself).

    Parameters
    ----------
    atoms : (M, n) int64 array
        Particles of each item (n = 2 for bonds, 3 for angles with the vertex in the middle,
        4 for torsions, 1 for external terms).
    parameters : (M, P) float64 array
        Per-item parameter values, columns in the order of ``parameter_names``.
    expression : str
        Energy, kJ/mol, in OpenMM's expression language.
    parameter_names : tuple of str
        Names of the per-item parameters.
    global_names : tuple of str
        Names of the global parameters.
    global_values : tuple of float
        Their default values.
    derivative_names : tuple of str
        Global parameters whose energy derivative dE/dp is asked for
        (OpenMM's ``addEnergyParameterDerivative``).
    periodic : bool
        The force uses the periodic box (an external term with ``periodicdistance``).
    """

    atoms: np.ndarray
    parameters: np.ndarray
    expression: str
    parameter_names: tuple = ()
    global_names: tuple = ()
    global_values: tuple = ()
    derivative_names: tuple = ()
    periodic: bool = False

    #: Particles per item
    n_atoms = 2
    #: Law kind of ``bencao.backends.common.laws.custom``
    kind = "bond"

    def __post_init__(self):
        # Saved System files hold these as JSON lists: keep them tuples of plain values.
        object.__setattr__(self, "periodic", bool(self.periodic))
        for key, cast in (("parameter_names", str), ("global_names", str),
                          ("global_values", float), ("derivative_names", str)):
            object.__setattr__(self, key, tuple(cast(v) for v in getattr(self, key)))
        if len(self.global_names) != len(self.global_values):
            raise ValueError(f"{self.name}: {len(self.global_names)} global parameters but "
                             f"{len(self.global_values)} default values")
        unknown = sorted(set(self.derivative_names) - set(self.global_names))
        if unknown:
            raise ValueError(f"{self.name}: derivatives asked of {unknown}, which are not "
                             "global parameters of the force")


@term_record
@dataclass(frozen=True)
class CustomBonds(CustomListedTerm):
    """E(r) per bond, r the distance between its two particles (OpenMM CustomBondForce)."""

    name = "CustomBondForce"
    n_atoms = 2
    kind = "bond"


@term_record
@dataclass(frozen=True)
class CustomAngles(CustomListedTerm):
    """E(theta) per angle, theta at the middle particle, rad (OpenMM CustomAngleForce)."""

    name = "CustomAngleForce"
    n_atoms = 3
    kind = "angle"


@term_record
@dataclass(frozen=True)
class CustomTorsions(CustomListedTerm):
    """E(theta) per torsion, theta the dihedral angle in (-pi, pi] (OpenMM CustomTorsionForce)."""

    name = "CustomTorsionForce"
    n_atoms = 4
    kind = "torsion"


@term_record
@dataclass(frozen=True)
class CustomExternal(CustomListedTerm):
    """E(x, y, z) per particle, its position in nm (OpenMM CustomExternalForce); the
    expression may use ``periodicdistance(x, y, z, x0, y0, z0)`` (minimum image in the box)."""

    name = "CustomExternalForce"
    n_atoms = 1
    kind = "external"
