"""The 3-D real FFT of the PME grid and the convolution with the influence function.

Spread and gather (:mod:`bencao.backends.cpu.pme_spread`) own x-slabs, so the transform runs
plane by plane where it can:

1. ``_fft_planes_forward``: each x-plane's real (y, z) transform -- real-to-complex along y,
   complex along z -- on data the same thread has just spread;
2. ``_fft_x_convolve``: per line along x, the x transform, the energy and the product with the
   influence function, and the inverse x transform (the one pass that reads every plane);
3. ``_fft_planes_inverse``: each plane's inverse (z, y) transform back into the grid, right
   where the gather of that slab's atoms reads it.

The lines are transformed 8 at a time by :func:`bencao.backends.cpu.fft.fft_line`
(unnormalised both ways, as the Reference platform of OpenMM does it: no 1/(nx ny nz) is
applied anywhere).

Real-to-complex without a real FFT: along y, two 8-column blocks c0, c1 of a grid row form one
complex line ``a + i b``; the half spectra of a and b follow from its transform by Hermitian
symmetry (``_fft_planes_forward``), and the inverse runs the same trick backwards.

Spectrum layout (``spectrum``, flat float64): y is the half axis (ky = 0..ny/2, Hermitian
symmetry gives the rest).  Plane x starts at ``x spec_plane`` and holds ``S[kz, ky]`` as nz rows
of nyhw = 8 ceil((ny/2 + 1) / 8) columns, real parts from the plane start and imaginary parts
``spec_im`` doubles later (``_layout``), so a vector is 8 consecutive ky and lines along x or z
are vector columns.

Padding lanes, rows and columns (ky > ny/2, z >= nz) are carried through the transforms: each
lane and each line is transformed on its own, so they never reach real data; they only have to
stay finite (0 * inf would reach the energy), which they do: they start at zero (``buffers`` is
zeroed once) and only ever receive transforms of finite values.  Each thread works in its own
row of ``buffers``.

Determinism: every step is a per-line or per-plane transform whose arithmetic is fixed by the
plan, element-wise work, or a sum in a fixed order (the energy of each x-line), so the results
do not depend on the number of threads.
"""

from __future__ import annotations

import numba
from numba import njit, prange

from bencao.backends.cpu.fft import fft_line
from bencao.backends.cpu.simd8 import (
    LANES,
    address,
    transpose8,
    vadd,
    vfma,
    vload,
    vmul,
    vsplat,
    vstore,
    vsub,
    vsum,
    vzero,
)


@njit(cache=True, inline="always")
def _layout(ny, nz):
    """Sizes of the spectrum and plane buffers (see the module docstring): 8-lane blocks per
    grid row nzv, half-axis length nyh, 8-lane blocks per spectrum row nyhv, offset of the
    imaginary parts spec_im and plane size spec_plane (doubles)."""
    nzv = (nz + LANES - 1) // LANES           # 8-lane blocks per grid row (z)
    nyh = ny // 2 + 1                         # ky = 0..ny/2
    nyhv = (nyh + LANES - 1) // LANES         # 8-lane blocks per spectrum row (ky)
    spec_im = nz * nyhv * LANES + 2 * LANES   # imaginary parts, from the plane start
    return nzv, nyh, nyhv, spec_im, 2 * spec_im


@njit(cache=True, inline="always")
def _plane_buffers(ny, nzv, nyhv):
    """Offsets in a thread's work buffer for a plane: P[ky, z] and Q[z, ky] (real, imaginary
    parts, each nyhw x nzw), the y-line input C and output D (real, imaginary), and the FFT work
    space (``fft_work_size``) from the last offset on."""
    block = nyhv * nzv * LANES * LANES + 3 * LANES
    line = ny * LANES + 3 * LANES
    return block, 2 * block, 4 * block, 4 * block + 2 * line, 4 * block + 4 * line


