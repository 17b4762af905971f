"""The ligand part of the report page: summary rows, plots and the table of contacting residues.

Everything here is built from the ``ligands`` entries of
:func:`bencao.report.analysis.analyse_trajectory` (see
:func:`bencao.report.ligand.analyse_ligands`); a system without ligand gets none of it.
"""

from __future__ import annotations

import html

import numpy as np

from bencao.report import plots
from bencao.report.ligand import CONTACT_CUTOFF_NM, MIN_CONTACT_FREQUENCY

#: Most residues drawn in a contact map (the most frequent ones); the table lists them all.
MAX_MAP_RESIDUES = 40


def ligand_summary_rows(ligands) -> list:
    """(label, html value) rows of the summary table: which ligands, how far they moved.

    Parameters
    ----------
    ligands : list of dict
        ``analysis["ligands"]``.

    Returns
    -------
    list of (str, str)
    """
    if not ligands:
        return []

    def motion(ligand):
        return (f"{10 * ligand['rmsd_nm'][-1]:.2f} Å",
                f"{10 * np.max(ligand['centroid_displacement_nm']):.2f} Å")

    if len(ligands) == 1:
        ligand = ligands[0]
        rmsd, displacement = motion(ligand)
        return [("Ligand", html.escape(f"{ligand['label']}, {ligand['heavy_atoms']} heavy atoms")),
                ("Ligand RMSD, last frame", rmsd),
                ("Ligand centroid displacement, largest", displacement)]
    rows = [("Ligands", html.escape(", ".join(ligand["label"] for ligand in ligands)))]
    for ligand in ligands:  # one row each: ten ligands at most
        rmsd, displacement = motion(ligand)
        value = (f"{ligand['heavy_atoms']} heavy atoms; RMSD, last frame {rmsd}; centroid "
                 f"displacement, largest {displacement}")
        rows.append((html.escape(f"Ligand {ligand['label']}"), value))
    return rows


def frequent_contacts(ligand: dict, min_frequency: float = MIN_CONTACT_FREQUENCY) -> list:
    """The protein residues in contact with a ligand in at least ``min_frequency`` of the frames.

    Returns
    -------
    list of (column, (name, number, chain), frequency)
        ``column`` indexes ``ligand["contact_occupancy"]``; most frequent first, then in sequence.
    """
    found = [(k, residue, float(frequency)) for k, (residue, frequency)
             in enumerate(zip(ligand["contact_residues"], ligand["contact_frequency"]))
             if frequency >= min_frequency]
    return sorted(found, key=lambda item: -item[2])


def _motion_figure(analysis, ligands, segments) -> str:
    """Ligand RMSD and centroid displacement (Å) against time, one line per ligand."""
    def label(ligand):
        return ligand["label"] if len(ligands) > 1 else None

    panels = [("ligand RMSD (Å)", [(10 * lig["rmsd_nm"], label(lig)) for lig in ligands]),
              ("centroid\ndisplacement (Å)",
               [(10 * lig["centroid_displacement_nm"], label(lig)) for lig in ligands])]
    fig = plots.frames_figure(analysis, panels, segments)
    return plots.figure_html(
        fig, "Ligand heavy-atom RMSD to the first frame (top) and distance of its heavy-atom "
             "centroid from the first frame's (bottom), in Å, after superposing every frame on "
             "the protein backbone of the first frame; the ligand itself is not fitted.",
        "ligand-motion")


def _contacts_html(analysis, ligand, segments, name: str) -> str:
    """The contact map and table of one ligand."""
    cutoff = f"{CONTACT_CUTOFF_NM:.1f} nm"
    contacts = frequent_contacts(ligand)
    if not contacts:
        return (f'<p class="note">{html.escape(ligand["label"])}: no protein residue is within '
                f"{cutoff} of the ligand in {MIN_CONTACT_FREQUENCY:.0%} of the frames or more."
                "</p>")
    mapped = sorted(contacts[:MAX_MAP_RESIDUES], key=lambda item: item[0])  # sequence order
    fig = plots.contact_map_figure(analysis, ligand["contact_occupancy"][:, [c[0] for c in mapped]],
                                   [f"{n} {num} {ch}" for _, (n, num, ch), _ in mapped], segments)
    shown = ("" if len(contacts) <= MAX_MAP_RESIDUES
             else f" (the {MAX_MAP_RESIDUES} most frequent of {len(contacts)})")
    figure = plots.figure_html(
        fig, f"Protein residues (name, number, chain) with a heavy atom within {cutoff} of a heavy "
             f"atom of {ligand['label']} in each frame (dark: in contact){shown}; residues in "
             f"contact in at least {MIN_CONTACT_FREQUENCY:.0%} of the frames.", name)
    rows = "".join(
        f"<tr><td>{html.escape(n)}</td><td>{num}</td><td>{html.escape(ch)}</td>"
        f"<td>{100 * frequency:.0f}%</td></tr>" for _, (n, num, ch), frequency in contacts)
    table = (f'<table class="contacts" id="{name}-table"><caption>Residues in contact with '
             f"{html.escape(ligand['label'])} in at least {MIN_CONTACT_FREQUENCY:.0%} of the "
             "frames, most frequent first</caption><thead><tr><th>residue</th><th>number</th>"
             "<th>chain</th><th>frames in contact</th></tr></thead>"
             f"<tbody>{rows}</tbody></table>")
    return figure + table


def ligand_section(analysis: dict, segments) -> str:
    """The page's ligand section, or an empty string for a system without ligand.

    Parameters
    ----------
    analysis : dict
        From :func:`bencao.report.analysis.analyse_trajectory`.
    segments : list of StageSegment
        Stages of the log, marked on the plots when the frame times are known.

    Returns
    -------
    str
        HTML.
    """
    ligands = analysis.get("ligands") if analysis else None
    if not ligands:
        return ""
    parts = [_motion_figure(analysis, ligands, segments)]
    for k, ligand in enumerate(ligands):
        parts.append(_contacts_html(analysis, ligand, segments,
                                    "ligand-contacts" if k == 0 else f"ligand-contacts-{k + 1}"))
    return '<section id="ligand">\n<h2>Ligand</h2>\n' + "\n".join(parts) + "\n</section>"
