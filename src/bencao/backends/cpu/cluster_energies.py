"""Energies of the cluster-pair list, in float64, as a pass separate from the forces.

The force kernel (:mod:`bencao.backends.cpu.cluster_kernels`) works in float32 for speed; a
total energy is a small difference of ~1e6 pair terms, and float32 coordinates, charges or
reciprocal square roots bias it by a few 0.01 kJ/mol on a solvated protein.  So energies are
summed here from float64 coordinates and parameters.  Because the pass is separate, the forces
do not depend on whether energies were asked for: a trajectory is the same whatever the report
interval.

The pass has the force kernel's shape, so that it runs as vector instructions: for each i
cluster the partners within reach (bounding boxes, as the force kernel skips them) are gathered
into contiguous float64 scratch; on AVX-512 CPUs the pairs inside the cutoff are packed for each
atom of i (:func:`~bencao.backends.cpu.compaction.compact_rows8_energy`) and the law runs on
them alone, elsewhere each atom of i runs a masked loop without branches over every lane.
Real-space Ewald needs erfc, which has no vector form; instead erfc(alpha r)/r = 1/r - P(r^2)
with P = erf(alpha r)/r, a smooth even function fitted by a degree-20 polynomial in r^2
(:func:`ewald_energy_polynomial`, relative error ~1e-14: float64 rounding, not a model error).

Sums run in a fixed order (per i cluster: blocks of 8 lanes accumulated in order, then the 8
lanes, see ``simd8.vsum``), into one value per i cluster, so the total is the same on any
number of threads.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from bencao.backends.cpu.cluster_kernels import box_shifts8, cluster_bounds
from bencao.backends.cpu.cluster_pairs_search import (
    NEAR_ROWS,
    balanced_chunk,
    near_partners,
    near_scratch_columns,
    work_items,
)
from bencao.backends.cpu.compaction import ENERGY_ROWS, compact_rows8_energy, packing_pays
from bencao.backends.cpu.simd8 import vadd, vload, vsplat, vstore, vsum, vzero
from bencao.backends.cpu.threads import streaming

#: Degree of the polynomial that replaces erf(alpha r)/r in the energies.
ENERGY_DEGREE = 20
#: Largest relative error of that fit that is accepted (float64 rounding is ~2e-16 per step).
ENERGY_FIT_TOLERANCE = 1e-13
#: i clusters per parallel work item on average (``cluster_pairs.work_items``); each item
#: allocates its scratch once.
CHUNK = 16
# Fused multiply-adds ("contract") halve the polynomial's instructions; no reassociation, whose
# order LLVM may choose differently in Numba's cached code and in a fresh compile.
_FASTMATH = {"nnan", "ninf", "nsz", "contract"}


def ewald_energy_polynomial(alpha: float, cutoff: float) -> np.ndarray:
    """Monomial coefficients of P = erf(alpha r)/r (1/nm) in u = 2 r^2/cutoff^2 - 1, highest
    power first (ENERGY_DEGREE + 1 values).

    Raises
    ------
    ValueError
        If the fit misses ``ENERGY_FIT_TOLERANCE`` (alpha * cutoff far above 4, an Ewald error
        tolerance far below 1e-6).
    """
    from numpy.polynomial import chebyshev
    from scipy.special import erf

    r2 = np.linspace(0.0, cutoff * cutoff, 20001)[1:]
    values = erf(alpha * np.sqrt(r2)) / np.sqrt(r2)
    r2 = np.concatenate([[0.0], r2])
    values = np.concatenate([[2.0 * alpha / math.sqrt(math.pi)], values])
    u = 2.0 * r2 / (cutoff * cutoff) - 1.0
    series = chebyshev.Chebyshev.fit(u, values, ENERGY_DEGREE, domain=[-1, 1])
    coefficients = series.convert(kind=np.polynomial.Polynomial).coef[::-1]
    error = np.max(np.abs(_estrin.py_func(tuple(coefficients), u) - values)) / np.max(values)
    if error > ENERGY_FIT_TOLERANCE:
        raise ValueError(
            f"the real-space Ewald energy polynomial misses its accuracy ({error:.1e} relative) "
            f"for alpha * cutoff = {alpha * cutoff:.2f}; use an Ewald error tolerance of 1e-6 "
            "or looser"
        )
    return np.ascontiguousarray(coefficients, np.float64)


@njit(cache=True, inline="always", error_model="numpy", fastmath=_FASTMATH)
def _estrin(c, u):
    """Degree-20 polynomial with coefficients c (highest power first, a tuple) at u: pairs of
    terms, then pairs of pairs with u^2, u^4, u^8, u^16 (a chain 5 multiply-adds deep instead
    of Horner's 20, so that the CPU overlaps more of the pair loop)."""
    u2 = u * u
    u4 = u2 * u2
    u8 = u4 * u4
    u16 = u8 * u8
    q0 = (c[20] + c[19] * u) + (c[18] + c[17] * u) * u2
    q1 = (c[16] + c[15] * u) + (c[14] + c[13] * u) * u2
    q2 = (c[12] + c[11] * u) + (c[10] + c[9] * u) * u2
    q3 = (c[8] + c[7] * u) + (c[6] + c[5] * u) * u2
    q4 = (c[4] + c[3] * u) + (c[2] + c[1] * u) * u2
    return ((q0 + q1 * u4) + (q2 + q3 * u4) * u8) + (q4 + c[0] * u4) * u16


@njit(cache=True, inline="always", error_model="numpy", fastmath=_FASTMATH)
def _coefficients(c):
    """The 21 coefficients of a degree-20 polynomial as a tuple of scalars (not array loads:
    stores in the loop could alias an array and force a reload of each on every iteration)."""
    return (c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], c[8], c[9], c[10], c[11], c[12],
            c[13], c[14], c[15], c[16], c[17], c[18], c[19], c[20])


