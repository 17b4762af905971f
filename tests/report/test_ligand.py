"""The report of a protein–ligand complex: ligand detection, imaging, motion, contacts, the page.

The complex is a pocket of T4 lysozyme L99A with p-xylene (residue TMP, 8 heavy atoms) cut from
openmmtools' test system (tests/data/report_t4l99a_pocket.pdb: the 20 protein residues around
the ligand, and the ligand; 367 atoms with hydrogens).  Every
expected value is built here from the coordinates written, never read back from the code.
"""

from __future__ import annotations

import base64
import re
import time
import warnings

import mdtraj as md
import numpy as np
import pytest
from browser import needs_chromium, run_chromium
from reference import data_path
from test_report import _movie_data, _rotation, _write_log, make_run

from bencao import selections
from bencao.report import analyse_trajectory, build_report
from bencao.report.analysis import choose_selection, load_trajectory
from bencao.report.ligand import MAX_LIGANDS, ligand_residues

LIGAND = "TMP"
LIGAND_HEAVY_ATOMS = 8  # p-xylene: C8H10
#: XTC stores coordinates to 0.001 nm: each coordinate is off by up to 0.0005 nm, an atom by up
#: to 0.0005 * sqrt(3) = 0.00087 nm, and a difference of two frames by twice that.
XTC_TOLERANCE_NM = 2e-3


