"""CUDA bonded kernels: every listed term (bonds, angles, torsions ...), CMAP and restraints.

One thread per item, all in float64, with the CPU's own laws: the laws, the angle and torsion
geometry, the CMAP patch and the restraint law (``backends.common.laws``) are compiled for the
GPU from the source the CPU kernels inline (``device_version``), so the formulas, sign
conventions and clamping cannot drift apart.  Listed terms run through one kernel per shape (2, 3
or 4 atoms an item) built for each registered law, and one class, :class:`CudaListedTerm`,
computes them all.  Forces go into the int64 (N, 3) fixed-point accumulator with integer
atomics, which commute, so the forces are bit-identical whatever order the threads run in.  Each
thread writes its item's energy into its own slot of a float64 array; the host adds the slots
with ``math.fsum`` (exactly rounded, so independent of order): no floating-point atomics, so the
energy is deterministic too.

Module-level float constants (the fixed-point scale and clamp, the angle guard) are frozen into
the kernels when they compile; every array is passed as an argument.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from numba import cuda

from bencao.backends.common.laws import for_each_listed_law, listed_law
from bencao.backends.common.laws.cmap import cmap_pair, cmap_tables
from bencao.backends.common.laws.geometry import (
    angle_forces,
    angle_geometry,
    dihedral_forces,
    dihedral_geometry,
)
from bencao.backends.common.laws.restraints import position_restraint, restraint_tables
from bencao.backends.common.registry import register_kernel
from bencao.backends.cuda.common import device_version, launch_config, to_fixed
from bencao.forces.bonded import CMAPTorsions, PositionRestraints

# The shared geometry and laws as device functions (plain Python in Numba's CUDA simulator).
_angle_geometry = device_version(angle_geometry)
_angle_forces = device_version(angle_forces)
_dihedral_geometry = device_version(dihedral_geometry)
_dihedral_forces = device_version(dihedral_forces)
_position_restraint = device_version(position_restraint)
_cmap_pair = device_version(cmap_pair)


@cuda.jit(device=True)
def add_force(forces, i, fx, fy, fz):
    """Atomically add the force (fx, fy, fz), kJ/mol/nm, on particle i to the int64 accumulator."""
    cuda.atomic.add(forces, (i, 0), to_fixed(fx))
    cuda.atomic.add(forces, (i, 1), to_fixed(fy))
    cuda.atomic.add(forces, (i, 2), to_fixed(fz))


@cuda.jit(device=True)
def add_torsion_forces(forces, a, b, c, d, f):
    """Atomically add the twelve components ``f`` of ``dihedral_forces`` (kJ/mol/nm) on a-d."""
    add_force(forces, a, f[0], f[1], f[2])
    add_force(forces, b, f[3], f[4], f[5])
    add_force(forces, c, f[6], f[7], f[8])
    add_force(forces, d, f[9], f[10], f[11])


# --------------------------------------------------------------------------------------------
# One kernel per shape, for any law: thread m handles item m, writes energies[m] (kJ/mol) and
# adds its forces.  Arguments: positions (N, 3) float64 nm, atoms (M, n) int64, params (M, P)
# float64 (the law's columns), forces (N, 3) int64 fixed point, energies (M,) float64.
# --------------------------------------------------------------------------------------------


def _two_body_kernel(law):
    """Kernel over pairs i-j of a law of the separation d = x_j - x_i (F_i = f d, F_j = -f d)."""
    law = device_version(law)

    @cuda.jit
    def kernel(positions, atoms, params, forces, energies):
        m = cuda.grid(1)
        if m >= atoms.shape[0]:
            return
        i = atoms[m, 0]
        j = atoms[m, 1]
        dx = positions[j, 0] - positions[i, 0]
        dy = positions[j, 1] - positions[i, 1]
        dz = positions[j, 2] - positions[i, 2]
        e, f = law(dx, dy, dz, params, m)
        energies[m] = e
        # f = 0 is no force (for a bond between coincident atoms, no direction), as on the CPU.
        if f != 0.0:
            add_force(forces, i, f * dx, f * dy, f * dz)
            add_force(forces, j, -f * dx, -f * dy, -f * dz)

    return kernel


def _three_body_kernel(law):
    """Kernel over angles a-b-c (vertex b) of a law of the angle."""
    law = device_version(law)

    @cuda.jit
    def kernel(positions, atoms, params, forces, energies):
        m = cuda.grid(1)
        if m >= atoms.shape[0]:
            return
        a = atoms[m, 0]
        b = atoms[m, 1]
        c = atoms[m, 2]
        geom = _angle_geometry(positions, a, b, c)
        e, dE = law(geom[0], params, m)
        energies[m] = e
        f = _angle_forces(dE, geom)
        add_force(forces, a, f[0], f[1], f[2])
        add_force(forces, b, f[3], f[4], f[5])
        add_force(forces, c, f[6], f[7], f[8])

    return kernel


def _four_body_kernel(law):
    """Kernel over torsions a-b-c-d of a law of the torsion angle."""
    law = device_version(law)

    @cuda.jit
    def kernel(positions, atoms, params, forces, energies):
        m = cuda.grid(1)
        if m >= atoms.shape[0]:
            return
        a = atoms[m, 0]
        b = atoms[m, 1]
        c = atoms[m, 2]
        d = atoms[m, 3]
        geom = _dihedral_geometry(positions, a, b, c, d)
        e, dE = law(geom[0], params, m)
        energies[m] = e
        add_torsion_forces(forces, a, b, c, d, _dihedral_forces(dE, geom))

    return kernel


def _one_body_kernel(law):
    """Kernel over single particles of a law of the position (custom external terms), with
    the box and periodic flag of the particle's system."""
    law = device_version(law)

    @cuda.jit
    def kernel(positions, atoms, params, forces, energies, system_index, boxes, periodic):
        m = cuda.grid(1)
        if m >= atoms.shape[0]:
            return
        i = atoms[m, 0]
        s = system_index[i]
        e, fx, fy, fz = law(positions[i, 0], positions[i, 1], positions[i, 2], params, m,
                            boxes[s], periodic[s] != 0)
        energies[m] = e
        add_force(forces, i, fx, fy, fz)

    return kernel


