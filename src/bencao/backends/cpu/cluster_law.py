"""The force law of the SIMD pair kernel: Coulomb + Lennard-Jones -dE/dr / r in float32.

Real-space Ewald: -dE/dr / r = qq S(r) / r^3 with S = erfc(x) + 2x/sqrt(pi) exp(-x^2),
x = alpha r, computed as a product so that it keeps float32's relative accuracy where S is
small (S falls to ~3e-3 at the cutoff): S = 2^-y [t G(t) + 2 alpha r/sqrt(pi)] with
y = x^2 / ln 2 (2^-y by an exact power of two times a polynomial), t = 1/(1 + p x) and
G ~ erfcx(x)/t a polynomial in t (:func:`ewald_force_coefficients`).  Writing the force as
1/r^3 minus a polynomial for the erf part instead, as GROMACS does, costs fewer operations
but cancels: its rounding error is that of 1/r^3, about 300 times S's near the cutoff, which
put the per-atom force error of water boxes 1.4x above OpenMM's CPU platform.

The functions here are inlined into the kernels (:mod:`bencao.backends.cpu.cluster_kernels`)
and carry their compiler flags.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from bencao.backends.cpu.simd8 import float32_from_bits, fma32
from bencao.constants import FORCE_CLAMP, FORCE_SCALE

#: Degrees of the polynomials of the real-space Ewald force: G(t) and 2^-f on [-1/2, 1/2].
ERFCX_DEGREE = 6
EXP2_DEGREE = 5
#: Largest relative error of either fit that is accepted: ~4 float32 roundings, as much as the
#: kernel's own arithmetic adds.  The fits are smooth in r, so this is a tiny change of the
#: potential, not noise: openmmtools' WaterBox has a median force error of 1.216e-6 with
#: degrees 7 and 6 (fits to 4e-8 and 6e-9), 1.222e-6 with these (OpenMM CPU: 1.54e-6).
EWALD_FIT_TOLERANCE = 3e-7
#: Length of the coefficient array of :func:`ewald_force_coefficients`.
EWALD_COEFFICIENTS = 5 + ERFCX_DEGREE + 1 + EXP2_DEGREE + 1


def ewald_force_coefficients(alpha: float, cutoff: float) -> np.ndarray:
    """Constants and polynomial coefficients of the real-space Ewald force (module docstring).

    Parameters
    ----------
    alpha : float
        Ewald separation parameter, 1/nm.
    cutoff : float
        Real-space cutoff, nm.

    Returns
    -------
    (EWALD_COEFFICIENTS,) float64 array
        alpha^2/ln 2 (1/nm^2), p alpha (1/nm), the map t -> u = a t + b onto [-1, 1] (a, b),
        2 alpha/sqrt(pi) (1/nm), then G's coefficients in u and 2^-f's in f, highest power
        first.  The kernel rounds them to float32.

    Raises
    ------
    ValueError
        If no fit reaches ``EWALD_FIT_TOLERANCE`` (alpha * cutoff far above 3.5, i.e. an Ewald
        error tolerance far below 1e-6), or alpha is so large that 2^-y leaves float32's range.
    """
    from numpy.polynomial import chebyshev
    from scipy.special import erfcx

    # 2^-y is built from the bits of 127 - round(y): y must stay well inside the exponent range
    # at every r the kernel evaluates (up to the cutoff; masked lanes at min(cutoff, 1 nm))
    if alpha * alpha * cutoff * cutoff / math.log(2.0) > 120.0:
        raise ValueError(f"the real-space Ewald force is not available for alpha = {alpha:.3g} "
                         f"/nm with a {cutoff:.3g} nm cutoff; use a looser Ewald error tolerance")
    x = alpha * np.linspace(0.0, cutoff, 8001)
    best = None
    # p sets how much of erfcx's decay 1/(1 + p x) takes up; the best p depends on
    # alpha * cutoff, so a few are tried
    for p in np.arange(0.30, 0.81, 0.02):
        t = 1.0 / (1.0 + p * x)
        low = t[-1]
        a = 2.0 / (1.0 - low)
        b = -1.0 - a * low
        target = erfcx(x) / t
        series = chebyshev.Chebyshev.fit(a * t + b, target, ERFCX_DEGREE, domain=[-1, 1])
        error = np.max(np.abs(series(a * t + b) / target - 1.0))
        if best is None or error < best[0]:
            best = (error, p, a, b, series)
    error, p, a, b, series = best
    f = np.linspace(-0.5, 0.5, 2001)
    power = chebyshev.Chebyshev.fit(f, 2.0 ** -f, EXP2_DEGREE, domain=[-1, 1])
    error = max(error, np.max(np.abs(power(f) * 2.0**f - 1.0)))
    if error > EWALD_FIT_TOLERANCE:
        raise ValueError(
            f"the real-space Ewald force misses its accuracy ({error:.1e} relative) for "
            f"alpha * cutoff = {alpha * cutoff:.2f}; use an Ewald error tolerance of 1e-6 or "
            "looser"
        )
    monomial = lambda s: s.convert(kind=np.polynomial.Polynomial).coef[::-1]
    return np.concatenate([
        [alpha * alpha / math.log(2.0), p * alpha, a, b, 2.0 * alpha / math.sqrt(math.pi)],
        monomial(series), monomial(power),
    ])


# fastmath without reassociation ("reassoc") and without contraction ("contract"): with either,
# LLVM chooses an order of sums or which products to fuse into multiply-adds, and Numba's
# cached code chose differently from a fresh compile (the i-force sums in Numba 0.68; fused
# multiply-adds in the Ewald force), so a run resumed in a new process rounded differently from
# the run it continued.  The sums are written out instead (``sum_blocks8``) and every fused
# multiply-add is explicit (``fma32``).  What remains (approximate reciprocal square root and
# reciprocal refined by Newton's step) is the same in cached and fresh code.  Inlined helpers
# carry the kernels' own flags.
FASTMATH = {"nnan", "ninf", "nsz", "arcp", "afn"}
INLINE = {"cache": True, "fastmath": FASTMATH, "error_model": "numpy", "inline": "always"}


@njit(**INLINE)
def clamped_fixed(value):
    """float -> int64 fixed point, as ``fixed_point.to_fixed`` (clamped), with kernel flags."""
    v = min(max(np.float64(value), -FORCE_CLAMP), FORCE_CLAMP)
    return np.int64(v * FORCE_SCALE)


@njit(**INLINE)
def coefficient_tuple(c):
    """The ``EWALD_COEFFICIENTS`` coefficients as a tuple of float32 scalars."""
    return (c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], c[8], c[9], c[10], c[11], c[12],
            c[13], c[14], c[15], c[16], c[17])


@njit(**INLINE)
def _ewald_force(r2, inv_r, c):
    """S(r) / r^3 (1/nm^3) of the module docstring from r^2 (nm^2) and 1/r (1/nm).

    Polynomials by Estrin's scheme (a chain of dependent multiply-adds 3 deep, not 5 or 6),
    which lets the CPU overlap more of the pair loop.  2^-k is built from its bits: k = round(y)
    is at most ~20 inside the cutoff, so 127 - k is a normal exponent.
    """
    f32 = np.float32
    magic = f32(12582912.0)  # 1.5 * 2^23: adding it rounds a float32 below 2^22 to an integer
    y = r2 * c[0]
    k = (y + magic) - magic
    f = y - k
    f2 = f * f
    power = fma32(f2 * f2, fma32(c[12], f, c[13]),
                  fma32(f2, fma32(c[14], f, c[15]), fma32(c[16], f, c[17])))
    scale = float32_from_bits(np.int32((np.int32(127) - np.int32(k)) << np.int32(23)))
    r = r2 * inv_r
    t = f32(1.0) / fma32(c[1], r, f32(1.0))
    u = fma32(c[2], t, c[3])
    u2 = u * u
    g = fma32(u2 * u2, fma32(u2, c[5], fma32(c[6], u, c[7])),
              fma32(u2, fma32(c[8], u, c[9]), fma32(c[10], u, c[11])))
    return fma32(g, t, c[4] * r) * (power * scale) * (inv_r * inv_r * inv_r)


@njit(**INLINE)
def pair_force(r2, qq, sig, eps4, constants, ewald, coulomb_kind, switching):
    """-dE/dr / r (kJ/mol/nm^2) of one pair from r^2 (nm^2), the Coulomb prefactor qq, the
    combined sigma (nm) and 4 epsilon (kJ/mol).  ``coulomb_kind`` (0 plain, 1 reaction field,
    2 Ewald) and ``switching`` are constants in each kernel, so their branches vanish.

    ``constants``: (cutoff^2, -, k_rf, -, switch distance, 1/(cutoff - switch distance), -);
    ``ewald``: the coefficient tuple (:func:`coefficient_tuple`).
    """
    f32 = np.float32
    inv_r = f32(1.0) / np.sqrt(r2)
    inv_r2 = inv_r * inv_r
    if coulomb_kind == 2:
        f_coul = qq * _ewald_force(r2, inv_r, ewald)
    elif coulomb_kind == 1:
        f_coul = qq * fma32(inv_r, inv_r2, f32(-2.0) * constants[2])
    else:
        f_coul = qq * inv_r * inv_r2
    # Near the LJ minimum the force is a difference, (2 (sigma/r)^6 - 1) ~ 0.1, that
    # multiplies the rounding of (sigma/r)^6: sigma^2 / r^2 (one rounded reciprocal) and a
    # fused 12 x - 6 keep it to a few roundings (median force error of a single LJ pair
    # 5.2e-6 -> 1.8e-6; DischargedWaterBox's 99th percentile 2.14e-5 -> 2.01e-5, level
    # with OpenMM CPU's)
    sig2 = (sig * sig) / r2
    sr6 = sig2 * sig2 * sig2
    f_lj = eps4 * inv_r2 * sr6 * fma32(f32(12.0), sr6, f32(-6.0))
    if switching:
        inv_width = constants[5]
        e_lj = eps4 * fma32(sr6, sr6, -sr6)
        r = r2 * inv_r
        sx = min(max(r - constants[4], f32(0.0)) * inv_width, f32(1.0))
        sx2 = sx * sx
        s = fma32(sx2 * sx, fma32(sx, fma32(f32(-6.0), sx, f32(15.0)), f32(-10.0)), f32(1.0))
        ds = f32(-30.0) * sx2 * (f32(1.0) - sx) * (f32(1.0) - sx) * inv_width
        f_lj = fma32(f_lj, s, -(e_lj * ds * inv_r))
    return f_coul + f_lj
