"""PME charge spreading and force gathering: order-5 B-splines on the real-space grid.

The two ends of a ``CpuPME`` evaluation (:mod:`bencao.backends.cpu.pme`), in call order:

1. ``_locate``: each atom's grid cell (x0, y0, z0) and centred B-spline offsets, and per
   chunk of atoms the number in each x-plane;
2. ``_sort_by_plane``: a stable counting sort of the atoms by x0 ("plane buckets"), with
   sorted copies of their data so that spread and gather read memory in order;
3. ``_spread``: each task owns a slab of x-planes and adds the 5 x 5 x 5 charge blocks of the
   atoms of the buckets that reach it, one 8-lane vector per grid row;
4. (the 3-D transform and convolution, :mod:`bencao.backends.cpu.pme_transform`);
5. ``_gather``: the force on each atom from the potential at its 125 grid points, added to
   the int64 fixed-point accumulator.

Grid layout: a flat float64 array of x-planes ``plane_stride`` doubles apart, each of ny rows
of ``nz + LANES`` columns, so that a whole-vector access from any column z0 < nz stays in its
row (``CpuPME`` sizes it).

Determinism without fixed point on the grid: every grid point is written by exactly one task,
and its contributions arrive in a canonical order -- the atoms of bucket x-4, then x-3, ..., x
of its plane x, each bucket in increasing atom index, then the contributions that wrapped
around z -- whatever the number of slabs (see ``_spread``); so the float64 grid is
bit-identical on any number of threads.  The gather writes only its own atom's row of the
force accumulator.

SIMD: the PME_ORDER = 5 points of an atom's support along z fit in one 8-lane vector
(:mod:`bencao.backends.cpu.simd8`), lanes 5-7 zero.  The B-spline weights are evaluated as
polynomials by Horner's rule on vectors (``_bspline_polynomials``, ``_horner``) rather than by
the usual recursion, so that all five weights (or derivatives) of an axis cost one vector
multiply-add per degree.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
from numba import njit, prange

from bencao.backends.common.ewald_parameters import PME_ORDER
from bencao.backends.common.fixed_point import add_force
from bencao.backends.cpu.simd8 import (
    LANES,
    vfma,
    vlane,
    vload,
    vmul,
    vsplat,
    vstore,
    vsum,
    vzero,
)

assert PME_ORDER <= LANES


# ---------------------------------------------------------------------------------------------
# B-spline weights as polynomials.


def _bspline_polynomials(order: int = PME_ORDER) -> np.ndarray:
    """Coefficients of the B-spline weights and their derivatives as polynomials in u = w - 1/2.

    An atom at scaled fractional coordinate ``i0 + w`` (0 <= w < 1) reaches grid points
    ``i0 + j`` (j = 0..order-1) with weight ``theta_j = M(w + order - 1 - j)``, M the cardinal
    B-spline of the given order; on that interval each is a polynomial of degree order-1.  In
    the centred variable u = w - 1/2 (|u| <= 1/2) the coefficients are small and Horner's rule
    has no cancellation to speak of.  Computed exactly (fractions) from the recursion
    ``M_p(x) = [x M_{p-1}(x) + (p - x) M_{p-1}(x - 1)] / (p - 1)``.

    Returns
    -------
    (2, order, LANES) float64 array
        ``[0, m, j]``: coefficient of u**m in theta_j; ``[1, m, j]``: coefficient of u**m in
        d theta_j / dw.  Lanes j >= order are zero.
    """

    def multiply(p, q):
        out = [Fraction(0)] * (len(p) + len(q) - 1)
        for a, pa in enumerate(p):
            for b, qb in enumerate(q):
                out[a + b] += pa * qb
        return out

    def add(p, q):
        n = max(len(p), len(q))
        return [(p[k] if k < len(p) else 0) + (q[k] if k < len(q) else 0) for k in range(n)]

    def piece(p, shift):
        """M_p(w + shift) on 0 <= w < 1 as coefficients of w**m."""
        if shift < 0 or shift >= p:
            return [Fraction(0)]
        if p == 2:
            return [Fraction(0), Fraction(1)] if shift == 0 else [Fraction(1), Fraction(-1)]
        up = multiply([Fraction(shift), Fraction(1)], piece(p - 1, shift))
        down = multiply([Fraction(p - shift), Fraction(-1)], piece(p - 1, shift - 1))
        return [c / (p - 1) for c in add(up, down)]

    table = np.zeros((2, order, LANES), dtype=np.float64)
    for j in range(order):
        in_w = piece(order, order - 1 - j)
        # w = u + 1/2: expand sum_m c_m (u + 1/2)**m.
        in_u = [Fraction(0)]
        for m, c in enumerate(in_w):
            term = [c]
            for _ in range(m):
                term = multiply(term, [Fraction(1, 2), Fraction(1)])
            in_u = add(in_u, term)
        for m, c in enumerate(in_u):
            table[0, m, j] = float(c)
            if m >= 1:
                table[1, m - 1, j] = float(m * c)  # d/dw = d/du
    return table


@njit(cache=True, inline="always")
def _horner(coefficients, kind, degree, u):
    """Vector of the polynomials ``coefficients[kind, :degree + 1]`` (lanes) at u."""
    base = kind * coefficients.shape[1] * LANES
    value = vload(coefficients, base + degree * LANES)
    uu = vsplat(u)
    for m in range(degree - 1, -1, -1):
        value = vfma(value, uu, vload(coefficients, base + m * LANES))
    return value


@njit(cache=True, inline="always")
def _wrap(i, n):
    """i mod n for 0 <= i < 2n, without an integer division in the hot loops."""
    return i - n if i >= n else i


# ---------------------------------------------------------------------------------------------
# Kernels.


@njit(cache=True, parallel=True)
def _locate(positions, recip, grid_shape, index, offset, counts):
    """Grid cell of each atom and its centred B-spline offset along a, b, c; atoms per plane.

    For axis d the scaled fractional coordinate t = n_d * frac_d(x) is split as t = i0 + w,
    0 <= w < 1; ``index[i, d] = i0`` (in 0..n_d-1) and ``offset[i, d] = w - 1/2``.  The atoms
    are cut into ``len(counts)`` consecutive chunks, and ``counts[c, x]`` is the number of
    atoms of chunk c with x0 == x (for ``_sort_by_plane``).
    """
    n = positions.shape[0]
    n_chunks, nx = counts.shape
    for c in prange(n_chunks):
        for x in range(nx):
            counts[c, x] = 0
        for i in range(c * n // n_chunks, (c + 1) * n // n_chunks):
            px = positions[i, 0]
            py = positions[i, 1]
            pz = positions[i, 2]
            for d in range(3):
                nd = grid_shape[d]
                t = px * recip[0, d] + py * recip[1, d] + pz * recip[2, d]
                t = (t - math.floor(t)) * nd
                ti = np.int64(t)
                offset[i, d] = (t - ti) - 0.5
                # t - floor(t) can round up to exactly 1.0: ti == nd, which wraps to 0.
                index[i, d] = ti - nd if ti >= nd else ti
            counts[c, index[i, 0]] += 1


@njit(cache=True, parallel=True)
def _sort_by_plane(index, offset, charges, counts, starts, order, s_index, s_offset, s_charges):
    """Stable counting sort of the atoms by their first grid plane x0, with sorted copies.

    Bucket x holds the atoms with x0 == x in increasing atom index:
    ``order[starts[x]:starts[x + 1]]``; ``s_index[j]`` etc. are the data of atom ``order[j]``,
    so the spread and gather read memory in order.  Chunk c (as in ``_locate``) places its
    atoms of bucket x after those of the earlier chunks, so the order is the same for any
    number of chunks.
    """
    n = index.shape[0]
    n_chunks, nx = counts.shape
    for c in prange(n_chunks):
        # Where this chunk's atoms of each bucket start: O(nx n_chunks), from the counts.
        cursor = np.empty(nx, dtype=np.int64)
        total = 0
        for x in range(nx):
            if c == 0:
                starts[x] = total
            for other in range(n_chunks):
                if other == c:
                    cursor[x] = total
                total += counts[other, x]
        if c == 0:
            starts[nx] = total
        for i in range(c * n // n_chunks, (c + 1) * n // n_chunks):
            x = index[i, 0]
            j = cursor[x]
            cursor[x] = j + 1
            order[j] = i
            for d in range(3):
                s_index[j, d] = index[i, d]
                s_offset[j, d] = offset[i, d]
            s_charges[j] = charges[i]


@njit(cache=True, parallel=True)
def _spread(s_charges, s_index, s_offset, starts, coefficients, shape, plane_stride, n_slabs,
            grid):
    """Charges (e) spread onto the grid (flat; plane x at ``x plane_stride``, rows of
    ``nzp = nz + LANES`` columns), slab by slab.

    Slab s owns x-planes ``lo <= x < hi`` and is the only writer of them.  It walks the buckets
    ``lo - (PME_ORDER - 1) .. hi - 1`` (wrapped) in that order, and adds each atom's charge block
    to those of its planes ``x0 .. x0 + PME_ORDER - 1`` that lie in the slab.  So plane x
    receives the blocks of bucket x-4 first, then x-3, ..., x, each bucket in increasing atom
    index: the same order whatever the slab boundaries, as long as no slab holds more than
    ``nx - PME_ORDER + 1`` planes (no bucket visited twice; the caller ensures it).  Hence the
    grid is bit-identical for any number of slabs or threads.

    Each grid row gets one 8-lane multiply-add from column z0: ``row += (q theta_x[a]) *
    (theta_y[b] theta_z)``; lanes past the B-spline support add zeros.  Columns nz.. collect
    the contributions that wrap around and are folded back onto columns 0.. at the end.
    """
    nx, ny, nz = shape[0], shape[1], shape[2]
    nzp = nz + LANES
    for s in prange(n_slabs):
        lo = s * nx // n_slabs
        hi = (s + 1) * nx // n_slabs
        for x in range(lo, hi):
            for i in range(x * plane_stride, x * plane_stride + ny * nzp):
                grid[i] = 0.0
        for bucket in range(lo - (PME_ORDER - 1), hi):
            wrapped = bucket + nx if bucket < 0 else bucket
            # Planes bucket + a, unwrapped: they lie in [lo, hi) for a in [a_lo, a_hi).
            a_lo = max(0, lo - bucket)
            a_hi = min(PME_ORDER, hi - bucket)
            for j in range(starts[wrapped], starts[wrapped + 1]):
                q = s_charges[j]
                theta_x = _horner(coefficients, 0, PME_ORDER - 1, s_offset[j, 0])
                theta_y = _horner(coefficients, 0, PME_ORDER - 1, s_offset[j, 1])
                theta_z = _horner(coefficients, 0, PME_ORDER - 1, s_offset[j, 2])
                y0 = s_index[j, 1]
                z0 = s_index[j, 2]
                for a in range(a_lo, a_hi):
                    qa = vsplat(q * vlane(theta_x, a))
                    plane = (bucket + a) * plane_stride + z0
                    for b in range(PME_ORDER):
                        row = plane + _wrap(y0 + b, ny) * nzp
                        block = vmul(vsplat(vlane(theta_y, b)), theta_z)
                        vstore(grid, row, vfma(qa, block, vload(grid, row)))
        for x in range(lo, hi):
            for y in range(ny):
                row = x * plane_stride + y * nzp
                for z in range(PME_ORDER - 1):
                    grid[row + z] += grid[row + nz + z]


@njit(cache=True, parallel=True)
def _gather(order, s_charges, s_index, s_offset, coefficients, potential, shape, plane_stride,
            recip, forces):
    """Force on each atom from the convolved grid (flat, as in ``_spread``, with columns nz..
    repeating columns 0..); each atom writes only its own row of ``forces``.

    The gradient of the interpolated potential V is contracted one 8-lane row at a time: per
    plane a, ``P = sum_b theta_y[b] V[a, b]`` and ``D = sum_b dtheta_y[b] V[a, b]``; then
    ``sum_v += theta_x[a] P``, ``sum_dx += dtheta_x[a] P``, ``sum_dy += theta_x[a] D``, and
    finally one dot product each with the z weights.
    """
    n = s_charges.shape[0]
    nx, ny, nz = shape[0], shape[1], shape[2]
    nzp = nz + LANES
    for j in prange(n):
        theta_x = _horner(coefficients, 0, PME_ORDER - 1, s_offset[j, 0])
        theta_y = _horner(coefficients, 0, PME_ORDER - 1, s_offset[j, 1])
        theta_z = _horner(coefficients, 0, PME_ORDER - 1, s_offset[j, 2])
        dtheta_x = _horner(coefficients, 1, PME_ORDER - 2, s_offset[j, 0])
        dtheta_y = _horner(coefficients, 1, PME_ORDER - 2, s_offset[j, 1])
        dtheta_z = _horner(coefficients, 1, PME_ORDER - 2, s_offset[j, 2])
        y0 = s_index[j, 1]
        z0 = s_index[j, 2]
        sum_v = vzero()   # sum over rows of theta_x theta_y V
        sum_dx = vzero()  # ... dtheta_x theta_y V
        sum_dy = vzero()  # ... theta_x dtheta_y V
        for a in range(PME_ORDER):
            plane = _wrap(s_index[j, 0] + a, nx) * plane_stride + z0
            p = vzero()
            d = vzero()
            for b in range(PME_ORDER):
                v = vload(potential, plane + _wrap(y0 + b, ny) * nzp)
                p = vfma(vsplat(vlane(theta_y, b)), v, p)
                d = vfma(vsplat(vlane(dtheta_y, b)), v, d)
            tx = vsplat(vlane(theta_x, a))
            sum_v = vfma(tx, p, sum_v)
            sum_dy = vfma(tx, d, sum_dy)
            sum_dx = vfma(vsplat(vlane(dtheta_x, a)), p, sum_dx)
        # Chain rule through u_d = n_d * (x . recip[:, d]); recip is lower-triangular.
        q = s_charges[j]
        gx = -q * nx * vsum(vmul(sum_dx, theta_z))
        gy = -q * ny * vsum(vmul(sum_dy, theta_z))
        gz = -q * nz * vsum(vmul(sum_v, dtheta_z))
        add_force(forces, order[j],
                  gx * recip[0, 0],
                  gx * recip[1, 0] + gy * recip[1, 1],
                  gx * recip[2, 0] + gy * recip[2, 1] + gz * recip[2, 2])
