"""CPU kernels for the listed bonded terms and position restraints.

Every listed term registered in ``backends.common.laws`` (bonds, LJ pairs, angles, torsions,
impropers, and any term added there) runs through one Numba loop per shape (2, 3 or 4 atoms an
item), built here for its law; one class, :class:`CpuListedTerm`, computes them all.  Angle
and torsion items are evaluated in parallel and added in item order (``_three_body_loop``).
Loops compute in float64 and add forces only through
:func:`~bencao.backends.common.fixed_point.add_force`.  Bonded terms never use periodic
boundaries (OpenMM's default for these forces), so the box is ignored, except by restraints.
Loops built for a law are cached on disk by source (``common.law_cache``).
"""

from __future__ import annotations

import functools

import numpy as np
from numba import njit, prange

from bencao.backends.common.fixed_point import add_force
from bencao.backends.common.law_cache import compiled_law_loop
from bencao.backends.common.laws import for_each_listed_law, listed_law
from bencao.backends.common.laws.geometry import (
    angle_forces,
    angle_geometry,
    dihedral_forces,
    dihedral_geometry,
)
from bencao.backends.common.laws.restraints import position_restraint, restraint_tables
from bencao.backends.common.registry import register_kernel
from bencao.backends.cpu.base import CpuTerm
from bencao.forces.bonded import PositionRestraints

# --------------------------------------------------------------------------------------------
# One loop per shape, for any law (see ``common.laws.registry.ListedLaw`` for the law's form)
# --------------------------------------------------------------------------------------------


@njit(cache=True, inline="always")
def add_torsion_forces(forces, a, b, c, d, f):
    """Add the twelve force components ``f`` of ``dihedral_forces`` (kJ/mol/nm) on a, b, c, d."""
    add_force(forces, a, f[0], f[1], f[2])
    add_force(forces, b, f[3], f[4], f[5])
    add_force(forces, c, f[6], f[7], f[8])
    add_force(forces, d, f[9], f[10], f[11])


def _two_body_loop(law):
    """Loop over pairs i-j of a law of the separation d = x_j - x_i (F_i = f d, F_j = -f d)."""

    def loop(positions, atoms, params, forces):
        energy = 0.0
        for m in range(atoms.shape[0]):
            i = atoms[m, 0]
            j = atoms[m, 1]
            dx = positions[j, 0] - positions[i, 0]
            dy = positions[j, 1] - positions[i, 1]
            dz = positions[j, 2] - positions[i, 2]
            e, f = law(dx, dy, dz, params, m)
            energy += e
            # f = 0 is no force; adding nothing also leaves a law's "no direction" (a bond
            # between coincident atoms) without a force, as OpenMM.
            if f != 0.0:
                add_force(forces, i, f * dx, f * dy, f * dz)
                add_force(forces, j, -f * dx, -f * dy, -f * dz)
        return energy

    return loop


# Angles and torsions cost ~40 and ~100 ns each (geometry, trigonometry), so their loops run
# in two passes: each item's energy and forces in parallel into scratch, then, serially in item
# order, the energy sum and the fixed-point adds -- the same operations in the same order as a
# serial loop, so the result is bit-identical on any number of threads.


def _three_body_loop(law):
    """Loop over angles a-b-c (vertex b) of a law of the angle."""

    def loop(positions, atoms, params, forces):
        n = atoms.shape[0]
        energies = np.empty(n)
        item_forces = np.empty((n, 9))
        for m in prange(n):
            geom = angle_geometry(positions, atoms[m, 0], atoms[m, 1], atoms[m, 2])
            e, dE = law(geom[0], params, m)
            energies[m] = e
            f = angle_forces(dE, geom)
            for k in range(9):
                item_forces[m, k] = f[k]
        energy = 0.0
        for m in range(n):
            energy += energies[m]
            for k in range(3):
                f = item_forces[m]
                add_force(forces, atoms[m, k], f[3 * k], f[3 * k + 1], f[3 * k + 2])
        return energy

    return loop


def _four_body_loop(law):
    """Loop over torsions a-b-c-d of a law of the torsion angle."""

    def loop(positions, atoms, params, forces):
        n = atoms.shape[0]
        energies = np.empty(n)
        item_forces = np.empty((n, 12))
        for m in prange(n):
            geom = dihedral_geometry(positions, atoms[m, 0], atoms[m, 1], atoms[m, 2],
                                     atoms[m, 3])
            e, dE = law(geom[0], params, m)
            energies[m] = e
            f = dihedral_forces(dE, geom)
            for k in range(12):
                item_forces[m, k] = f[k]
        energy = 0.0
        for m in range(n):
            energy += energies[m]
            add_torsion_forces(forces, atoms[m, 0], atoms[m, 1], atoms[m, 2], atoms[m, 3],
                               item_forces[m])
        return energy

    return loop


