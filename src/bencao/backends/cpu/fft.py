"""A vectorised mixed-radix FFT: eight complex lines of one length, transformed at once.

Why its own FFT: PME transforms a 3-D grid of a few tens of points per axis, every step.
scipy's pocketfft does one line at a time with SSE2-width vectors and gained little from a
second thread on the 56^3 DHFR grid (~1.6 ms of the former 8 ms step, against ~0.8 ms now).
Here every "element" of a line is an 8-lane float64 vector (:mod:`bencao.backends.cpu.simd8`),
so eight independent lines are transformed at once with full-width AVX-512 arithmetic, along
axes whose lines are not contiguous (x, and y in a plane) or after an in-cache transpose (z).
The 3-D PME transform built on it is :mod:`bencao.backends.cpu.pme_transform`.

Algorithm: a Stockham autosort FFT (no bit reversal), one pass per radix; radix 2, 3, 4, 5, 7
and 8 butterflies are written out (:mod:`bencao.backends.cpu.fft_radix`), any other prime
factor uses a generic O(p^2) pass (``_pass_odd``).  Each line's arithmetic is fixed by the plan,
and the lane a line sits in does not matter, so a transform does not depend on how lines are
grouped or on the number of threads.

Public API
----------
fft(a, inverse=False)
    NumPy-facing: the transform of the columns of a complex array (tests, diagnostics).
fft_plan(n), fft_work_size(n)
    The tables of an n-point transform and the work space it needs (Python, once per size).
fft_line(src, s_re, s_im, s_stride, dst, d_re, d_im, d_stride, plan, tw, sigma, work, w0)
    The ``@njit`` kernel: 8 lines, given as addresses, offsets and strides (in doubles), for
    use inside other kernels.
LANES
    Lines per ``fft_line`` call (8).

Conventions
-----------
Forward (``sigma = -1``): ``y[k] = sum_j x[j] exp(-2 pi i j k / n)``, as ``numpy.fft.fft``.
Inverse (``sigma = +1``): ``exp(+2 pi i j k / n)`` and **no 1/n factor**, so the inverse of the
forward transform is ``n x``; i.e. ``n * numpy.fft.ifft``.  Complex only: a real transform is
made by the caller from a complex one (two real lines as real and imaginary parts; see
``pme_transform``).  Everything is float64 (complex128 in ``fft``).

Sizes: any n >= 2 (PME grids are taken from OpenMM's formula, not rounded to FFT-friendly
sizes, so odd and prime sizes occur).  Sizes with factors 2, 3, 5, 7 are fastest; a prime
factor p > 7 costs O(p) per element.  Rounding error grows like that of any FFT (a few ulp
times log n for smooth sizes; the generic pass adds O(p) terms in sequence).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from bencao.backends.cpu.fft_radix import cmul, pass2, pass3, pass4, pass5, pass7, pass8
from bencao.backends.cpu.simd8 import (
    LANES,
    pget,
    pgeti,
    pload,
    pstore,
    vadd,
    vfma,
    vmul,
    vsplat,
    vsub,
    vzero,
)

__all__ = ["LANES", "fft", "fft_line", "fft_plan", "fft_work_size"]


def fft_plan(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Radices, twiddle factors and rotation tables of an n-point Stockham FFT.

    The radices are 8s, then a 4 or a 2, then odd primes in increasing order (few passes: each
    pass reads and writes every element once).  Radix 2, 3, 4, 5, 7 and 8 passes are written
    out; any other prime uses a generic O(p^2) pass.

    Parameters
    ----------
    n : int
        Points per line, at least 2.

    Returns
    -------
    plan : int64 array
        ``[n, n_stages, (radix, twiddle_re, twiddle_im, cos, sin) * n_stages]``: the radix of
        each pass and where its tables start in ``tables``.
    tables : float64 array
        Per pass: ``cos`` and ``sin`` of ``2 pi q k / (span radix)`` at ``[k (radix - 1) + q - 1]``
        (k < span, 1 <= q < radix; span = product of the earlier radices); for a generic odd
        radix also ``cos`` and ``sin`` of ``2 pi q k / radix`` at ``[(q - 1) h + k - 1]``
        (1 <= q, k <= h = (radix - 1) / 2).
    """
    if n < 2:
        raise ValueError(f"fft_plan: a transform needs at least 2 points, got {n}")
    radices = []
    m = n
    while m % 8 == 0:
        radices.append(8)
        m //= 8
    if m % 4 == 0:
        radices.append(4)
        m //= 4
    elif m % 2 == 0:
        radices.append(2)
        m //= 2
    p = 3
    while m > 1:
        while m % p == 0:
            radices.append(p)
            m //= p
        p += 2
    plan = [n, len(radices)]
    tables: list[float] = []
    span = 1
    for radix in radices:
        angles = [2.0 * math.pi * q * k / (span * radix)
                  for k in range(span) for q in range(1, radix)]
        entry = [radix, len(tables), len(tables) + len(angles), 0, 0]
        tables += [math.cos(a) for a in angles] + [math.sin(a) for a in angles]
        if radix > 7 and radix % 2 == 1:
            h = (radix - 1) // 2
            rotations = [2.0 * math.pi * ((q * k) % radix) / radix
                         for q in range(1, h + 1) for k in range(1, h + 1)]
            entry[3], entry[4] = len(tables), len(tables) + len(rotations)
            tables += [math.cos(a) for a in rotations] + [math.sin(a) for a in rotations]
        plan += entry
        span *= radix
    return np.array(plan, dtype=np.int64), np.array(tables + [0.0], dtype=np.float64)


