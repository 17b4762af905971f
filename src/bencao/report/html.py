"""``build_report``: one self-contained HTML page about a run folder.

The page needs no network and no other file: the plots are base64 PNG, the 3-D movie's data and
the 3Dmol.js library are inlined.  Whatever part of the run is missing (no trajectory yet, no
protein) is replaced by a note, so a report can be made of a run still going on.
"""

from __future__ import annotations

import datetime
import html
import json
import os
from pathlib import Path

import numpy as np

import bencao
from bencao.errors import BencaoError, InputFileError
from bencao.io.files import atomic_write
from bencao.report import plots
from bencao.report.analysis import analyse_trajectory, load_topology, load_trajectory
from bencao.report.ligand_page import ligand_section, ligand_summary_rows
from bencao.report.plots import figure_html as _figure_html
from bencao.report.pockets_page import pocket_markers, pockets_section
from bencao.report.runlog import read_log
from bencao.report.viewer import movie_payload, movie_section

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto;
       max-width: 1000px; padding: 1em 1.5em 3em; color: #222; line-height: 1.4; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.25em; border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 1.6em; }
table.summary { border-collapse: collapse; }
table.summary th { text-align: left; padding: 0.2em 1.2em 0.2em 0; font-weight: 600;
                   vertical-align: top; white-space: nowrap; }
