"""CPU kernels for the bonded terms: bonds, angles, torsions, harmonic impropers and LJ pairs.

Every kernel is a serial Numba loop (bonded work is small next to the nonbonded pairs) that
computes in float64 and adds forces only through :func:`~bencao.backends.common.fixed_point.add_force`.
Bonded terms never use periodic boundaries (OpenMM's default for these forces), so the box is
ignored.  The geometry follows OpenMM's Reference platform exactly, including the torsion sign
convention and the guards for degenerate (collinear) geometry, so that energies agree to rounding.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from bencao.backends.common.fixed_point import add_force
from bencao.backends.common.registry import register_kernel
from bencao.backends.cpu.base import CpuTerm
from bencao.backends.cpu.neighbors import minimum_image
from bencao.forces.bonded import (
    HarmonicAngles,
    HarmonicBonds,
    HarmonicImpropers,
    LJPairs,
    PeriodicTorsions,
    PositionRestraints,
)

# OpenMM clamps |r_ba x r_bc| from below in the angle force so a straight angle gives zero force
# instead of 0/0; we copy the value (nm^2) to stay identical to the Reference platform.
_MIN_ANGLE_CROSS = 1.0e-6


# --------------------------------------------------------------------------------------------
# Shared torsion geometry (also used by the CMAP kernel)
# --------------------------------------------------------------------------------------------


@njit(cache=True, inline="always")
def dihedral_geometry(positions, a, b, c, d):
    """Torsion angle of atoms a-b-c-d and the pieces its gradient needs (OpenMM's convention).

    With r0 = x_a - x_b, r1 = x_c - x_b, r2 = x_c - x_d, the plane normals are
    n0 = r0 x r1 and n1 = r1 x r2; the angle between them is taken with acos, or asin near 0 and
    pi where acos loses precision (exactly as OpenMM), and gets the sign of r0 . n1.  The result
    lies in (-pi, pi] and equals the IUPAC dihedral.  If a normal vanishes (three collinear atoms)
    OpenMM's normalised dot product is 0, so the angle is pi/2; we return the same.

    Parameters
    ----------
    positions : (N, 3) float64 array
        Positions, nm.
    a, b, c, d : int
        Particle indices.

    Returns
    -------
    tuple
        (theta [rad], n0x, n0y, n0z, n1x, n1y, n1z [nm^2], n0sq, n1sq [nm^4], len_bc [nm],
        r0.r1 / |r1|^2, r2.r1 / |r1|^2 [dimensionless]).
    """
    r0x = positions[a, 0] - positions[b, 0]
    r0y = positions[a, 1] - positions[b, 1]
    r0z = positions[a, 2] - positions[b, 2]
    r1x = positions[c, 0] - positions[b, 0]
    r1y = positions[c, 1] - positions[b, 1]
    r1z = positions[c, 2] - positions[b, 2]
    r2x = positions[c, 0] - positions[d, 0]
    r2y = positions[c, 1] - positions[d, 1]
    r2z = positions[c, 2] - positions[d, 2]

    n0x = r0y * r1z - r0z * r1y
    n0y = r0z * r1x - r0x * r1z
    n0z = r0x * r1y - r0y * r1x
    n1x = r1y * r2z - r1z * r2y
    n1y = r1z * r2x - r1x * r2z
    n1z = r1x * r2y - r1y * r2x
    n0sq = n0x * n0x + n0y * n0y + n0z * n0z
    n1sq = n1x * n1x + n1y * n1y + n1z * n1z

    dot = n0x * n1x + n0y * n1y + n0z * n1z
    cosine = 0.0
    if dot != 0.0:
        cosine = dot / math.sqrt(n0sq * n1sq)
    cosine = min(1.0, max(-1.0, cosine))
    if cosine > 0.99 or cosine < -0.99:
        # acos is ill-conditioned here: use |n0 x n1| = |n0||n1| sin(theta) instead.
        cx = n0y * n1z - n0z * n1y
        cy = n0z * n1x - n0x * n1z
        cz = n0x * n1y - n0y * n1x
        theta = math.asin(math.sqrt((cx * cx + cy * cy + cz * cz) / (n0sq * n1sq)))
        if cosine < 0.0:
            theta = math.pi - theta
    else:
        theta = math.acos(cosine)
    if r0x * n1x + r0y * n1y + r0z * n1z < 0.0:
        theta = -theta

    r1sq = r1x * r1x + r1y * r1y + r1z * r1z
    len_bc = math.sqrt(r1sq)
    f1 = 0.0
    f2 = 0.0
    if r1sq > 0.0:
        f1 = (r0x * r1x + r0y * r1y + r0z * r1z) / r1sq
        f2 = (r2x * r1x + r2y * r1y + r2z * r1z) / r1sq
    return theta, n0x, n0y, n0z, n1x, n1y, n1z, n0sq, n1sq, len_bc, f1, f2


@njit(cache=True, inline="always")
def add_dihedral_forces(forces, a, b, c, d, dE_dtheta, geom):
    """Add the forces of an energy E(theta) of a torsion, given dE/dtheta and its geometry.

    This is the Blondel-Karplus form OpenMM uses (no division by sin(theta)).  Where a plane
    normal vanishes the gradient is undefined; OpenMM gives 0/0 there, we add nothing.

    Parameters
    ----------
    forces : (N, 3) int64 array
        Fixed-point force accumulator.
    a, b, c, d : int
        Particle indices.
    dE_dtheta : float
        Derivative of the energy with respect to the torsion angle, kJ/mol/rad.
    geom : tuple
        The result of :func:`dihedral_geometry` for the same atoms.
    """
    _, n0x, n0y, n0z, n1x, n1y, n1z, n0sq, n1sq, len_bc, f1, f2 = geom
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
# Kernels
# --------------------------------------------------------------------------------------------


@njit(cache=True)
def harmonic_bonds_kernel(positions, atoms, length, k, forces):
    """E = 1/2 k (r - length)^2 per bond; returns the energy (kJ/mol) and adds forces.

    Parameters
    ----------
    positions : (N, 3) float64 array
        Positions, nm.
    atoms : (M, 2) int64 array
        Bonded pairs.
    length : (M,) float64 array
        Equilibrium lengths, nm.
    k : (M,) float64 array
        Force constants, kJ/mol/nm^2.
    forces : (N, 3) int64 array
        Fixed-point force accumulator; the forces (kJ/mol/nm) are added to it.

    Returns
    -------
    float
        Energy, kJ/mol.
    """
    energy = 0.0
    for m in range(atoms.shape[0]):
        i = atoms[m, 0]
        j = atoms[m, 1]
        dx = positions[j, 0] - positions[i, 0]
        dy = positions[j, 1] - positions[i, 1]
        dz = positions[j, 2] - positions[i, 2]
        r = math.sqrt(dx * dx + dy * dy + dz * dz)
        delta = r - length[m]
        energy += 0.5 * k[m] * delta * delta
        # Two coincident atoms have no bond direction: OpenMM applies no force, nor do we.
        if r > 0.0:
            s = k[m] * delta / r
            add_force(forces, i, s * dx, s * dy, s * dz)
            add_force(forces, j, -s * dx, -s * dy, -s * dz)
    return energy


@njit(cache=True)
def harmonic_angles_kernel(positions, atoms, angle, k, forces):
    """E = 1/2 k (theta - angle)^2 per angle; returns the energy (kJ/mol) and adds forces.

    Parameters
    ----------
    positions : (N, 3) float64 array
        Positions, nm.
    atoms : (M, 3) int64 array
        Angle triplets, vertex in the middle.
    angle : (M,) float64 array
        Equilibrium angles, rad.
    k : (M,) float64 array
        Force constants, kJ/mol/rad^2.
    forces : (N, 3) int64 array
        Fixed-point force accumulator; the forces (kJ/mol/nm) are added to it.

    Returns
    -------
    float
        Energy, kJ/mol.
    """
    energy = 0.0
    for m in range(atoms.shape[0]):
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
        # atan2 is accurate at every angle, acos only away from 0 and pi; for a straight angle
        # (rp = 0) it gives exactly 0 or pi, as OpenMM's clamped acos does.
        theta = math.atan2(rp, dot)
        delta = theta - angle[m]
        energy += 0.5 * k[m] * delta * delta
        dE = k[m] * delta
        rp = max(rp, _MIN_ANGLE_CROSS)
        u2 = ux * ux + uy * uy + uz * uz
        v2 = vx * vx + vy * vy + vz * vz
        # u x p lies in the plane, normal to u, pointing away from c: dtheta/dx_a =
        # (u x p) / (|u|^2 |p|); likewise dtheta/dx_c = -(v x p) / (|v|^2 |p|).
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
    return energy


@njit(cache=True)
def periodic_torsions_kernel(positions, atoms, periodicity, phase, k, forces):
    """E = k (1 + cos(n theta - phase)) per torsion; returns the energy (kJ/mol), adds forces.

    Parameters
    ----------
    positions : (N, 3) float64 array
        Positions, nm.
    atoms : (M, 4) int64 array
        Torsion quadruplets.
    periodicity : (M,) int64 array
        Multiplicities n.
    phase : (M,) float64 array
        Phases, rad.
    k : (M,) float64 array
        Barrier constants, kJ/mol.
    forces : (N, 3) int64 array
        Fixed-point force accumulator; the forces (kJ/mol/nm) are added to it.

    Returns
    -------
    float
        Energy, kJ/mol.
    """
    energy = 0.0
    for m in range(atoms.shape[0]):
        a = atoms[m, 0]
        b = atoms[m, 1]
        c = atoms[m, 2]
        d = atoms[m, 3]
        geom = dihedral_geometry(positions, a, b, c, d)
        n = np.float64(periodicity[m])
        arg = n * geom[0] - phase[m]
        energy += k[m] * (1.0 + math.cos(arg))
        add_dihedral_forces(forces, a, b, c, d, -k[m] * n * math.sin(arg), geom)
    return energy


@njit(cache=True)
def harmonic_impropers_kernel(positions, atoms, theta0, k, wrap, forces):
    """E = k d^2 with d = theta - theta0 (or its periodic minimum if ``wrap``); returns kJ/mol.

    Parameters
    ----------
    positions : (N, 3) float64 array
        Positions, nm.
    atoms : (M, 4) int64 array
        Improper quadruplets.
    theta0 : (M,) float64 array
        Equilibrium angles, rad.
    k : (M,) float64 array
        Force constants, kJ/mol/rad^2.
    wrap : bool
        Use d = min(|dtheta|, 2 pi - |dtheta|) (CHARMM psf form) instead of d = dtheta.
    forces : (N, 3) int64 array
        Fixed-point force accumulator; the forces (kJ/mol/nm) are added to it.

    Returns
    -------
    float
        Energy, kJ/mol.
    """
    energy = 0.0
    two_pi = 2.0 * math.pi
    for m in range(atoms.shape[0]):
        a = atoms[m, 0]
        b = atoms[m, 1]
        c = atoms[m, 2]
        d = atoms[m, 3]
        geom = dihedral_geometry(positions, a, b, c, d)
        delta = geom[0] - theta0[m]
        if wrap:
            adelta = abs(delta)
            sign = 1.0 if delta >= 0.0 else -1.0
            if two_pi - adelta < adelta:
                # Shorter the other way round the circle: d = 2 pi - |dtheta| shrinks as |dtheta|
                # grows, hence the flipped sign of the derivative.
                dist = two_pi - adelta
                dE = -2.0 * k[m] * dist * sign
            else:
                dist = adelta
                dE = 2.0 * k[m] * dist * sign
        else:
            dist = delta
            dE = 2.0 * k[m] * delta
        energy += k[m] * dist * dist
        add_dihedral_forces(forces, a, b, c, d, dE, geom)
    return energy


@njit(cache=True)
def lj_pairs_kernel(positions, atoms, c12, c6, forces):
    """E = c12 / r^12 - c6 / r^6 per listed pair; returns the energy (kJ/mol) and adds forces.

    Parameters
    ----------
    positions : (N, 3) float64 array
        Positions, nm.
    atoms : (M, 2) int64 array
        Pairs.
    c12 : (M,) float64 array
        Repulsion coefficients, kJ/mol nm^12.
    c6 : (M,) float64 array
        Dispersion coefficients, kJ/mol nm^6.
    forces : (N, 3) int64 array
        Fixed-point force accumulator; the forces (kJ/mol/nm) are added to it.

    Returns
    -------
    float
        Energy, kJ/mol.
    """
    energy = 0.0
    for m in range(atoms.shape[0]):
        i = atoms[m, 0]
        j = atoms[m, 1]
        dx = positions[j, 0] - positions[i, 0]
        dy = positions[j, 1] - positions[i, 1]
        dz = positions[j, 2] - positions[i, 2]
        inv_r2 = 1.0 / (dx * dx + dy * dy + dz * dz)
        inv_r6 = inv_r2 * inv_r2 * inv_r2
        rep = c12[m] * inv_r6 * inv_r6
        disp = c6[m] * inv_r6
        energy += rep - disp
        # -dE/dr / r, so that F_j = s * (x_j - x_i).
        s = (12.0 * rep - 6.0 * disp) * inv_r2
        add_force(forces, i, -s * dx, -s * dy, -s * dz)
        add_force(forces, j, s * dx, s * dy, s * dz)
    return energy


# --------------------------------------------------------------------------------------------
# CpuTerm wrappers
# --------------------------------------------------------------------------------------------


def _index_array(values, width: int) -> np.ndarray:
    """Contiguous (M, width) int64 copy of an index table (accepts an empty table of any shape)."""
    return np.ascontiguousarray(np.asarray(values, dtype=np.int64).reshape(-1, width))


def _float_array(values) -> np.ndarray:
    """Contiguous 1-D float64 copy of a parameter column."""
    return np.ascontiguousarray(np.asarray(values, dtype=np.float64).reshape(-1))


@register_kernel("cpu", HarmonicBonds)
class CpuHarmonicBonds(CpuTerm):
    """Harmonic bonds on the CPU.

    Parameters
    ----------
    term : HarmonicBonds
        Bond table (nm, kJ/mol/nm^2).
    """

    def __init__(self, term: HarmonicBonds):
        self.name = term.name
        self.atoms = _index_array(term.atoms, 2)
        self.length = _float_array(term.length)
        self.k = _float_array(term.k)

    def compute(self, positions, box, forces) -> float:
        """Add the bond forces (kJ/mol/nm, fixed point) and return the energy, kJ/mol.

        ``positions`` in nm; ``box`` is ignored (bonds are not periodic).
        """
        return float(harmonic_bonds_kernel(positions, self.atoms, self.length, self.k, forces))


@register_kernel("cpu", HarmonicAngles)
class CpuHarmonicAngles(CpuTerm):
    """Harmonic angles on the CPU.

    Parameters
    ----------
    term : HarmonicAngles
        Angle table (rad, kJ/mol/rad^2).
    """

    def __init__(self, term: HarmonicAngles):
        self.name = term.name
        self.atoms = _index_array(term.atoms, 3)
        self.angle = _float_array(term.angle)
        self.k = _float_array(term.k)

    def compute(self, positions, box, forces) -> float:
        """Add the angle forces (kJ/mol/nm, fixed point) and return the energy, kJ/mol.

        ``positions`` in nm; ``box`` is ignored.
        """
        return float(harmonic_angles_kernel(positions, self.atoms, self.angle, self.k, forces))


@register_kernel("cpu", PeriodicTorsions)
class CpuPeriodicTorsions(CpuTerm):
    """Periodic (cosine) torsions on the CPU.

    Parameters
    ----------
    term : PeriodicTorsions
        Torsion table (multiplicity, phase in rad, k in kJ/mol).
    """

    def __init__(self, term: PeriodicTorsions):
        self.name = term.name
        self.atoms = _index_array(term.atoms, 4)
        self.periodicity = np.ascontiguousarray(np.asarray(term.periodicity, np.int64).reshape(-1))
        self.phase = _float_array(term.phase)
        self.k = _float_array(term.k)

    def compute(self, positions, box, forces) -> float:
        """Add the torsion forces (kJ/mol/nm, fixed point) and return the energy, kJ/mol.

        ``positions`` in nm; ``box`` is ignored.
        """
        return float(
            periodic_torsions_kernel(
                positions, self.atoms, self.periodicity, self.phase, self.k, forces
            )
        )


@register_kernel("cpu", HarmonicImpropers)
class CpuHarmonicImpropers(CpuTerm):
    """Harmonic impropers E = k d^2 on the CPU (wrapped or literal difference).

    Parameters
    ----------
    term : HarmonicImpropers
        Improper table (theta0 in rad, k in kJ/mol/rad^2, ``wrap`` flag).
    """

    def __init__(self, term: HarmonicImpropers):
        self.name = term.name
        self.atoms = _index_array(term.atoms, 4)
        self.theta0 = _float_array(term.theta0)
        self.k = _float_array(term.k)
        self.wrap = bool(term.wrap)

    def compute(self, positions, box, forces) -> float:
        """Add the improper forces (kJ/mol/nm, fixed point) and return the energy, kJ/mol.

        ``positions`` in nm; ``box`` is ignored.
        """
        return float(
            harmonic_impropers_kernel(
                positions, self.atoms, self.theta0, self.k, self.wrap, forces
            )
        )


@register_kernel("cpu", LJPairs)
class CpuLJPairs(CpuTerm):
    """Listed Lennard-Jones pairs E = c12/r^12 - c6/r^6 on the CPU (scaled 1-4 pairs).

    Parameters
    ----------
    term : LJPairs
        Pair table (c12 in kJ/mol nm^12, c6 in kJ/mol nm^6).
    """

    def __init__(self, term: LJPairs):
        self.name = term.name
        self.atoms = _index_array(term.atoms, 2)
        self.c12 = _float_array(term.c12)
        self.c6 = _float_array(term.c6)

    def compute(self, positions, box, forces) -> float:
        """Add the pair forces (kJ/mol/nm, fixed point) and return the energy, kJ/mol.

        ``positions`` in nm; ``box`` is ignored (listed pairs are not periodic).
        """
        return float(lj_pairs_kernel(positions, self.atoms, self.c12, self.c6, forces))


@njit(cache=True)
def position_restraints_kernel(positions, atoms, reference, k, box, periodic, forces):
    """Harmonic restraints to reference positions through the minimum image; energy, kJ/mol."""
    energy = 0.0
    for m in range(atoms.shape[0]):
        i = atoms[m]
        dx, dy, dz = minimum_image(positions[i, 0] - reference[m, 0],
                                   positions[i, 1] - reference[m, 1],
                                   positions[i, 2] - reference[m, 2], box, periodic)
        energy += 0.5 * k[m] * (dx * dx + dy * dy + dz * dz)
        add_force(forces, i, -k[m] * dx, -k[m] * dy, -k[m] * dz)
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
        self.atoms = np.ascontiguousarray(term.atoms, np.int64).reshape(-1)
        self.reference = np.ascontiguousarray(term.reference, np.float64).reshape(-1, 3)
        self.k = _float_array(term.k)
        if not (len(self.atoms) == len(self.reference) == len(self.k)):
            raise ValueError("position restraints need one reference position and k per particle")

    def compute(self, positions, box, forces) -> float:
        """Add the restraint forces (kJ/mol/nm, fixed point) and return the energy, kJ/mol."""
        periodic = box is not None
        box_arg = box if periodic else np.eye(3)
        return float(position_restraints_kernel(positions, self.atoms, self.reference, self.k,
                                                box_arg, periodic, forces))