def _pocket():
    """The T4 lysozyme L99A pocket with p-xylene, one frame (nm)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no CRYST1 record
        return md.load_pdb(data_path("report_t4l99a_pocket.pdb"))


def _write_run(folder, structure, xyz, box_vectors=None, conect: bool = True):
    """A run folder: topology.pdb of ``structure``, trajectory.xtc of ``xyz``, a log.csv.

    ``box_vectors``: (3, 3) periodic box (rows a, b, c) in nm, the same for every frame, or None.
    ``conect`` False drops the CONECT records: the ligand then has no bond in the topology.
    """
    folder.mkdir(parents=True)
    for atom in structure.topology.atoms:
        # MDTraj writes CONECT records with new serial numbers but ATOM records with the serials
        # read from a file: after a slice or a join they would not match
        atom.serial = None
    structure.save_pdb(str(folder / "topology.pdb"))
    if not conect:
        lines = (folder / "topology.pdb").read_text().splitlines(keepends=True)
        (folder / "topology.pdb").write_text("".join(x for x in lines
                                                     if not x.startswith("CONECT")))
    traj = md.Trajectory(np.asarray(xyz, np.float32), structure.topology,
                         time=2.0 * np.arange(len(xyz)))
    if box_vectors is not None:
        traj.unitcell_vectors = np.repeat(np.asarray(box_vectors, np.float32)[None], len(xyz), 0)
    traj.save_xtc(str(folder / "trajectory.xtc"))
    _write_log(folder / "log.csv", periodic=box_vectors is not None)


def _rigid(xyz, k: int):
    """``xyz`` rotated about its centre and translated, differently for every ``k``."""
    centre = xyz.mean(axis=0)
    rotation = _rotation(0.4 * k, [1.0, -2.0, 0.7])
    return (xyz - centre) @ rotation.T + centre + k * np.array([0.3, -0.1, 0.2])


# --- which residues are ligands --------------------------------------------------------------

def _topology_of(residues):
    """An MDTraj topology of one chain with residues given as (name, [(atom name, element)])."""
    top = md.Topology()
    chain = top.add_chain()
    for name, atoms in residues:
        residue = top.add_residue(name, chain)
        for atom_name, symbol in atoms:
            top.add_atom(atom_name, md.element.get_by_symbol(symbol), residue)
    return top


def test_ligand_definition_excludes_protein_nucleic_water_and_monatomic_ions():
    gly = [("N", "N"), ("CA", "C"), ("C", "C"), ("O", "O")]
    top = _topology_of([
        ("ACE", [("C", "C"), ("O", "O"), ("CH3", "C")]), ("GLY", gly), ("NME", [("N", "N"),
                                                                             ("C", "C")]),
        ("DA", [("P", "P"), ("OP1", "O"), ("C1'", "C")]),       # nucleic acid
        ("HOH", [("O", "O"), ("H1", "H"), ("H2", "H")]),        # water
        ("NA", [("NA", "Na")]), ("CL", [("CL", "Cl")]),          # monatomic ions
        ("SO4", [("S", "S"), ("O1", "O"), ("O2", "O"), ("O3", "O"), ("O4", "O")]),
        ("TMP", [("C1", "C"), ("C2", "C"), ("H1", "H")]),
        ("ZN", [("ZN", "Zn")]),                                  # a lone metal ion
    ])
    assert [r.name for r in ligand_residues(top)] == ["SO4", "TMP"]
    # the report and the restraints share one definition
    assert ligand_residues is selections.ligand_residues


def test_pocket_file_has_one_ligand():
    residues = ligand_residues(_pocket().topology)
    assert [r.name for r in residues] == [LIGAND]
    assert sum(a.element.symbol != "H" for a in residues[0].atoms) == LIGAND_HEAVY_ATOMS


def test_selection_is_protein_and_at_most_max_ligands():
    gly = [("N", "N"), ("CA", "C"), ("C", "C"), ("O", "O")]
    top = _topology_of([("GLY", gly)] * 3 + [("HOH", [("O", "O"), ("H1", "H"), ("H2", "H")])]
                       + [("LIG", [("C1", "C"), ("C2", "C")])] * (MAX_LIGANDS + 2))
    selection, indices = choose_selection(top)
    assert selection == "protein"
    # 12 protein atoms, no water, 2 atoms of each of the first MAX_LIGANDS ligands
    expected = list(range(12)) + list(range(15, 15 + 2 * MAX_LIGANDS))
    assert indices.tolist() == expected


# --- motion of the ligand --------------------------------------------------------------------

def test_rigid_motion_of_the_complex_gives_no_ligand_motion(tmp_path):
    structure = _pocket()
    xyz0 = structure.xyz[0].astype(np.float64)
    _write_run(tmp_path / "run", structure, [_rigid(xyz0, k) for k in range(6)])
    result = analyse_trajectory(tmp_path / "run")
    assert len(result["ligands"]) == 1
    ligand = result["ligands"][0]
    assert ligand["name"] == LIGAND and ligand["heavy_atoms"] == LIGAND_HEAVY_ATOMS
    assert np.max(ligand["rmsd_nm"]) < XTC_TOLERANCE_NM
    assert np.max(ligand["centroid_displacement_nm"]) < XTC_TOLERANCE_NM
    # the contacts do not change under a rigid motion of the whole complex
    assert ligand["contact_occupancy"].all()


def test_ligand_translated_relative_to_protein(tmp_path):
    """A ligand moved by d off its pocket: centroid displacement |d| and RMSD |d|."""
    structure = _pocket()
    xyz0 = structure.xyz[0].astype(np.float64)
    ligand = structure.topology.select(f"resname {LIGAND}")
    shifts = np.array([[0, 0, 0], [0.1, 0, 0], [0.05, -0.2, 0.1], [0.3, 0.3, -0.4],
                       [-0.6, 0.2, 0.5]])
    frames = []
    for k, d in enumerate(shifts):
        xyz = xyz0.copy()
        xyz[ligand] += d
        frames.append(_rigid(xyz, k))  # and the whole complex moved: the fit must undo that
    _write_run(tmp_path / "run", structure, frames)
    result = analyse_trajectory(tmp_path / "run")
    expected = np.linalg.norm(shifts, axis=1)
    found = result["ligands"][0]
    np.testing.assert_allclose(found["centroid_displacement_nm"], expected, atol=XTC_TOLERANCE_NM)
    # every atom moved by d: the RMSD is |d| too
    np.testing.assert_allclose(found["rmsd_nm"], expected, atol=XTC_TOLERANCE_NM)
    # the protein analysis stays the protein's: backbone RMSD of a rigid protein is 0
    assert np.max(result["rmsd_nm"]) < XTC_TOLERANCE_NM


def test_radius_of_gyration_is_of_the_protein_only(tmp_path):
    structure = _pocket()
    _write_run(tmp_path / "run", structure, [structure.xyz[0]] * 2)
    result = analyse_trajectory(tmp_path / "run")
    traj = md.load(str(tmp_path / "run" / "trajectory.xtc"), top=structure.topology)
    masses = np.array([a.element.mass for a in traj.topology.atoms])
    protein = traj.topology.select("protein")
    rg_protein = md.compute_rg(traj.atom_slice(protein), masses=masses[protein])
    rg_all = md.compute_rg(traj, masses=masses)
    # float32 coordinates: Rg agrees to ~1e-6 nm; the ligand shifts it by more than 1e-3 nm
    np.testing.assert_allclose(result["rg_nm"], rg_protein, atol=1e-5)
    assert np.all(np.abs(rg_all - rg_protein) > 1e-3)


# --- contacts --------------------------------------------------------------------------------

def _brute_force_contacts(traj, cutoff):
    """(n_frames, n_residues) bool contacts and the residues, from all pairwise distances."""
    top = traj.topology
    heavy = np.array([a.element.symbol != "H" for a in top.atoms])
    ligand = np.flatnonzero(heavy & np.array([a.residue.name == LIGAND for a in top.atoms]))
    protein = np.flatnonzero(heavy & np.array([a.residue.is_protein for a in top.atoms]))
    xyz = traj.xyz.astype(np.float64)
    distances = np.linalg.norm(xyz[:, ligand, None, :] - xyz[:, None, protein, :], axis=-1)
    residues = sorted({top.atom(int(i)).residue.index for i in protein})
    atom_residue = np.array([top.atom(int(i)).residue.index for i in protein])
    contact = np.stack([(distances[:, :, atom_residue == r] < cutoff).any(axis=(1, 2))
                        for r in residues], axis=1)
    return contact, [top.residue(r) for r in residues], distances


def test_contacts_match_brute_force_distances(tmp_path):
    structure = _pocket()
    xyz0 = structure.xyz[0].astype(np.float64)
    ligand = structure.topology.select(f"resname {LIGAND}")
    rng = np.random.default_rng(3)
    frames = []
    for k in range(12):
        xyz = xyz0 + 0.01 * rng.standard_normal(xyz0.shape)
        xyz[ligand] += 0.05 * k * np.array([0.6, -0.5, 0.62])  # drifting out of the pocket
        frames.append(xyz)
    _write_run(tmp_path / "run", structure, frames)
    traj = md.load(str(tmp_path / "run" / "trajectory.xtc"), top=structure.topology)
    expected, residues, distances = _brute_force_contacts(traj, 0.4)
    # no pair sits on the cutoff, where float32 and float64 arithmetic could disagree
    assert np.min(np.abs(distances - 0.4)) > 1e-5
    found = analyse_trajectory(tmp_path / "run")["ligands"][0]
    touched = expected.any(axis=0)
    assert found["contact_residues"] == [(r.name, r.resSeq, "A")
                                         for r, t in zip(residues, touched) if t]
    np.testing.assert_array_equal(found["contact_occupancy"], expected[:, touched])
    np.testing.assert_allclose(found["contact_frequency"], expected[:, touched].mean(axis=0))
    # the case tests something: contacts come and go as the ligand leaves
    frequency = expected[:, touched].mean(axis=0)
    assert 0 < np.sum((frequency > 0) & (frequency < 1))

    # the page's table lists exactly the residues in contact in >= 10% of the frames
    page = build_report(tmp_path / "run").read_text()
    table = re.search(r'<table class="contacts" id="ligand-contacts-table">(.*?)</table>', page,
                      re.DOTALL).group(1)
    listed = re.findall(r"<tr><td>(\w+)</td><td>(\d+)</td><td>(\w)</td><td>(\d+)%</td></tr>",
                        table)
    wanted = {(r.name, str(r.resSeq)): f for r, f in zip(residues, expected.mean(axis=0))
              if f >= 0.1}
    assert {(name, number) for name, number, _, _ in listed} == set(wanted)
    for name, number, chain, percent in listed:
        assert chain == "A" and int(percent) == round(100 * wanted[(name, number)])


# --- periodic boundaries ---------------------------------------------------------------------

CUBIC = 5.0 * np.eye(3)
#: A rhombic dodecahedron (GROMACS's square-xy form), a triclinic box of 5 nm images.
DODECAHEDRON = 5.0 * np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.5, 0.5, np.sqrt(0.5)]])


def _assert_ligand_whole(run, built):
    """The ligand of every loaded frame is the ligand ``built`` (nm), not split by the box."""
    data = load_trajectory(run)
    xyz = data.traj.xyz[:, data.traj.topology.select(f"resname {LIGAND}")]
    pairs = np.linalg.norm(xyz[:, :, None] - xyz[:, None], axis=-1)
    expected = np.linalg.norm(built[:, None] - built[None], axis=-1)
    assert np.max(np.abs(pairs - expected)) < XTC_TOLERANCE_NM


@pytest.mark.parametrize("conect", [True, False], ids=["bonded", "no-CONECT"])
@pytest.mark.parametrize("box", [CUBIC, DODECAHEDRON], ids=["cubic", "dodecahedron"])
def test_ligand_in_a_periodic_image_is_put_back_next_to_the_protein(tmp_path, box, conect):
    structure = _pocket()
    topology = structure.topology
    ligand = topology.select(f"resname {LIGAND}")
    # the complex centred on a box corner: wrapping splits both the protein and the ligand
    xyz0 = structure.xyz[0].astype(np.float64)
    xyz0 += box.sum(axis=0) - xyz0[ligand].mean(axis=0)
    frames = [xyz0.copy()]
    for shift in (box[0], -box[1], box[2], box[0] - box[2]):  # one box vector, or two
        xyz = xyz0.copy()
        xyz[ligand] += shift
        frames.append(xyz)
    if np.allclose(box, np.diag(np.diag(box))):
        # every atom wrapped into the box on its own, as some writers do
        frames.append(np.mod(xyz0, np.diag(box)))
        assert np.ptp(frames[-1][ligand], axis=0).max() > 2.0  # the ligand really is split
    _write_run(tmp_path / "run", structure, frames, box_vectors=box, conect=conect)
    _assert_ligand_whole(tmp_path / "run", xyz0[ligand])
    result = analyse_trajectory(tmp_path / "run")
    found = result["ligands"][0]
    # the periodic image of an unchanged complex: no motion, the same contacts
    assert np.max(found["centroid_displacement_nm"]) < XTC_TOLERANCE_NM
    assert np.max(found["rmsd_nm"]) < XTC_TOLERANCE_NM
    assert found["contact_occupancy"].all()
    assert "ligand put in the periodic image nearest the protein" in result["imaging"]


def _tip_complex():
    """Trp-cage (1T2Y) along x with p-xylene 0.4 nm beyond its far tip, one frame (nm).

    Trp-cage reaches 1.56 nm from its centroid towards the tip but only 0.92 nm the other way.
    In a 3.6 nm box the ligand's centroid (1.96 nm from the protein's) is nearer the protein's
    centroid in the periodic image on the far side (at -1.64 nm, 0.7 nm off the protein); the
    right image is next to the tip (0.5 nm from a protein heavy atom, 0.34 nm atom to atom).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        protein = md.load_pdb(data_path("1T2Y.pdb"))
    pocket = _pocket()
    ligand = pocket.atom_slice(pocket.topology.select(f"resname {LIGAND}"))
    xyz = protein.xyz[0].astype(np.float64)
    xyz -= xyz.mean(axis=0)
    tip = xyz[np.argmax(np.linalg.norm(xyz, axis=1))]
    u = tip / np.linalg.norm(tip)
    # the rotation taking u to the x axis (Rodrigues about u x x)
    axis = np.cross(u, [1.0, 0.0, 0.0])
    rotation = _rotation(np.arccos(u[0]), axis) if np.linalg.norm(axis) > 1e-9 else np.eye(3)
    protein.xyz[0] = xyz @ rotation.T
    lig_xyz = ligand.xyz[0] - ligand.xyz[0].mean(axis=0)
    ligand.xyz[0] = lig_xyz + [np.linalg.norm(tip) + 0.4, 0.0, 0.0]
    return protein.stack(ligand)


