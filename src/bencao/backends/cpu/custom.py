"""CPU kernels of the custom listed terms: expressions compiled into laws
(``backends.common.laws.custom``) run through the listed-term loops of ``cpu.bonded``."""

from __future__ import annotations

import functools

import numpy as np

from bencao.backends.common.fixed_point import add_force
from bencao.backends.common.global_parameters import GlobalParameters, custom_tables
from bencao.backends.common.law_cache import compiled_law_loop
from bencao.backends.common.laws.centroids import bond_centroids
from bencao.backends.common.laws.custom import custom_law
from bencao.backends.common.laws.custom_compound import compound_law
from bencao.backends.common.laws.tabulated import table_specs
from bencao.backends.common.registry import register_kernel
from bencao.backends.cpu.base import CpuTerm
from bencao.backends.cpu.bonded import listed_kernel
from bencao.forces.custom import (
    CustomAngles,
    CustomBonds,
    CustomCentroidBonds,
    CustomCompoundBonds,
    CustomExternal,
    CustomTorsions,
    runs_as_centroids,
    single_particle_groups,
)


class CpuCustomListedTerm(GlobalParameters, CpuTerm):
    """A custom bond, angle, torsion or external term on the CPU.

    Parameters
    ----------
    term : CustomBonds, CustomAngles, CustomTorsions or CustomExternal
        The expression, per-item parameters and global parameters.
    """

    @classmethod
    def from_term(cls, term, system, **options):
        """The kernel of ``term``: this class's, or for a periodic bond, angle, torsion or
        compound bond the centroid kernel of one-particle groups, which images each item's
        particles next to its first (``forces.custom.single_particle_groups``)."""
        if not runs_as_centroids(term):
            return cls(term)
        kernel = CpuCustomCentroidBonds(single_particle_groups(term))
        kernel.name = term.name
        return kernel

    def __init__(self, term):
        compiled = custom_law(term.kind, term.expression, term.parameter_names,
                              term.global_names, term.derivative_names, term.name,
                              tables=table_specs(term))
        self.name = term.name
        self.n_atoms = compiled.n_atoms
        # External terms (one particle) take the box; compound bonds never do.
        self.takes_box = term.kind == "external"
        self.atoms, self.params, columns = custom_tables(term)
        self.init_globals(term, columns)
        self._kernel = listed_kernel(compiled.n_atoms, compiled.law)
        self._derivative_kernels = {name: listed_kernel(compiled.n_atoms, law)
                                    for name, law in compiled.derivative_laws.items()}

    def _run(self, kernel, positions, box, forces) -> float:
        if self.takes_box:
            periodic = box is not None
            return float(kernel(positions, self.atoms, self.params, forces,
                                box if periodic else np.eye(3), periodic))
        return float(kernel(positions, self.atoms, self.params, forces))

    def compute(self, positions, box, forces) -> float:
        """Add the term's forces (kJ/mol/nm, fixed point) and return its energy, kJ/mol."""
        return self._run(self._kernel, positions, box, forces)

    def parameter_derivatives(self, positions, box, forces) -> dict[str, float]:
        """dE/dp of this term for each global parameter p it was asked for (energy units per
        unit of p); ``forces`` is scratch space (the derivative laws add zero forces)."""
        return {name: self._run(kernel, positions, box, forces)
                for name, kernel in self._derivative_kernels.items()}


for _record in (CustomBonds, CustomAngles, CustomTorsions, CustomExternal):
    register_kernel("cpu", _record)(CpuCustomListedTerm)


def _compound_loop(law, n: int):
    """Loop over bonds of ``n`` particles of a law of their positions (its gradient, 3n long)."""

    def loop(positions, atoms, params, forces):
        energy = 0.0
        for m in range(atoms.shape[0]):
            out = law(positions, atoms, params, m)
            energy += out[0]
            for a in range(n):
                add_force(forces, atoms[m, a], -out[1 + 3 * a], -out[2 + 3 * a],
                          -out[3 + 3 * a])
        return energy

    return loop


