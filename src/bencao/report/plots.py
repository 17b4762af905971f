"""Plots of the run report, drawn with Matplotlib's Agg renderer and embedded as base64 PNG.

PNG rather than SVG keeps the page small whatever the length of the run (an SVG grows with the
number of points).  Figures are made with :class:`matplotlib.figure.Figure` directly, not pyplot,
so building a report changes no global Matplotlib state and opens no window.
"""

from __future__ import annotations

import base64
import html
import io

import numpy as np
from matplotlib.figure import Figure
from matplotlib.transforms import blended_transform_factory

#: Colours of the stage bands, alternating so that neighbouring stages can be told apart.
_BAND_COLOURS = ("#f2f2f2", "#ffffff")
_DPI = 100


def figure_to_data_uri(fig) -> str:
    """The figure as a ``data:image/png;base64,...`` URI."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=_DPI, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def figure_html(fig, caption: str, name: str) -> str:
    """An embedded figure of the page, ``<figure id="plot-NAME">``, with its caption."""
    return (f'<figure id="plot-{name}"><img alt="{html.escape(caption)}" '
            f'src="{figure_to_data_uri(fig)}"><figcaption>{html.escape(caption)}'
            "</figcaption></figure>")


def mark_stages(ax, segments, label: bool = True) -> None:
    """Shade each stage's time span, draw a line where a stage starts and name it at the top.

    Parameters
    ----------
    ax : matplotlib.axes.Axes
        Axes whose x axis is simulated time in ps.
    segments : list of bencao.report.runlog.StageSegment
    label : bool
        Write the stage names (once per figure is enough).
    """
    top = blended_transform_factory(ax.transData, ax.transAxes)
    for i, segment in enumerate(segments):
        # a band from this stage's first row to the next stage's first row, so bands touch
        end = segments[i + 1].start_ps if i + 1 < len(segments) else segment.end_ps
        ax.axvspan(segment.start_ps, end, color=_BAND_COLOURS[i % 2], zorder=0, lw=0)
        if i > 0:
            ax.axvline(segment.start_ps, color="0.45", lw=0.8, ls="--", zorder=1)
        if label:
            ax.text(segment.start_ps, 1.01, f" {segment.name}", transform=top, fontsize=8,
                    va="bottom", ha="left", color="0.25", clip_on=False)


def _finite(x, y):
    """Points where both coordinates are finite numbers."""
    keep = np.isfinite(x) & np.isfinite(y)
    return x[keep], y[keep]


def series_figure(time_ps, panels, segments=(), time_label: str = "time (ps)") -> Figure:
    """Stacked line plots sharing the time axis.

    Parameters
    ----------
    time_ps : (n,) array
        The x values: time in ps (or frame index, then pass ``time_label`` and no segments).
    panels : list of (y_label, [(values, series_label), ...])
        One panel per entry; each panel draws one or more series against ``time_ps``.  A series
        label of None draws no legend.
    segments : list of StageSegment
        Stages to mark on every panel.
    time_label : str
        Label of the x axis, with its unit.

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig = Figure(figsize=(9.0, 1.1 + 2.0 * len(panels)))
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    time_ps = np.asarray(time_ps, np.float64)
    for i, (ax, (y_label, series)) in enumerate(zip(axes, panels)):
        if len(segments):
            mark_stages(ax, segments, label=i == 0)
        for values, series_label in series:
            x, y = _finite(time_ps, np.asarray(values, np.float64))
            marker = "o" if len(x) < 30 else None
            ax.plot(x, y, lw=1.1, marker=marker, ms=3, label=series_label, zorder=2)
        ax.set_ylabel(y_label)
        ax.grid(True, color="0.85", lw=0.5, zorder=1)
        if any(series_label for _, series_label in series):
            ax.legend(loc="best", fontsize=8, framealpha=0.8)
    axes[-1].set_xlabel(time_label)
    fig.align_ylabels(axes)
    return fig