@pytest.mark.parametrize("conect", [True, False], ids=["bonded", "no-CONECT"])
def test_ligand_beyond_half_a_box_from_the_protein_centre_stays_at_the_protein(tmp_path, conect):
    structure = _tip_complex()
    box = 3.6 * np.eye(3)
    xyz0 = structure.xyz[0].astype(np.float64) + 1.8  # the protein centroid mid-box
    ligand = structure.topology.select(f"resname {LIGAND}")
    assert xyz0[ligand].mean(axis=0)[0] - 1.8 > 1.8  # beyond half a box from the centroid
    frames = [xyz0, np.mod(xyz0, 3.6)]                # as written, and every atom wrapped
    for shift in (box[0], -box[1] + box[2]):
        xyz = xyz0.copy()
        xyz[ligand] += shift
        frames.append(xyz)
    _write_run(tmp_path / "run", structure, frames, box_vectors=box, conect=conect)
    _assert_ligand_whole(tmp_path / "run", xyz0[ligand])
    found = analyse_trajectory(tmp_path / "run")["ligands"][0]
    # the contacts of the complex as built, in every frame: the ligand is at the tip
    expected, residues, _ = _brute_force_contacts(md.Trajectory(xyz0[None], structure.topology),
                                                  0.4)
    assert expected.any()
    assert found["contact_residues"] == [(r.name, r.resSeq, "A")
                                         for r, t in zip(residues, expected[0]) if t]
    assert found["contact_occupancy"].all()
    assert np.max(found["centroid_displacement_nm"]) < XTC_TOLERANCE_NM


