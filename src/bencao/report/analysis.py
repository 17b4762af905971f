"""Trajectory analysis for the run report, with MDTraj: backbone RMSD and radius of gyration.

Only the atoms the report needs are read from the trajectory (the protein and its ligands, or the
solute of a system without protein), which keeps a solvated system's trajectory cheap to analyse.
Molecules are made whole before any analysis: a protein split across the periodic boundary would
give a meaningless RMSD and radius of gyration, and a ligand drawn a box length away from its
pocket would give meaningless contacts.  The ligand analysis itself is in
:mod:`bencao.report.ligand`.
"""

from __future__ import annotations

import contextlib
import os
import struct
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bencao.errors import InputFileError
from bencao.report.ligand import (
    MAX_LIGANDS,
    analyse_ligands,
    ligand_residues,
    place_ligands_near_protein,
)

#: Trajectory file names a run writes, in order of preference (XTC stores the time of each frame).
TRAJECTORY_NAMES = ("trajectory.xtc", "trajectory.dcd")

#: One AKMA time unit (the DCD header's time step unit) in ps.
AKMA_TIME_PS = 0.04888821

#: Largest system (atoms) whose every atom is shown when it holds neither protein nor solute.
MAX_ATOMS_SHOWN_WITHOUT_SOLUTE = 3000


@dataclass
class TrajectoryData:
    """The part of a run's trajectory that the report analyses and shows.

    Attributes
    ----------
    path : pathlib.Path
        The trajectory file read.
    traj : mdtraj.Trajectory
        The selected atoms (``selection``), molecules made whole; positions in nm.
    selection : str
        "protein" (the protein and its ligands, if any), "solute" (no protein: every atom that is
        not water or a monatomic ion), "all atoms" (a small system of solvent only) or "none" (a
        large solvent box: only the frame count and times are read; ``traj`` then holds a single
        atom).
    n_atoms_total : int
        Atoms in the system (topology.pdb).
    time_ps : (n_frames,) float64 array or None
        Simulated time of every frame, ps; None when the file does not say (then frames are
        plotted by index).
    time_source : str
        Where ``time_ps`` came from, in words.
    periodic : bool
        Whether the trajectory has a periodic box.
    imaging : str
        How molecules were made whole, in words.
    notes : list of str
        Things the reader of the report should know (shown on the page).
    ligands : list of mdtraj Residue
        The ligand residues of ``traj.topology`` (see :func:`bencao.report.ligand.ligand_residues`)
        loaded with the protein; empty without protein or ligand.
    """

    path: Path
    traj: object
    selection: str
    n_atoms_total: int
    time_ps: object
    time_source: str
    periodic: bool
    imaging: str
    notes: list = field(default_factory=list)
    ligands: list = field(default_factory=list)

    @property
    def n_frames(self) -> int:
        """Frames in the trajectory."""
        return int(self.traj.n_frames)


def find_trajectory(run_dir):
    """The run's trajectory file (XTC preferred over DCD), or None when there is none.

    Parameters
    ----------
    run_dir : str or os.PathLike

    Returns
    -------
    pathlib.Path or None
    """
    for name in TRAJECTORY_NAMES:
        path = Path(run_dir) / name
        if path.is_file() and path.stat().st_size > 0:
            return path
    return None


def load_topology(run_dir):
    """The system's structure from ``RUN_DIR/topology.pdb`` as an MDTraj trajectory of one frame.

    Raises
    ------
    bencao.errors.InputFileError
        If the file is missing or not a readable PDB file.
    """
    import mdtraj as md

    path = Path(run_dir) / "topology.pdb"
    if not path.is_file():
        raise InputFileError(f"{os.fspath(path)}: no such file (needed to read the trajectory)")
    try:
        with warnings.catch_warnings():
            # a dummy CRYST1 record (non-periodic system) only earns a warning from MDTraj
            warnings.simplefilter("ignore")
            return md.load_pdb(os.fspath(path))
    except Exception as exc:  # MDTraj raises several types for a malformed PDB
        raise InputFileError(f"{os.fspath(path)}: not a readable PDB file ({exc})") from exc


