"""Energies of the cluster-pair list, in float64, as a pass separate from the forces.

The force kernel (:mod:`bencao.backends.cpu.cluster_kernels`) works in float32 for speed; a
total energy is a small difference of ~1e6 pair terms, and float32 coordinates, charges or
reciprocal square roots bias it by a few 0.01 kJ/mol on a solvated protein.  So energies are
summed here from float64 coordinates and parameters with the exact erfc.  Dynamics asks for
energies only at reports, so this pass costs little, and because it is separate the forces do
not depend on whether energies were asked for: a trajectory is the same whatever the report
interval.

Sums run in a fixed order (clusters, their list, then atom pairs) into one value per i cluster,
so the total is the same on any number of threads.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange


@njit(inline="always", error_model="numpy")
def _cluster_energy(ci, data, coulomb_kind, switching):
    """Energy of the pairs listed under i cluster ``ci``, kJ/mol."""
    (x, y, z, charge, half_sigma, sqrt_4epsilon, pair_j, pair_shift, pair_mask, counts, shifts,
     constants) = data
    cut2 = constants[0]
    alpha = constants[1]
    krf = constants[2]
    crf = constants[3]
    rsw = constants[4]
    inv_width = constants[5]
    i0 = ci * 8
    energy = 0.0
    for k in range(counts[ci]):
        j0 = pair_j[ci, k] * 8
        code = pair_shift[ci, k]
        mask = pair_mask[ci, k]
        for a in range(8):
            for b in range(8):
                if (mask >> np.int64(8 * a + b)) & np.int64(1) == 0:
                    continue
                dx = x[i0 + a] - (x[j0 + b] + shifts[code, 0])
                dy = y[i0 + a] - (y[j0 + b] + shifts[code, 1])
                dz = z[i0 + a] - (z[j0 + b] + shifts[code, 2])
                r2 = dx * dx + dy * dy + dz * dz
                if r2 >= cut2:
                    continue
                r = math.sqrt(r2)
                qq = charge[i0 + a] * charge[j0 + b]
                if coulomb_kind == 2:
                    e_coul = qq * math.erfc(alpha * r) / r
                elif coulomb_kind == 1:
                    e_coul = qq * (1.0 / r + krf * r2 - crf)
                else:
                    e_coul = qq / r
                sigma = half_sigma[i0 + a] + half_sigma[j0 + b]
                sr2 = sigma * sigma / r2
                sr6 = sr2 * sr2 * sr2
                e_lj = sqrt_4epsilon[i0 + a] * sqrt_4epsilon[j0 + b] * (sr6 * sr6 - sr6)
                if switching and r > rsw:
                    t = (r - rsw) * inv_width
                    e_lj *= 1.0 + t * t * t * (-10.0 + t * (15.0 - 6.0 * t))
                energy += e_coul + e_lj
    return energy


# One compiled kernel per (Coulomb kind, switching), as for the forces.
@njit(parallel=True, cache=True, error_model="numpy")
def _plain(data, out):
    for ci in prange(out.shape[0]):
        out[ci] = _cluster_energy(ci, data, 0, False)


@njit(parallel=True, cache=True, error_model="numpy")
def _plain_switched(data, out):
    for ci in prange(out.shape[0]):
        out[ci] = _cluster_energy(ci, data, 0, True)


@njit(parallel=True, cache=True, error_model="numpy")
def _field(data, out):
    for ci in prange(out.shape[0]):
        out[ci] = _cluster_energy(ci, data, 1, False)


@njit(parallel=True, cache=True, error_model="numpy")
def _field_switched(data, out):
    for ci in prange(out.shape[0]):
        out[ci] = _cluster_energy(ci, data, 1, True)


@njit(parallel=True, cache=True, error_model="numpy")
def _ewald(data, out):
    for ci in prange(out.shape[0]):
        out[ci] = _cluster_energy(ci, data, 2, False)


@njit(parallel=True, cache=True, error_model="numpy")
def _ewald_switched(data, out):
    for ci in prange(out.shape[0]):
        out[ci] = _cluster_energy(ci, data, 2, True)


_KERNELS = {
    (0, False): _plain,
    (0, True): _plain_switched,
    (1, False): _field,
    (1, True): _field_switched,
    (2, False): _ewald,
    (2, True): _ewald_switched,
}


def cluster_pairs_energy(
    x, y, z, charge, half_sigma, sqrt_4epsilon, pair_j, pair_shift, pair_mask, counts, shifts,
    cutoff2, coulomb_kind, alpha, krf, crf, switching, switch_distance, cutoff, cluster_energy,
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
    pair_j, pair_shift, pair_mask, counts
        The cluster-pair list (``ClusterPairList``).
    shifts : (27, 3) float64 array
        Box shift of each shift code, nm.
    cutoff2 : float
        Squared cutoff, nm^2 (inf for none).
    coulomb_kind : int
        0 plain 1/r, 1 reaction field, 2 Ewald real space (``cluster_kernels.COULOMB_*``).
    alpha : float
        Ewald parameter, 1/nm.
    krf, crf : float
        Reaction-field constants, 1/nm^3 and 1/nm.
    switching : bool
        Apply OpenMM's LJ switching function from ``switch_distance`` to ``cutoff`` (nm).
    switch_distance, cutoff : float
        nm.
    cluster_energy : (C,) float64 array
        Output: energy of the pairs listed under each i cluster, kJ/mol.
    """
    constants = np.array([
        cutoff2, alpha, krf, crf, switch_distance,
        1.0 / (cutoff - switch_distance) if switching else 0.0,
    ], np.float64)
    data = (x, y, z, charge, half_sigma, sqrt_4epsilon, pair_j, pair_shift, pair_mask, counts,
            shifts, constants)
    _KERNELS[(int(coulomb_kind), bool(switching))](data, cluster_energy)
