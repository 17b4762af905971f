"""The laws of one virtual site, written once for every backend: placement and force distribution.

The formulas are OpenMM's (ReferenceVirtualSites), computed in float64; the force on a site is
(d r_site / d r_parent)^T f for each parent, which conserves total force and (for frame-based
sites) torque.  The CPU backend calls :func:`place_site` and :func:`distribute_site` from its
loops; the CUDA backend compiles the same source for the GPU (``device_version``), one thread per
site.  Each backend reads the site's force and accumulates what :func:`distribute_site` hands to
the parents its own way (float64 adds on the CPU, fixed-point atomics on the GPU).

:func:`place_sites` is the host loop over a whole table, in table order: the CPU backend, the
host side of the CUDA backend and system preparation place sites with it.
"""

from __future__ import annotations

import math

from numba import njit

from bencao.forces.virtual_sites import LINEAR, OUT_OF_PLANE


@njit(cache=True, inline="always")
def cross(ax, ay, az, bx, by, bz):
    """a x b as a 3-tuple."""
    return ay * bz - az * by, az * bx - ax * bz, ax * by - ay * bx


@njit(cache=True, inline="always")
def local_frame(positions, parents, weights, m):
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


@njit(cache=True, inline="always")
def project_out(vx, vy, vz, ux, uy, uz, inv_norm):
    """(I - u u^T) v / |w|: derivative of a normalised vector u = w/|w| applied to v."""
    d = vx * ux + vy * uy + vz * uz
    return (vx - d * ux) * inv_norm, (vy - d * uy) * inv_norm, (vz - d * uz) * inv_norm


@njit(cache=True)
def place_site(positions, m, site, kind, parents, weights, params):
    """Overwrite the position of virtual site ``m`` (its table row) from its parents.

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
        cx, cy, cz = cross(ax, ay, az, bx, by, bz)
        w12 = params[m, 0]
        w13 = params[m, 1]
        wc = params[m, 2]
        x = positions[p1, 0] + w12 * ax + w13 * bx + wc * cx
        y = positions[p1, 1] + w12 * ay + w13 * by + wc * cy
        z = positions[p1, 2] + w12 * az + w13 * bz + wc * cz
    else:  # LOCAL_COORDINATES
        ox, oy, oz, xx, xy, xz, yx, yy, yz = local_frame(positions, parents, weights, m)
        zx, zy, zz = cross(xx, xy, xz, yx, yy, yz)
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
        ex, ey, ez = cross(zx, zy, zz, xx, xy, xz)  # unit y axis
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
def place_sites(positions, site, kind, parents, weights, params):
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


@njit(cache=True)
def distribute_site(positions, m, fx, fy, fz, kind, parents, weights, params, parent_forces):
    """The forces that the force (fx, fy, fz) on virtual site ``m`` exerts on its parents.

    Writes the force on parent slot j (particle ``parents[m, j]``) into ``parent_forces[j]`` for
    j below the returned count; the caller adds those rows whose parent is not -1 and zeroes the
    site's own row (this function reads no force and writes no position).

    Parameters
    ----------
    positions : (N, 3) float64 array
        Positions with the sites placed, nm.
    m : int
        Row of the site table.
    fx, fy, fz : float
        Force on the site, kJ/mol/nm.
    kind, parents, weights, params : arrays
        The fields of :class:`~bencao.forces.virtual_sites.VirtualSites`.
    parent_forces : (P, 3) float64 array
        Output, kJ/mol/nm, P = ``parents.shape[1]``.

    Returns
    -------
    int
        Number of parent slots written: 3 for an OUT_OF_PLANE site (its other slots are not
        parents), P otherwise.
    """
    if kind[m] == LINEAR:
        for j in range(parents.shape[1]):
            w = weights[m, j, 0]
            parent_forces[j, 0] = w * fx
            parent_forces[j, 1] = w * fy
            parent_forces[j, 2] = w * fz
        return parents.shape[1]
    if kind[m] == OUT_OF_PLANE:
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
        bfx, bfy, bfz = cross(bx, by, bz, fx, fy, fz)
        fax, fay, faz = cross(fx, fy, fz, ax, ay, az)
        f2x = w12 * fx + wc * bfx
        f2y = w12 * fy + wc * bfy
        f2z = w12 * fz + wc * bfz
        f3x = w13 * fx + wc * fax
        f3y = w13 * fy + wc * fay
        f3z = w13 * fz + wc * faz
        parent_forces[0, 0] = fx - f2x - f3x
        parent_forces[0, 1] = fy - f2y - f3y
        parent_forces[0, 2] = fz - f2z - f3z
        parent_forces[1, 0] = f2x
        parent_forces[1, 1] = f2y
        parent_forces[1, 2] = f2z
        parent_forces[2, 0] = f3x
        parent_forces[2, 1] = f3y
        parent_forces[2, 2] = f3z
        return 3
    # LOCAL_COORDINATES
    # r = o + lx ex + ly ey + lz ez with ex = X/|X|, ez = Z/|Z|, Z = X x Y, ey = ez x ex.
    # With Dx = (I - ex ex^T)/|X| and Dz = (I - ez ez^T)/|Z| (symmetric), the chain rule
    # and [a]x^T = -[a]x give the transposed Jacobians applied to f:
    #   gX = lx Dx f + ly (Y x Dz(ex x f) + Dx(f x ez)) + lz Y x Dz f
    #   gY = -ly X x Dz(ex x f) - lz X x Dz f
    # and parent j receives wo_j f + wx_j gX + wy_j gY (origin, x and y weights).
    _, _, _, xx, xy, xz, yx, yy, yz = local_frame(positions, parents, weights, m)
    zx, zy, zz = cross(xx, xy, xz, yx, yy, yz)
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
    cx, cy, cz = cross(ux, uy, uz, fx, fy, fz)
    ax, ay, az = project_out(cx, cy, cz, ezx, ezy, ezz, inz)
    bx, by, bz = project_out(fx, fy, fz, ezx, ezy, ezz, inz)
    # Dx f and Dx (f x ez)
    dx1, dy1, dz1 = project_out(fx, fy, fz, ux, uy, uz, inx)
    qx, qy, qz = cross(fx, fy, fz, ezx, ezy, ezz)
    dx2, dy2, dz2 = project_out(qx, qy, qz, ux, uy, uz, inx)

    sx = ly * ax + lz * bx  # Dz (ly ex x f + lz f)
    sy = ly * ay + lz * by
    sz = ly * az + lz * bz
    ysx, ysy, ysz = cross(yx, yy, yz, sx, sy, sz)
    xsx, xsy, xsz = cross(xx, xy, xz, sx, sy, sz)
    gxx = lx * dx1 + ly * dx2 + ysx
    gxy = lx * dy1 + ly * dy2 + ysy
    gxz = lx * dz1 + ly * dz2 + ysz
    for j in range(parents.shape[1]):
        wo = weights[m, j, 0]
        wxj = weights[m, j, 1]
        wyj = weights[m, j, 2]
        parent_forces[j, 0] = wo * fx + wxj * gxx - wyj * xsx
        parent_forces[j, 1] = wo * fy + wxj * gxy - wyj * xsy
        parent_forces[j, 2] = wo * fz + wxj * gxz - wyj * xsz
    return parents.shape[1]
