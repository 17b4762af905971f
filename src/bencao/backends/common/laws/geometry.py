"""Internal coordinates of listed terms and the chain rule back to Cartesian forces.

An angle or torsion law gives E(theta) and dE/dtheta; the functions here compute theta from the
positions (:func:`angle_geometry`, :func:`dihedral_geometry`) and turn dE/dtheta into the force
on each atom (:func:`angle_forces`, :func:`dihedral_forces`).  The forces are returned, not
added, so that each backend adds them its own way (the CPU's fixed-point ``add_force``, CUDA's
atomic one).  The geometry follows OpenMM's Reference platform exactly, including the torsion
sign convention and the guards for degenerate (collinear) geometry, so that energies agree to
rounding.  All are ``@njit(inline="always")``: the CPU kernels inline them, the CUDA kernels
compile the same source (``backends.cuda.common.device_version``).
"""

from __future__ import annotations

import math

from numba import njit

# OpenMM clamps |r_ba x r_bc| from below in the angle force so a straight angle gives zero force
# instead of 0/0; we copy the value (nm^2) to stay identical to the Reference platform.
MIN_ANGLE_CROSS = 1.0e-6


@njit(cache=True, inline="always")
def angle_geometry(positions, a, b, c):
    """Angle a-b-c (vertex b) and the vectors its gradient needs.

    Parameters
    ----------
    positions : (N, 3) float64 array
        Positions, nm.
    a, b, c : int
        Particle indices, b the vertex.

    Returns
    -------
    tuple of float
        (theta [rad], ux, uy, uz, vx, vy, vz [nm], px, py, pz [nm^2], |p| [nm^2]) with
        u = x_a - x_b, v = x_c - x_b and p = u x v.
    """
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
    return theta, ux, uy, uz, vx, vy, vz, px, py, pz, rp


@njit(cache=True, inline="always")
def angle_forces(dE_dtheta, geom):
    """Forces of an energy E(theta) of an angle, given dE/dtheta and :func:`angle_geometry`.

    Parameters
    ----------
    dE_dtheta : float
        Derivative of the energy with respect to the angle, kJ/mol/rad.
    geom : tuple
        The result of :func:`angle_geometry` for the same atoms.

    Returns
    -------
    tuple of float
        (F_a, F_b, F_c) as nine components, kJ/mol/nm.
    """
    _, ux, uy, uz, vx, vy, vz, px, py, pz, rp = geom
    rp = max(rp, MIN_ANGLE_CROSS)
    u2 = ux * ux + uy * uy + uz * uz
    v2 = vx * vx + vy * vy + vz * vz
    # u x p lies in the plane, normal to u, pointing away from c: dtheta/dx_a =
    # (u x p) / (|u|^2 |p|); likewise dtheta/dx_c = -(v x p) / (|v|^2 |p|).
    ta = -dE_dtheta / (u2 * rp)
    tc = dE_dtheta / (v2 * rp)
    fax = ta * (uy * pz - uz * py)
    fay = ta * (uz * px - ux * pz)
    faz = ta * (ux * py - uy * px)
    fcx = tc * (vy * pz - vz * py)
    fcy = tc * (vz * px - vx * pz)
    fcz = tc * (vx * py - vy * px)
    # The vertex takes the reaction: no net force.
    return (fax, fay, faz, -(fax + fcx), -(fay + fcy), -(faz + fcz), fcx, fcy, fcz)


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
def dihedral_forces(dE_dtheta, geom):
    """Forces of an energy E(theta) of a torsion, given dE/dtheta and :func:`dihedral_geometry`.

    This is the Blondel-Karplus form OpenMM uses (no division by sin(theta)).  Where a plane
    normal vanishes the gradient is undefined; OpenMM gives 0/0 there, we give zero forces.

    Parameters
    ----------
    dE_dtheta : float
        Derivative of the energy with respect to the torsion angle, kJ/mol/rad.
    geom : tuple
        The result of :func:`dihedral_geometry` for the same atoms.

    Returns
    -------
    tuple of float
        (F_a, F_b, F_c, F_d) as twelve components, kJ/mol/nm.
    """
    _, n0x, n0y, n0z, n1x, n1y, n1z, n0sq, n1sq, len_bc, f1, f2 = geom
    if n0sq == 0.0 or n1sq == 0.0:
        zero = 0.0
        return (zero, zero, zero, zero, zero, zero, zero, zero, zero, zero, zero, zero)
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
    return (fax, fay, faz, -(fax - sx), -(fay - sy), -(faz - sz),
            -(fdx + sx), -(fdy + sy), -(fdz + sz), fdx, fdy, fdz)