def _signature(n_ints: int) -> str:
    """Numba signature of the FFT routines: ``n_ints - 2`` int64 (addresses, offsets, strides,
    sizes), then sigma (float64), the work address and offset (int64); returns nothing.

    Fixed signatures: called with literal arguments (0, LANES, a first span of 1), a lazily
    compiled function gets a specialisation per combination of literals -- 16 copies of the
    passes, a minute of compile time.
    """
    return "void(" + ", ".join(["int64"] * (n_ints - 2) + ["float64", "int64", "int64"]) + ")"


def fft_work_size(n: int) -> int:
    """Doubles of work space ``fft_line`` needs for an n-point line."""
    return 4 * (n * LANES + 3 * LANES) + 32 * n + 64


@njit(_signature(18), cache=True)
def _pass_odd(src, s_re, s_im, s_stride, dst, d_re, d_im, d_stride, m, span, radix, tw, t_re,
              t_im, r_cos, r_sin, sigma, scratch, w0):
    """Generic odd-radix Stockham pass, O(radix^2) per butterfly (for primes above 7).

    ``y_k = P_k + i sigma Q_k`` and ``y_{R-k} = P_k - i sigma Q_k`` with
    ``P_k = v_0 + sum_q cos(2 pi q k / R) (v_q + v_{R-q})`` and
    ``Q_k = sum_q sin(2 pi q k / R) (v_q - v_{R-q})``, q, k = 1..(R-1)/2.  The twiddled inputs
    and the sums and differences live in ``scratch[w0:]``.
    """
    h = (radix - 1) // 2
    ab = w0 + radix * 2 * LANES  # v_q at w0 + 16 q (re, im); then A_q, B_q (re, im)
    sg = vsplat(sigma)
    ms = m * s_stride
    step = span * d_stride
    for k in range(span):
        for g in range(m // span):
            i = (g * span + k) * s_stride
            for q in range(radix):
                vr = pload(src, s_re + i + q * ms)
                vi = pload(src, s_im + i + q * ms)
                if span > 1 and q > 0:
                    t = k * (radix - 1) + q - 1
                    vr, vi = cmul(vr, vi, vsplat(pget(tw, t_re + t)),
                                  vsplat(sigma * pget(tw, t_im + t)))
                pstore(scratch, w0 + 2 * LANES * q, vr)
                pstore(scratch, w0 + 2 * LANES * q + LANES, vi)
            yr = pload(scratch, w0)
            yi = pload(scratch, w0 + LANES)
            for q in range(1, h + 1):
                pr = pload(scratch, w0 + 2 * LANES * q)
                pi = pload(scratch, w0 + 2 * LANES * q + LANES)
                rr = pload(scratch, w0 + 2 * LANES * (radix - q))
                ri = pload(scratch, w0 + 2 * LANES * (radix - q) + LANES)
                base = ab + 4 * LANES * (q - 1)
                pstore(scratch, base, vadd(pr, rr))
                pstore(scratch, base + LANES, vadd(pi, ri))
                pstore(scratch, base + 2 * LANES, vsub(pr, rr))
                pstore(scratch, base + 3 * LANES, vsub(pi, ri))
                yr = vadd(yr, vadd(pr, rr))
                yi = vadd(yi, vadd(pi, ri))
            o = (g * span * radix + k) * d_stride
            pstore(dst, d_re + o, yr)
            pstore(dst, d_im + o, yi)
            for kk in range(1, h + 1):
                pr = pload(scratch, w0)
                pi = pload(scratch, w0 + LANES)
                qr = vzero()
                qi = vzero()
                for q in range(1, h + 1):
                    c = vsplat(pget(tw, r_cos + (q - 1) * h + kk - 1))
                    s = vsplat(pget(tw, r_sin + (q - 1) * h + kk - 1))
                    base = ab + 4 * LANES * (q - 1)
                    pr = vfma(c, pload(scratch, base), pr)
                    pi = vfma(c, pload(scratch, base + LANES), pi)
                    qr = vfma(s, pload(scratch, base + 2 * LANES), qr)
                    qi = vfma(s, pload(scratch, base + 3 * LANES), qi)
                qr = vmul(sg, qr)
                qi = vmul(sg, qi)
                pstore(dst, d_re + o + kk * step, vsub(pr, qi))
                pstore(dst, d_im + o + kk * step, vadd(pi, qr))
                pstore(dst, d_re + o + (radix - kk) * step, vadd(pr, qi))
                pstore(dst, d_im + o + (radix - kk) * step, vsub(pi, qr))


@njit(_signature(16), cache=True)
def _fft_pass(a, a_re, a_im, a_stride, b, b_re, b_im, b_stride, m, span, radix, plan, s, tw,
              sigma, work, scratch):
    """One Stockham pass of radix ``radix`` (stage s of ``plan``) from array a to array b."""
    t_re = pgeti(plan, 3 + 5 * s)
    t_im = pgeti(plan, 4 + 5 * s)
    if radix == 8:
        pass8(a, a_re, a_im, a_stride, b, b_re, b_im, b_stride, m, span, tw, t_re, t_im, sigma)
    elif radix == 4:
        pass4(a, a_re, a_im, a_stride, b, b_re, b_im, b_stride, m, span, tw, t_re, t_im, sigma)
    elif radix == 2:
        pass2(a, a_re, a_im, a_stride, b, b_re, b_im, b_stride, m, span, tw, t_re, t_im, sigma)
    elif radix == 3:
        pass3(a, a_re, a_im, a_stride, b, b_re, b_im, b_stride, m, span, tw, t_re, t_im, sigma)
    elif radix == 5:
        pass5(a, a_re, a_im, a_stride, b, b_re, b_im, b_stride, m, span, tw, t_re, t_im, sigma)
    elif radix == 7:
        pass7(a, a_re, a_im, a_stride, b, b_re, b_im, b_stride, m, span, tw, t_re, t_im, sigma)
    else:
        _pass_odd(a, a_re, a_im, a_stride, b, b_re, b_im, b_stride, m, span, radix, tw, t_re,
                  t_im, pgeti(plan, 5 + 5 * s), pgeti(plan, 6 + 5 * s), sigma, work, scratch)


@njit(_signature(12), cache=True)
def fft_line(src, s_re, s_im, s_stride, dst, d_re, d_im, d_stride, plan, tw, sigma, work, w0):
    """Unnormalised complex FFT of 8 lines at once (sigma = -1 forward, +1 inverse).

    All arrays are passed as addresses (``address``; offsets and strides count doubles):
    element e (an 8-lane vector) of the input has its real part at double ``s_re + e s_stride``
    of ``src`` and its imaginary part at ``s_im + e s_stride``; likewise the output in ``dst``
    (which may be ``src``: the first pass reads all of the input before the last one writes).
    ``plan`` and ``tw`` are the two arrays of ``fft_plan``.

    Stockham autosort: pass p (radix R, span S = product of the earlier radices) does butterfly
    ``j = g S + k`` on elements ``j + q n / R`` (twiddled by ``exp(i sigma 2 pi q k / (S R))``)
    and writes ``g S R + k + q S``.  Between the first and the last pass the data ping-pong
    between two buffers in ``work[w0:]`` (``fft_work_size`` doubles), placed so that they are
    not a multiple of 4 KiB apart (4 KiB aliasing stalls loads behind unrelated stores).

    Why addresses: Numba keeps a reference count on every array it passes to a (non-inlined)
    function or binds to a new variable, two atomic updates each time; at ~20 per line they
    were a third of the time of a 56-point transform.  Integers cost nothing.
    """
    n = pgeti(plan, 0)
    n_stages = pgeti(plan, 1)
    half = n * LANES + 3 * LANES
    scratch = w0 + 4 * half
    span = 1
    cur = w0
    for s in range(n_stages):
        radix = pgeti(plan, 2 + 5 * s)
        m = n // radix
        nxt = w0 + 2 * half if (s > 0 and cur == w0) else w0
        if s == 0:
            if n_stages == 1:
                _fft_pass(src, s_re, s_im, s_stride, dst, d_re, d_im, d_stride, m, span, radix,
                          plan, s, tw, sigma, work, scratch)
            else:
                _fft_pass(src, s_re, s_im, s_stride, work, nxt, nxt + half, LANES, m, span,
                          radix, plan, s, tw, sigma, work, scratch)
        elif s == n_stages - 1:
            _fft_pass(work, cur, cur + half, LANES, dst, d_re, d_im, d_stride, m, span, radix,
                      plan, s, tw, sigma, work, scratch)
        else:
            _fft_pass(work, cur, cur + half, LANES, work, nxt, nxt + half, LANES, m, span, radix,
                      plan, s, tw, sigma, work, scratch)
        cur = nxt
        span *= radix


def fft(a, inverse: bool = False) -> np.ndarray:
    """Unnormalised complex FFT of each column of ``a`` (along axis 0), with ``fft_line``.

    Parameters
    ----------
    a : (n,) or (n, m) array_like, complex
        Lines of n >= 2 points, one per column; converted to complex128.
    inverse : bool, optional
        False (default): forward transform, sign -1 in the exponent, equal to
        ``numpy.fft.fft(a, axis=0)`` up to rounding.  True: sign +1 and no 1/n factor, equal
        to ``n * numpy.fft.ifft(a, axis=0)``; so ``fft(fft(a), inverse=True) == n * a`` up to
        rounding.

    Returns
    -------
    complex128 array, the shape of ``a``

    Raises
    ------
    ValueError
        If ``a`` is not 1-D or 2-D or has fewer than 2 points per line.

    Notes
    -----
    The columns go through ``fft_line`` eight at a time (the last group padded with zero
    lines, which are transformed on their own and dropped).  Each call builds the plan; a
    kernel that transforms many lines of one size keeps ``fft_plan(n)`` and calls
    ``fft_line`` itself.
    """
    data = np.asarray(a, dtype=np.complex128)
    if data.ndim not in (1, 2):
        raise ValueError(f"fft: expected a 1-D or 2-D array, got shape {data.shape}")
    columns = data.reshape(data.shape[0], -1)
    n, m = columns.shape
    plan, tables = fft_plan(n)
    groups = -(-m // LANES)
    # Group g of 8 columns: real parts at [g, 0] and imaginary parts at [g, 1], each n
    # consecutive 8-lane elements (stride LANES doubles).
    lines = np.zeros((groups, 2, n, LANES), dtype=np.float64)
    padded = np.zeros((n, groups * LANES), dtype=np.complex128)
    padded[:, :m] = columns
    blocks = padded.reshape(n, groups, LANES).transpose(1, 0, 2)
    lines[:, 0] = blocks.real
    lines[:, 1] = blocks.imag
    out = np.zeros_like(lines)
    work = np.zeros(fft_work_size(n), dtype=np.float64)
    sigma = 1.0 if inverse else -1.0
    # fft_line takes addresses: lines, out, plan, tables and work stay alive in this frame.
    for g in range(groups):
        re = g * 2 * n * LANES
        im = re + n * LANES
        fft_line(lines.ctypes.data, re, im, LANES, out.ctypes.data, re, im, LANES,
                 plan.ctypes.data, tables.ctypes.data, sigma, work.ctypes.data, 0)
    result = (out[:, 0] + 1j * out[:, 1]).transpose(1, 0, 2).reshape(n, groups * LANES)
    return result[:, :m].reshape(data.shape)