# --- the page --------------------------------------------------------------------------------

def _decoded_frames(movie) -> np.ndarray:
    """The movie's coordinates, (n_frames, n_atoms, 3) in Å."""
    ints = np.frombuffer(base64.b64decode(movie["coords"]), dtype="<i2")
    return ints.reshape(movie["n_frames"], movie["n_atoms"], 3) / movie["scale"]


def _ligand_run(folder, n_frames: int = 6):
    """A run of the pocket in a periodic box, the ligand leaving and crossing the boundary."""
    structure = _pocket()
    ligand = structure.topology.select(f"resname {LIGAND}")
    xyz0 = structure.xyz[0].astype(np.float64)
    xyz0 += 5.0 - xyz0[ligand].mean(axis=0)  # ligand at the corner of the 5 nm box
    frames = []
    for k in range(n_frames):
        xyz = xyz0.copy()
        xyz[ligand] += 0.03 * k
        frames.append(np.mod(_rigid(xyz, k), 5.0))  # moved as a whole, every atom wrapped
    _write_run(folder, structure, frames, box_vectors=CUBIC)
    return structure


def test_page_shows_the_ligand(tmp_path):
    structure = _ligand_run(tmp_path / "run")
    page = build_report(tmp_path / "run", max_frames=4).read_text()
    # the movie: the ligand's heavy atoms are flagged, drawn as sticks with green carbons
    movie = _movie_data(page)
    atom_records = [rec[0] for rec in movie["template"] if len(rec) == 2]
    flagged = {atom_records[i][17:20] for i in movie["ligand_atoms"]}
    assert flagged == {LIGAND} and len(movie["ligand_atoms"]) == LIGAND_HEAVY_ATOMS
    assert sum(rec[17:20] == LIGAND for rec in atom_records) == LIGAND_HEAVY_ATOMS
    assert movie["ligand_names"] == [LIGAND]
    assert 'colorscheme: "greenCarbon"' in page
    assert "the ligand TMP (sticks, green carbons)" in page
    # in every movie frame the ligand sits in its pocket: within 0.4 nm of a protein heavy atom
    xyz = _decoded_frames(movie)
    ligand = np.array(movie["ligand_atoms"])
    protein = np.setdiff1d(np.arange(movie["n_atoms"]), ligand)
    centroid = xyz[:, ligand].mean(axis=1)
    gap = np.linalg.norm(centroid[:, None] - xyz[:, protein], axis=-1).min(axis=1)
    assert np.all(gap < 4.0), gap  # Å; a ligand one box away would be ~50 Å off

    # the ligand section: plots, table, summary rows
    assert '<section id="ligand">' in page
    for name in ("ligand-motion", "ligand-contacts"):
        assert f'id="plot-{name}"' in page
    assert "<th>Ligand</th><td>TMP 163 (chain A), 8 heavy atoms</td>" in page
    last_shift = 10 * np.linalg.norm(0.03 * np.ones(3) * 5)  # Å, frame 5
    rmsd = float(re.search(r"<th>Ligand RMSD, last frame</th><td>([\d.]+) Å", page).group(1))
    largest = float(re.search(r"<th>Ligand centroid displacement, largest</th><td>([\d.]+) Å",
                              page).group(1))
    # the XTC rounding (0.02 Å at most) plus the page's rounding to 0.01 Å
    assert abs(rmsd - last_shift) < 0.03 and abs(largest - last_shift) < 0.03
    assert len(structure.topology.select("protein")) < structure.n_atoms  # a real complex