def _solvent_atoms(topology) -> set:
    """Indices of water atoms and monatomic ions (atoms of a residue of one atom)."""
    solvent = {int(i) for i in topology.select("water")}
    for residue in topology.residues:
        if residue.n_atoms == 1:
            solvent.add(residue.atom(0).index)
    return solvent


def choose_selection(topology) -> tuple:
    """The atoms the report analyses and shows, and what they are.

    A system with a protein gives the protein and its first :data:`MAX_LIGANDS` ligand residues.

    Returns
    -------
    selection : str
        "protein", "solute", "all atoms" or "none" (see :class:`TrajectoryData`).
    indices : (n,) int array
        Atom indices into the full system, increasing.
    """
    protein = topology.select("protein")
    if len(protein):
        ligand_atoms = [a.index for residue in ligand_residues(topology)[:MAX_LIGANDS]
                        for a in residue.atoms]
        return "protein", np.union1d(protein, np.array(ligand_atoms, dtype=int))
    solvent = _solvent_atoms(topology)
    solute = np.array([a.index for a in topology.atoms if a.index not in solvent], dtype=int)
    if len(solute):
        return "solute", solute
    if topology.n_atoms <= MAX_ATOMS_SHOWN_WITHOUT_SOLUTE:
        return "all atoms", np.arange(topology.n_atoms)
    return "none", np.array([0])


def dcd_frame_times(path, n_frames: int):
    """Frame times from a DCD header (CHARMM convention, as OpenMM writes it), or None.

    Frame ``k`` is at step ``ISTART + k * NSAVC``, and the header's time step is in AKMA units.
    MDTraj's own writer leaves NSAVC = 1 and a time step of 1.0, which says nothing: None.

    Parameters
    ----------
    path : str or os.PathLike
    n_frames : int

    Returns
    -------
    (n_frames,) float64 array, ps, or None
    """
    try:
        with open(path, "rb") as handle:
            head = handle.read(48)
        marker, magic, _nset, istart, nsavc = struct.unpack("<i4s3i", head[:20])
        delta = struct.unpack("<f", head[44:48])[0]
    except (OSError, struct.error):
        return None
    if marker != 84 or magic != b"CORD" or nsavc <= 0 or not delta > 0 or istart < 0:
        return None
    if nsavc == 1 and delta == 1.0:
        return None
    return (istart + nsavc * np.arange(n_frames)) * float(delta) * AKMA_TIME_PS


def _frame_times(traj, path) -> tuple:
    """Frame times (ps) and where they came from; (None, reason) when unknown."""
    if path.suffix == ".xtc":
        time = np.asarray(traj.time, np.float64)
        if traj.n_frames == 1 or np.all(np.diff(time) > 0):
            return time, "the XTC file's frame times"
        return None, "frame index (the XTC frame times do not increase)"
    time = dcd_frame_times(path, traj.n_frames)
    if time is not None:
        return time, "the DCD header (first step, interval, time step)"
    return None, "frame index (the DCD file does not record the time of its frames)"


def _is_periodic(traj) -> bool:
    """Whether every frame has a box of non-zero volume (XTC stores zeros without a box)."""
    if traj.unitcell_vectors is None:
        return False
    volumes = np.abs(np.linalg.det(traj.unitcell_vectors))
    return bool(np.all(volumes > 1e-6))