@njit(cache=True, inline="always", error_model="numpy", fastmath=_FASTMATH)
def _pair_energy(r2, qq, sig, eps4, constants, p_coef, coulomb_kind, switching):
    """Energy (kJ/mol) of one pair from r^2 (nm^2), the Coulomb prefactor qq, the combined
    sigma (nm) and 4 epsilon (kJ/mol); the flags are constants in each kernel."""
    inv_r = 1.0 / np.sqrt(r2)
    if coulomb_kind == 2:
        e_coul = qq * (inv_r - _estrin(p_coef, r2 * constants[1] - 1.0))
    elif coulomb_kind == 1:
        e_coul = qq * (inv_r + constants[2] * r2 - constants[3])
    else:
        e_coul = qq * inv_r
    sig2 = sig * sig * (inv_r * inv_r)
    sr6 = sig2 * sig2 * sig2
    e_lj = eps4 * (sr6 * sr6 - sr6)
    if switching:
        t = max(r2 * inv_r - constants[4], 0.0) * constants[5]
        e_lj *= 1.0 + t * t * t * (-10.0 + t * (15.0 - 6.0 * t))
    return e_coul + e_lj


@njit(cache=True, inline="always", error_model="numpy", fastmath=_FASTMATH)
def _masked_row(xj, yj, zj, qj, hsj, e4j, maskj, acc, xa, ya, za, qa, sa, ea, bit, constants,
                p_coef, coulomb_kind, switching):
    """Energies between one atom of cluster i and every gathered partner atom, added lane by
    lane to ``acc`` (no sum across lanes here: that is done once, in a fixed order)."""
    cut2 = constants[0]
    for m in range(xj.shape[0]):
        dx = xa - xj[m]
        dy = ya - yj[m]
        dz = za - zj[m]
        r2 = dx * dx + dy * dy + dz * dz
        use = (((maskj[m] >> bit) & np.int32(1)) != 0) & (r2 < cut2)
        r2 = r2 if use else 1.0
        e = _pair_energy(r2, qa * qj[m], sa + hsj[m], ea * e4j[m], constants, p_coef,
                         coulomb_kind, switching)
        acc[m] += e if use else 0.0


@njit(cache=True, inline="always", error_model="numpy", fastmath=_FASTMATH)
def _packed_row(packed, energies, count, qa, sa, ea, constants, p_coef, coulomb_kind,
                switching):
    """Energies of one atom of cluster i with its ``count`` packed partners (rows r^2, charge,
    sigma/2, sqrt(4 eps); :func:`compact_rows8_energy`), into ``energies``."""
    r2s = packed[0]
    qj = packed[1]
    hsj = packed[2]
    e4j = packed[3]
    for m in range(count):
        energies[m] = _pair_energy(r2s[m], qa * qj[m], sa + hsj[m], ea * e4j[m], constants,
                                   p_coef, coulomb_kind, switching)