def energy_figure(log, segments) -> Figure | None:
    """Potential, kinetic and total energy (kJ/mol) against time, one panel each; None if absent."""
    names = (("potential_kj_mol", "potential energy"), ("kinetic_kj_mol", "kinetic energy"),
             ("total_kj_mol", "total energy"))
    panels = [(f"{label}\n(kJ/mol)", [(log.column(name), None)])
              for name, label in names if log.column(name) is not None]
    if not panels:
        return None
    return series_figure(log.columns["time_ps"], panels, segments)


def single_figure(log, segments, name: str, y_label: str) -> Figure | None:
    """One log column against time, or None when the log holds no value in it."""
    values = log.column(name)
    if values is None:
        return None
    return series_figure(log.columns["time_ps"], [(y_label, [(values, None)])], segments)


def trajectory_figure(analysis: dict, key: str, y_label: str, scale: float,
                      segments) -> Figure | None:
    """A trajectory observable (``analysis[key]`` times ``scale``) against the frame times.

    Stage bands are drawn only when the frame times are known: on a frame index they would be
    in the wrong place.
    """
    values = analysis.get(key)
    if values is None:
        return None
    if analysis["time_known"]:
        return series_figure(analysis["time_ps"], [(y_label, [(values * scale, None)])], segments)
    return series_figure(analysis["frame"], [(y_label, [(values * scale, None)])],
                         time_label="trajectory frame")


def frames_figure(analysis: dict, panels, segments) -> Figure:
    """Panels of per-frame trajectory values (see :func:`series_figure`) against the frame times.

    As in :func:`trajectory_figure`, the x axis is the frame index, without stage bands, when the
    trajectory does not record the time of its frames.
    """
    if analysis["time_known"]:
        return series_figure(analysis["time_ps"], panels, segments)
    return series_figure(analysis["frame"], panels, time_label="trajectory frame")


def _cell_edges(centres) -> np.ndarray:
    """Edges of cells centred on increasing ``centres`` (midpoints; half a step at the ends)."""
    centres = np.asarray(centres, np.float64)
    if len(centres) == 1:
        return centres[0] + np.array([-0.5, 0.5])
    middle = (centres[1:] + centres[:-1]) / 2
    return np.concatenate([[2 * centres[0] - middle[0]], middle, [2 * centres[-1] - middle[-1]]])


def contact_map_figure(analysis: dict, occupancy, row_labels, segments) -> Figure:
    """Residue × time map of contacts: a dark cell where residue ``j`` touches the ligand.

    Parameters
    ----------
    analysis : dict
        From :func:`bencao.report.analysis.analyse_trajectory` (frame times).
    occupancy : (n_frames, n_rows) bool array
        Contact of each shown residue in each frame.
    row_labels : list of str
        One label per residue, drawn top to bottom.
    segments : list of StageSegment
        Stages, marked when the frame times are known.

    Returns
    -------
    matplotlib.figure.Figure
    """
    occupancy = np.asarray(occupancy, bool)
    known = analysis["time_known"]
    x = np.asarray(analysis["time_ps"] if known else analysis["frame"], np.float64)
    fig = Figure(figsize=(9.0, 1.3 + 0.22 * max(len(row_labels), 3)))
    ax = fig.subplots()
    if known and len(segments):
        mark_stages(ax, segments)
    # above the stage bands (zorder 0), below the lines where stages start (zorder 1)
    ax.pcolormesh(_cell_edges(x), np.arange(len(row_labels) + 1) - 0.5, occupancy.T.astype(float),
                  cmap="Greys", vmin=0.0, vmax=1.25, zorder=0.5, shading="flat")
    ax.set_yticks(np.arange(len(row_labels)), labels=row_labels, fontsize=8)
    ax.set_ylim(len(row_labels) - 0.5, -0.5)
    ax.set_xlabel("time (ps)" if known else "trajectory frame")
    return fig
