"""CUDA bonded kernels: bonds, angles, torsions, impropers, CMAP, LJ pairs, restraints.

One thread per term, all in float64, with the CPU kernels' formulas (``backends.cpu.bonded``):
the torsion geometry and the fixed-point conversion are the CPU's own functions compiled for the
GPU, so the sign conventions and clamping cannot drift apart.  Forces go into the int64 (N, 3)
fixed-point accumulator with integer atomics, which commute, so the forces are bit-identical
whatever order the threads run in.  Each thread writes its term's energy into its own slot of a
float64 array; the host adds the slots with ``math.fsum`` (exactly rounded, so independent of
order): no floating-point atomics, so the energy is deterministic too.

Module-level float constants (the fixed-point scale and clamp, the angle guard) are frozen into
the kernels when they compile; every array is passed as an argument.
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda

from bencao.backends.cpu import bonded as cpu_bonded
from bencao.backends.cpu import cmap as cpu_cmap
from bencao.backends.cpu.cmap import CpuCMAPTorsions
from bencao.backends.cuda.common import device_function, launch_config, to_fixed
from bencao.forces.bonded import (
    CMAPTorsions,
    HarmonicAngles,
    HarmonicBonds,
    HarmonicImpropers,
    LJPairs,
    PeriodicTorsions,
    PositionRestraints,
)

_MIN_ANGLE_CROSS = cpu_bonded._MIN_ANGLE_CROSS

# The CPU's torsion geometry compiled as a device function: same angle (OpenMM's sign convention
# and acos/asin switch).  The fixed-point conversion is the CPU's too (``common.to_fixed``).
dihedral_geometry = cuda.jit(device=True)(cpu_bonded.dihedral_geometry.py_func)


@cuda.jit(device=True)
def add_force(forces, i, fx, fy, fz):
    """Atomically add the force (fx, fy, fz), kJ/mol/nm, on particle i to the int64 accumulator."""
    cuda.atomic.add(forces, (i, 0), to_fixed(fx))
    cuda.atomic.add(forces, (i, 1), to_fixed(fy))
    cuda.atomic.add(forces, (i, 2), to_fixed(fz))


@cuda.jit(device=True)
def add_dihedral_forces(forces, a, b, c, d, dE_dtheta, geom):
    """Add the forces of a torsion energy E(theta) given dE/dtheta (kJ/mol/rad) and its geometry.

    The CPU's ``add_dihedral_forces`` (Blondel-Karplus form, nothing added where a plane normal
    vanishes) with atomic additions; ``geom`` is the result of :func:`dihedral_geometry`.
    """
    n0x = geom[1]
    n0y = geom[2]
    n0z = geom[3]
    n1x = geom[4]
    n1y = geom[5]
    n1z = geom[6]
    n0sq = geom[7]
    n1sq = geom[8]
    len_bc = geom[9]
    f1 = geom[10]
    f2 = geom[11]
    if n0sq == 0.0 or n1sq == 0.0:
        return
    g0 = -dE_dtheta * len_bc / n0sq
    g3 = dE_dtheta * len_bc / n1sq
    fax = g0 * n0x
    fay = g0 * n0y
    faz = g0 * n0z
    fdx = g3 * n1x
    fdy = g3 * n1y
    fdz = g3 * n1z
    sx = f1 * fax - f2 * fdx
    sy = f1 * fay - f2 * fdy
    sz = f1 * faz - f2 * fdz
    add_force(forces, a, fax, fay, faz)
    add_force(forces, b, -(fax - sx), -(fay - sy), -(faz - sz))
    add_force(forces, c, -(fdx + sx), -(fdy + sy), -(fdz + sz))
    add_force(forces, d, fdx, fdy, fdz)


# --------------------------------------------------------------------------------------------
# Kernels: thread m handles term m, writes energies[m] (kJ/mol) and adds its forces.
# --------------------------------------------------------------------------------------------


@cuda.jit
def harmonic_bonds_kernel(positions, atoms, length, k, forces, energies):
    """E = 1/2 k (r - length)^2 per bond.

    Parameters
    ----------
    positions : (N, 3) float64 device array
        Positions, nm.
    atoms : (M, 2) int64 device array
        Bonded pairs.
    length : (M,) float64 device array
        Equilibrium lengths, nm.
    k : (M,) float64 device array
        Force constants, kJ/mol/nm^2.
    forces : (N, 3) int64 device array
        Fixed-point force accumulator; the forces (kJ/mol/nm) are added to it.
    energies : (M,) float64 device array
        Energy of each bond, kJ/mol (written).
    """
    m = cuda.grid(1)
    if m >= atoms.shape[0]:
        return
    i = atoms[m, 0]
    j = atoms[m, 1]
    dx = positions[j, 0] - positions[i, 0]
    dy = positions[j, 1] - positions[i, 1]
    dz = positions[j, 2] - positions[i, 2]
    r = math.sqrt(dx * dx + dy * dy + dz * dz)
    delta = r - length[m]
    energies[m] = 0.5 * k[m] * delta * delta
    # Two coincident atoms have no bond direction: no force, as on the CPU and in OpenMM.
    if r > 0.0:
        s = k[m] * delta / r
        add_force(forces, i, s * dx, s * dy, s * dz)
        add_force(forces, j, -s * dx, -s * dy, -s * dz)


@cuda.jit
def harmonic_angles_kernel(positions, atoms, angle, k, forces, energies):
    """E = 1/2 k (theta - angle)^2 per angle.

    Parameters
    ----------
    positions : (N, 3) float64 device array
        Positions, nm.
    atoms : (M, 3) int64 device array
        Angle triplets, vertex in the middle.
    angle : (M,) float64 device array
        Equilibrium angles, rad.
    k : (M,) float64 device array
        Force constants, kJ/mol/rad^2.
    forces : (N, 3) int64 device array
        Fixed-point force accumulator; the forces (kJ/mol/nm) are added to it.
    energies : (M,) float64 device array
        Energy of each angle, kJ/mol (written).
    """
    m = cuda.grid(1)
    if m >= atoms.shape[0]:
        return
    a = atoms[m, 0]
    b = atoms[m, 1]
    c = atoms[m, 2]
    ux = positions[a, 0] - positions[b, 0]
    uy = positions[a, 1] - positions[b, 1]
    uz = positions[a, 2] - positions[b, 2]
    vx = positions[c, 0] - positions[b, 0]
    vy = positions[c, 1] - positions[b, 1]
    vz = positions[c, 2] - positions[b, 2]
    px = uy * vz - uz * vy
    py = uz * vx - ux * vz
    pz = ux * vy - uy * vx
    rp = math.sqrt(px * px + py * py + pz * pz)
    dot = ux * vx + uy * vy + uz * vz
    # atan2 is accurate at every angle (see the CPU kernel).
    theta = math.atan2(rp, dot)
    delta = theta - angle[m]
    energies[m] = 0.5 * k[m] * delta * delta
    dE = k[m] * delta
    # OpenMM's guard: a straight angle gives zero force instead of 0/0.
    rp = max(rp, _MIN_ANGLE_CROSS)
    u2 = ux * ux + uy * uy + uz * uz
    v2 = vx * vx + vy * vy + vz * vz
    ta = -dE / (u2 * rp)
    tc = dE / (v2 * rp)
    fax = ta * (uy * pz - uz * py)
    fay = ta * (uz * px - ux * pz)
    faz = ta * (ux * py - uy * px)
    fcx = tc * (vy * pz - vz * py)
    fcy = tc * (vz * px - vx * pz)
    fcz = tc * (vx * py - vy * px)
    add_force(forces, a, fax, fay, faz)
    add_force(forces, c, fcx, fcy, fcz)
    add_force(forces, b, -(fax + fcx), -(fay + fcy), -(faz + fcz))


@cuda.jit
def periodic_torsions_kernel(positions, atoms, periodicity, phase, k, forces, energies):
    """E = k (1 + cos(n theta - phase)) per torsion.

    Parameters
    ----------
    positions : (N, 3) float64 device array
        Positions, nm.
    atoms : (M, 4) int64 device array
        Torsion quadruplets.
    periodicity : (M,) int64 device array
        Multiplicities n.
    phase : (M,) float64 device array
        Phases, rad.
    k : (M,) float64 device array
        Barrier constants, kJ/mol.
    forces : (N, 3) int64 device array
        Fixed-point force accumulator; the forces (kJ/mol/nm) are added to it.
    energies : (M,) float64 device array
        Energy of each torsion, kJ/mol (written).
    """
    m = cuda.grid(1)
    if m >= atoms.shape[0]:
        return
    a = atoms[m, 0]
    b = atoms[m, 1]
    c = atoms[m, 2]
    d = atoms[m, 3]
    geom = dihedral_geometry(positions, a, b, c, d)
    n = np.float64(periodicity[m])
    arg = n * geom[0] - phase[m]
    energies[m] = k[m] * (1.0 + math.cos(arg))
    add_dihedral_forces(forces, a, b, c, d, -k[m] * n * math.sin(arg), geom)


@cuda.jit
def harmonic_impropers_kernel(positions, atoms, theta0, k, wrap, forces, energies):
    """E = k d^2 with d = theta - theta0, or its periodic minimum if ``wrap``.

    Parameters
    ----------
    positions : (N, 3) float64 device array
        Positions, nm.
    atoms : (M, 4) int64 device array
        Improper quadruplets.
    theta0 : (M,) float64 device array
        Equilibrium angles, rad.
    k : (M,) float64 device array
        Force constants, kJ/mol/rad^2.
    wrap : bool
        Use d = min(|dtheta|, 2 pi - |dtheta|) (CHARMM psf form) instead of d = dtheta.
    forces : (N, 3) int64 device array
        Fixed-point force accumulator; the forces (kJ/mol/nm) are added to it.
    energies : (M,) float64 device array
        Energy of each improper, kJ/mol (written).
    """
    m = cuda.grid(1)
    if m >= atoms.shape[0]:
        return
    a = atoms[m, 0]
    b = atoms[m, 1]
    c = atoms[m, 2]
    d = atoms[m, 3]
    two_pi = 2.0 * math.pi
    geom = dihedral_geometry(positions, a, b, c, d)
    delta = geom[0] - theta0[m]
    if wrap:
        adelta = abs(delta)
        sign = 1.0 if delta >= 0.0 else -1.0
        if two_pi - adelta < adelta:
            # Shorter the other way round the circle: d shrinks as |dtheta| grows.
            dist = two_pi - adelta
            dE = -2.0 * k[m] * dist * sign
        else:
            dist = adelta
            dE = 2.0 * k[m] * dist * sign
    else:
        dist = delta
        dE = 2.0 * k[m] * delta
    energies[m] = k[m] * dist * dist
    add_dihedral_forces(forces, a, b, c, d, dE, geom)


@cuda.jit
def lj_pairs_kernel(positions, atoms, c12, c6, forces, energies):
    """E = c12 / r^12 - c6 / r^6 per listed pair.

    Parameters
    ----------
    positions : (N, 3) float64 device array
        Positions, nm.
    atoms : (M, 2) int64 device array
        Pairs.
    c12 : (M,) float64 device array
        Repulsion coefficients, kJ/mol nm^12.
    c6 : (M,) float64 device array
        Dispersion coefficients, kJ/mol nm^6.
    forces : (N, 3) int64 device array
        Fixed-point force accumulator; the forces (kJ/mol/nm) are added to it.
    energies : (M,) float64 device array
        Energy of each pair, kJ/mol (written).
    """
    m = cuda.grid(1)
    if m >= atoms.shape[0]:
        return
    i = atoms[m, 0]
    j = atoms[m, 1]
    dx = positions[j, 0] - positions[i, 0]
    dy = positions[j, 1] - positions[i, 1]
    dz = positions[j, 2] - positions[i, 2]
    inv_r2 = 1.0 / (dx * dx + dy * dy + dz * dz)
    inv_r6 = inv_r2 * inv_r2 * inv_r2
    rep = c12[m] * inv_r6 * inv_r6
    disp = c6[m] * inv_r6
    energies[m] = rep - disp
    # -dE/dr / r, so that F_j = s * (x_j - x_i).
    s = (12.0 * rep - 6.0 * disp) * inv_r2
    add_force(forces, i, -s * dx, -s * dy, -s * dz)
    add_force(forces, j, s * dx, s * dy, s * dz)


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
    dx = positions[i, 0] - reference[m, 0]
    dy = positions[i, 1] - reference[m, 1]
    dz = positions[i, 2] - reference[m, 2]
    s = system_index[i]
    if periodic[s] != 0:
        # The CPU's minimum_image, in the same order (c, then b, then a); math.floor is the
        # floor every CUDA target has.
        shift = math.floor(dz / boxes[s, 2, 2] + 0.5)
        dx -= shift * boxes[s, 2, 0]
        dy -= shift * boxes[s, 2, 1]
        dz -= shift * boxes[s, 2, 2]
        shift = math.floor(dy / boxes[s, 1, 1] + 0.5)
        dx -= shift * boxes[s, 1, 0]
        dy -= shift * boxes[s, 1, 1]
        shift = math.floor(dx / boxes[s, 0, 0] + 0.5)
        dx -= shift * boxes[s, 0, 0]
    energies[m] = 0.5 * k[m] * (dx * dx + dy * dy + dz * dz)
    add_force(forces, i, -k[m] * dx, -k[m] * dy, -k[m] * dz)


# The CPU's patch polynomial, a pure function (array reads and arithmetic only): compiled for the
# GPU, plain Python in the simulator (see ``common.device_function``).
cmap_patch = device_function(cpu_cmap.cmap_patch.py_func)


@cuda.jit
def cmap_torsions_kernel(positions, atoms, torsion_map, map_sizes, patch_offsets, coeffs, forces,
                         energies):
    """E = bicubic patch of the pair's map at (phi, psi), per CMAP torsion pair.

    The body of the CPU's ``cmap_kernel`` loop for pair m (OpenMM's CMAPTorsionForce): the
    CPU's torsion geometry, the same angle-to-patch mapping and patch polynomial, and the torsion
    forces of ``add_dihedral_forces`` applied with atomic additions.  Like the CPU and OpenMM
    (whose CMAPTorsionForce is not periodic by default) the torsions use the raw positions, no
    minimum image, as the other torsion kernels here.

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
        Patch coefficients, kJ/mol (see ``cpu.cmap.cmap_patch``).
    forces : (N, 3) int64 device array
        Fixed-point force accumulator; the forces (kJ/mol/nm) are added to it.
    energies : (M,) float64 device array
        Energy of each pair, kJ/mol (written).
    """
    m = cuda.grid(1)
    if m >= atoms.shape[0]:
        return
    a1 = atoms[m, 0]
    a2 = atoms[m, 1]
    a3 = atoms[m, 2]
    a4 = atoms[m, 3]
    b1 = atoms[m, 4]
    b2 = atoms[m, 5]
    b3 = atoms[m, 6]
    b4 = atoms[m, 7]
    two_pi = 2.0 * math.pi
    geom_a = dihedral_geometry(positions, a1, a2, a3, a4)
    geom_b = dihedral_geometry(positions, b1, b2, b3, b4)
    # Map (-pi, pi] onto [0, 2 pi), the grid's range.  math.fmod is exact, as is the CPU's
    # np.fmod, so both give the same bits (and math.fmod exists on every CUDA target).
    phi = math.fmod(geom_a[0] + two_pi, two_pi)
    psi = math.fmod(geom_b[0] + two_pi, two_pi)

    mp = torsion_map[m]
    size = map_sizes[mp]
    delta = two_pi / size
    # The CPU's min(x / delta, size - 1.0), which keeps an angle that rounds to 2 pi inside the
    # last patch, as a comparison: the same value, and Numba 0.68's CUDA target cannot compile
    # the builtin min's generic (*args) overload (checked with cuda.compile_ptx for sm_90).
    phi_cells = phi / delta
    if phi_cells > size - 1.0:  # noqa: PLR1730 - builtin min does not compile for CUDA, above
        phi_cells = size - 1.0
    psi_cells = psi / delta
    if psi_cells > size - 1.0:  # noqa: PLR1730 - as for phi
        psi_cells = size - 1.0
    s = np.int64(phi_cells)
    t = np.int64(psi_cells)
    row = patch_offsets[mp] + s + size * t
    u = phi / delta - s
    v = psi / delta - t
    e, de_du, de_dv = cmap_patch(coeffs, row, u, v)
    energies[m] = e
    add_dihedral_forces(forces, a1, a2, a3, a4, de_du / delta, geom_a)
    add_dihedral_forces(forces, b1, b2, b3, b4, de_dv / delta, geom_b)


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


class CudaHarmonicBonds(CudaTerm):
    """Harmonic bonds on the GPU.

    Parameters
    ----------
    term : HarmonicBonds
        Bond table (nm, kJ/mol/nm^2).
    """

    def __init__(self, term: HarmonicBonds):
        super().__init__(term, len(np.asarray(term.length).reshape(-1)))
        self.atoms = _device_index(term.atoms, 2)
        self.length = _device_float(term.length)
        self.k = _device_float(term.k)

    def launch(self, state) -> None:
        """Run the bond kernel on ``state``."""
        blocks, threads = self._grid()
        harmonic_bonds_kernel[blocks, threads](state.positions, self.atoms, self.length, self.k,
                                               state.forces, self._energies)


class CudaHarmonicAngles(CudaTerm):
    """Harmonic angles on the GPU.

    Parameters
    ----------
    term : HarmonicAngles
        Angle table (rad, kJ/mol/rad^2).
    """

    def __init__(self, term: HarmonicAngles):
        super().__init__(term, len(np.asarray(term.angle).reshape(-1)))
        self.atoms = _device_index(term.atoms, 3)
        self.angle = _device_float(term.angle)
        self.k = _device_float(term.k)

    def launch(self, state) -> None:
        """Run the angle kernel on ``state``."""
        blocks, threads = self._grid()
        harmonic_angles_kernel[blocks, threads](state.positions, self.atoms, self.angle, self.k,
                                                state.forces, self._energies)


class CudaPeriodicTorsions(CudaTerm):
    """Periodic (cosine) torsions on the GPU.

    Parameters
    ----------
    term : PeriodicTorsions
        Torsion table (multiplicity, phase in rad, k in kJ/mol).
    """

    def __init__(self, term: PeriodicTorsions):
        super().__init__(term, len(np.asarray(term.k).reshape(-1)))
        self.atoms = _device_index(term.atoms, 4)
        self.periodicity = _device_index(term.periodicity)
        self.phase = _device_float(term.phase)
        self.k = _device_float(term.k)

    def launch(self, state) -> None:
        """Run the torsion kernel on ``state``."""
        blocks, threads = self._grid()
        periodic_torsions_kernel[blocks, threads](state.positions, self.atoms, self.periodicity,
                                                  self.phase, self.k, state.forces,
                                                  self._energies)


class CudaHarmonicImpropers(CudaTerm):
    """Harmonic impropers E = k d^2 on the GPU (wrapped or literal difference).

    Parameters
    ----------
    term : HarmonicImpropers
        Improper table (theta0 in rad, k in kJ/mol/rad^2, ``wrap`` flag).
    """

    def __init__(self, term: HarmonicImpropers):
        super().__init__(term, len(np.asarray(term.k).reshape(-1)))
        self.atoms = _device_index(term.atoms, 4)
        self.theta0 = _device_float(term.theta0)
        self.k = _device_float(term.k)
        self.wrap = bool(term.wrap)

    def launch(self, state) -> None:
        """Run the improper kernel on ``state``."""
        blocks, threads = self._grid()
        harmonic_impropers_kernel[blocks, threads](state.positions, self.atoms, self.theta0,
                                                   self.k, self.wrap, state.forces,
                                                   self._energies)


class CudaLJPairs(CudaTerm):
    """Listed Lennard-Jones pairs E = c12/r^12 - c6/r^6 on the GPU (scaled 1-4 pairs).

    Parameters
    ----------
    term : LJPairs
        Pair table (c12 in kJ/mol nm^12, c6 in kJ/mol nm^6).
    """

    def __init__(self, term: LJPairs):
        super().__init__(term, len(np.asarray(term.c12).reshape(-1)))
        self.atoms = _device_index(term.atoms, 2)
        self.c12 = _device_float(term.c12)
        self.c6 = _device_float(term.c6)

    def launch(self, state) -> None:
        """Run the pair kernel on ``state``."""
        blocks, threads = self._grid()
        lj_pairs_kernel[blocks, threads](state.positions, self.atoms, self.c12, self.c6,
                                         state.forces, self._energies)


class CudaPositionRestraints(CudaTerm):
    """Position restraints on the GPU (minimum image in the particle's system box, if periodic).

    Parameters
    ----------
    term : PositionRestraints
        Restrained particles, reference positions (nm) and force constants (kJ/mol/nm^2).
    """

    def __init__(self, term: PositionRestraints):
        atoms = np.asarray(term.atoms, dtype=np.int64).reshape(-1)
        reference = np.asarray(term.reference, dtype=np.float64).reshape(-1, 3)
        k = np.asarray(term.k, dtype=np.float64).reshape(-1)
        if not (len(atoms) == len(reference) == len(k)):
            raise ValueError("position restraints need one reference position and k per particle")
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


class CudaCMAPTorsions(CudaTerm):
    """CMAP torsion-pair corrections on the GPU, with OpenMM's interpolation (as the CPU's).

    Parameters
    ----------
    term : CMAPTorsions
        Maps (kJ/mol on OpenMM's grid, see ``forces.bonded.CMAPTorsions``) and the torsion pairs
        using them.

    Notes
    -----
    The patch tables are built on the host once, by the CPU term itself (its periodic splines and
    bicubic coefficients, ``cpu.cmap.cmap_patch_coefficients``, and its patch offsets), and
    uploaded: the GPU interpolates exactly the surface the CPU does.
    """

    def __init__(self, term: CMAPTorsions):
        host = CpuCMAPTorsions(term)
        super().__init__(term, host.atoms.shape[0])
        self.atoms = _device_index(host.atoms, 8)
        self.torsion_map = _device_index(host.torsion_map)
        self.map_sizes = _device_index(host.map_sizes)
        self.patch_offsets = _device_index(host.patch_offsets)
        self.coeffs = _device_float(host.coeffs, 16)

    def launch(self, state) -> None:
        """Run the CMAP kernel on ``state``."""
        blocks, threads = self._grid()
        cmap_torsions_kernel[blocks, threads](state.positions, self.atoms, self.torsion_map,
                                              self.map_sizes, self.patch_offsets, self.coeffs,
                                              state.forces, self._energies)
