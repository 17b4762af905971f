"""CUDA kernels of the custom listed terms: the CPU's generated laws
(``backends.common.laws.custom``) compiled for the GPU by the listed-term kernels of
``cuda.bonded``, so both backends evaluate one source."""

from __future__ import annotations

import functools
import math

import numpy as np
from numba import cuda

from bencao.backends.common.global_parameters import GlobalParameters, custom_tables
from bencao.backends.common.laws.centroids import bond_centroids
from bencao.backends.common.laws.custom import custom_law
from bencao.backends.common.laws.custom_compound import compound_law
from bencao.backends.common.laws.tabulated import table_specs
from bencao.backends.common.registry import register_kernel
from bencao.backends.cuda.bonded import CudaTerm, add_force, listed_kernel
from bencao.backends.cuda.common import device_version
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


class CudaCustomListedTerm(GlobalParameters, CudaTerm):
    """A custom bond, angle, torsion or external term on the GPU.

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
        kernel = CudaCustomCentroidBonds(single_particle_groups(term))
        kernel.name = term.name
        return kernel

    def __init__(self, term):
        compiled = custom_law(term.kind, term.expression, term.parameter_names,
                              term.global_names, term.derivative_names, term.name,
                              tables=table_specs(term))
        atoms, self.params, columns = custom_tables(term)
        super().__init__(term, atoms.shape[0])
        self.n_atoms = compiled.n_atoms
        # External terms (one particle) take the box; compound bonds never do.
        self.takes_box = term.kind == "external"
        self.init_globals(term, columns)
        self.atoms = cuda.to_device(atoms)
        self.device_params = cuda.to_device(self.params)
        self._kernel = listed_kernel(compiled.n_atoms, compiled.law)
        self._derivative_kernels = {name: listed_kernel(compiled.n_atoms, law)
                                    for name, law in compiled.derivative_laws.items()}

    def upload_params(self) -> None:
        """Copy the host table (a global parameter changed) to the device."""
        self.device_params.copy_to_device(self.params)

    def _launch(self, kernel, state) -> None:
        blocks, threads = self._grid()
        arguments = (state.positions, self.atoms, self.device_params, state.forces,
                     self._energies)
        if self.takes_box:
            arguments += (state.system_index, state.boxes, state.periodic)
        kernel[blocks, threads](*arguments)

    def launch(self, state) -> None:
        """Run the term's kernel on ``state``."""
        self._launch(self._kernel, state)

    def parameter_derivatives(self, state, box) -> dict[str, float]:
        """dE/dp of this term for each global parameter p it was asked for (the derivative laws
        add zero forces to ``state.forces``)."""
        derivatives = {}
        for name, kernel in self._derivative_kernels.items():
            if self.n_terms == 0:
                derivatives[name] = 0.0
                continue
            self._launch(kernel, state)
            derivatives[name] = math.fsum(self._energies.copy_to_host()[: self.n_terms])
        return derivatives


for _record in (CustomBonds, CustomAngles, CustomTorsions, CustomExternal):
    register_kernel("cuda", _record)(CudaCustomListedTerm)


@functools.cache
def compound_kernel(n: int, law):
    """Kernel over bonds of ``n`` particles of a law of their positions: thread m writes
    ``energies[m]`` and adds the bond's forces with integer atomics (as the CPU's loop)."""
    law = device_version(law)

    @cuda.jit
    def kernel(positions, atoms, params, forces, energies):
        m = cuda.grid(1)
        if m >= atoms.shape[0]:
            return
        out = law(positions, atoms, params, m)
        energies[m] = out[0]
        for a in range(n):
            add_force(forces, atoms[m, a], -out[1 + 3 * a], -out[2 + 3 * a], -out[3 + 3 * a])

    return kernel


