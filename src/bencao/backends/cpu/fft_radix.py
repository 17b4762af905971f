"""The written-out radix 2, 3, 4, 5, 7 and 8 passes of the vectorised Stockham FFT.

Each ``passR`` is one pass of :func:`bencao.backends.cpu.fft.fft_line` (see there for the
data layout and the indexing of a Stockham pass): for every butterfly it loads R 8-lane
elements, multiplies elements 1..R-1 by their twiddle factors ``exp(i sigma 2 pi q k / (S R))``
(skipped on the first pass, span S = 1, where they are all 1), does an R-point DFT, and stores
the R results.  sigma = -1 is the forward transform, +1 the inverse; the tables hold cos and
sin and sigma multiplies the sines, so one table serves both directions.

Why written out: a generic O(R^2) butterfly (``fft._pass_odd``) wastes most of its work on
2, 3, 5 and 7, the factors of typical PME grids.  The odd radices use the symmetric form
``y_k = P_k + i sigma Q_k``, ``y_{R-k} = P_k - i sigma Q_k`` with P the cosine sums of
``v_q + v_{R-q}`` and Q the sine sums of ``v_q - v_{R-q}``, evaluated with fused multiply-adds;
radix 8 is two 4-point DFTs combined with the eighth roots of unity.  The constants are
``math.cos`` and ``math.sin`` of ``2 pi ((q k) mod R) / R`` as float64 (hence e.g.
-0.4999999999999998 for cos(2 pi / 3)); changing one digit changes the results' bits.

All functions are ``inline="always"``: ``fft._fft_pass`` dispatches on the radix and each pass
is compiled into it, so the loops see constant radices.  Arguments are addresses and offsets
in doubles (see ``simd8.pload``).
"""

from __future__ import annotations

import math

from numba import njit

from bencao.backends.cpu.simd8 import (
    pget,
    pload,
    pstore,
    vadd,
    vfma,
    vfms,
    vmul,
    vsplat,
    vsub,
    vzero,
)


@njit(cache=True, inline="always")
def cmul(a_re, a_im, w_re, w_im):
    """Complex product (a_re + i a_im)(w_re + i w_im), lane by lane."""
    return vfms(a_re, w_re, vmul(a_im, w_im)), vfma(a_re, w_im, vmul(a_im, w_re))