def _one_body_loop(law):
    """Loop over single particles of a law of the position (custom external terms), which may
    take the minimum image in ``box`` when ``periodic``."""

    def loop(positions, atoms, params, forces, box, periodic):
        energy = 0.0
        for m in range(atoms.shape[0]):
            i = atoms[m, 0]
            e, fx, fy, fz = law(positions[i, 0], positions[i, 1], positions[i, 2], params, m,
                                box, periodic)
            energy += e
            add_force(forces, i, fx, fy, fz)
        return energy

    return loop


_LOOPS = {1: _one_body_loop, 2: _two_body_loop, 3: _three_body_loop, 4: _four_body_loop}
#: Shapes whose loops run their items in parallel (see ``_three_body_loop``).
_PARALLEL = (3, 4)


@functools.cache
def listed_kernel(n_atoms: int, law):
    """The compiled loop of ``law`` over items of ``n_atoms`` atoms (built once per law).

    It is called as ``kernel(positions, atoms, params, forces)`` with positions (N, 3) float64
    in nm, atoms (M, n_atoms) int64, params (M, P) float64 (the law's columns) and forces the
    (N, 3) int64 fixed-point accumulator, which gets the forces (kJ/mol/nm); it returns the
    energy, kJ/mol.  The one-particle loop (``n_atoms`` 1, custom external terms) also takes
    the (3, 3) box, nm, and whether to use it: ``kernel(..., forces, box, periodic)``.
    """
    return compiled_law_loop(_LOOPS[n_atoms](law), law, parallel=n_atoms in _PARALLEL)


class CpuListedTerm(CpuTerm):
    """Any listed bonded term on the CPU: the loop of its shape with its registered law.

    Parameters
    ----------
    term : record of ``bencao.forces``
        A term whose type is registered in ``backends.common.laws`` (its atoms and parameter
        columns in the units of its law).
    """

    def __init__(self, term):
        entry = listed_law(type(term))
        self.name = term.name
        self.atoms, self.params = entry.tables(term)
        self._kernel = listed_kernel(entry.n_atoms, entry.law)

    def compute(self, positions, box, forces) -> float:
        """Add the term's forces (kJ/mol/nm, fixed point) and return its energy, kJ/mol.

        ``positions`` in nm; ``box`` is ignored (listed terms are not periodic).
        """
        return float(self._kernel(positions, self.atoms, self.params, forces))


# Every listed term, those registered later included, is computed by CpuListedTerm.
for_each_listed_law(lambda entry: register_kernel("cpu", entry.record)(CpuListedTerm))


# --------------------------------------------------------------------------------------------
# Position restraints
# --------------------------------------------------------------------------------------------


@njit(cache=True)
def position_restraints_kernel(positions, atoms, reference, k, box, periodic, forces):
    """Harmonic restraints to reference positions through the minimum image; energy, kJ/mol."""
    energy = 0.0
    for m in range(atoms.shape[0]):
        i = atoms[m]
        e, fx, fy, fz = position_restraint(positions[i, 0] - reference[m, 0],
                                           positions[i, 1] - reference[m, 1],
                                           positions[i, 2] - reference[m, 2], k[m], box, periodic)
        energy += e
        add_force(forces, i, fx, fy, fz)
    return energy


@register_kernel("cpu", PositionRestraints)
class CpuPositionRestraints(CpuTerm):
    """Position restraints on the CPU (periodic minimum image when the system has a box).

    Parameters
    ----------
    term : PositionRestraints
        Restrained particles, reference positions (nm) and force constants (kJ/mol/nm^2).
    """

    def __init__(self, term: PositionRestraints):
        self.name = term.name
        self.atoms, self.reference, self.k = restraint_tables(term)

    def compute(self, positions, box, forces) -> float:
        """Add the restraint forces (kJ/mol/nm, fixed point) and return the energy, kJ/mol."""
        periodic = box is not None
        box_arg = box if periodic else np.eye(3)
        return float(position_restraints_kernel(positions, self.atoms, self.reference, self.k,
                                                box_arg, periodic, forces))