@functools.cache
def compound_kernel(n: int, law):
    """The compiled bond loop of ``law`` (once per law; cached on disk by source)."""
    return compiled_law_loop(_compound_loop(law, n), law)


@register_kernel("cpu", CustomCompoundBonds)
class CpuCustomCompoundBonds(CpuCustomListedTerm):
    """A CustomCompoundBondForce on the CPU (the laws of ``common.laws.custom_compound``).  A
    periodic one runs as centroids of one-particle groups (:class:`CpuCustomCentroidBonds`),
    which images the bond's particles next to its first."""

    def __init__(self, term):
        compiled = compound_law(term.n_atoms, term.expression, term.parameter_names,
                                term.global_names, term.derivative_names, term.name,
                                tables=table_specs(term))
        self.name = term.name
        self.n_atoms = compiled.n_atoms
        self.takes_box = False
        self.atoms, self.params, columns = custom_tables(term)
        self.init_globals(term, columns)
        self._kernel = compound_kernel(compiled.n_atoms, compiled.law)
        self._derivative_kernels = {name: compound_kernel(compiled.n_atoms, law)
                                    for name, law in compiled.derivative_laws.items()}


def _centroid_loop(law, n: int):
    """Loop over bonds of ``n`` groups: each group's centroid (its weighted mean position, the
    groups after the first imaged next to the first if periodic), the law of the centroids,
    and each centroid's force shared among its particles by weight."""

    def loop(positions, bonds, params, forces, group_atoms, group_offsets, group_weights,
             identity, box, periodic):
        energy = 0.0
        centroids = np.empty((n, 3))
        for m in range(bonds.shape[0]):
            bond_centroids(positions, bonds, m, group_atoms, group_offsets, group_weights, box,
                           periodic, centroids)
            out = law(centroids, identity, params, m)
            energy += out[0]
            for k in range(n):
                g = bonds[m, k]
                for s in range(group_offsets[g], group_offsets[g + 1]):
                    w = group_weights[s]
                    add_force(forces, group_atoms[s], -w * out[1 + 3 * k],
                              -w * out[2 + 3 * k], -w * out[3 + 3 * k])
        return energy

    return loop


@functools.cache
def centroid_kernel(n: int, law):
    """The compiled bond loop of a centroid ``law`` (once per law; cached on disk by source)."""
    return compiled_law_loop(_centroid_loop(law, n), law)


@register_kernel("cpu", CustomCentroidBonds)
class CpuCustomCentroidBonds(CpuCustomListedTerm):
    """A CustomCentroidBondForce on the CPU: the compound laws of
    ``common.laws.custom_compound`` evaluated at the groups' centroids."""

    def __init__(self, term):
        compiled = compound_law(term.n_atoms, term.expression, term.parameter_names,
                                term.global_names, term.derivative_names, term.name,
                                term.item_prefix, tables=table_specs(term))
        self.name = term.name
        self.n_atoms = compiled.n_atoms
        self.periodic = term.periodic
        self.atoms, self.params, columns = custom_tables(term)
        self.init_globals(term, columns)
        # the law reads "particle k of bond m" as row identity[m, k] = k of the centroids
        self._identity = np.ascontiguousarray(
            np.broadcast_to(np.arange(self.n_atoms), self.atoms.shape))
        self._groups = (term.group_atoms, term.group_offsets, term.group_weights,
                        self._identity)
        self._kernel = centroid_kernel(compiled.n_atoms, compiled.law)
        self._derivative_kernels = {name: centroid_kernel(compiled.n_atoms, law)
                                    for name, law in compiled.derivative_laws.items()}

    def _run(self, kernel, positions, box, forces) -> float:
        periodic = self.periodic and box is not None
        return float(kernel(positions, self.atoms, self.params, forces, *self._groups,
                            np.ascontiguousarray(box if periodic else np.eye(3), np.float64),
                            periodic))