def test_two_ligands_each_get_their_rows_and_contacts(tmp_path):
    """A second p-xylene 2 nm off the pocket: its own motion, and no contact with the protein."""
    pocket = _pocket()
    second = pocket.atom_slice(pocket.topology.select(f"resname {LIGAND}"))
    second.xyz[0] += [2.0, 0.0, 0.0]
    structure = pocket.stack(second)
    xyz0 = structure.xyz[0].astype(np.float64)
    ligands = [r for r in structure.topology.residues if r.name == LIGAND]
    first_atoms = [a.index for a in ligands[0].atoms]
    second_atoms = [a.index for a in ligands[1].atoms]
    frames = []
    for k in range(4):
        xyz = xyz0.copy()
        xyz[second_atoms] += [0.0, 0.0, 0.1 * k]  # the second one drifts, the first one stays
        frames.append(_rigid(xyz, k))
    _write_run(tmp_path / "run", structure, frames)
    found = analyse_trajectory(tmp_path / "run")["ligands"]
    assert len(found) == 2 and len(first_atoms) == len(second_atoms)
    assert np.max(found[0]["centroid_displacement_nm"]) < XTC_TOLERANCE_NM
    np.testing.assert_allclose(found[1]["centroid_displacement_nm"], 0.1 * np.arange(4),
                               atol=XTC_TOLERANCE_NM)
    # 2 nm off the pocket's centre: no protein heavy atom within 0.4 nm in any frame
    protein = structure.topology.select("protein and not element H")
    gaps = np.linalg.norm(xyz0[second_atoms][:, None] - xyz0[protein][None], axis=-1)
    assert gaps.min() > 0.4 + 0.3 + XTC_TOLERANCE_NM  # 0.3 nm: its largest drift
    assert found[1]["contact_residues"] == [] and found[0]["contact_residues"]

    page = build_report(tmp_path / "run").read_text()
    labels = [f["label"] for f in found]
    assert labels[0] != labels[1]  # another chain
    assert f"<th>Ligands</th><td>{labels[0]}, {labels[1]}</td>" in page
    for label in labels:
        assert f"<th>Ligand {label}</th><td>8 heavy atoms; RMSD, last frame" in page
    assert 'id="ligand-contacts-table"' in page and "no protein residue is within" in page
    assert _movie_data(page)["n_ligand_residues"] == 2