_KERNELS = {1: _one_body_kernel, 2: _two_body_kernel, 3: _three_body_kernel,
            4: _four_body_kernel}


@functools.cache
def listed_kernel(n_atoms: int, law):
    """The kernel of ``law`` over items of ``n_atoms`` atoms (built once per law; it compiles
    at its first launch).  The one-particle kernel also takes the state's system index, boxes
    and periodic flags after the energies."""
    return _KERNELS[n_atoms](law)


@cuda.jit
def position_restraints_kernel(positions, atoms, reference, k, system_index, boxes, periodic,
                               forces, energies):
    """E = 1/2 k |x - x0|^2 per restrained particle, through the minimum image of its system's box.

    Parameters
    ----------
    positions : (N, 3) float64 device array
        Positions, nm.
    atoms : (M,) int64 device array
        Restrained particles.
    reference : (M, 3) float64 device array
        Reference positions, nm.
    k : (M,) float64 device array
        Force constants, kJ/mol/nm^2.
    system_index : (N,) int32 device array
        System of each particle (selects the box).
    boxes : (S, 3, 3) float64 device array
        Box vectors of each system as rows, nm, reduced form.
    periodic : (S,) int32 device array
        1 if the system is periodic.
    forces : (N, 3) int64 device array
        Fixed-point force accumulator; the forces (kJ/mol/nm) are added to it.
    energies : (M,) float64 device array
        Energy of each restraint, kJ/mol (written).
    """
    m = cuda.grid(1)
    if m >= atoms.shape[0]:
        return
    i = atoms[m]
    s = system_index[i]
    e, fx, fy, fz = _position_restraint(positions[i, 0] - reference[m, 0],
                                        positions[i, 1] - reference[m, 1],
                                        positions[i, 2] - reference[m, 2], k[m], boxes[s],
                                        periodic[s] != 0)
    energies[m] = e
    add_force(forces, i, fx, fy, fz)