def make_whole(traj, periodic: bool, ligands=()) -> str:
    """Make the molecules of ``traj`` whole, in place; returns how, in words.

    The largest molecule (the protein, or its largest chain) is made whole and anchors the
    others, which are imaged around it with ``image_molecules``.  The anchor is named rather than
    left to MDTraj's guess, which ignores molecules of 22 atoms or fewer (alanine dipeptide).
    Should imaging fail (a topology whose bonds MDTraj cannot follow), each molecule is only made
    whole.  Ligand residues are then made whole and put in the periodic image nearest the protein
    (:func:`bencao.report.ligand.place_ligands_near_protein`).

    Parameters
    ----------
    traj : mdtraj.Trajectory
    periodic : bool
        Whether ``traj`` has a periodic box (without one its box vectors are dropped).
    ligands : list of mdtraj Residue
        Ligand residues of ``traj.topology``; with ligands the anchor is the largest molecule that
        holds protein atoms.
    """
    if not periodic:
        traj.unitcell_vectors = None
        return "none needed (no periodic box)"
    protein = traj.topology.select("protein") if ligands else np.array([], dtype=int)
    try:
        molecules = sorted(traj.topology.find_molecules(), key=len, reverse=True)
        if len(protein):
            # a ligand larger than a short peptide must not become the anchor
            molecules.sort(key=lambda m: not any(a.residue.is_protein for a in m))
        traj.image_molecules(inplace=True, anchor_molecules=molecules[:1],
                             other_molecules=molecules[1:])
    except Exception:  # noqa: BLE001 - MDTraj raises several types; fall back below
        imaged = False
    else:
        imaged = True
    if imaged:
        anchor = "the largest protein molecule" if len(protein) else "the largest one"
        how = f"molecules made whole and imaged around {anchor} (mdtraj image_molecules)"
    else:
        try:
            traj.make_molecules_whole(inplace=True)
            how = "molecules made whole (mdtraj make_molecules_whole)"
        except Exception:  # noqa: BLE001
            return ("none (MDTraj could not make the molecules whole; RMSD may jump at the "
                    "boundary)")
    if len(protein):
        place_ligands_near_protein(traj, list(ligands), protein)
        how += "; each ligand put in the periodic image nearest the protein"
    return how


@contextlib.contextmanager
def _quiet_stdout():
    """Silence the process's standard output at the file-descriptor level.

    MDTraj's DCD reader (a C plugin) prints two lines on stdout for every file it opens, which
    would end up in the output of ``bencao report``, meant to be only the report's path.
    """
    sys.stdout.flush()
    try:
        saved = os.dup(1)
    except OSError:  # no file descriptor 1 (an embedding application): nothing to silence
        yield
        return
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 1)
            yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def load_trajectory(run_dir) -> TrajectoryData:
    """Read the part of a run's trajectory that the report analyses.

    Parameters
    ----------
    run_dir : str or os.PathLike
        A run folder with ``topology.pdb`` and ``trajectory.xtc`` or ``trajectory.dcd``.

    Returns
    -------
    TrajectoryData

    Raises
    ------
    bencao.errors.InputFileError
        If there is no trajectory, no topology, or the trajectory cannot be read with the topology
        (another atom count, a damaged file) or holds no frame.
    """
    import mdtraj as md

    path = find_trajectory(run_dir)
    if path is None:
        raise InputFileError(f"{os.fspath(run_dir)}: no trajectory.xtc or trajectory.dcd")
    structure = load_topology(run_dir)
    topology = structure.topology
    selection, indices = choose_selection(topology)
    try:
        with _quiet_stdout() if path.suffix == ".dcd" else contextlib.nullcontext():
            # with atom_indices MDTraj reads the first atoms of a file of another system without
            # a word; a first frame of every atom is checked against the topology's atom count
            md.load_frame(os.fspath(path), 0, top=topology)
            traj = md.load(os.fspath(path), top=topology, atom_indices=indices)
    except Exception as exc:  # MDTraj raises OSError, ValueError, RuntimeError... for bad files
        raise InputFileError(f"{os.fspath(path)}: cannot be read with topology.pdb "
                             f"({topology.n_atoms} atoms): {exc}") from exc
    if traj.n_frames == 0:
        raise InputFileError(f"{os.fspath(path)}: the trajectory holds no frame yet")
    periodic = _is_periodic(traj)
    time_ps, time_source = _frame_times(traj, path)
    data = TrajectoryData(path=path, traj=traj, selection=selection,
                          n_atoms_total=topology.n_atoms, time_ps=time_ps,
                          time_source=time_source, periodic=periodic, imaging="")
    if selection == "protein":
        # the loaded atoms hold whole residues, so the definition picks the same residues again
        data.ligands = ligand_residues(traj.topology)
        found = len(ligand_residues(topology))
        if found > MAX_LIGANDS:
            data.notes.append(f"{found} residues are ligands by the report's definition (not "
                              f"protein, nucleic acid or water, more than one atom); only the "
                              f"first {MAX_LIGANDS} are shown and analysed.")
    data.imaging = (make_whole(traj, periodic, data.ligands) if selection != "none"
                    else "not needed")
    if time_ps is None:
        data.notes.append(f"Trajectory plots use the frame index: {time_source}.")
    return data