@njit(cache=True, inline="always", error_model="numpy", fastmath=_FASTMATH)
def _masked_rows(xs, ys, zs, qs, hss, e4s, masks, acc, width, x, y, z, charge, half_sigma,
                 sqrt_4epsilon, i0, constants, coef, coulomb_kind, switching, packed, counts_now):
    """The 8 atoms of cluster i (slots ``i0 ..``) with the ``width`` gathered partner lanes,
    masked rows: the 8-lane sum of their energies (kJ/mol)."""
    for a in range(8):
        _masked_row(xs[:width], ys[:width], zs[:width], qs[:width], hss[:width], e4s[:width],
                    masks[:width], acc[:width], x[i0 + a], y[i0 + a], z[i0 + a], charge[i0 + a],
                    half_sigma[i0 + a], sqrt_4epsilon[i0 + a], np.int32(a), constants, coef,
                    coulomb_kind, switching)
    total = vzero()
    for m in range(0, width, 8):
        total = vadd(total, vload(acc, m))
    return total


@njit(cache=True, inline="always", error_model="numpy", fastmath=_FASTMATH)
def _packed_rows(xs, ys, zs, qs, hss, e4s, masks, acc, width, x, y, z, charge, half_sigma,
                 sqrt_4epsilon, i0, constants, coef, coulomb_kind, switching, packed, counts_now):
    """As :func:`_masked_rows`, packing each atom's interacting lanes first (AVX-512)."""
    cut2 = constants[0]
    # padding of a packed row: zero charge and epsilon at a finite distance, energy 0
    padding_r2 = min(cut2, 1.0) * 0.25
    counts_now[:] = 0
    for m in range(0, width, 8):
        compact_rows8_energy(xs, ys, zs, qs, hss, e4s, masks, m, x, y, z, i0, cut2, packed,
                             counts_now)
    total = vzero()
    for a in range(8):
        count = counts_now[a]
        summed = (count + 7) // 8 * 8
        for s in range(count, summed):
            packed[a, 0, s] = padding_r2
            packed[a, 1, s] = packed[a, 2, s] = packed[a, 3, s] = 0.0
        _packed_row(packed[a], acc, summed, charge[i0 + a], half_sigma[i0 + a],
                    sqrt_4epsilon[i0 + a], constants, coef, coulomb_kind, switching)
        for m in range(0, summed, 8):
            total = vadd(total, vload(acc, m))
    return total


@njit(cache=True, inline="always", error_model="numpy", fastmath=_FASTMATH)
def _cluster_chunk(first, last, data, out, coulomb_kind, switching, rows, packing):
    """Energies of the i clusters of one work item, into ``out[ci]``: partners gathered as in
    the force kernel, then ``rows`` (:func:`_masked_rows` or :func:`_packed_rows`; ``packing``
    says which, for the scratch) sums the 8 atoms of i with them."""
    (x, y, z, charge, half_sigma, sqrt_4epsilon, pair_j, pair_shift, pair_columns, counts,
     shifts, shifts8, constants, p_coef, bounds) = data
    skip2 = constants[6]
    capacity = pair_j.shape[1] * 8
    coef = _coefficients(p_coef)
    xs = np.empty(capacity)
    ys = np.empty(capacity)
    zs = np.empty(capacity)
    qs = np.empty(capacity)
    hss = np.empty(capacity)
    e4s = np.empty(capacity)
    acc = np.empty(capacity)
    masks = np.empty(capacity, np.int32)
    near = np.empty((NEAR_ROWS, near_scratch_columns(pair_j.shape[1])))
    partners = np.empty(pair_j.shape[1], np.int64)
    packed = np.empty((8, ENERGY_ROWS, capacity + 8 if packing else 0))
    counts_now = np.zeros(8, np.int64)
    for ci in range(first, last):
        i0 = ci * 8
        # partners whose bounding box is now beyond the cutoff from every atom of i add exact
        # zeros: skipped, as in the force kernel
        n = near_partners(x, y, z, pair_j, pair_shift, ci, counts[ci], bounds, shifts8, near,
                          skip2, partners)
        for p in range(n):
            k = partners[p]
            code = pair_shift[ci, k]
            sx = shifts[code, 0]
            sy = shifts[code, 1]
            sz = shifts[code, 2]
            j0 = pair_j[ci, k] * 8
            m = p * 8
            vstore(xs, m, vadd(vload(x, j0), vsplat(sx)))
            vstore(ys, m, vadd(vload(y, j0), vsplat(sy)))
            vstore(zs, m, vadd(vload(z, j0), vsplat(sz)))
            vstore(qs, m, vload(charge, j0))
            vstore(hss, m, vload(half_sigma, j0))
            vstore(e4s, m, vload(sqrt_4epsilon, j0))
            vstore(acc, m, vzero())
            for b in range(8):
                masks[m + b] = pair_columns[ci, k, b]
        out[ci] = vsum(rows(xs, ys, zs, qs, hss, e4s, masks, acc, n * 8, x, y, z, charge,
                            half_sigma, sqrt_4epsilon, i0, constants, coef, coulomb_kind,
                            switching, packed, counts_now))