@cuda.jit
def cmap_torsions_kernel(positions, atoms, torsion_map, map_sizes, patch_offsets, coeffs, forces,
                         energies):
    """E = bicubic patch of the pair's map at (phi, psi), per CMAP torsion pair.

    The body of the CPU's ``cmap_kernel`` loop for pair m (OpenMM's CMAPTorsionForce): the
    shared torsion geometry, patch polynomial and torsion forces, the same angle-to-patch
    mapping, forces added with atomics.  Like the CPU and OpenMM (whose CMAPTorsionForce is not
    periodic by default) the torsions use the raw positions, no minimum image.

    Parameters
    ----------
    positions : (N, 3) float64 device array
        Positions, nm.
    atoms : (M, 8) int64 device array
        Four atoms of phi, then four of psi.
    torsion_map : (M,) int64 device array
        Map of each pair.
    map_sizes : (K,) int64 device array
        Grid points per dimension of each map.
    patch_offsets : (K,) int64 device array
        First row of each map in ``coeffs``.
    coeffs : (P, 16) float64 device array
        Patch coefficients, kJ/mol (see ``common.laws.cmap``).
    forces : (N, 3) int64 device array
        Fixed-point force accumulator; the forces (kJ/mol/nm) are added to it.
    energies : (M,) float64 device array
        Energy of each pair, kJ/mol (written).
    """
    m = cuda.grid(1)
    if m >= atoms.shape[0]:
        return
    e, f_phi, f_psi = _cmap_pair(positions, atoms, m, torsion_map, map_sizes, patch_offsets,
                                 coeffs)
    energies[m] = e
    add_torsion_forces(forces, atoms[m, 0], atoms[m, 1], atoms[m, 2], atoms[m, 3], f_phi)
    add_torsion_forces(forces, atoms[m, 4], atoms[m, 5], atoms[m, 6], atoms[m, 7], f_psi)


# --------------------------------------------------------------------------------------------
# Term classes: the CUDA counterpart of CpuTerm
# --------------------------------------------------------------------------------------------


def _device_index(values, width: int | None = None):
    """Device copy of an index table as int64, (M, width), or (M,) if ``width`` is None."""
    shape = (-1,) if width is None else (-1, width)
    return cuda.to_device(np.ascontiguousarray(np.asarray(values, dtype=np.int64).reshape(shape)))


def _device_float(values, width: int | None = None):
    """Device copy of a parameter column as float64, (M,) or (M, width)."""
    shape = (-1,) if width is None else (-1, width)
    return cuda.to_device(np.ascontiguousarray(np.asarray(values, dtype=np.float64).reshape(shape)))


class CudaTerm:
    """One force term compiled for the GPU: parameters on the device, one thread per entry.

    Subclasses upload their tables once and then evaluate many times.

    Attributes
    ----------
    name : str
        Key of the energy in ``evaluate(...).terms`` (the OpenMM force class).
    profile_phase : str
        Where its time is counted when profiling (``bencao.profiling``).
    """

    name = "term"
    profile_phase = "bonded"
    #: ``compute(..., energy=False)`` skips the energy sum, a device-to-host transfer that would
    #: stall every step of a run kept on the GPU
    energy_optional = True

    def __init__(self, term, n_terms: int):
        self.name = term.name
        self.n_terms = int(n_terms)
        # One energy slot per thread, summed on the host in a fixed way (see the module notes).
        self._energies = cuda.device_array(max(self.n_terms, 1), dtype=np.float64)

    def launch(self, state) -> None:
        """Run the kernel for all entries on ``state`` (overridden by each term)."""
        raise NotImplementedError

    def compute(self, state, box, energy: bool = True) -> float:
        """Add this term's forces to ``state.forces`` and return its energy (NaN if ``energy``
        is False: the kernel still fills the slots, but nothing is copied back).

        Parameters
        ----------
        state : CudaState
            Device positions (nm), fixed-point forces, system indices and boxes.
        box : (3, 3) float64 array or None
            Box vectors as rows, nm (bonded terms other than restraints are not periodic; the
            restraints read the box from ``state``, which holds the same box).

        energy : bool
            Sum and return the energy.

        Returns
        -------
        float
            Energy of the term, kJ/mol.
        """
        if self.n_terms == 0:
            return 0.0
        self.launch(state)
        if not energy:
            return math.nan
        # math.fsum is exactly rounded: the sum cannot depend on the order of the slots.
        return math.fsum(self._energies.copy_to_host()[: self.n_terms])

    def _grid(self):
        return launch_config(self.n_terms)


