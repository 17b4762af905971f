"""The pockets section of the report: tracked pockets of ``RUN/pockets`` (``bencao pockets``)."""

from __future__ import annotations

import csv
import html
import os

import numpy as np

from bencao.report.plots import figure_html

#: Tracked pockets listed in the table and drawn in the volume plot.
TABLE_ROWS = 10
PLOTTED = 5


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
    return (f'<section id="pockets"><h2>Pockets</h2>{table}{figure}<p class="subtle">The '
            "frequency grid pockets/pocket_frequency.dx (OpenDX, Å) opens in VMD, PyMOL or NGL "
            "over topology.pdb.</p></section>")
