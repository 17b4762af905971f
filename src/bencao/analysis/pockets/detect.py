"""Pockets in one frame: buried alpha spheres clustered, described, scored and ranked.

Buried alpha spheres whose centres lie within 0.24 nm of each other form one pocket (single
linkage; fpocket clusters the same way at this distance), and clusters of fewer than 15 spheres
(fpocket's and mdpocket's ``-i 15``) are dropped.  Each pocket is described as fpocket describes
them (Schmidtke et al., J. Med. Chem. 53, 5858 (2010)): size, volume, buriedness, the share of
apolar spheres, the hydropathy and polarity of its lining, and from these a score (the ranking:
large, buried, apolar first) and a druggability estimate between 0 and 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from bencao.analysis.pockets.spheres import MIN_BURIED, alpha_spheres, buriedness

LINK = 0.24               # nm: sphere centres closer than this belong to one pocket
MIN_SPHERES = 15          # fewer spheres than this is not a pocket
ATOM_RADIUS = 0.17        # nm: what an alpha sphere's contact atoms take of it (carbon's vdW)
VOLUME_SPACING = 0.1      # nm: grid on which the empty volume is counted


@dataclass(frozen=True)
class Pocket:
    """One pocket of one frame.

    Attributes
    ----------
    centre : (3,) float64 array
        Mean of its alpha-sphere centres, nm.
    spheres : (S, 3) float64 array
        Alpha-sphere centres, nm.
    radii : (S,) float64 array
        Alpha-sphere radii, nm.
    volume : float
        Empty volume: the union of the spheres shrunk by a carbon's radius, nm^3.
    buriedness : float
        Mean fraction of blocked rays, 0-1.
    apolar_fraction : float
        Share of spheres touching at least three carbon or sulphur atoms.
    hydropathy : float
        Mean Kyte-Doolittle hydropathy of the lining residues.
    polarity : float
        Share of lining atoms that are N or O.
    score : float
        Ranking score (larger is better).
    druggability : float
        Druggability estimate, 0-1.
    atoms : (A,) int64 array
        Lining atoms (topology indices).
    residues : tuple of str
        Lining residues, "ALA23:A".
    """

    centre: np.ndarray
    spheres: np.ndarray
    radii: np.ndarray
    volume: float
    buriedness: float
    apolar_fraction: float
    hydropathy: float
    polarity: float
    score: float
    druggability: float
    atoms: np.ndarray
    residues: tuple


def find_pockets(positions: np.ndarray, atoms) -> list[Pocket]:
    """The pockets of one frame, best first.

    Parameters
    ----------
    positions : (N, 3) float array
        Positions of every atom of the topology, nm (only ``atoms.indices`` are used).
    atoms : bencao.analysis.pockets.atoms.PocketAtoms
        The protein heavy atoms and their properties.
    """
    xyz = np.ascontiguousarray(positions[atoms.indices], np.float64)
    centres, radii, contacts = alpha_spheres(xyz)
    tree = cKDTree(xyz)
    buried = buriedness(centres, xyz, tree)
    keep = buried >= MIN_BURIED
    centres, radii, contacts, buried = centres[keep], radii[keep], contacts[keep], buried[keep]
    pockets = [_describe(members, centres, radii, contacts, buried, atoms)
               for members in _clusters(centres)]
    pockets.sort(key=lambda pocket: -pocket.score)
    return pockets


def _clusters(centres: np.ndarray) -> list[np.ndarray]:
    if len(centres) < MIN_SPHERES:
        return []
    pairs = cKDTree(centres).query_pairs(LINK, output_type="ndarray")
    n = len(centres)
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    sizes = np.bincount(labels)
    return [np.flatnonzero(labels == k) for k in np.flatnonzero(sizes >= MIN_SPHERES)]


def _describe(members, centres, radii, contacts, buried, atoms) -> Pocket:
    spheres, sphere_radii = centres[members], radii[members]
    touching = contacts[members]
    lining = np.unique(touching)
    apolar = atoms.apolar[touching].sum(axis=1) >= 3
    residues = np.unique(atoms.residue[lining])
    hydropathy = float(np.mean(atoms.hydropathy[residues]))
    polarity = float(1.0 - np.mean(atoms.apolar[lining]))
    volume = union_volume(spheres, sphere_radii - ATOM_RADIUS)
    burial = float(np.mean(buried[members]))
    apolar_fraction = float(np.mean(apolar))
    # Size counts with diminishing returns, burial and apolarity multiply: the deep hydrophobic
    # cavities drugs bind come first, shallow polar grooves last
    score = math.log(len(members)) * burial**2 * (0.5 + apolar_fraction)
    druggability = _druggability(volume, burial, apolar_fraction, hydropathy)
    return Pocket(centre=spheres.mean(axis=0), spheres=spheres, radii=sphere_radii,
                  volume=volume, buriedness=burial, apolar_fraction=apolar_fraction,
                  hydropathy=hydropathy, polarity=polarity, score=float(score),
                  druggability=druggability, atoms=atoms.indices[lining],
                  residues=tuple(atoms.residue_labels[r] for r in residues))


def _druggability(volume: float, burial: float, apolar_fraction: float, hydropathy: float) -> float:
    """A logistic estimate from the descriptors druggable pockets share (Schmidtke and Barril,
    J. Med. Chem. 53, 5858 (2010)): enclosed, apolar, hydrophobic and large enough for a
    drug-sized ligand (0.3-1.5 nm^3).  An estimate to rank pockets by, not a trained model."""
    size = min(volume, 1.5) / 0.5
    z = -9.0 + 6.0 * burial + 3.0 * apolar_fraction + 0.5 * hydropathy + 1.2 * size
    return float(1.0 / (1.0 + math.exp(-z)))


def union_volume(centres: np.ndarray, radii: np.ndarray, spacing: float = VOLUME_SPACING) -> float:
    """Volume of a union of spheres, nm^3, counted on a cubic grid of ``spacing`` nm."""
    radii = np.maximum(radii, 0.0)
    if not len(centres) or not np.any(radii > 0):
        return 0.0
    low = (centres - radii[:, None]).min(axis=0)
    high = (centres + radii[:, None]).max(axis=0)
    axes = [np.arange(lo + spacing / 2, hi, spacing) for lo, hi in zip(low, high)]
    points = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    # every (point, sphere) pair within the largest radius, kept where the point lies inside
    # that sphere: all in SciPy, no Python loop over spheres or points
    pairs = cKDTree(points).sparse_distance_matrix(cKDTree(centres), float(radii.max()),
                                                   output_type="coo_matrix")
    inside = np.zeros(len(points), bool)
    inside[pairs.row[pairs.data <= radii[pairs.col]]] = True
    return float(inside.sum() * spacing**3)
