"""The pockets section of the report: tracked pockets of ``RUN/pockets`` (``bencao pockets``)."""

from __future__ import annotations

import csv
import html
import json
import os

import numpy as np

from bencao.report.plots import figure_html

#: Tracked pockets listed in the table, drawn in the volume plot, and drawn in the movie.
TABLE_ROWS = 10
PLOTTED = 5
IN_MOVIE = 3


def _read(path) -> list[dict]:
    with open(path, encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _volume_figure(rows, tracks):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 3.2))
    ax = fig.subplots()
    for track in tracks[:PLOTTED]:
        mine = [r for r in rows if r["pocket"] == track["pocket"]]
        times = [float(r["time_ps"]) for r in mine]
        x = times if all(np.isfinite(times)) else [int(r["frame"]) for r in mine]
        ax.plot(x, [float(r["volume_nm3"]) for r in mine], ".", ms=3,
                label=f"pocket {track['pocket']}")
    ax.set_xlabel("time (ps)")
    ax.set_ylabel("volume (nm³)")
    ax.legend(fontsize=7)
    return fig


def pocket_markers(run_dir, traj) -> dict | None:
    """The top tracked pockets as spheres for the movie: {frame: [(x, y, z, radius, colour)]}
    in nm, in ``traj``'s coordinates (a sphere of the pocket's volume at its centre); None
    without ``RUN/pockets``.

    The pocket centres are in the first frame's coordinates as ``bencao pockets`` read it; the
    report may have put the protein back in the box by whole box vectors, so the centres follow
    the shift of the first frame's C-alpha centroid.
    """
    folder = os.path.join(os.fspath(run_dir), "pockets")
    try:
        with open(os.path.join(folder, "pockets.json"), encoding="utf-8") as handle:
            summary = json.load(handle)
        tracks = _read(os.path.join(folder, "tracks.csv"))
        rows = _read(os.path.join(folder, "pockets.csv"))
    except (OSError, ValueError):
        return None
    if "reference_ca_centroid" not in summary:
        return None
    ca = traj.topology.select("name CA")
    if not len(ca):
        return None
    shift = traj.xyz[0, ca].mean(axis=0) - np.array(summary["reference_ca_centroid"])
    colours = {track["pocket"]: k for k, track in enumerate(tracks[:IN_MOVIE])}
    markers: dict = {}
    for row in rows:
        if row["pocket"] in colours:
            centre = np.array([float(row[f"center_{a}"]) for a in "xyz"]) + shift
            radius = (3.0 * float(row["volume_nm3"]) / (4.0 * np.pi)) ** (1.0 / 3.0)
            markers.setdefault(int(row["frame"]), []).append(
                (*centre.tolist(), max(radius, 0.2), colours[row["pocket"]]))
    return markers


def pockets_section(run_dir) -> str:
    """HTML of the pockets section, or "" when the run has no ``pockets/tracks.csv``."""
    folder = os.path.join(os.fspath(run_dir), "pockets")
    tracks_path = os.path.join(folder, "tracks.csv")
    if not os.path.exists(tracks_path):
        return ""
    tracks = _read(tracks_path)
    rows = _read(os.path.join(folder, "pockets.csv"))
    body = []
    for track in tracks[:TABLE_ROWS]:
        residues = track["residues"].split()
        shown = " ".join(residues[:12]) + (f" … (+{len(residues) - 12})" if len(residues) > 12 else "")
        body.append(
            f"<tr><td>{track['pocket']}</td><td>{float(track['open_fraction']):.0%}</td>"
            f"<td>{float(track['mean_volume_nm3']):.2f}</td><td>{float(track['max_volume_nm3']):.2f}</td>"
            f"<td>{float(track['max_druggability']):.2f}</td>"
            f"<td>{'yes' if track['cryptic'] == '1' else ''}</td><td>{html.escape(shown)}</td></tr>")
    table = ('<table class="contacts"><caption>Tracked pockets, most often open and best scored '
             "first (volumes in nm³; cryptic: closed in the first frame, open in ≥ 10% of frames)"
             "</caption><tr><th>pocket</th><th>open</th><th>mean volume</th><th>max volume</th>"
             "<th>druggability</th><th>cryptic</th><th>lining residues</th></tr>"
             f"{''.join(body)}</table>")
    figure = ""
    if tracks and rows:
        figure = figure_html(_volume_figure(rows, tracks),
                             "Volume of the top tracked pockets in the frames they are open.",
                             "pocket-volumes")
    return (f'<section id="pockets"><h2>Pockets</h2>{table}{figure}<p class="subtle">The movie '
            f"shows the top {IN_MOVIE} tracked pockets as translucent spheres of their volume in "
            "the frames they are open (red, blue, orange in the order of the table). The "
            "frequency grid pockets/pocket_frequency.dx (OpenDX, Å) opens in VMD, PyMOL or NGL "
            "over topology.pdb.</p></section>")