# One compiled kernel per (Coulomb kind, switching, packing), as for the forces: the flags are
# a closure's variables, constants at compile time.  The row form is passed as a function, so
# that a kernel that does not pack holds no packing code at all, whatever Numba prunes: LLVM
# cannot compile the packing intrinsic for CPUs without AVX-512.
_OPTIONS = {"parallel": True, "cache": True, "error_model": "numpy", "fastmath": _FASTMATH}


def _kernel(coulomb_kind: int, switching: bool, packing: bool):
    """The parallel loop over work items for one combination of the flags."""
    rows = _packed_rows if packing else _masked_rows

    def kernel(starts, data, out):
        n_items = starts.shape[0] - 1
        for item in prange(n_items):
            chunk = balanced_chunk(item, n_items)  # as the force kernel's
            _cluster_chunk(starts[chunk], starts[chunk + 1], data, out, coulomb_kind,
                           switching, rows, packing)

    return njit(**_OPTIONS)(kernel)


_KERNELS = {(kind, switching, packing): _kernel(kind, switching, packing)
            for kind in (0, 1, 2) for switching in (False, True) for packing in (False, True)}


def cluster_pairs_energy(
    x, y, z, charge, half_sigma, sqrt_4epsilon, pair_j, pair_shift, pair_columns, counts, shifts,
    cutoff2, coulomb_kind, energy_polynomial, krf, crf, switching, switch_distance, cutoff,
    cluster_energy, packing=None,
):
    """Coulomb + Lennard-Jones energy of every listed pair within the cutoff, per i cluster.

    Parameters
    ----------
    x, y, z : (C * 8,) float64 arrays
        Coordinates by cluster slot, nm.
    charge : (C * 8,) float64 array
        Charges times sqrt(1/(4 pi eps0)) (e sqrt(kJ/mol nm)).
    half_sigma, sqrt_4epsilon : (C * 8,) float64 arrays
        sigma/2 (nm) and sqrt(4 epsilon) (sqrt(kJ/mol)) per slot.
    pair_j, pair_shift, pair_columns, counts
        The cluster-pair list (``ClusterPairList``), masks by column.
    shifts : (27, 3) float64 array
        Box shift of each shift code, nm.
    cutoff2 : float
        Squared cutoff, nm^2 (inf for none).
    coulomb_kind : int
        0 plain 1/r, 1 reaction field, 2 Ewald real space (``pair_laws.COULOMB_*``).
    energy_polynomial : (ENERGY_DEGREE + 1,) float64 array
        From :func:`ewald_energy_polynomial` (Ewald; ignored otherwise).
    krf, crf : float
        Reaction-field constants, 1/nm^3 and 1/nm.
    switching : bool
        Apply OpenMM's LJ switching function from ``switch_distance`` to ``cutoff`` (nm).
    switch_distance, cutoff : float
        nm.
    cluster_energy : (C,) float64 array
        Output: energy of the pairs listed under each i cluster, kJ/mol.
    packing : bool or None
        Packed rows (True) or masked rows (False); None: packed where that pays
        (:func:`bencao.backends.cpu.compaction.packing_pays`).  The energies differ only by
        the order of their float64 sums.
    """
    finite = np.isfinite(cutoff2)
    constants = np.array([
        cutoff2,
        2.0 / cutoff2 if coulomb_kind == 2 and finite else 0.0,
        krf, crf, switch_distance,
        1.0 / (cutoff - switch_distance) if switching else 0.0,
        # a margin far above float64 rounding, so that a skipped pair is certainly beyond the
        # cutoff in the pair loop's own arithmetic
        cutoff2 * (1.0 + 1e-12),
    ], np.float64)
    bounds = np.empty((len(counts), 8))
    with streaming(len(x)):
        cluster_bounds(x, y, z, bounds)
    data = (x, y, z, charge, half_sigma, sqrt_4epsilon, pair_j, pair_shift, pair_columns,
            counts, shifts, box_shifts8(shifts), constants, energy_polynomial, bounds)
    packing = packing_pays() if packing is None else bool(packing)
    kernel = _KERNELS[(int(coulomb_kind), bool(switching), packing)]
    kernel(work_items(counts, CHUNK), data, cluster_energy)
