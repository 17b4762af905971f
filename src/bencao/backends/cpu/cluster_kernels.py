"""The SIMD pair kernel: Coulomb + Lennard-Jones forces over 8 x 8 cluster pairs in float32.

For each listed cluster pair the kernel loops over the 8 atoms of cluster i and, innermost,
over the 8 atoms of cluster j, reading j's coordinates and parameters from contiguous float32
arrays (structure of arrays in cluster-slot order).  The inner loop has no branches: a pair that
must not interact (excluded, padding, the lower triangle of a cluster with itself, or beyond the
cutoff) has its distance replaced by a harmless 1 nm and its force selected to zero, so LLVM
turns the loop into vector instructions.

Real-space Ewald without erfc: -dE/dr / r = qq (1/r^3 - Q(r^2)) with
Q = [erf(alpha r)/r - 2 alpha/sqrt(pi) exp(-alpha^2 r^2)] / r^2, a smooth even function fitted
by a degree-12 Chebyshev polynomial in r^2 over [0, cutoff^2] (:func:`ewald_polynomials`; error
~1e-8 relative, below float32 resolution).  Energies are a separate float64 pass
(:mod:`bencao.backends.cpu.cluster_energies`).

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
from bencao.backends.cpu.cluster_pairs_search import nearest_atoms, partner_boxes
from bencao.backends.cpu.simd8 import (
    add_fixed8,
    copy8,
    copy8_shifted,
    sum_blocks8,
    zero8,
)
from bencao.constants import FORCE_CLAMP, FORCE_SCALE

#: Degree of the real-space Ewald polynomials.
EWALD_DEGREE = 12
#: Largest relative error of the fitted polynomials that is accepted (float32 resolution).
EWALD_FIT_TOLERANCE = 1e-6


def ewald_polynomials(alpha: float, cutoff: float) -> np.ndarray:
    """Monomial coefficients of P and Q (see the module docstring) in u = 2 r^2/cutoff^2 - 1.

    Parameters
    ----------
    alpha : float
        Ewald separation parameter, 1/nm.
    cutoff : float
        Real-space cutoff, nm.

    Returns
    -------
    (2, EWALD_DEGREE + 1) float64 array
        Row 0: P = erf(alpha r)/r (1/nm), the potential's part, row 1: Q (1/nm^3), highest
        power first.  The force kernel uses Q's, rounded to float32.

    Raises
    ------
    ValueError
        If the fit misses ``EWALD_FIT_TOLERANCE`` (alpha * cutoff above ~3.5, i.e. an Ewald
        error tolerance below ~1e-6).
    """
    from numpy.polynomial import chebyshev
    from scipy.special import erf

    r2 = np.linspace(0.0, cutoff * cutoff, 4001)[1:]
    r = np.sqrt(r2)
    p = erf(alpha * r) / r
    q = (p - 2.0 * alpha / math.sqrt(math.pi) * np.exp(-alpha * alpha * r2)) / r2
    # the r -> 0 limits, so the fit is anchored where the series is exact
    r2 = np.concatenate([[0.0], r2])
    p = np.concatenate([[2.0 * alpha / math.sqrt(math.pi)], p])
    q = np.concatenate([[4.0 * alpha**3 / (3.0 * math.sqrt(math.pi))], q])
    u = 2.0 * r2 / (cutoff * cutoff) - 1.0
    rows = []
    for values in (p, q):
        series = chebyshev.Chebyshev.fit(u, values, EWALD_DEGREE, domain=[-1, 1])
        error = np.max(np.abs(series(u) - values)) / np.max(np.abs(values))
        if error > EWALD_FIT_TOLERANCE:
            raise ValueError(
                f"the real-space Ewald polynomial misses its accuracy ({error:.1e} relative) for "
                f"alpha * cutoff = {alpha * cutoff:.2f}; use an Ewald error tolerance of 1e-6 or "
                "looser"
            )
        rows.append(series.convert(kind=np.polynomial.Polynomial).coef[::-1])
    return np.array(rows, np.float64)


# fastmath without reassociation ("reassoc"): with it LLVM picks the order of the i-force sums,
# and Numba 0.68's cached code picked another order than a fresh compile, so a run resumed in a
# new process rounded differently from the run it continued.  The sums are written out instead
# (``sum_blocks8``).  The rest of fastmath (approximate reciprocal square root refined by
# Newton's step, fused multiply-adds) is the same in cached and fresh code.  Inlined helpers
# carry the kernels' own flags.
_FASTMATH = {"nnan", "ninf", "nsz", "arcp", "afn", "contract"}
_INLINE = {"cache": True, "fastmath": _FASTMATH, "error_model": "numpy", "inline": "always"}


@njit(**_INLINE)
def _fixed(value):
    """float -> int64 fixed point, as ``fixed_point.to_fixed`` (clamped), with kernel flags."""
    v = min(max(np.float64(value), -FORCE_CLAMP), FORCE_CLAMP)
    return np.int64(v * FORCE_SCALE)


@njit(**_INLINE)
def _coefficients(c):
    """The 13 coefficients of a degree-12 polynomial as a tuple of scalars."""
    return (c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], c[8], c[9], c[10], c[11], c[12])


@njit(**_INLINE)
def _horner(c, u):
    """Degree-12 polynomial with coefficients c (highest power first, a tuple) at u.

    Evaluated by Estrin's scheme: pairs of terms, then pairs of pairs with u^2, u^4, u^8.  The
    chain of dependent multiply-adds is 5 deep instead of Horner's 12, which lets the CPU overlap
    more of the pair loop; for |u| <= 1 and these coefficients the rounding is the same order.
    """
    u2 = u * u
    u4 = u2 * u2
    u8 = u4 * u4
    b0 = c[12] + c[11] * u
    b1 = c[10] + c[9] * u
    b2 = c[8] + c[7] * u
    b3 = c[6] + c[5] * u
    b4 = c[4] + c[3] * u
    b5 = c[2] + c[1] * u
    d0 = b0 + b1 * u2
    d1 = b2 + b3 * u2
    d2 = b4 + b5 * u2
    e0 = d0 + d1 * u4
    e1 = d2 + c[0] * u4
    return e0 + e1 * u8


#: i clusters per parallel work item; each item allocates its scratch once.
CHUNK = 16


@njit(**_INLINE)
def _atom_row(xj, yj, zj, qj, hsj, e4j, maskj, fxj, fyj, fzj, fxi, fyi, fzi, xa, ya, za, qa,
              sa, ea, bit, constants, q_coef, coulomb_kind, switching):
    """Forces between one atom of cluster i and every atom gathered from its cluster list: the
    vectorised loop.  Branches on the flags vanish: they are constants in each kernel.

    The pair forces on the i atom are stored in ``fxi``, ``fyi``, ``fzi``, not summed here: a
    sum in the loop would vectorise only with reassociation, whose order LLVM chooses (and
    chooses differently in Numba's cached code); ``sum_blocks8`` sums them in a fixed order.
    """
    f32 = np.float32
    cut2 = constants[0]
    inv_cut2x2 = constants[1]
    krf = constants[2]
    rsw = constants[4]
    inv_width = constants[5]
    for m in range(xj.shape[0]):
        dx = xa - xj[m]
        dy = ya - yj[m]
        dz = za - zj[m]
        r2 = dx * dx + dy * dy + dz * dz
        use = (((maskj[m] >> bit) & np.int32(1)) != 0) & (r2 < cut2)
        r2 = r2 if use else f32(1.0)
        inv_r = f32(1.0) / np.sqrt(r2)
        inv_r2 = inv_r * inv_r
        qq = qa * qj[m]
        if coulomb_kind == 2:
            u = r2 * inv_cut2x2 - f32(1.0)
            f_coul = qq * (inv_r * inv_r2 - _horner(q_coef, u))
        elif coulomb_kind == 1:
            f_coul = qq * (inv_r * inv_r2 - f32(2.0) * krf)
        else:
            f_coul = qq * inv_r * inv_r2
        sig = sa + hsj[m]
        sig2 = sig * sig * inv_r2
        sr6 = sig2 * sig2 * sig2
        eps4 = ea * e4j[m]
        f_lj = eps4 * (f32(12.0) * sr6 * sr6 - f32(6.0) * sr6) * inv_r2
        if switching:
            e_lj = eps4 * (sr6 * sr6 - sr6)
            r = r2 * inv_r
            sx = min(max(r - rsw, f32(0.0)) * inv_width, f32(1.0))
            sx2 = sx * sx
            s = f32(1.0) + sx2 * sx * (f32(-10.0) + sx * (f32(15.0) - f32(6.0) * sx))
            ds = f32(-30.0) * sx2 * (f32(1.0) - sx) * (f32(1.0) - sx) * inv_width
            f_lj = f_lj * s - e_lj * ds * inv_r
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
def _cluster_chunk(chunk, data, coulomb_kind, switching):
    """All i clusters of one work item: gather each one's partners into contiguous scratch
    (shifted into place), run the vectorised rows, scatter the partners' forces."""
    (x, y, z, charge, half_sigma, sqrt_4epsilon, pair_j, pair_shift, pair_columns, counts,
     shifts, constants, ewald, thread_forces, bounds) = data
    n_clusters = counts.shape[0]
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
    q_coef = _coefficients(ewald[1].astype(np.float32))
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
    for ci in range(chunk * CHUNK, min(n_clusters, (chunk + 1) * CHUNK)):
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
                half_sigma[i0 + a], sqrt_4epsilon[i0 + a], np.int32(a), constants, q_coef,
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
def _plain(n_chunks, data):
    for chunk in prange(n_chunks):
        _cluster_chunk(chunk, data, 0, False)


@njit(**_OPTIONS)
def _plain_switched(n_chunks, data):
    for chunk in prange(n_chunks):
        _cluster_chunk(chunk, data, 0, True)


@njit(**_OPTIONS)
def _field(n_chunks, data):
    for chunk in prange(n_chunks):
        _cluster_chunk(chunk, data, 1, False)


@njit(**_OPTIONS)
def _field_switched(n_chunks, data):
    for chunk in prange(n_chunks):
        _cluster_chunk(chunk, data, 1, True)


@njit(**_OPTIONS)
def _ewald(n_chunks, data):
    for chunk in prange(n_chunks):
        _cluster_chunk(chunk, data, 2, False)


@njit(**_OPTIONS)
def _ewald_switched(n_chunks, data):
    for chunk in prange(n_chunks):
        _cluster_chunk(chunk, data, 2, True)


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
    ewald : (2, 13) float64 array
        Ewald polynomials from :func:`ewald_polynomials` (unused otherwise).
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
        cutoff2,
        2.0 / cutoff2 if coulomb_kind == COULOMB_EWALD else 0.0,
        krf, 0.0, switch_distance,
        1.0 / (cutoff - switch_distance) if switching else 0.0,
        # relative margin 1e-5: far above the rounding of a float32 r^2 (~1e-7), so a skipped
        # pair is certainly beyond the cutoff in the kernel's own arithmetic
        cutoff2 * (1.0 + 1e-5) if skip_distant else np.inf,
    ], np.float32)
    bounds = np.empty((len(counts), 6), np.float32)
    cluster_bounds(x, y, z, bounds)
    data = (x, y, z, charge, half_sigma, sqrt_4epsilon, pair_j, pair_shift, pair_columns,
            counts, shifts, constants, ewald, thread_forces, bounds)
    kernel = _KERNELS[(int(coulomb_kind), bool(switching))]
    kernel((len(counts) + CHUNK - 1) // CHUNK, data)


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
