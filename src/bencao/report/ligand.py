"""Ligands of a protein–ligand complex: which residues they are, where they sit, what they touch.

A ligand is every residue that is not protein (MDTraj's ``residue.is_protein``, caps such as ACE
and NME included), not nucleic acid, not water, and has more than one atom (monatomic ions are
not ligands; cofactors, polyatomic ions such as sulfate, sugars and lipids are).  That definition
is :func:`bencao.selections.ligand_residues`, re-exported here as :func:`ligand_residues`: the
restraints code uses the same function, so that "the ligand" means the same atoms everywhere.

The analysis measures the ligand in the protein's frame of reference: every frame is superposed
on the protein backbone of the first frame, and the ligand is then compared with its own
first-frame position without being fitted itself, so that a ligand leaving its pocket shows as a
growing RMSD and centroid displacement.
"""

from __future__ import annotations

import numpy as np

from bencao.selections import ligand_residues

__all__ = ["CONTACT_CUTOFF_NM", "MAX_LIGANDS", "MIN_CONTACT_FREQUENCY", "analyse_ligands",
           "chain_name", "contact_occupancy", "heavy_atoms", "ligand_label", "ligand_residues",
           "place_ligands_near_protein"]

#: A protein residue is in contact with a ligand when one of its heavy atoms is closer than this
#: to one of the ligand's heavy atoms (nm); 0.4 nm is the usual heavy-atom contact distance.
CONTACT_CUTOFF_NM = 0.4

#: Residues in contact in at least this fraction of the frames are listed in the report.
MIN_CONTACT_FREQUENCY = 0.10

#: Most ligand residues the report loads and analyses; a membrane or a cosolvent box matches the
#: definition hundreds of times, and the report is about a bound molecule, not about those.
MAX_LIGANDS = 10


def chain_name(chain) -> str:
    """A chain's identifier from the PDB file ("A"), or its index when the file gives none."""
    return getattr(chain, "chain_id", None) or str(chain.index)


def ligand_label(residue) -> str:
    """A ligand residue in words: name, number and chain, e.g. ``"TMP 163 (chain A)"``."""
    return f"{residue.name} {residue.resSeq} (chain {chain_name(residue.chain)})"


def heavy_atoms(atoms) -> np.ndarray:
    """Indices of the atoms that are not hydrogen; all of them when none is (no elements known)."""
    atoms = list(atoms)
    heavy = [a.index for a in atoms if a.element is None or a.element.symbol != "H"]
    return np.array(heavy if heavy else [a.index for a in atoms], dtype=int)


def _minimum_image(vectors, boxes, inverses):
    """``vectors`` (F, n, 3) moved to their shortest periodic image; nm; boxes (F, 3, 3).

    Rounding fractional coordinates gives the shortest image for vectors shorter than half the
    smallest box width, which the bonds and atom pairs of one residue always are.
    """
    fractional = np.einsum("fnj,fjk->fnk", vectors, inverses)
    return vectors - np.einsum("fnj,fjk->fnk", np.round(fractional), boxes)


#: The 27 lattice offsets (in box vectors) of a periodic cell and its neighbours.
_NEIGHBOUR_CELLS = np.array([(i, j, k) for i in (-1, 0, 1) for j in (-1, 0, 1)
                             for k in (-1, 0, 1)], np.float64)

#: Frames handled at once when placing ligands: bounds the (frames, 27, protein atoms) distances.
_CHUNK_ELEMENTS = 4_000_000


