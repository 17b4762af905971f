"""The report of an ensemble run: replica walks through the ladder, acceptance between states,
round trips, and each state's potential-energy distribution."""

from __future__ import annotations

import csv
import html
import json
import os
from pathlib import Path

import numpy as np

from bencao.errors import InputFileError
from bencao.io.files import atomic_write
from bencao.report.plots import figure_html

#: Fewest attempts for an acceptance to be shown as a rate rather than a count.
_MIN_ATTEMPTS = 1


def read_exchanges(run_dir) -> dict:
    """``exchanges.csv`` as arrays by column (empty arrays when no exchange was attempted)."""
    path = os.path.join(run_dir, "exchanges.csv")
    try:
        with open(path, encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except OSError as exc:
        raise InputFileError(f"{path}: cannot read the exchange log ({exc.strerror})") from exc
    columns = ("round", "state_i", "replica_i", "replica_j", "accepted")
    table = {key: np.array([int(row[key]) for row in rows], np.int64) for key in columns}
    for key in ("time_ps", "probability"):
        table[key] = np.array([float(row[key]) for row in rows])
    return table


def acceptance_matrix(exchanges: dict, states: int) -> tuple[np.ndarray, np.ndarray]:
    """(accepted, attempted) counts for every pair of states (symmetric, neighbours only)."""
    accepted = np.zeros((states, states), np.int64)
    attempted = np.zeros((states, states), np.int64)
    for k, ok in zip(exchanges["state_i"], exchanges["accepted"]):
        for a, b in ((k, k + 1), (k + 1, k)):
            attempted[a, b] += 1
            accepted[a, b] += ok
    return accepted, attempted


def round_trips(walk, highest: int) -> int:
    """Round trips in one replica's walk (its state per segment): lowest -> highest -> lowest."""
    trips, heading = 0, None
    for state in walk:
        if state == 0:
            if heading == "down":
                trips += 1
            heading = "up"
        elif state == highest and heading == "up":
            heading = "down"
    return trips


def _walks_figure(assignments, temperatures, segment_ps, start_ps):
    from matplotlib.figure import Figure

    table = np.asarray(assignments)[:-1]
    times = start_ps + segment_ps * np.arange(len(table) + 1)
    fig = Figure(figsize=(8, 3.2))
    ax = fig.subplots()
    for replica in range(table.shape[1]):
        temps = np.asarray(temperatures)[table[:, replica]]
        ax.step(times, np.append(temps, temps[-1:]), where="post", lw=1, label=f"replica {replica}")
    ax.set_xlabel("time (ps)")
    ax.set_ylabel("state temperature (K)")
    if table.shape[1] <= 12:
        ax.legend(fontsize=7, ncol=4)
    return fig


def _energy_figure(run_dir, states: int, temperatures):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 3.2))
    ax = fig.subplots()
    drawn = False
    for state in range(states):
        path = os.path.join(run_dir, "states", f"state{state:02d}.csv")
        if not os.path.exists(path):
            continue
        with open(path, encoding="utf-8") as handle:
            values = [float(row["potential_kj_mol"]) for row in csv.DictReader(handle)]
        if values:
            ax.hist(values, bins=30, histtype="step", label=f"state {state} ({temperatures[state]:.0f} K)")
            drawn = True
    ax.set_xlabel("potential energy (kJ/mol)")
    ax.set_ylabel("count")
    if drawn:
        ax.legend(fontsize=7)
    return fig if drawn else None


def _matrix_html(accepted, attempted) -> str:
    states = len(accepted)
    head = "".join(f"<th>{k}</th>" for k in range(states))
    body = []
    for a in range(states):
        cells = []
        for b in range(states):
            n = attempted[a, b]
            cells.append(f"<td>{accepted[a, b] / n:.2f} ({n})</td>" if n >= _MIN_ATTEMPTS else "<td></td>")
        body.append(f"<tr><th>{a}</th>{''.join(cells)}</tr>")
    return ('<table class="contacts"><caption>Acceptance between states (attempts)</caption>'
            f"<tr><th>state</th>{head}</tr>{''.join(body)}</table>")


def build_ensemble_report(run_dir, output=None) -> Path:
    """Write ``report.html`` for an ensemble run folder (``ensemble.json``, ``exchanges.csv``,
    ``run.json``, ``states/``).

    Returns
    -------
    pathlib.Path
        The report written (atomically).
    """
    from bencao.report.html import _page

    run_dir = Path(run_dir)
    try:
        state = json.loads((run_dir / "ensemble.json").read_text(encoding="utf-8"))
        summary = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputFileError(f"{run_dir}: not a finished ensemble run ({exc})") from exc
    temperatures = summary["temperatures"]
    states = len(temperatures)
    segments = int(summary["segments"])
    segment_ps = (summary["time_ps"] - _start_ps(run_dir)) / max(segments, 1)
    exchanges = read_exchanges(run_dir)
    accepted, attempted = acceptance_matrix(exchanges, states)
    walks = np.asarray(state["assignments"])[:segments].T
    trips = [round_trips(walk, states - 1) for walk in walks]
    total = int(attempted.sum() // 2)
    rate = f"{accepted.sum() / attempted.sum():.1%} of {total}" if total else "no attempts"
    rows = [("Replicas", str(states)), ("Exchange", html.escape(summary["exchange"])),
            ("Temperatures (K)", ", ".join(f"{t:.1f}" for t in temperatures)),
            ("Segments", f"{segments} × {segment_ps:g} ps"), ("Exchanges accepted", rate),
            ("Round trips", ", ".join(f"replica {r}: {n}" for r, n in enumerate(trips)))]
    if summary["exchange"] == "rest2":
        rows.insert(3, ("REST2 scales λ", ", ".join(f"{s:.3f}" for s in summary["scales"])))
    figures = [figure_html(_walks_figure(state["assignments"][:segments + 1], temperatures,
                                         segment_ps, _start_ps(run_dir)),
                           "Each replica's walk through the ladder (its state's temperature).",
                           "replica-walks")]
    energy = _energy_figure(str(run_dir), states, temperatures)
    if energy is not None:
        figures.append(figure_html(energy, "Potential energy in each state (states/stateNN.csv).",
                                   "state-energies"))
    from bencao.report.pockets_page import pockets_section

    section = (f'<section id="ensemble"><h2>Exchanges</h2>{_matrix_html(accepted, attempted)}'
               f"</section>{pockets_section(run_dir)}")
    page = _page(run_dir, rows, [], section, figures)
    output = Path(output) if output is not None else run_dir / "report.html"
    with atomic_write(output, "wb") as handle:
        handle.write(page.encode("utf-8"))
    return output


def _start_ps(run_dir) -> float:
    from bencao.io.files import load_state

    return float(load_state(os.path.join(run_dir, "start.npz"))["time"])