class CudaListedTerm(CudaTerm):
    """Any listed bonded term on the GPU: the kernel of its shape with its registered law.

    Parameters
    ----------
    term : record of ``bencao.forces``
        A term whose type is registered in ``backends.common.laws``.
    """

    def __init__(self, term):
        entry = listed_law(type(term))
        atoms, params = entry.tables(term)
        super().__init__(term, atoms.shape[0])
        self.atoms = cuda.to_device(atoms)
        self.params = cuda.to_device(params)
        self._kernel = listed_kernel(entry.n_atoms, entry.law)

    def launch(self, state) -> None:
        """Run the term's kernel on ``state``."""
        blocks, threads = self._grid()
        self._kernel[blocks, threads](state.positions, self.atoms, self.params, state.forces,
                                      self._energies)


# Every listed term, those registered later included, is computed by CudaListedTerm.
for_each_listed_law(lambda entry: register_kernel("cuda", entry.record)(CudaListedTerm))


@register_kernel("cuda", PositionRestraints)
class CudaPositionRestraints(CudaTerm):
    """Position restraints on the GPU (minimum image in the particle's system box, if periodic).

    Parameters
    ----------
    term : PositionRestraints
        Restrained particles, reference positions (nm) and force constants (kJ/mol/nm^2).
    """

    def __init__(self, term: PositionRestraints):
        atoms, reference, k = restraint_tables(term)
        super().__init__(term, len(atoms))
        self.atoms = _device_index(atoms)
        self.reference = _device_float(reference, 3)
        self.k = _device_float(k)

    def launch(self, state) -> None:
        """Run the restraint kernel on ``state`` (its boxes and periodic flags)."""
        blocks, threads = self._grid()
        position_restraints_kernel[blocks, threads](state.positions, self.atoms, self.reference,
                                                    self.k, state.system_index, state.boxes,
                                                    state.periodic, state.forces,
                                                    self._energies)


@register_kernel("cuda", CMAPTorsions)
class CudaCMAPTorsions(CudaTerm):
    """CMAP torsion-pair corrections on the GPU, with OpenMM's interpolation (as the CPU's).

    Parameters
    ----------
    term : CMAPTorsions
        Maps (kJ/mol on OpenMM's grid, see ``forces.bonded.CMAPTorsions``) and the torsion pairs
        using them.

    Notes
    -----
    The patch tables are built on the host once, by the CPU's own construction
    (``common.laws.cmap.cmap_tables``: periodic splines, bicubic coefficients, patch offsets),
    and uploaded: the GPU interpolates exactly the surface the CPU does.
    """

    def __init__(self, term: CMAPTorsions):
        tables = cmap_tables(term)
        super().__init__(term, tables.atoms.shape[0])
        self.atoms = cuda.to_device(tables.atoms)
        self.torsion_map = cuda.to_device(tables.torsion_map)
        self.map_sizes = cuda.to_device(tables.map_sizes)
        self.patch_offsets = cuda.to_device(tables.patch_offsets)
        self.coeffs = cuda.to_device(tables.coeffs)

    def launch(self, state) -> None:
        """Run the CMAP kernel on ``state``."""
        blocks, threads = self._grid()
        cmap_torsions_kernel[blocks, threads](state.positions, self.atoms, self.torsion_map,
                                              self.map_sizes, self.patch_offsets, self.coeffs,
                                              state.forces, self._energies)