def protein_analysis(traj) -> dict:
    """Backbone RMSD to the first frame and radius of gyration of a protein trajectory.

    Parameters
    ----------
    traj : mdtraj.Trajectory
        Protein atoms, and maybe ligands (not counted), molecules whole; positions in nm.

    Returns
    -------
    dict
        ``rmsd_nm``: (n_frames,) backbone RMSD to frame 0 after optimal superposition on the
        backbone (N, CA, C, O), nm, or None when the protein has fewer than 3 backbone atoms;
        ``rg_nm``: (n_frames,) mass-weighted radius of gyration of the protein, nm;
        ``backbone_atoms``: number of backbone atoms used.
    """
    import mdtraj as md

    protein = traj.topology.select("protein")
    if len(protein) < traj.n_atoms:
        traj = traj.atom_slice(protein)  # the radius of gyration is the protein's alone
    backbone = traj.topology.select("backbone")
    rmsd = None
    if len(backbone) >= 3:
        rmsd = np.asarray(md.rmsd(traj, traj, 0, atom_indices=backbone), np.float64)
    masses = np.array([a.element.mass if a.element is not None else 0.0
                       for a in traj.topology.atoms])
    rg = md.compute_rg(traj, masses=masses if masses.sum() > 0 else None)
    return {"rmsd_nm": rmsd, "rg_nm": np.asarray(rg, np.float64),
            "backbone_atoms": len(backbone)}


def analyse_trajectory(run_dir, data: TrajectoryData | None = None) -> dict:
    """Backbone RMSD and radius of gyration of the protein along a run's trajectory.

    Parameters
    ----------
    run_dir : str or os.PathLike
        The run folder.
    data : TrajectoryData, optional
        An already loaded trajectory (from :func:`load_trajectory`), to read the file only once.

    Returns
    -------
    dict
        ``time_ps``: (n_frames,) float64 frame times, ps (the frame index when the file does not
        record times; see ``time_source``); ``frame``: (n_frames,) int frame index;
        ``rmsd_nm``, ``rg_nm``: (n_frames,) float64 arrays in nm, or None without a protein;
        ``ligands``: one dict per ligand residue loaded with the protein (see
        :func:`bencao.report.ligand.analyse_ligands`), empty without;
        ``n_frames``, ``n_atoms``, ``selection``, ``time_source``, ``imaging``, ``trajectory``,
        ``notes``.

    Raises
    ------
    bencao.errors.InputFileError
        As :func:`load_trajectory`.
    """
    if data is None:
        data = load_trajectory(run_dir)
    frame = np.arange(data.n_frames)
    result = {
        "trajectory": data.path,
        "n_frames": data.n_frames,
        "n_atoms": data.n_atoms_total,
        "selection": data.selection,
        "frame": frame,
        "time_ps": data.time_ps if data.time_ps is not None else frame.astype(np.float64),
        "time_known": data.time_ps is not None,
        "time_source": data.time_source,
        "imaging": data.imaging,
        "rmsd_nm": None,
        "rg_nm": None,
        "ligands": [],
        "notes": list(data.notes),
    }
    if data.selection == "protein":
        result.update(protein_analysis(data.traj))
        result["ligands"] = analyse_ligands(data.traj, data.ligands) if data.ligands else []
    else:
        result["notes"].append("The system holds no protein: no backbone RMSD or radius of "
                               "gyration.")
    return result