@register_kernel("cuda", CustomCompoundBonds)
class CudaCustomCompoundBonds(CudaCustomListedTerm):
    """A CustomCompoundBondForce on the GPU (the CPU's laws, compiled for the device); a
    periodic one runs as centroids of one-particle groups, as on the CPU."""

    def __init__(self, term):
        compiled = compound_law(term.n_atoms, term.expression, term.parameter_names,
                                term.global_names, term.derivative_names, term.name,
                                tables=table_specs(term))
        atoms, self.params, columns = custom_tables(term)
        CudaTerm.__init__(self, term, atoms.shape[0])
        self.n_atoms = compiled.n_atoms
        self.takes_box = False
        self.init_globals(term, columns)
        self.atoms = cuda.to_device(atoms)
        self.device_params = cuda.to_device(self.params)
        self._kernel = compound_kernel(compiled.n_atoms, compiled.law)
        self._derivative_kernels = {name: compound_kernel(compiled.n_atoms, law)
                                    for name, law in compiled.derivative_laws.items()}



@functools.cache
def centroid_kernel(n: int, law):
    """Kernel over bonds of ``n`` groups (as the CPU's ``cpu.custom._centroid_loop``): thread m
    forms its groups' centroids (imaged next to the first group's in a periodic system), runs
    the law on them and shares each centroid's force among its particles with integer atomics."""
    law = device_version(law)
    centroids_of = device_version(bond_centroids)

    @cuda.jit
    def kernel(positions, bonds, params, forces, energies, group_atoms, group_offsets,
               group_weights, identity, system_index, boxes, periodic):
        m = cuda.grid(1)
        if m >= bonds.shape[0]:
            return
        centroids = cuda.local.array((n, 3), dtype=np.float64)
        system = system_index[group_atoms[group_offsets[bonds[m, 0]]]]
        centroids_of(positions, bonds, m, group_atoms, group_offsets, group_weights,
                     boxes[system], periodic[system] != 0, centroids)
        out = law(centroids, identity, params, m)
        energies[m] = out[0]
        for k in range(n):
            g = bonds[m, k]
            for s in range(group_offsets[g], group_offsets[g + 1]):
                w = group_weights[s]
                add_force(forces, group_atoms[s], -w * out[1 + 3 * k], -w * out[2 + 3 * k],
                          -w * out[3 + 3 * k])

    return kernel


@register_kernel("cuda", CustomCentroidBonds)
class CudaCustomCentroidBonds(CudaCustomListedTerm):
    """A CustomCentroidBondForce on the GPU (the CPU's laws at the groups' centroids)."""

    def __init__(self, term):
        compiled = compound_law(term.n_atoms, term.expression, term.parameter_names,
                                term.global_names, term.derivative_names, term.name,
                                term.item_prefix, tables=table_specs(term))
        atoms, self.params, columns = custom_tables(term)
        CudaTerm.__init__(self, term, atoms.shape[0])
        self.n_atoms = compiled.n_atoms
        self.takes_box = False
        self.uses_box = term.periodic
        self.init_globals(term, columns)
        self.atoms = cuda.to_device(atoms)
        self.device_params = cuda.to_device(self.params)
        identity = np.ascontiguousarray(np.broadcast_to(np.arange(self.n_atoms), atoms.shape))
        self._groups = tuple(cuda.to_device(np.ascontiguousarray(a)) for a in (
            term.group_atoms, term.group_offsets, term.group_weights, identity))
        self._kernel = centroid_kernel(compiled.n_atoms, compiled.law)
        self._derivative_kernels = {name: centroid_kernel(compiled.n_atoms, law)
                                    for name, law in compiled.derivative_laws.items()}

    def _launch(self, kernel, state) -> None:
        blocks, threads = self._grid()
        periodic = state.periodic if self.uses_box else self._not_periodic(state)
        kernel[blocks, threads](state.positions, self.atoms, self.device_params, state.forces,
                                self._energies, *self._groups, state.system_index, state.boxes,
                                periodic)

    def _not_periodic(self, state):
        """Zero periodic flags for every system of ``state`` (a force without periodic
        boundaries in a periodic system), kept on the device."""
        if getattr(self, "_zeros", None) is None or self._zeros.shape != state.periodic.shape:
            self._zeros = cuda.to_device(np.zeros(state.periodic.shape, np.int32))
        return self._zeros