@njit(cache=True, inline="always")
def pass2(src, s_re, s_im, s_stride, dst, d_re, d_im, d_stride, m, span, tw, t_re, t_im,
          sigma):
    """Radix-2 Stockham pass (see ``fft_line``)."""
    ms = m * s_stride
    step = span * d_stride
    for k in range(span):
        w1r = vsplat(pget(tw, t_re + k))
        w1i = vsplat(sigma * pget(tw, t_im + k))
        for g in range(m // span):
            i = (g * span + k) * s_stride
            v0r = pload(src, s_re + i)
            v0i = pload(src, s_im + i)
            v1r = pload(src, s_re + i + ms)
            v1i = pload(src, s_im + i + ms)
            if span > 1:
                v1r, v1i = cmul(v1r, v1i, w1r, w1i)
            o = (g * span * 2 + k) * d_stride
            pstore(dst, d_re + o, vadd(v0r, v1r))
            pstore(dst, d_im + o, vadd(v0i, v1i))
            pstore(dst, d_re + o + step, vsub(v0r, v1r))
            pstore(dst, d_im + o + step, vsub(v0i, v1i))


@njit(cache=True, inline="always")
def pass4(src, s_re, s_im, s_stride, dst, d_re, d_im, d_stride, m, span, tw, t_re, t_im,
          sigma):
    """Radix-4 Stockham pass (see ``fft_line``)."""
    sg = vsplat(sigma)
    ms = m * s_stride
    step = span * d_stride
    for k in range(span):
        t = k * 3
        w1r = vsplat(pget(tw, t_re + t))
        w1i = vsplat(sigma * pget(tw, t_im + t))
        w2r = vsplat(pget(tw, t_re + t + 1))
        w2i = vsplat(sigma * pget(tw, t_im + t + 1))
        w3r = vsplat(pget(tw, t_re + t + 2))
        w3i = vsplat(sigma * pget(tw, t_im + t + 2))
        for g in range(m // span):
            i = (g * span + k) * s_stride
            v0r = pload(src, s_re + i)
            v0i = pload(src, s_im + i)
            v1r = pload(src, s_re + i + ms)
            v1i = pload(src, s_im + i + ms)
            v2r = pload(src, s_re + i + 2 * ms)
            v2i = pload(src, s_im + i + 2 * ms)
            v3r = pload(src, s_re + i + 3 * ms)
            v3i = pload(src, s_im + i + 3 * ms)
            if span > 1:
                v1r, v1i = cmul(v1r, v1i, w1r, w1i)
                v2r, v2i = cmul(v2r, v2i, w2r, w2i)
                v3r, v3i = cmul(v3r, v3i, w3r, w3i)
            a0r = vadd(v0r, v2r)
            a0i = vadd(v0i, v2i)
            a1r = vsub(v0r, v2r)
            a1i = vsub(v0i, v2i)
            a2r = vadd(v1r, v3r)
            a2i = vadd(v1i, v3i)
            # i sigma (v1 - v3)
            a3r = vmul(sg, vsub(v3i, v1i))
            a3i = vmul(sg, vsub(v1r, v3r))
            o = (g * span * 4 + k) * d_stride
            pstore(dst, d_re + o, vadd(a0r, a2r))
            pstore(dst, d_im + o, vadd(a0i, a2i))
            pstore(dst, d_re + o + step, vadd(a1r, a3r))
            pstore(dst, d_im + o + step, vadd(a1i, a3i))
            pstore(dst, d_re + o + 2 * step, vsub(a0r, a2r))
            pstore(dst, d_im + o + 2 * step, vsub(a0i, a2i))
            pstore(dst, d_re + o + 3 * step, vsub(a1r, a3r))
            pstore(dst, d_im + o + 3 * step, vsub(a1i, a3i))


@njit(cache=True, inline="always")
def _dft4(x0r, x0i, x1r, x1i, x2r, x2i, x3r, x3i, sg):
    """4-point DFT with sign sigma (``sg`` = splat(sigma)) of already twiddled inputs."""
    t0r = vadd(x0r, x2r)
    t0i = vadd(x0i, x2i)
    t1r = vsub(x0r, x2r)
    t1i = vsub(x0i, x2i)
    t2r = vadd(x1r, x3r)
    t2i = vadd(x1i, x3i)
    # i sigma (x1 - x3)
    t3r = vmul(sg, vsub(x3i, x1i))
    t3i = vmul(sg, vsub(x1r, x3r))
    return (vadd(t0r, t2r), vadd(t0i, t2i), vadd(t1r, t3r), vadd(t1i, t3i),
            vsub(t0r, t2r), vsub(t0i, t2i), vsub(t1r, t3r), vsub(t1i, t3i))


@njit(cache=True, inline="always")
def pass8(src, s_re, s_im, s_stride, dst, d_re, d_im, d_stride, m, span, tw, t_re, t_im,
          sigma):
    """Radix-8 Stockham pass (see ``fft_line``): two 4-point DFTs of the even and odd inputs,
    combined with the eighth roots of unity ``exp(i sigma pi k / 4)``."""
    sg = vsplat(sigma)
    h = vsplat(math.sqrt(0.5))
    ms = m * s_stride
    step = span * d_stride
    for k in range(span):
        t = k * 7
        w1r = vsplat(pget(tw, t_re + t))
        w1i = vsplat(sigma * pget(tw, t_im + t))
        w2r = vsplat(pget(tw, t_re + t + 1))
        w2i = vsplat(sigma * pget(tw, t_im + t + 1))
        w3r = vsplat(pget(tw, t_re + t + 2))
        w3i = vsplat(sigma * pget(tw, t_im + t + 2))
        w4r = vsplat(pget(tw, t_re + t + 3))
        w4i = vsplat(sigma * pget(tw, t_im + t + 3))
        w5r = vsplat(pget(tw, t_re + t + 4))
        w5i = vsplat(sigma * pget(tw, t_im + t + 4))
        w6r = vsplat(pget(tw, t_re + t + 5))
        w6i = vsplat(sigma * pget(tw, t_im + t + 5))
        w7r = vsplat(pget(tw, t_re + t + 6))
        w7i = vsplat(sigma * pget(tw, t_im + t + 6))
        for g in range(m // span):
            i = (g * span + k) * s_stride
            v0r = pload(src, s_re + i)
            v0i = pload(src, s_im + i)
            v1r = pload(src, s_re + i + ms)
            v1i = pload(src, s_im + i + ms)
            v2r = pload(src, s_re + i + 2 * ms)
            v2i = pload(src, s_im + i + 2 * ms)
            v3r = pload(src, s_re + i + 3 * ms)
            v3i = pload(src, s_im + i + 3 * ms)
            v4r = pload(src, s_re + i + 4 * ms)
            v4i = pload(src, s_im + i + 4 * ms)
            v5r = pload(src, s_re + i + 5 * ms)
            v5i = pload(src, s_im + i + 5 * ms)
            v6r = pload(src, s_re + i + 6 * ms)
            v6i = pload(src, s_im + i + 6 * ms)
            v7r = pload(src, s_re + i + 7 * ms)
            v7i = pload(src, s_im + i + 7 * ms)
            if span > 1:
                v1r, v1i = cmul(v1r, v1i, w1r, w1i)
                v2r, v2i = cmul(v2r, v2i, w2r, w2i)
                v3r, v3i = cmul(v3r, v3i, w3r, w3i)
                v4r, v4i = cmul(v4r, v4i, w4r, w4i)
                v5r, v5i = cmul(v5r, v5i, w5r, w5i)
                v6r, v6i = cmul(v6r, v6i, w6r, w6i)
                v7r, v7i = cmul(v7r, v7i, w7r, w7i)
            e0r, e0i, e1r, e1i, e2r, e2i, e3r, e3i = _dft4(v0r, v0i, v2r, v2i, v4r, v4i, v6r,
                                                           v6i, sg)
            o0r, o0i, o1r, o1i, o2r, o2i, o3r, o3i = _dft4(v1r, v1i, v3r, v3i, v5r, v5i, v7r,
                                                           v7i, sg)
            # o_k *= exp(i sigma pi k / 4): (1 + i sigma) / sqrt 2, i sigma, (-1 + i sigma) / sqrt 2
            p1r = vmul(h, vsub(o1r, vmul(sg, o1i)))
            p1i = vmul(h, vadd(o1i, vmul(sg, o1r)))
            p2r = vmul(sg, vsub(vzero(), o2i))
            p2i = vmul(sg, o2r)
            p3r = vmul(h, vsub(vsub(vzero(), o3r), vmul(sg, o3i)))
            p3i = vmul(h, vsub(vmul(sg, o3r), o3i))
            o = (g * span * 8 + k) * d_stride
            pstore(dst, d_re + o, vadd(e0r, o0r))
            pstore(dst, d_im + o, vadd(e0i, o0i))
            pstore(dst, d_re + o + step, vadd(e1r, p1r))
            pstore(dst, d_im + o + step, vadd(e1i, p1i))
            pstore(dst, d_re + o + 2 * step, vadd(e2r, p2r))
            pstore(dst, d_im + o + 2 * step, vadd(e2i, p2i))
            pstore(dst, d_re + o + 3 * step, vadd(e3r, p3r))
            pstore(dst, d_im + o + 3 * step, vadd(e3i, p3i))
            pstore(dst, d_re + o + 4 * step, vsub(e0r, o0r))
            pstore(dst, d_im + o + 4 * step, vsub(e0i, o0i))
            pstore(dst, d_re + o + 5 * step, vsub(e1r, p1r))
            pstore(dst, d_im + o + 5 * step, vsub(e1i, p1i))
            pstore(dst, d_re + o + 6 * step, vsub(e2r, p2r))
            pstore(dst, d_im + o + 6 * step, vsub(e2i, p2i))
            pstore(dst, d_re + o + 7 * step, vsub(e3r, p3r))
            pstore(dst, d_im + o + 7 * step, vsub(e3i, p3i))


@njit(cache=True, inline="always")
def pass3(src, s_re, s_im, s_stride, dst, d_re, d_im, d_stride, m, span, tw, t_re,
          t_im, sigma):
    """Radix-3 Stockham pass (see ``fft_line``)."""
    c11 = vsplat(-0.4999999999999998)
    s11 = vsplat(sigma * 0.8660254037844387)
    ms = m * s_stride
    step = span * d_stride
    for k in range(span):
        t = k * 2
        w1r = vsplat(pget(tw, t_re + t + 0))
        w1i = vsplat(sigma * pget(tw, t_im + t + 0))
        w2r = vsplat(pget(tw, t_re + t + 1))
        w2i = vsplat(sigma * pget(tw, t_im + t + 1))
        for g in range(m // span):
            i = (g * span + k) * s_stride
            v0r = pload(src, s_re + i)
            v0i = pload(src, s_im + i)
            v1r = pload(src, s_re + i + 1 * ms)
            v1i = pload(src, s_im + i + 1 * ms)
            v2r = pload(src, s_re + i + 2 * ms)
            v2i = pload(src, s_im + i + 2 * ms)
            if span > 1:
                v1r, v1i = cmul(v1r, v1i, w1r, w1i)
                v2r, v2i = cmul(v2r, v2i, w2r, w2i)
            a1r = vadd(v1r, v2r)
            a1i = vadd(v1i, v2i)
            b1r = vsub(v1r, v2r)
            b1i = vsub(v1i, v2i)
            o = (g * span * 3 + k) * d_stride
            pstore(dst, d_re + o, vadd(v0r, a1r))
            pstore(dst, d_im + o, vadd(v0i, a1i))
            pr = vfma(c11, a1r, v0r)
            pi = vfma(c11, a1i, v0i)
            qr = vmul(s11, b1r)
            qi = vmul(s11, b1i)
            # y_1 = P + i sigma Q, y_2 = P - i sigma Q (sigma is in s)
            pstore(dst, d_re + o + 1 * step, vsub(pr, qi))
            pstore(dst, d_im + o + 1 * step, vadd(pi, qr))
            pstore(dst, d_re + o + 2 * step, vadd(pr, qi))
            pstore(dst, d_im + o + 2 * step, vsub(pi, qr))


@njit(cache=True, inline="always")
def pass5(src, s_re, s_im, s_stride, dst, d_re, d_im, d_stride, m, span, tw, t_re,
          t_im, sigma):
    """Radix-5 Stockham pass (see ``fft_line``)."""
    c11 = vsplat(0.30901699437494745)
    s11 = vsplat(sigma * 0.9510565162951535)
    c12 = vsplat(-0.8090169943749473)
    s12 = vsplat(sigma * 0.5877852522924732)
    c21 = vsplat(-0.8090169943749473)
    s21 = vsplat(sigma * 0.5877852522924732)
    c22 = vsplat(0.30901699437494723)
    s22 = vsplat(sigma * -0.9510565162951536)
    ms = m * s_stride
    step = span * d_stride
    for k in range(span):
        t = k * 4
        w1r = vsplat(pget(tw, t_re + t + 0))
        w1i = vsplat(sigma * pget(tw, t_im + t + 0))
        w2r = vsplat(pget(tw, t_re + t + 1))
        w2i = vsplat(sigma * pget(tw, t_im + t + 1))
        w3r = vsplat(pget(tw, t_re + t + 2))
        w3i = vsplat(sigma * pget(tw, t_im + t + 2))
        w4r = vsplat(pget(tw, t_re + t + 3))
        w4i = vsplat(sigma * pget(tw, t_im + t + 3))
        for g in range(m // span):
            i = (g * span + k) * s_stride
            v0r = pload(src, s_re + i)
            v0i = pload(src, s_im + i)
            v1r = pload(src, s_re + i + 1 * ms)
            v1i = pload(src, s_im + i + 1 * ms)
            v2r = pload(src, s_re + i + 2 * ms)
            v2i = pload(src, s_im + i + 2 * ms)
            v3r = pload(src, s_re + i + 3 * ms)
            v3i = pload(src, s_im + i + 3 * ms)
            v4r = pload(src, s_re + i + 4 * ms)
            v4i = pload(src, s_im + i + 4 * ms)
            if span > 1:
                v1r, v1i = cmul(v1r, v1i, w1r, w1i)
                v2r, v2i = cmul(v2r, v2i, w2r, w2i)
                v3r, v3i = cmul(v3r, v3i, w3r, w3i)
                v4r, v4i = cmul(v4r, v4i, w4r, w4i)
            a1r = vadd(v1r, v4r)
            a1i = vadd(v1i, v4i)
            b1r = vsub(v1r, v4r)
            b1i = vsub(v1i, v4i)
            a2r = vadd(v2r, v3r)
            a2i = vadd(v2i, v3i)
            b2r = vsub(v2r, v3r)
            b2i = vsub(v2i, v3i)
            o = (g * span * 5 + k) * d_stride
            pstore(dst, d_re + o, vadd(vadd(v0r, a1r), a2r))
            pstore(dst, d_im + o, vadd(vadd(v0i, a1i), a2i))
            pr = vfma(c21, a2r, vfma(c11, a1r, v0r))
            pi = vfma(c21, a2i, vfma(c11, a1i, v0i))
            qr = vfma(s21, b2r, vmul(s11, b1r))
            qi = vfma(s21, b2i, vmul(s11, b1i))
            # y_1 = P + i sigma Q, y_4 = P - i sigma Q (sigma is in s)
            pstore(dst, d_re + o + 1 * step, vsub(pr, qi))
            pstore(dst, d_im + o + 1 * step, vadd(pi, qr))
            pstore(dst, d_re + o + 4 * step, vadd(pr, qi))
            pstore(dst, d_im + o + 4 * step, vsub(pi, qr))
            pr = vfma(c22, a2r, vfma(c12, a1r, v0r))
            pi = vfma(c22, a2i, vfma(c12, a1i, v0i))
            qr = vfma(s22, b2r, vmul(s12, b1r))
            qi = vfma(s22, b2i, vmul(s12, b1i))
            # y_2 = P + i sigma Q, y_3 = P - i sigma Q (sigma is in s)
            pstore(dst, d_re + o + 2 * step, vsub(pr, qi))
            pstore(dst, d_im + o + 2 * step, vadd(pi, qr))
            pstore(dst, d_re + o + 3 * step, vadd(pr, qi))
            pstore(dst, d_im + o + 3 * step, vsub(pi, qr))


@njit(cache=True, inline="always")
def pass7(src, s_re, s_im, s_stride, dst, d_re, d_im, d_stride, m, span, tw, t_re,
          t_im, sigma):
    """Radix-7 Stockham pass (see ``fft_line``)."""
    c11 = vsplat(0.6234898018587336)
    s11 = vsplat(sigma * 0.7818314824680298)
    c12 = vsplat(-0.22252093395631434)
    s12 = vsplat(sigma * 0.9749279121818236)
    c13 = vsplat(-0.900968867902419)
    s13 = vsplat(sigma * 0.43388373911755823)
    c21 = vsplat(-0.22252093395631434)
    s21 = vsplat(sigma * 0.9749279121818236)
    c22 = vsplat(-0.9009688679024191)
    s22 = vsplat(sigma * -0.433883739117558)
    c23 = vsplat(0.6234898018587334)
    s23 = vsplat(sigma * -0.7818314824680299)
    c31 = vsplat(-0.900968867902419)
    s31 = vsplat(sigma * 0.43388373911755823)
    c32 = vsplat(0.6234898018587334)
    s32 = vsplat(sigma * -0.7818314824680299)
    c33 = vsplat(-0.22252093395631434)
    s33 = vsplat(sigma * 0.9749279121818236)
    ms = m * s_stride
    step = span * d_stride
    for k in range(span):
        t = k * 6
        w1r = vsplat(pget(tw, t_re + t + 0))
        w1i = vsplat(sigma * pget(tw, t_im + t + 0))
        w2r = vsplat(pget(tw, t_re + t + 1))
        w2i = vsplat(sigma * pget(tw, t_im + t + 1))
        w3r = vsplat(pget(tw, t_re + t + 2))
        w3i = vsplat(sigma * pget(tw, t_im + t + 2))
        w4r = vsplat(pget(tw, t_re + t + 3))
        w4i = vsplat(sigma * pget(tw, t_im + t + 3))
        w5r = vsplat(pget(tw, t_re + t + 4))
        w5i = vsplat(sigma * pget(tw, t_im + t + 4))
        w6r = vsplat(pget(tw, t_re + t + 5))
        w6i = vsplat(sigma * pget(tw, t_im + t + 5))
        for g in range(m // span):
            i = (g * span + k) * s_stride
            v0r = pload(src, s_re + i)
            v0i = pload(src, s_im + i)
            v1r = pload(src, s_re + i + 1 * ms)
            v1i = pload(src, s_im + i + 1 * ms)
            v2r = pload(src, s_re + i + 2 * ms)
            v2i = pload(src, s_im + i + 2 * ms)
            v3r = pload(src, s_re + i + 3 * ms)
            v3i = pload(src, s_im + i + 3 * ms)
            v4r = pload(src, s_re + i + 4 * ms)
            v4i = pload(src, s_im + i + 4 * ms)
            v5r = pload(src, s_re + i + 5 * ms)
            v5i = pload(src, s_im + i + 5 * ms)
            v6r = pload(src, s_re + i + 6 * ms)
            v6i = pload(src, s_im + i + 6 * ms)
            if span > 1:
                v1r, v1i = cmul(v1r, v1i, w1r, w1i)
                v2r, v2i = cmul(v2r, v2i, w2r, w2i)
                v3r, v3i = cmul(v3r, v3i, w3r, w3i)
                v4r, v4i = cmul(v4r, v4i, w4r, w4i)
                v5r, v5i = cmul(v5r, v5i, w5r, w5i)
                v6r, v6i = cmul(v6r, v6i, w6r, w6i)
            a1r = vadd(v1r, v6r)
            a1i = vadd(v1i, v6i)
            b1r = vsub(v1r, v6r)
            b1i = vsub(v1i, v6i)
            a2r = vadd(v2r, v5r)
            a2i = vadd(v2i, v5i)
            b2r = vsub(v2r, v5r)
            b2i = vsub(v2i, v5i)
            a3r = vadd(v3r, v4r)
            a3i = vadd(v3i, v4i)
            b3r = vsub(v3r, v4r)
            b3i = vsub(v3i, v4i)
            o = (g * span * 7 + k) * d_stride
            pstore(dst, d_re + o, vadd(vadd(vadd(v0r, a1r), a2r), a3r))
            pstore(dst, d_im + o, vadd(vadd(vadd(v0i, a1i), a2i), a3i))
            pr = vfma(c31, a3r, vfma(c21, a2r, vfma(c11, a1r, v0r)))
            pi = vfma(c31, a3i, vfma(c21, a2i, vfma(c11, a1i, v0i)))
            qr = vfma(s31, b3r, vfma(s21, b2r, vmul(s11, b1r)))
            qi = vfma(s31, b3i, vfma(s21, b2i, vmul(s11, b1i)))
            # y_1 = P + i sigma Q, y_6 = P - i sigma Q (sigma is in s)
            pstore(dst, d_re + o + 1 * step, vsub(pr, qi))
            pstore(dst, d_im + o + 1 * step, vadd(pi, qr))
            pstore(dst, d_re + o + 6 * step, vadd(pr, qi))
            pstore(dst, d_im + o + 6 * step, vsub(pi, qr))
            pr = vfma(c32, a3r, vfma(c22, a2r, vfma(c12, a1r, v0r)))
            pi = vfma(c32, a3i, vfma(c22, a2i, vfma(c12, a1i, v0i)))
            qr = vfma(s32, b3r, vfma(s22, b2r, vmul(s12, b1r)))
            qi = vfma(s32, b3i, vfma(s22, b2i, vmul(s12, b1i)))
            # y_2 = P + i sigma Q, y_5 = P - i sigma Q (sigma is in s)
            pstore(dst, d_re + o + 2 * step, vsub(pr, qi))
            pstore(dst, d_im + o + 2 * step, vadd(pi, qr))
            pstore(dst, d_re + o + 5 * step, vadd(pr, qi))
            pstore(dst, d_im + o + 5 * step, vsub(pi, qr))
            pr = vfma(c33, a3r, vfma(c23, a2r, vfma(c13, a1r, v0r)))
            pi = vfma(c33, a3i, vfma(c23, a2i, vfma(c13, a1i, v0i)))
            qr = vfma(s33, b3r, vfma(s23, b2r, vmul(s13, b1r)))
            qi = vfma(s33, b3i, vfma(s23, b2i, vmul(s13, b1i)))
            # y_3 = P + i sigma Q, y_4 = P - i sigma Q (sigma is in s)
            pstore(dst, d_re + o + 3 * step, vsub(pr, qi))
            pstore(dst, d_im + o + 3 * step, vadd(pi, qr))
            pstore(dst, d_re + o + 4 * step, vadd(pr, qi))
            pstore(dst, d_im + o + 4 * step, vsub(pi, qr))
