"""Reading GROMACS's output: md.log (performance, pair-list setup, energies), grompp's notes and
``gmx --version``.

The formats are those of GROMACS 2022 (and earlier releases back to 2018, which print the same
lines); anything a log lacks comes back as None rather than failing, since the pair-list lines
in particular are informational and change between releases.
"""

from __future__ import annotations

import re

_NUMBER = r"[-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?"


def _first(pattern: str, text: str, flags: int = re.MULTILINE):
    match = re.search(pattern, text, flags)
    return None if match is None else match.groups()


def parse_energies(text: str) -> dict:
    """Energy blocks of an md.log: {step: {term: kJ/mol (or K, bar)}}.

    GROMACS prints each block as alternating lines of names and of values, five to a line in
    columns 15 characters wide (names such as "Proper Dih." contain spaces, so the split is by
    column, not by whitespace).  The averages at the end of a log are not a step and are left out.
    """
    blocks = {}
    lines = text.splitlines()
    for index, line in enumerate(lines[:-2]):
        fields = lines[index + 1].split()
        if not re.match(r"^\s+Step\s+Time\s*$", line) or not fields or not fields[0].isdigit():
            continue
        row = index + 2
        while row < len(lines) and not lines[row].strip():
            row += 1
        if row >= len(lines) or lines[row].strip() != "Energies (kJ/mol)":
            continue
        terms = {}
        row += 1
        while row + 1 < len(lines) and lines[row].strip() and lines[row + 1].strip():
            names, values = lines[row], lines[row + 1]
            width = 15
            for start in range(0, len(names), width):
                name = names[start:start + width].strip()
                value = values[start:start + width].strip()
                if name and re.fullmatch(_NUMBER, value):
                    terms[name] = float(value)
            row += 2
        blocks[int(fields[0])] = terms
    return blocks


def parse_md_log(text: str) -> dict:
    """What a benchmark reports from GROMACS's md.log; missing items are None.

    Returns
    -------
    dict
        ``ns_per_day`` and ``wall_s``/``core_s`` of the timed part (after ``-resethway``'s
        reset), ``reset_step``; the pair list: ``nstlist_requested``/``nstlist`` and
        ``rlist_requested_nm`` (from "Changing nstlist from ... rlist from ..."), ``pair_list``
        (the setup, e.g. "dual 4x4, dynamic pruning"), ``rlist_nm``, ``buffer_nm`` of the outer
        list, ``nstlist_prune``, ``rlist_inner_nm`` and ``buffer_inner_nm`` of the dynamically
        pruned inner list; ``energies`` (see :func:`parse_energies`).
    """
    performance = _first(rf"^Performance:\s+({_NUMBER})\s+({_NUMBER})", text)
    times = _first(rf"^\s+Time:\s+({_NUMBER})\s+({_NUMBER})", text)
    reset = _first(r"^step (\d+): resetting all time and cycle counters", text)
    changing = _first(rf"Changing nstlist from (\d+) to (\d+), rlist from ({_NUMBER}) to "
                      rf"({_NUMBER})", text)
    setup = _first(r"^Using an? (.*?)pair-list setup(.*?):\s*$", text)
    list_line = rf"updated every\s+(\d+) steps, buffer ({_NUMBER}) nm, rlist ({_NUMBER}) nm"
    # the first lists printed are those used; "equivalent classical 1x1 list" lines follow
    outer = _first(rf"^\s+outer list: {list_line}", text) or _first(rf"^\s+{list_line}", text)
    inner = _first(rf"^\s+inner list: {list_line}", text)
    nstlist_requested = _first(r"^\s+nstlist\s+=\s+(\d+)", text)
    report = {
        "ns_per_day": None if performance is None else float(performance[0]),
        "core_s": None if times is None else float(times[0]),
        "wall_s": None if times is None else float(times[1]),
        "reset_step": None if reset is None else int(reset[0]),
        "nstlist_requested": int(changing[0]) if changing else (
            None if nstlist_requested is None else int(nstlist_requested[0])),
        "rlist_requested_nm": float(changing[2]) if changing else None,
        "pair_list": None,
        "nstlist": int(outer[0]) if outer else (int(changing[1]) if changing else None),
        "rlist_nm": float(outer[2]) if outer else (float(changing[3]) if changing else None),
        "buffer_nm": float(outer[1]) if outer else None,
        "nstlist_prune": int(inner[0]) if inner else None,
        "rlist_inner_nm": float(inner[2]) if inner else None,
        "buffer_inner_nm": float(inner[1]) if inner else None,
        "energies": parse_energies(text),
    }
    if setup is not None:
        pruning = ", dynamic pruning" if "dynamic pruning" in setup[1] else ""
        report["pair_list"] = setup[0].strip() + pruning
    return report


def format_pair_list(log: dict) -> str:
    """GROMACS's pair-list settings on one line, from :func:`parse_md_log`."""
    def nm(value):
        return "n/a" if value is None else f"{value:.3f} nm"

    parts = [(f"{log.get('pair_list') or 'pair list'}: rlist {nm(log.get('rlist_nm'))} "
              f"(buffer {nm(log.get('buffer_nm'))}), nstlist {log.get('nstlist') or 'n/a'}")]
    if log.get("nstlist_requested") not in (None, log.get("nstlist")):
        parts[0] += f" (from {log['nstlist_requested']})"
    if log.get("nstlist_prune") is not None:
        parts.append(f"inner rlist {nm(log.get('rlist_inner_nm'))} pruned every "
                     f"{log['nstlist_prune']} steps")
    return "; ".join(parts)


def grompp_notes(output: str) -> list[str]:
    """The NOTE, WARNING and ERROR paragraphs of grompp's output, each joined onto one line
    ("WARNING: You are using Ewald electrostatics in a system with net charge. ...")."""
    notes = []
    for match in re.finditer(r"^(NOTE|WARNING|ERROR) \d+ \[[^\]]*\]:\n((?:  .*\n?)+)", output,
                             re.MULTILINE):
        text = " ".join(line.strip() for line in match.group(2).splitlines() if line.strip())
        notes.append(f"{match.group(1)}: {text}")
    return notes


def parse_version(text: str) -> dict:
    """``version``, ``simd`` and ``precision`` from the output of ``gmx --version``.

    The Debian build reports ``2022.5-Debian_2022.5_2``: the version is the part before the
    first dash.  Missing fields are None.
    """
    def field(label: str) -> str | None:
        match = re.search(rf"^{label}:\s*(.+?)\s*$", text, re.MULTILINE)
        return match.group(1) if match else None

    full = field("GROMACS version")
    return {"version": None if full is None else full.split("-")[0], "version_full": full,
            "simd": field("SIMD instructions"), "precision": field("Precision")}
