"""The SIMD pair kernel: Coulomb + Lennard-Jones forces over 8 x 8 cluster pairs in float32.

For each listed cluster pair the kernel loops over the 8 atoms of cluster i and, innermost,
over the 8 atoms of cluster j, reading j's coordinates and parameters from contiguous float32
arrays (structure of arrays in cluster-slot order).  The inner loop has no branches: a pair that
must not interact (excluded, padding, the lower triangle of a cluster with itself, or beyond the
cutoff) has its distance replaced by a harmless 1 nm and its force selected to zero, so LLVM
turns the loop into vector instructions.

Real-space Ewald: -dE/dr / r = qq S(r) / r^3 with S = erfc(x) + 2x/sqrt(pi) exp(-x^2),
x = alpha r, computed as a product so that it keeps float32's relative accuracy where S is
small (S falls to ~3e-3 at the cutoff): S = 2^-y [t G(t) + 2 alpha r/sqrt(pi)] with
y = x^2 / ln 2 (2^-y by an exact power of two times a polynomial), t = 1/(1 + p x) and
G ~ erfcx(x)/t a polynomial in t (:func:`ewald_force_coefficients`).  Writing the force as
1/r^3 minus a polynomial for the erf part instead, as GROMACS does, costs fewer operations
but cancels: its rounding error is that of 1/r^3, about 300 times S's near the cutoff, which
put the per-atom force error of water boxes 1.4x above OpenMM's CPU platform.  Energies are
a separate float64 pass (:mod:`bencao.backends.cpu.cluster_energies`).

Determinism: the force on cluster j from one cluster pair is summed in float32 in a fixed order
and converted to int64 fixed point before it joins the per-thread accumulator; the force on
each atom of cluster i is summed over its list in a fixed order (``simd8.sum_blocks8``) and
converted once.  Integer sums do not depend
on the thread that did the work, so forces are bit-identical on any number of threads.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import njit, prange

from bencao.backends.common.pair_laws import (
    COULOMB_EWALD,
    COULOMB_PLAIN,
    COULOMB_REACTION_FIELD,
)
from bencao.backends.cpu.cluster_pairs_search import (
    nearest_atoms,
    partner_boxes,
    work_items,
)
from bencao.backends.cpu.simd8 import (
    add_fixed8,
    copy8,
    copy8_shifted,
    float32_from_bits,
    fma32,
    sum_blocks8,
    zero8,
)
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
_FASTMATH = {"nnan", "ninf", "nsz", "arcp", "afn"}
_INLINE = {"cache": True, "fastmath": _FASTMATH, "error_model": "numpy", "inline": "always"}


@njit(**_INLINE)
def _fixed(value):
    """float -> int64 fixed point, as ``fixed_point.to_fixed`` (clamped), with kernel flags."""
    v = min(max(np.float64(value), -FORCE_CLAMP), FORCE_CLAMP)
    return np.int64(v * FORCE_SCALE)


@njit(**_INLINE)
def _coefficient_tuple(c):
    """The ``EWALD_COEFFICIENTS`` coefficients as a tuple of float32 scalars."""
    return (c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], c[8], c[9], c[10], c[11], c[12],
            c[13], c[14], c[15], c[16], c[17])


@njit(**_INLINE)
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


#: i clusters per parallel work item on average (``cluster_pairs.work_items``); each item
#: allocates its scratch once.
CHUNK = 16


@njit(**_INLINE)
def _atom_row(xj, yj, zj, qj, hsj, e4j, maskj, fxj, fyj, fzj, fxi, fyi, fzi, xa, ya, za, qa,
              sa, ea, bit, constants, ewald, coulomb_kind, switching):
    """Forces between one atom of cluster i and every atom gathered from its cluster list: the
    vectorised loop.  Branches on the flags vanish: they are constants in each kernel.

    The pair forces on the i atom are stored in ``fxi``, ``fyi``, ``fzi``, not summed here: a
    sum in the loop would vectorise only with reassociation, whose order LLVM chooses (and
    chooses differently in Numba's cached code); ``sum_blocks8`` sums them in a fixed order.
    """
    f32 = np.float32
    cut2 = constants[0]
    krf = constants[2]
    rsw = constants[4]
    inv_width = constants[5]
    # masked lanes are evaluated (then discarded) at r^2 = min(cutoff^2, 1 nm^2): finite,
    # and never farther than the cutoff, where the Ewald fit's 2^-y holds
    masked_r2 = min(cut2, f32(1.0))
    for m in range(xj.shape[0]):
        dx = xa - xj[m]
        dy = ya - yj[m]
        dz = za - zj[m]
        r2 = fma32(dz, dz, fma32(dy, dy, dx * dx))
        use = ((maskj[m] & bit) != np.int32(0)) & (r2 < cut2)
        r2 = r2 if use else masked_r2
        inv_r = f32(1.0) / np.sqrt(r2)
        inv_r2 = inv_r * inv_r
        qq = qa * qj[m]
        if coulomb_kind == 2:
            f_coul = qq * _ewald_force(r2, inv_r, ewald)
        elif coulomb_kind == 1:
            f_coul = qq * fma32(inv_r, inv_r2, f32(-2.0) * krf)
        else:
            f_coul = qq * inv_r * inv_r2
        sig = sa + hsj[m]
        # Near the LJ minimum the force is a difference, (2 (sigma/r)^6 - 1) ~ 0.1, that
        # multiplies the rounding of (sigma/r)^6: sigma^2 / r^2 (one rounded reciprocal) and a
        # fused 12 x - 6 keep it to a few roundings (median force error of a single LJ pair
        # 5.2e-6 -> 1.8e-6; DischargedWaterBox's 99th percentile 2.14e-5 -> 2.01e-5, level
        # with OpenMM CPU's)
        sig2 = (sig * sig) / r2
        sr6 = sig2 * sig2 * sig2
        eps4 = ea * e4j[m]
        f_lj = eps4 * inv_r2 * sr6 * fma32(f32(12.0), sr6, f32(-6.0))
        if switching:
            e_lj = eps4 * fma32(sr6, sr6, -sr6)
            r = r2 * inv_r
            sx = min(max(r - rsw, f32(0.0)) * inv_width, f32(1.0))
            sx2 = sx * sx
            s = fma32(sx2 * sx, fma32(sx, fma32(f32(-6.0), sx, f32(15.0)), f32(-10.0)), f32(1.0))
            ds = f32(-30.0) * sx2 * (f32(1.0) - sx) * (f32(1.0) - sx) * inv_width
            f_lj = fma32(f_lj, s, -(e_lj * ds * inv_r))
        f = (f_coul + f_lj) if use else f32(0.0)
        fx = f * dx
        fy = f * dy
        fz = f * dz
        fxi[m] = fx
        fyi[m] = fy
        fzi[m] = fz
        fxj[m] -= fx
        fyj[m] -= fy
        fzj[m] -= fz


@njit(**_INLINE)
def _cluster_chunk(first, last, data, coulomb_kind, switching):
    """All i clusters of one work item: gather each one's partners into contiguous scratch
    (shifted into place), run the vectorised rows, scatter the partners' forces."""
    (x, y, z, charge, half_sigma, sqrt_4epsilon, pair_j, pair_shift, pair_columns, counts,
     shifts, constants, ewald, thread_forces, bounds) = data
    skip2 = constants[6]
    capacity = pair_j.shape[1] * 8
    tid = numba.get_thread_id()
    columns = pair_columns.reshape(-1)  # flat: copy8 takes 1-D arrays
    columns_stride = pair_columns.shape[1]
    # this thread's accumulators, each component contiguous so that a partner cluster's 8
    # forces are converted and added as vectors
    tfx = thread_forces[tid, 0]
    tfy = thread_forces[tid, 1]
    tfz = thread_forces[tid, 2]
    # coefficients as scalars (a tuple), not array loads: stores in the loop could alias an
    # array, which would force a reload of every coefficient on every iteration
    ewald_coefficients = _coefficient_tuple(ewald)
    xs = np.empty(capacity, np.float32)
    ys = np.empty(capacity, np.float32)
    zs = np.empty(capacity, np.float32)
    qs = np.empty(capacity, np.float32)
    hss = np.empty(capacity, np.float32)
    e4s = np.empty(capacity, np.float32)
    masks = np.empty(capacity, np.int32)
    fxs = np.empty(capacity, np.float32)
    fys = np.empty(capacity, np.float32)
    fzs = np.empty(capacity, np.float32)
    fxi = np.empty(capacity, np.float32)
    fyi = np.empty(capacity, np.float32)
    fzi = np.empty(capacity, np.float32)
    gathered = np.empty(pair_j.shape[1], np.int64)
    near = np.empty((7, pair_j.shape[1]), np.float32)
    for ci in range(first, last):
        i0 = ci * 8
        listed = counts[ci]
        # A partner whose current bounding box is beyond the cutoff from every atom of i (by
        # a margin far above float32 rounding) would contribute exact zeros: it is skipped.
        # About a third of the listed pairs are, since the list covers cutoff + buffer.
        partner_boxes(pair_j, pair_shift, ci, listed, bounds, shifts, near)
        nearest_atoms(x, y, z, ci, near, listed)
        n = 0
        for k in range(listed):
            if near[6, k] >= skip2:
                continue
            j = pair_j[ci, k]
            code = pair_shift[ci, k]
            sx = shifts[code, 0]
            sy = shifts[code, 1]
            sz = shifts[code, 2]
            j0 = j * 8
            gathered[n] = j0
            m = n * 8
            n += 1
            copy8_shifted(xs, m, x, j0, sx)
            copy8_shifted(ys, m, y, j0, sy)
            copy8_shifted(zs, m, z, j0, sz)
            copy8(qs, m, charge, j0)
            copy8(hss, m, half_sigma, j0)
            copy8(e4s, m, sqrt_4epsilon, j0)
            copy8(masks, m, columns, (ci * columns_stride + k) * 8)
            zero8(fxs, m)
            zero8(fys, m)
            zero8(fzs, m)
        width = n * 8
        for a in range(8):
            _atom_row(
                xs[:width], ys[:width], zs[:width], qs[:width], hss[:width], e4s[:width],
                masks[:width], fxs[:width], fys[:width], fzs[:width], fxi[:width], fyi[:width],
                fzi[:width], x[i0 + a], y[i0 + a], z[i0 + a], charge[i0 + a],
                half_sigma[i0 + a], sqrt_4epsilon[i0 + a], np.int32(1 << a), constants,
                ewald_coefficients,
                coulomb_kind, switching)
            tfx[i0 + a] += _fixed(sum_blocks8(fxi, 0, width))
            tfy[i0 + a] += _fixed(sum_blocks8(fyi, 0, width))
            tfz[i0 + a] += _fixed(sum_blocks8(fzi, 0, width))
        for k in range(n):
            j0 = gathered[k]
            add_fixed8(tfx, j0, fxs, k * 8)
            add_fixed8(tfy, j0, fys, k * 8)
            add_fixed8(tfz, j0, fzs, k * 8)


# One compiled kernel per (Coulomb kind, switching): the flags are constants inside, so each
# kernel's inner loop carries only its own arithmetic.  Each compiles on first use (~3 s) and
# is cached.
_OPTIONS = {"parallel": True, "cache": True, "fastmath": _FASTMATH, "error_model": "numpy"}


@njit(**_OPTIONS)
def _plain(starts, data):
    for chunk in prange(starts.shape[0] - 1):
        _cluster_chunk(starts[chunk], starts[chunk + 1], data, 0, False)


@njit(**_OPTIONS)
def _plain_switched(starts, data):
    for chunk in prange(starts.shape[0] - 1):
        _cluster_chunk(starts[chunk], starts[chunk + 1], data, 0, True)


@njit(**_OPTIONS)
def _field(starts, data):
    for chunk in prange(starts.shape[0] - 1):
        _cluster_chunk(starts[chunk], starts[chunk + 1], data, 1, False)


@njit(**_OPTIONS)
def _field_switched(starts, data):
    for chunk in prange(starts.shape[0] - 1):
        _cluster_chunk(starts[chunk], starts[chunk + 1], data, 1, True)


@njit(**_OPTIONS)
def _ewald(starts, data):
    for chunk in prange(starts.shape[0] - 1):
        _cluster_chunk(starts[chunk], starts[chunk + 1], data, 2, False)


@njit(**_OPTIONS)
def _ewald_switched(starts, data):
    for chunk in prange(starts.shape[0] - 1):
        _cluster_chunk(starts[chunk], starts[chunk + 1], data, 2, True)


_KERNELS = {
    (COULOMB_PLAIN, False): _plain,
    (COULOMB_PLAIN, True): _plain_switched,
    (COULOMB_REACTION_FIELD, False): _field,
    (COULOMB_REACTION_FIELD, True): _field_switched,
    (COULOMB_EWALD, False): _ewald,
    (COULOMB_EWALD, True): _ewald_switched,
}


def cluster_pairs_kernel(
    x, y, z, charge, half_sigma, sqrt_4epsilon, pair_j, pair_shift, pair_columns, counts,
    shifts, cutoff2, coulomb_kind, ewald, krf, switching, switch_distance, cutoff, thread_forces,
    skip_distant=True,
):
    """Coulomb + Lennard-Jones forces over a cluster-pair list (NonbondedForce's regular pairs).

    Energies come from :func:`bencao.backends.cpu.cluster_energies.cluster_pairs_energy`, a
    separate float64 pass: the forces are then the same whether or not energies are asked for.

    Parameters
    ----------
    x, y, z : (C * 8,) float32 arrays
        Coordinates by cluster slot, nm.
    charge : (C * 8,) float32 array
        Charges times sqrt(1/(4 pi eps0)), so that a product is the Coulomb prefactor
        (e sqrt(kJ/mol nm)).
    half_sigma, sqrt_4epsilon : (C * 8,) float32 arrays
        sigma/2 (nm) and sqrt(4 epsilon) (sqrt(kJ/mol)) per slot (Lorentz–Berthelot rules).
    pair_j, pair_shift, pair_columns, counts
        The cluster-pair list (``ClusterPairList``), masks by column.
    shifts : (27, 3) float32 array
        Box shift of each shift code, nm.
    cutoff2 : float
        Squared cutoff, nm^2 (inf for none).
    coulomb_kind : int
        COULOMB_PLAIN, COULOMB_REACTION_FIELD or COULOMB_EWALD.
    ewald : (EWALD_COEFFICIENTS,) float32 array
        From :func:`ewald_force_coefficients` (unused for the other kinds).
    krf : float
        Reaction-field constant, 1/nm^3.
    switching : bool
        Apply OpenMM's switching function to LJ from ``switch_distance`` to ``cutoff`` (nm).
    switch_distance, cutoff : float
        nm.
    thread_forces : (T, 3, S) int64 array, S >= C * 8
        Per-thread fixed-point forces by slot; zeroed by the caller.
    skip_distant : bool
        Skip partner clusters now entirely beyond the cutoff.  Their pairs add exact zeros, so
        the forces differ only by the order of the float32 sums (False is for testing that).
    """
    constants = np.array([
        cutoff2, 0.0, krf, 0.0, switch_distance,
        1.0 / (cutoff - switch_distance) if switching else 0.0,
        # relative margin 1e-5: far above the rounding of a float32 r^2 (~1e-7), so a skipped
        # pair is certainly beyond the cutoff in the kernel's own arithmetic
        cutoff2 * (1.0 + 1e-5) if skip_distant else np.inf,
    ], np.float32)
    bounds = np.empty((len(counts), 6), np.float32)
    cluster_bounds(x, y, z, bounds)
    ewald = np.ascontiguousarray(ewald, np.float32)
    data = (x, y, z, charge, half_sigma, sqrt_4epsilon, pair_j, pair_shift, pair_columns,
            counts, shifts, constants, ewald, thread_forces, bounds)
    kernel = _KERNELS[(int(coulomb_kind), bool(switching))]
    kernel(work_items(counts, CHUNK), data)


@njit(parallel=True, cache=True)
def cluster_bounds(x, y, z, bounds):
    """Bounding box of each cluster's 8 slots (padding repeats a real atom): ``bounds[c]`` =
    (low x, y, z, high x, y, z), nm."""
    for c in prange(bounds.shape[0]):
        for d in range(3):
            bounds[c, d] = np.inf
            bounds[c, 3 + d] = -np.inf
        for s in range(c * 8, c * 8 + 8):
            bounds[c, 0] = min(bounds[c, 0], x[s])
            bounds[c, 1] = min(bounds[c, 1], y[s])
            bounds[c, 2] = min(bounds[c, 2], z[s])
            bounds[c, 3] = max(bounds[c, 3], x[s])
            bounds[c, 4] = max(bounds[c, 4], y[s])
            bounds[c, 5] = max(bounds[c, 5], z[s])


@njit(parallel=True, cache=True)
def reduce_cluster_forces(thread_forces, slot_atom, forces):
    """Add per-thread slot fixed-point forces into ``forces`` (atom order), exactly, and zero
    the per-thread buffers for the next call.  ``thread_forces`` may hold more slots than
    ``slot_atom`` (spare ones, left zero)."""
    n_threads = thread_forces.shape[0]
    for s in prange(slot_atom.shape[0]):
        atom = slot_atom[s]
        for d in range(3):
            total = np.int64(0)
            for t in range(n_threads):
                total += thread_forces[t, d, s]
                thread_forces[t, d, s] = 0
            if atom >= 0:
                forces[atom, d] += total