def place_ligands_near_protein(traj, ligands, protein_atoms) -> None:
    """Make each ligand residue whole, in the periodic image nearest the protein; in place.

    A ligand that diffused across the box boundary, or that a writer wrapped into the box on its
    own, would otherwise be drawn and analysed a box length away from its pocket.  Each ligand
    residue is first made whole (every atom in the image nearest the residue's first atom: this
    needs no bonds, which a PDB file without CONECT records does not give to a ligand), then
    translated by the lattice vector that brings its centroid nearest to a protein heavy atom.
    Nearest to an atom rather than to the protein's centre: a ligand bound at the far end of an
    elongated protein can be more than half a box from the centre.

    Parameters
    ----------
    traj : mdtraj.Trajectory
        With periodic box vectors; positions in nm; the protein already whole.
    ligands : list of mdtraj Residue
        Ligand residues of ``traj.topology``.
    protein_atoms : (n,) int array
        Protein atom indices of ``traj``.
    """
    if not ligands or traj.unitcell_vectors is None or not len(protein_atoms):
        return
    protein = heavy_atoms(traj.topology.atom(int(i)) for i in protein_atoms)
    xyz = traj.xyz  # float32, changed in place; float64 copies of a chunk's atoms only
    # rows: box vectors a, b, c; MDTraj computes them from lengths and angles at every access
    all_boxes = np.asarray(traj.unitcell_vectors, np.float64)
    chunk = max(1, _CHUNK_ELEMENTS // (len(_NEIGHBOUR_CELLS) * len(protein)))
    for first in range(0, traj.n_frames, chunk):
        frames = slice(first, first + chunk)
        boxes = all_boxes[frames]
        inverses = np.linalg.inv(boxes)
        protein_xyz = xyz[frames][:, protein].astype(np.float64)       # (f, P, 3)
        protein_centre = protein_xyz.mean(axis=1)
        for residue in ligands:
            atoms = np.array([a.index for a in residue.atoms])
            ligand_xyz = xyz[frames][:, atoms].astype(np.float64)
            anchor = ligand_xyz[:, :1]
            whole = anchor + _minimum_image(ligand_xyz - anchor, boxes, inverses)
            centroid = whole.mean(axis=1)                                # (f, 3)
            # the image nearest the protein's centre first: it or one of its 26 neighbours is
            # the image nearest a protein atom, however many boxes away the ligand wandered
            nearest_cell = -np.round(np.einsum("fj,fjk->fk", centroid - protein_centre,
                                               inverses))
            cells = nearest_cell[:, None, :] + _NEIGHBOUR_CELLS[None]    # (f, 27, 3)
            candidates = centroid[:, None, :] + np.einsum("fcj,fjk->fck", cells, boxes)
            gaps = (np.sum(candidates ** 2, axis=-1)[:, :, None]       # squared distances
                    - 2 * candidates @ protein_xyz.transpose(0, 2, 1)
                    + np.sum(protein_xyz ** 2, axis=-1)[:, None, :])
            best = np.argmin(gaps.min(axis=2), axis=1)
            shift = candidates[np.arange(len(best)), best] - centroid
            xyz[frames, atoms] = whole + shift[:, None, :]
    traj.xyz = xyz


def _fit_atoms(topology) -> np.ndarray:
    """Atoms to superpose frames on: the protein backbone, or all protein atoms if it is short."""
    backbone = topology.select("backbone")  # MDTraj's backbone is protein atoms only
    return backbone if len(backbone) >= 3 else topology.select("protein")


def contact_occupancy(traj, ligand_atoms, protein_atoms, cutoff_nm: float = CONTACT_CUTOFF_NM):
    """Which protein residues touch a ligand in each frame.

    Parameters
    ----------
    traj : mdtraj.Trajectory
        Molecules whole and the ligand next to the protein (distances are taken as they are in
        the coordinates, not across the periodic boundary: a contact with a periodic copy of the
        protein is an artefact of a small box, not a binding site).
    ligand_atoms, protein_atoms : int arrays
        Heavy atoms of the ligand and of the protein, indices of ``traj``.
    cutoff_nm : float
        Contact distance, nm.

    Returns
    -------
    residues : list of mdtraj Residue
        The protein residues of ``protein_atoms``, in topology order.
    occupancy : (n_frames, n_residues) bool array
        Whether residue ``j`` has an atom closer than ``cutoff_nm`` to a ligand atom in frame ``i``.
    """
    import mdtraj as md

    protein_atoms = np.sort(np.asarray(protein_atoms, dtype=int))
    residue_of_atom = np.array([traj.topology.atom(int(i)).residue.index for i in protein_atoms])
    residue_ids, column = np.unique(residue_of_atom, return_inverse=True)
    occupancy = np.zeros((traj.n_frames, len(residue_ids)), dtype=bool)
    if not len(protein_atoms) or not len(ligand_atoms):
        return [traj.topology.residue(int(r)) for r in residue_ids], occupancy
    # MDTraj's C loop over ligand x protein atom pairs, frame by frame
    neighbours = md.compute_neighbors(traj, cutoff_nm, np.asarray(ligand_atoms, dtype=int),
                                      haystack_indices=protein_atoms, periodic=False)
    for frame, atoms in enumerate(neighbours):
        occupancy[frame, column[np.searchsorted(protein_atoms, atoms)]] = True
    return [traj.topology.residue(int(r)) for r in residue_ids], occupancy


def analyse_ligands(traj, ligands) -> list:
    """Ligand RMSD, centroid displacement and protein contacts along a trajectory.

    Every frame is first superposed on the protein backbone of frame 0 (all protein atoms when the
    backbone has fewer than 3 atoms); the ligand is then compared with its frame-0 position
    without fitting it again.

    Parameters
    ----------
    traj : mdtraj.Trajectory
        Protein and ligand atoms, molecules whole, ligands next to the protein; nm.
    ligands : list of mdtraj Residue
        Ligand residues of ``traj.topology``.

    Returns
    -------
    list of dict, one per ligand
        ``name`` (residue name), ``label`` (see :func:`ligand_label`), ``heavy_atoms`` (count),
        ``rmsd_nm``: (n_frames,) heavy-atom RMSD to frame 0, nm; ``centroid_displacement_nm``:
        (n_frames,) distance of the heavy-atom centroid from its frame-0 position, nm;
        ``contact_residues``: list of (name, number, chain) of the protein residues in contact in
        at least one frame; ``contact_occupancy``: (n_frames, n_contact_residues) bool;
        ``contact_frequency``: (n_contact_residues,) fraction of the frames in contact.
    """
    fitted = traj.slice(np.arange(traj.n_frames), copy=True)
    fit = _fit_atoms(traj.topology)
    if len(fit):
        fitted.superpose(traj, frame=0, atom_indices=fit)
    protein_heavy = heavy_atoms(traj.topology.atom(int(i))
                                for i in traj.topology.select("protein"))
    results = []
    for residue in ligands:
        atoms = heavy_atoms(residue.atoms)
        xyz = fitted.xyz[:, atoms].astype(np.float64)
        displacement = xyz - xyz[:1]                                      # (F, n, 3)
        rmsd = np.sqrt(np.mean(np.sum(displacement ** 2, axis=-1), axis=1))
        centroid = np.linalg.norm(displacement.mean(axis=1), axis=-1)
        residues, occupancy = contact_occupancy(traj, atoms, protein_heavy)
        touched = occupancy.any(axis=0)
        results.append({
            "name": residue.name,
            "label": ligand_label(residue),
            "heavy_atoms": len(atoms),
            "rmsd_nm": rmsd,
            "centroid_displacement_nm": centroid,
            "contact_residues": [(r.name, int(r.resSeq), chain_name(r.chain))
                                 for r, t in zip(residues, touched) if t],
            "contact_occupancy": occupancy[:, touched],
            "contact_frequency": occupancy[:, touched].mean(axis=0),
        })
    return results
