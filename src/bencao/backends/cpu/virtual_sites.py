"""Virtual sites on the CPU: place them from their parents, spread their forces back.

Placement runs through the sites in table order and force distribution in reverse order, so a site
built from another site is placed after it and hands its force to it before that site passes the
sum on to real atoms.  The formulas are OpenMM's (ReferenceVirtualSites), computed in float64; the
force on a site is (d r_site / d r_parent)^T f for each parent, which conserves total force and
(for frame-based sites) torque.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from bencao.forces.virtual_sites import (
    LINEAR,
    LOCAL_COORDINATES,
    OUT_OF_PLANE,
    VirtualSites,
)


@njit(cache=True, inline="always")
def _cross(ax, ay, az, bx, by, bz):
    """a x b as a 3-tuple."""
    return ay * bz - az * by, az * bx - ax * bz, ax * by - ay * bx


@njit(cache=True, inline="always")
def _local_frame(positions, parents, weights, m):
    """Origin and the unnormalised frame vectors X, Y of a LocalCoordinatesSite (nm)."""
    ox = oy = oz = 0.0
    xx = xy = xz = 0.0
    yx = yy = yz = 0.0
    for j in range(parents.shape[1]):
        p = parents[m, j]
        if p < 0:
            continue
        wo = weights[m, j, 0]
        wx = weights[m, j, 1]
        wy = weights[m, j, 2]
        px = positions[p, 0]
        py = positions[p, 1]
        pz = positions[p, 2]
        ox += wo * px
        oy += wo * py
        oz += wo * pz
        xx += wx * px
        xy += wx * py
        xz += wx * pz
        yx += wy * px
        yy += wy * py
        yz += wy * pz
    return ox, oy, oz, xx, xy, xz, yx, yy, yz


@njit(cache=True)
def place_site(positions, m, site, kind, parents, weights, params):
    """Overwrite the position of virtual site ``m`` (its table row) from its parents.

    One site's work, shared by the CPU loop below and the CUDA kernel (compiled for the GPU from
    this source), so the two backends place sites with the same arithmetic.

    Parameters
    ----------
    positions : (N, 3) float64 array
        Positions, nm; the site's row is written in place.
    m : int
        Row of the site table.
    site, kind, parents, weights, params : arrays
        The fields of :class:`~bencao.forces.virtual_sites.VirtualSites`.
    """
    v = site[m]
    if kind[m] == LINEAR:
        x = y = z = 0.0
        for j in range(parents.shape[1]):
            p = parents[m, j]
            if p < 0:
                continue
            w = weights[m, j, 0]
            x += w * positions[p, 0]
            y += w * positions[p, 1]
            z += w * positions[p, 2]
    elif kind[m] == OUT_OF_PLANE:
        p1 = parents[m, 0]
        p2 = parents[m, 1]
        p3 = parents[m, 2]
        ax = positions[p2, 0] - positions[p1, 0]
        ay = positions[p2, 1] - positions[p1, 1]
        az = positions[p2, 2] - positions[p1, 2]
        bx = positions[p3, 0] - positions[p1, 0]
        by = positions[p3, 1] - positions[p1, 1]
        bz = positions[p3, 2] - positions[p1, 2]
        cx, cy, cz = _cross(ax, ay, az, bx, by, bz)
        w12 = params[m, 0]
        w13 = params[m, 1]
        wc = params[m, 2]
        x = positions[p1, 0] + w12 * ax + w13 * bx + wc * cx
        y = positions[p1, 1] + w12 * ay + w13 * by + wc * cy
        z = positions[p1, 2] + w12 * az + w13 * bz + wc * cz
    else:  # LOCAL_COORDINATES
        ox, oy, oz, xx, xy, xz, yx, yy, yz = _local_frame(positions, parents, weights, m)
        zx, zy, zz = _cross(xx, xy, xz, yx, yy, yz)
        nx = math.sqrt(xx * xx + xy * xy + xz * xz)
        nz = math.sqrt(zx * zx + zy * zy + zz * zz)
        # A degenerate frame leaves the vector unnormalised (zero), as OpenMM does.
        if nx > 0.0:
            xx /= nx
            xy /= nx
            xz /= nx
        if nz > 0.0:
            zx /= nz
            zy /= nz
            zz /= nz
        ex, ey, ez = _cross(zx, zy, zz, xx, xy, xz)  # unit y axis
        lx = params[m, 0]
        ly = params[m, 1]
        lz = params[m, 2]
        x = ox + lx * xx + ly * ex + lz * zx
        y = oy + lx * xy + ly * ey + lz * zy
        z = oz + lx * xz + ly * ez + lz * zz
    positions[v, 0] = x
    positions[v, 1] = y
    positions[v, 2] = z


@njit(cache=True)
def place_kernel(positions, site, kind, parents, weights, params):
    """Overwrite every virtual site's position from its parents, in table order (a site built
    from another site comes after it).

    Parameters
    ----------
    positions : (N, 3) float64 array
        Positions, nm; site rows are written in place.
    site, kind, parents, weights, params : arrays
        The fields of :class:`~bencao.forces.virtual_sites.VirtualSites`.
    """
    for m in range(site.shape[0]):
        place_site(positions, m, site, kind, parents, weights, params)


@njit(cache=True, inline="always")
def _project_out(vx, vy, vz, ux, uy, uz, inv_norm):
    """(I - u u^T) v / |w|: derivative of a normalised vector u = w/|w| applied to v."""
    d = vx * ux + vy * uy + vz * uz
    return (vx - d * ux) * inv_norm, (vy - d * uy) * inv_norm, (vz - d * uz) * inv_norm


@njit(cache=True)
def distribute_kernel(positions, forces, site, kind, parents, weights, params):
    """Move every virtual site's force onto its parents (reverse table order), zero the site.

    Parameters
    ----------
    positions : (N, 3) float64 array
        Positions with the sites placed, nm.
    forces : (N, 3) float64 array
        Forces, kJ/mol/nm; modified in place.
    site, kind, parents, weights, params : arrays
        The fields of :class:`~bencao.forces.virtual_sites.VirtualSites`.
    """
    for m in range(site.shape[0] - 1, -1, -1):
        v = site[m]
        fx = forces[v, 0]
        fy = forces[v, 1]
        fz = forces[v, 2]
        # Zero first: a parent is never the site itself, so nothing below writes row v.
        forces[v, 0] = 0.0
        forces[v, 1] = 0.0
        forces[v, 2] = 0.0
        if kind[m] == LINEAR:
            for j in range(parents.shape[1]):
                p = parents[m, j]
                if p < 0:
                    continue
                w = weights[m, j, 0]
                forces[p, 0] += w * fx
                forces[p, 1] += w * fy
                forces[p, 2] += w * fz
        elif kind[m] == OUT_OF_PLANE:
            p1 = parents[m, 0]
            p2 = parents[m, 1]
            p3 = parents[m, 2]
            ax = positions[p2, 0] - positions[p1, 0]
            ay = positions[p2, 1] - positions[p1, 1]
            az = positions[p2, 2] - positions[p1, 2]
            bx = positions[p3, 0] - positions[p1, 0]
            by = positions[p3, 1] - positions[p1, 1]
            bz = positions[p3, 2] - positions[p1, 2]
            w12 = params[m, 0]
            w13 = params[m, 1]
            wc = params[m, 2]
            # d(a x b)/da = -[b]x, so its transpose sends f to b x f; likewise f x a for b.
            bfx, bfy, bfz = _cross(bx, by, bz, fx, fy, fz)
            fax, fay, faz = _cross(fx, fy, fz, ax, ay, az)
            f2x = w12 * fx + wc * bfx
            f2y = w12 * fy + wc * bfy
            f2z = w12 * fz + wc * bfz
            f3x = w13 * fx + wc * fax
            f3y = w13 * fy + wc * fay
            f3z = w13 * fz + wc * faz
            forces[p1, 0] += fx - f2x - f3x
            forces[p1, 1] += fy - f2y - f3y
            forces[p1, 2] += fz - f2z - f3z
            forces[p2, 0] += f2x
            forces[p2, 1] += f2y
            forces[p2, 2] += f2z
            forces[p3, 0] += f3x
            forces[p3, 1] += f3y
            forces[p3, 2] += f3z
        else:  # LOCAL_COORDINATES
            # r = o + lx ex + ly ey + lz ez with ex = X/|X|, ez = Z/|Z|, Z = X x Y, ey = ez x ex.
            # With Dx = (I - ex ex^T)/|X| and Dz = (I - ez ez^T)/|Z| (symmetric), the chain rule
            # and [a]x^T = -[a]x give the transposed Jacobians applied to f:
            #   gX = lx Dx f + ly (Y x Dz(ex x f) + Dx(f x ez)) + lz Y x Dz f
            #   gY = -ly X x Dz(ex x f) - lz X x Dz f
            # and parent j receives wo_j f + wx_j gX + wy_j gY (origin, x and y weights).
            _, _, _, xx, xy, xz, yx, yy, yz = _local_frame(positions, parents, weights, m)
            zx, zy, zz = _cross(xx, xy, xz, yx, yy, yz)
            nx = math.sqrt(xx * xx + xy * xy + xz * xz)
            nz = math.sqrt(zx * zx + zy * zy + zz * zz)
            inx = 1.0 / nx if nx > 0.0 else 0.0
            inz = 1.0 / nz if nz > 0.0 else 0.0
            ux = xx * inx  # unit x axis
            uy = xy * inx
            uz = xz * inx
            ezx = zx * inz  # unit z axis
            ezy = zy * inz
            ezz = zz * inz
            lx = params[m, 0]
            ly = params[m, 1]
            lz = params[m, 2]

            # Dz (ex x f) and Dz f
            cx, cy, cz = _cross(ux, uy, uz, fx, fy, fz)
            ax, ay, az = _project_out(cx, cy, cz, ezx, ezy, ezz, inz)
            bx, by, bz = _project_out(fx, fy, fz, ezx, ezy, ezz, inz)
            # Dx f and Dx (f x ez)
            dx1, dy1, dz1 = _project_out(fx, fy, fz, ux, uy, uz, inx)
            qx, qy, qz = _cross(fx, fy, fz, ezx, ezy, ezz)
            dx2, dy2, dz2 = _project_out(qx, qy, qz, ux, uy, uz, inx)

            sx = ly * ax + lz * bx  # Dz (ly ex x f + lz f)
            sy = ly * ay + lz * by
            sz = ly * az + lz * bz
            ysx, ysy, ysz = _cross(yx, yy, yz, sx, sy, sz)
            xsx, xsy, xsz = _cross(xx, xy, xz, sx, sy, sz)
            gxx = lx * dx1 + ly * dx2 + ysx
            gxy = lx * dy1 + ly * dy2 + ysy
            gxz = lx * dz1 + ly * dz2 + ysz
            for j in range(parents.shape[1]):
                p = parents[m, j]
                if p < 0:
                    continue
                wo = weights[m, j, 0]
                wxj = weights[m, j, 1]
                wyj = weights[m, j, 2]
                forces[p, 0] += wo * fx + wxj * gxx - wyj * xsx
                forces[p, 1] += wo * fy + wxj * gxy - wyj * xsy
                forces[p, 2] += wo * fz + wxj * gxz - wyj * xsz
    return forces


class CpuVirtualSites:
    """Places virtual sites and distributes their forces (OpenMM's semantics), on the CPU.

    Parameters
    ----------
    vsites : VirtualSites
        The system's virtual sites, ordered so that a site comes after any site it is built from.
    """

    def __init__(self, vsites: VirtualSites):
        n = len(vsites.site)
        self.site = np.ascontiguousarray(np.asarray(vsites.site, dtype=np.int64).reshape(-1))
        self.kind = np.ascontiguousarray(np.asarray(vsites.kind, dtype=np.int64).reshape(-1))
        self.parents = np.ascontiguousarray(
            np.asarray(vsites.parents, dtype=np.int64).reshape(n, -1)
        )
        self.weights = np.ascontiguousarray(
            np.asarray(vsites.weights, dtype=np.float64).reshape(n, self.parents.shape[1], 3)
        )
        self.params = np.ascontiguousarray(
            np.asarray(vsites.params, dtype=np.float64).reshape(n, 3)
        )
        unknown = set(self.kind.tolist()) - {LINEAR, OUT_OF_PLANE, LOCAL_COORDINATES}
        if unknown:
            raise ValueError(f"unknown virtual-site kind(s) {sorted(unknown)}")
        oop = self.kind == OUT_OF_PLANE
        if oop.any() and (self.parents.shape[1] < 3 or np.any(self.parents[oop, :3] < 0)):
            raise ValueError("an OUT_OF_PLANE virtual site needs three parents")

    def __len__(self) -> int:
        return len(self.site)

    def place(self, positions: np.ndarray) -> np.ndarray:
        """Overwrite the virtual-site rows of ``positions`` (N, 3 float64, nm) in place.

        Returns
        -------
        (N, 3) float64 array
            ``positions`` itself.
        """
        if len(self.site):
            place_kernel(positions, self.site, self.kind, self.parents, self.weights, self.params)
        return positions

    def distribute(self, positions: np.ndarray, forces: np.ndarray) -> np.ndarray:
        """Move each site's force onto its parents and zero the site rows, in place.

        Parameters
        ----------
        positions : (N, 3) float64 array
            Positions with the sites already placed, nm.
        forces : (N, 3) float64 array
            Forces, kJ/mol/nm.

        Returns
        -------
        (N, 3) float64 array
            ``forces`` itself.
        """
        if len(self.site):
            distribute_kernel(
                positions, forces, self.site, self.kind, self.parents, self.weights, self.params
            )
        return forces