table.summary td { padding: 0.2em 0; }
.note { background: #fff8e0; border-left: 4px solid #e0b000; padding: 0.4em 0.8em; }
.caption, .subtle { color: #555; font-size: 0.92em; }
#viewer { width: 100%; height: 520px; position: relative; border: 1px solid #ccc;
          box-sizing: border-box; }
.controls { margin: 0.5em 0; display: flex; gap: 1em; align-items: center; }
#frame-slider { flex: 1; }
#frame-counter { font-variant-numeric: tabular-nums; min-width: 16em; }
figure { margin: 1.2em 0; }
figure img { max-width: 100%; }
figcaption { color: #555; font-size: 0.92em; }
table.contacts { border-collapse: collapse; margin: 0.5em 0 1.2em; font-size: 0.92em; }
table.contacts caption { text-align: left; color: #555; padding-bottom: 0.3em; }
table.contacts th, table.contacts td { padding: 0.15em 1em 0.15em 0; text-align: left; }
table.contacts td:nth-child(2), table.contacts td:nth-child(4) { text-align: right; }
pre { background: #f6f6f6; padding: 0.6em; overflow-x: auto; font-size: 0.85em; }
"""


def _fmt(value, digits: int = 2) -> str:
    """A number for the page, or an en dash when it is missing."""
    if value is None or not np.isfinite(value):
        return "–"
    return f"{value:,.{digits}f}"


def _mean_std(values) -> str:
    """``mean ± standard deviation`` of the finite values."""
    values = np.asarray(values, np.float64)
    values = values[np.isfinite(values)]
    if not len(values):
        return "–"
    return f"{values.mean():,.2f} ± {values.std():,.2f}"


def _duration(time_ps: float) -> str:
    """A simulated time in ps or ns, whichever reads better."""
    if not np.isfinite(time_ps):
        return "–"
    return f"{time_ps / 1000:,.3f} ns" if abs(time_ps) >= 1000 else f"{time_ps:,.2f} ps"


def _system_counts(run_dir) -> dict | None:
    """Atoms, protein residues, waters and chains from topology.pdb, or None without one."""
    try:
        structure = load_topology(run_dir)
    except InputFileError:
        return None
    top = structure.topology
    waters = sum(1 for r in top.residues if r.is_water)
    protein = top.select("protein")
    return {
        "atoms": top.n_atoms,
        "protein_atoms": len(protein),
        "protein_residues": sum(1 for r in top.residues if r.is_protein),
        "waters": waters,
        "chains": top.n_chains,
        "box_nm": None if structure.unitcell_lengths is None
        else [float(x) for x in structure.unitcell_lengths[0]],
    }


def _summary_rows(run_dir, log, counts, analysis) -> list:
    """(label, html value) rows of the summary table."""
    rows = [("Run folder", html.escape(os.fspath(Path(run_dir).resolve())))]
    if counts:
        parts = [f"{counts['atoms']:,} atoms"]
        if counts["protein_atoms"]:
            parts.append(f"protein {counts['protein_residues']} residues "
                         f"({counts['protein_atoms']:,} atoms)")
        if counts["waters"]:
            parts.append(f"{counts['waters']:,} waters")
        parts.append(f"{counts['chains']} chain{'s' if counts['chains'] != 1 else ''}")
        rows.append(("System", html.escape(", ".join(parts))))
        if counts["box_nm"]:
            rows.append(("Box", " × ".join(f"{x:.3f}" for x in counts["box_nm"]) + " nm"))
    if analysis:
        frames = f"{analysis['n_frames']:,} ({html.escape(analysis['trajectory'].name)})"
        if analysis["time_known"] and analysis["n_frames"] > 1:
            frames += (f", {_fmt(analysis['time_ps'][0])} – {_fmt(analysis['time_ps'][-1])} ps")
        rows.append(("Trajectory frames", frames))
    else:
        rows.append(("Trajectory frames", "none"))
    time = log.column("time_ps")
    rows.append(("Simulated time", _duration(float(np.nanmax(time))) if time is not None
                 else "– (no dynamics logged yet)"))
    segments = log.segments()
    if segments:
        rows.append(("Stages logged", html.escape(", ".join(
            f"{s.name} ({_fmt(s.start_ps, 1)}–{_fmt(s.end_ps, 1)} ps)" for s in segments))))
        last = segments[-1]
        rows.append((f"Temperature, last stage ({html.escape(last.name)})",
                     _mean_std(log.columns["temperature_k"][last.rows]) + " K"))
        density = log.columns["density_g_cm3"][last.rows]
        if np.isfinite(density).any():
            rows.append((f"Density, last stage ({html.escape(last.name)})",
                         _mean_std(density) + " g/cm³"))
        speed = log.columns["speed_ns_day"][last.rows]
        if np.isfinite(speed).any():
            rows.append((f"Speed, last stage ({html.escape(last.name)})",
                         _mean_std(speed) + " ns/day"))
    if analysis and analysis["rmsd_nm"] is not None:
        rows.append(("Backbone RMSD, last frame", f"{10 * analysis['rmsd_nm'][-1]:.2f} Å"))
    if analysis and analysis["rg_nm"] is not None:
        rows.append(("Radius of gyration, mean", f"{analysis['rg_nm'].mean():.3f} nm"))
    if analysis:
        rows.extend(ligand_summary_rows(analysis.get("ligands")))
    return rows


def _files_list(run_dir) -> str:
    """A list of the run folder's files with their sizes."""
    items = []
    for path in sorted(Path(run_dir).iterdir()):
        if path.is_file() and not path.name.startswith("."):
            size = path.stat().st_size
            shown = f"{size / 1e6:.1f} MB" if size >= 1e6 else f"{size / 1e3:.1f} kB"
            items.append(f"<li><code>{html.escape(path.name)}</code> ({shown})</li>")
    return "<ul>" + "".join(items) + "</ul>"


def _log_plots(log, segments) -> list:
    """Figures drawn from log.csv."""
    figures = []
    fig = plots.energy_figure(log, segments)
    if fig is not None:
        figures.append(_figure_html(fig, "Potential, kinetic and total energy (kJ/mol) against "
                                         "simulated time (ps); shaded bands are the stages.",
                                    "energy"))
    fig = plots.single_figure(log, segments, "temperature_k", "temperature (K)")
    if fig is not None:
        figures.append(_figure_html(fig, "Instantaneous temperature (K) against time (ps).",
                                    "temperature"))
    fig = plots.single_figure(log, segments, "density_g_cm3", "density (g/cm³)")
    if fig is not None:
        figures.append(_figure_html(fig, "Density (g/cm³) against time (ps).", "density"))
    else:
        fig = plots.single_figure(log, segments, "volume_nm3", "volume (nm³)")
        if fig is not None:
            figures.append(_figure_html(fig, "Box volume (nm³) against time (ps).", "volume"))
    fig = plots.single_figure(log, segments, "speed_ns_day", "speed (ns/day)")
    if fig is not None:
        figures.append(_figure_html(fig, "Simulation speed (ns/day) against time (ps).", "speed"))
    return figures


def _trajectory_plots(analysis, segments) -> list:
    """Figures of the trajectory analysis (backbone RMSD and radius of gyration)."""
    figures = []
    fig = plots.trajectory_figure(analysis, "rmsd_nm", "backbone RMSD (Å)", 10.0, segments)
    if fig is not None:
        figures.append(_figure_html(
            fig, "Backbone (N, CA, C, O) RMSD to the first frame after superposition on the "
                 "backbone, in Å (MDTraj md.rmsd).", "rmsd"))
    fig = plots.trajectory_figure(analysis, "rg_nm", "radius of gyration (nm)", 1.0, segments)
    if fig is not None:
        figures.append(_figure_html(
            fig, "Mass-weighted radius of gyration of the protein, in nm (MDTraj "
                 "md.compute_rg).", "rg"))
    return figures


def _text_file_block(path: Path, title: str) -> str:
    """A file shown verbatim in a <pre> block, or nothing when it is absent or unreadable."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return ""
    if path.suffix == ".json":
        try:
            text = json.dumps(json.loads(text), indent=2)
        except ValueError:
            pass
    return f"<h2>{html.escape(title)}</h2><pre>{html.escape(text)}</pre>"


def _movie_caption(data, payload) -> str:
    """What the movie shows, in words."""
    protein_residues = payload["n_residues"] - payload.get("n_ligand_residues", 0)
    drawn = "cartoon and side-chain sticks" if protein_residues >= 10 else "balls and sticks"
    ligands = ""
    if payload.get("ligand_names"):
        ligands = (f" and the ligand{'s' if payload['n_ligand_residues'] > 1 else ''} "
                   f"{', '.join(payload['ligand_names'])} (sticks, green carbons)")
    what = {"protein": f"protein heavy atoms ({drawn}){ligands}, superposed on the first frame's "
                       "backbone",
            "solute": "solute heavy atoms (no protein in the system), centred on the first frame",
            "all atoms": "every heavy atom of the system (no protein or solute), centred on the "
                         "first frame"}[data.selection]
    return (f"{payload['n_frames']} of {data.n_frames} trajectory frames, evenly spaced: {what}. "
            "Drag to rotate, scroll to zoom.")


def build_report(run_dir, output=None, max_frames: int = 60) -> Path:
    """Write a self-contained HTML report of a run folder.

    Parameters
    ----------
    run_dir : str or os.PathLike
        A folder written by ``bencao run``: ``log.csv`` (required), and if present
        ``topology.pdb`` with ``trajectory.xtc`` or ``trajectory.dcd``, ``job.toml``,
        ``run.json``.
    output : str or os.PathLike, optional
        The HTML file to write; default ``RUN_DIR/report.html``.
    max_frames : int
        Most trajectory frames in the 3-D movie (evenly spaced over the trajectory).

    Returns
    -------
    pathlib.Path
        The report written (atomically: a failed report never leaves a partial file).

    Raises
    ------
    bencao.errors.InputFileError
        If ``run_dir`` is not a folder, or its log.csv is missing or unreadable.
    bencao.errors.OutputError
        If the report cannot be written.
    bencao.errors.BencaoError
        If ``max_frames`` is smaller than 1.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputFileError(f"{os.fspath(run_dir)}: no such run folder")
    if int(max_frames) < 1:
        raise BencaoError(f"max_frames must be at least 1 (got {max_frames})")
    output = Path(output) if output is not None else run_dir / "report.html"
    log = read_log(run_dir / "log.csv")
    segments = log.segments()
    notes = []
    if log.n_rows == 0:
        notes.append("log.csv has no rows yet: no dynamics stage has reported.")
    if log.skipped_rows:
        notes.append(f"{log.skipped_rows} incomplete row(s) of log.csv were skipped.")

    data = analysis = None
    try:
        data = load_trajectory(run_dir)
        analysis = analyse_trajectory(run_dir, data)
        notes.extend(analysis["notes"])
    except InputFileError as exc:
        notes.append(f"No trajectory analysis or movie: {exc}")

    movie = ('<section id="movie"><h2>3-D movie</h2><p class="note">No movie: the run has no '
             "readable trajectory.</p></section>")
    if data is not None and data.selection == "none":
        movie = ('<section id="movie"><h2>3-D movie</h2><p class="note">No movie: the system '
                 "holds no protein or solute, and too many atoms to show them all.</p></section>")
    elif data is not None:
        payload = movie_payload(data.traj, data.selection, data.time_ps, int(max_frames),
                                data.ligands, pocket_markers(run_dir, data.traj))
        movie = movie_section(payload, _movie_caption(data, payload))
    if data is not None and data.periodic:
        notes.append(f"Periodic boundaries: {data.imaging}.")

    counts = _system_counts(run_dir)
    rows = _summary_rows(run_dir, log, counts, analysis)
    figures = _log_plots(log, segments) + (_trajectory_plots(analysis, segments)
                                           if analysis else [])
    page = _page(run_dir, rows, notes, movie, figures,
                 ligand_section(analysis, segments) + pockets_section(run_dir))
    with atomic_write(output, "wb") as handle:
        handle.write(page.encode("utf-8"))
    _make_readable(output)
    return output


def _make_readable(path: Path) -> None:
    """Give the report the permissions of a newly created file (the umask's).

    The atomic write goes through a private temporary file (mode 0600); a report is meant to be
    shared or served, so it gets the mode ``open()`` would have given it.
    """
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(path, 0o666 & ~umask)
    except OSError:  # not ours to change (another owner): the report is written all the same
        pass


def _page(run_dir, rows, notes, movie, figures, ligand: str = "") -> str:
    """The whole HTML document; ``ligand`` is the ligand section (empty without ligand)."""
    now = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    table = "".join(f"<tr><th>{label}</th><td>{value}</td></tr>" for label, value in rows)
    note_html = "".join(f'<p class="note">{html.escape(n)}</p>' for n in notes)
    plots_html = "".join(figures) or '<p class="note">Nothing to plot: the log has no rows.</p>'
    title = f"bencao run report: {Path(run_dir).resolve().name}"
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<style>{_CSS}</style>
</head>
<body>
<h1>{html.escape(title)}</h1>
<p class="subtle">Made by bencao {html.escape(bencao.__version__)} on {html.escape(now)}.</p>
<section id="summary">
<h2>Summary</h2>
<table class="summary">{table}</table>
{note_html}
</section>
{movie}{ligand}
<section id="plots">
<h2>Plots</h2>
{plots_html}
</section>
<section id="files">
<h2>Files</h2>
{_files_list(run_dir)}
</section>
{_text_file_block(Path(run_dir) / "job.toml", "Job (job.toml)")}
{_text_file_block(Path(run_dir) / "run.json", "Run summary (run.json)")}
<p class="subtle">The 3-D movie uses 3Dmol.js (BSD-3-Clause license, copyright University of
Pittsburgh and contributors; it incorporates GLmol, Three.js and jQuery code under their
licenses), inlined in this page.</p>
</body>
</html>
"""