@njit(cache=True, parallel=True)
def _fft_planes_forward(grid, shape, plane_stride, spectrum, plan_y, tw_y, plan_z, tw_z,
                        buffers):
    """Per x-plane: real-to-complex FFT along y, then complex FFT along z, into ``spectrum``.

    Along y, two 8-column blocks c0, c1 of a row form one complex line ``a + i b``; from its
    transform C, ``A(ky) = (C(ky) + conj C(-ky)) / 2`` and ``B(ky) = (C(ky) - conj C(-ky)) / 2i``
    are the half spectra of both (an odd last block is paired with itself).  They go to the
    plane buffer P[ky, z], which is transposed (8 x 8 blocks) to Q[z, ky] for the z transform.
    Lanes and rows past the data (z >= nz in the last block, ky > ny/2) are carried along and
    never mix with it.
    """
    nx, ny, nz = shape[0], shape[1], shape[2]
    nzp = nz + LANES
    nzv, nyh, nyhv, spec_im, spec_plane = _layout(ny, nz)
    nzw = nzv * LANES
    nyhw = nyhv * LANES
    p_im, q_re, c_re, _, w0 = _plane_buffers(ny, nzv, nyhv)
    q_im = q_re + p_im
    c_im = c_re + ny * LANES + 3 * LANES
    half = vsplat(0.5)
    grid_a = address(grid)
    spectrum_a = address(spectrum)
    plan_ya, tw_ya = address(plan_y), address(tw_y)
    plan_za, tw_za = address(plan_z), address(tw_z)
    for x in prange(nx):
        buf = buffers[numba.get_thread_id()]
        buf_a = address(buf)
        g = x * plane_stride
        for pair in range((nzv + 1) // 2):
            c0 = 2 * pair
            c1 = min(c0 + 1, nzv - 1)
            fft_line(grid_a, g + c0 * LANES, g + c1 * LANES, nzp, buf_a, c_re, c_im, LANES,
                     plan_ya, tw_ya, -1.0, buf_a, w0)
            for ky in range(nyh):
                kn = ny - ky if ky > 0 else 0
                cr = vload(buf, c_re + ky * LANES)
                ci = vload(buf, c_im + ky * LANES)
                dr = vload(buf, c_re + kn * LANES)
                di = vload(buf, c_im + kn * LANES)
                o = ky * nzw
                vstore(buf, o + c0 * LANES, vmul(half, vadd(cr, dr)))
                vstore(buf, p_im + o + c0 * LANES, vmul(half, vsub(ci, di)))
                if c1 != c0:
                    vstore(buf, o + c1 * LANES, vmul(half, vadd(ci, di)))
                    vstore(buf, p_im + o + c1 * LANES, vmul(half, vsub(dr, cr)))
        for yb in range(nyhv):
            for zb in range(nzv):
                p = (yb * nzw + zb) * LANES
                q = (zb * nyhw + yb) * LANES
                transpose8(buf, p, nzw, buf, q_re + q, nyhw)
                transpose8(buf, p_im + p, nzw, buf, q_im + q, nyhw)
        s = x * spec_plane
        for yb in range(nyhv):
            fft_line(buf_a, q_re + yb * LANES, q_im + yb * LANES, nyhw, spectrum_a,
                     s + yb * LANES, s + spec_im + yb * LANES, nyhw, plan_za, tw_za, -1.0,
                     buf_a, w0)


@njit(cache=True, parallel=True)
def _fft_x_convolve(spectrum, shape, eterm, ky_weight, plan_x, tw_x, buffers, line_energy):
    """Per line along x (a vector column kz, 8 ky): FFT, energy and convolution, inverse FFT.

    ``line_energy[line] = sum_k w(ky) eterm |S|^2`` over the line's kx and lanes, with
    ``w = ky_weight`` (2 for the ky that stand for -ky too, 1 for ky = 0 and ny/2, 0 in padding
    lanes), and S *= eterm (laid out (nx, nz, nyhw)).
    """
    nx, ny, nz = shape[0], shape[1], shape[2]
    _, _, nyhv, spec_im, spec_plane = _layout(ny, nz)
    nyhw = nyhv * LANES
    o_im = nx * LANES + 3 * LANES
    w0 = 2 * o_im
    spectrum_a = address(spectrum)
    plan_xa, tw_xa = address(plan_x), address(tw_x)
    for line in prange(nz * nyhv):
        buf = buffers[numba.get_thread_id()]
        buf_a = address(buf)
        kz = line // nyhv
        yb = line - kz * nyhv
        o = kz * nyhw + yb * LANES
        fft_line(spectrum_a, o, spec_im + o, spec_plane, buf_a, 0, o_im, LANES, plan_xa, tw_xa,
                 -1.0, buf_a, w0)
        total = vzero()
        for kx in range(nx):
            e = vload(eterm, (kx * nz + kz) * nyhw + yb * LANES)
            s_re = vload(buf, kx * LANES)
            s_im = vload(buf, o_im + kx * LANES)
            total = vfma(e, vfma(s_re, s_re, vmul(s_im, s_im)), total)
            vstore(buf, kx * LANES, vmul(e, s_re))
            vstore(buf, o_im + kx * LANES, vmul(e, s_im))
        line_energy[line] = vsum(vmul(vload(ky_weight, yb * LANES), total))
        fft_line(buf_a, 0, o_im, LANES, spectrum_a, o, spec_im + o, spec_plane, plan_xa, tw_xa,
                 1.0, buf_a, w0)


@njit(cache=True, parallel=True)
def _fft_planes_inverse(spectrum, shape, plane_stride, grid, plan_y, tw_y, plan_z, tw_z,
                        buffers):
    """Per x-plane, the reverse of ``_fft_planes_forward`` (unnormalised): inverse FFT along z,
    transpose, and complex-to-real inverse FFT along y two blocks at a time (the half spectra A,
    B of blocks c0, c1 extended by Hermitian symmetry, ``C = A + i B``, whose inverse has the
    two real rows as real and imaginary parts; as in numpy's irfft the imaginary parts at
    ky = 0 and ny/2 are ignored).  The result is written to ``grid``, and its columns nz..
    repeat columns 0.. for the gather's whole-vector reads.
    """
    nx, ny, nz = shape[0], shape[1], shape[2]
    nzp = nz + LANES
    nzv, nyh, nyhv, spec_im, spec_plane = _layout(ny, nz)
    nzw = nzv * LANES
    nyhw = nyhv * LANES
    p_im, q_re, c_re, d_re, w0 = _plane_buffers(ny, nzv, nyhv)
    q_im = q_re + p_im
    line = ny * LANES + 3 * LANES
    c_im = c_re + line
    d_im = d_re + line
    spectrum_a = address(spectrum)
    plan_ya, tw_ya = address(plan_y), address(tw_y)
    plan_za, tw_za = address(plan_z), address(tw_z)
    for x in prange(nx):
        buf = buffers[numba.get_thread_id()]
        buf_a = address(buf)
        s = x * spec_plane
        for yb in range(nyhv):
            fft_line(spectrum_a, s + yb * LANES, s + spec_im + yb * LANES, nyhw, buf_a,
                     q_re + yb * LANES, q_im + yb * LANES, nyhw, plan_za, tw_za, 1.0, buf_a, w0)
        for yb in range(nyhv):
            for zb in range(nzv):
                p = (yb * nzw + zb) * LANES
                q = (zb * nyhw + yb) * LANES
                transpose8(buf, q_re + q, nyhw, buf, p, nzw)
                transpose8(buf, q_im + q, nyhw, buf, p_im + p, nzw)
        # Lanes z >= nz of the last block hold whatever this thread's buffer held before.  They
        # ride in the imaginary part of the same complex y-line as real lanes and, though they
        # cancel exactly, change how those round: zeroed, the grid is the same on any number
        # of threads.
        for ky in range(nyh):
            for z in range(nz, nzw):
                buf[ky * nzw + z] = 0.0
                buf[p_im + ky * nzw + z] = 0.0
        g = x * plane_stride
        for pair in range((nzv + 1) // 2):
            c0 = 2 * pair
            c1 = min(c0 + 1, nzv - 1)
            for ky in range(nyh):
                o = ky * nzw
                ar = vload(buf, o + c0 * LANES)
                ai = vload(buf, p_im + o + c0 * LANES)
                br = vload(buf, o + c1 * LANES)
                bi = vload(buf, p_im + o + c1 * LANES)
                if ky == 0 or 2 * ky == ny:
                    ai = vzero()
                    bi = vzero()
                # C(ky) = A + i B; C(-ky) = conj A + i conj B.
                vstore(buf, c_re + ky * LANES, vsub(ar, bi))
                vstore(buf, c_im + ky * LANES, vadd(ai, br))
                if 0 < ky and 2 * ky != ny:
                    vstore(buf, c_re + (ny - ky) * LANES, vadd(ar, bi))
                    vstore(buf, c_im + (ny - ky) * LANES, vsub(br, ai))
            fft_line(buf_a, c_re, c_im, LANES, buf_a, d_re, d_im, LANES, plan_ya, tw_ya, 1.0,
                     buf_a, w0)
            for y in range(ny):
                vstore(grid, g + y * nzp + c0 * LANES, vload(buf, d_re + y * LANES))
                if c1 != c0:
                    vstore(grid, g + y * nzp + c1 * LANES, vload(buf, d_im + y * LANES))
        for y in range(ny):
            row = g + y * nzp
            for z in range(nz, nzp):
                grid[row + z] = grid[row + z - nz]