def test_system_without_ligand_has_no_ligand_section(tmp_path):
    make_run(tmp_path / "run", n_frames=3)
    assert analyse_trajectory(tmp_path / "run")["ligands"] == []
    page = build_report(tmp_path / "run").read_text()
    assert 'id="ligand"' not in page and "plot-ligand" not in page
    assert "<th>Ligand" not in page and "(sticks, green carbons)" not in page
    movie = _movie_data(page)
    assert "ligand_atoms" not in movie and "ligand_names" not in movie


@needs_chromium
def test_movie_with_ligand_plays_in_headless_chromium(tmp_path):
    """One page load (the movie itself is tested on a protein in test_report): frames advance,
    and 3Dmol draws the ligand's atoms with the ligand style."""
    start = time.perf_counter()
    _ligand_run(tmp_path / "run", n_frames=6)
    report = build_report(tmp_path / "run", max_frames=6)
    dom = run_chromium(["--virtual-time-budget=1000", "--dump-dom", report.resolve().as_uri()])
    body = re.search(r"<body[^>]*>", dom.stdout)
    assert body and "data-viewer-error" not in body.group(0), dom.stdout[:300]
    shown = re.search(r'data-frames-shown="(\d+)"', body.group(0))
    assert shown and int(shown.group(1)) > 1, "the movie did not play"
    drawn = re.search(r'data-ligand-atoms-drawn="(\d+)"', body.group(0))
    assert drawn and int(drawn.group(1)) == LIGAND_HEAVY_ATOMS, "the ligand is not drawn"
    print(f"headless-browser test with a ligand: {time.perf_counter() - start:.1f} s")
