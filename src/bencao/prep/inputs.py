"""Inputs that are already parametrised (AMBER, GROMACS, CHARMM), and the choice of route by file type.

``prmtop``/``inpcrd``, ``top``/``gro`` and ``psf`` plus parameters are read with OpenMM's own
readers; a single structure file goes to :func:`bencao.prep.prepare.prepare_structure`.  Every
route ends in the same :class:`~bencao.prep.prepare.PreparedSystem`.
"""

from __future__ import annotations

import os

import numpy as np

from bencao.errors import InputFileError, PreparationError
from bencao.prep.prepare import (
    STRUCTURE_EXTENSIONS,
    STRUCTURE_OPTIONS,
    SYSTEM_OPTIONS,
    PreparedSystem,
    _create,
    _existing_file,
    _extension,
    _finish,
    _one_line,
    _read_with,
    _system_options,
    prepare_structure,
)

AMBER_TOPOLOGY_EXTENSIONS = (".prmtop", ".parm7")
AMBER_COORDINATE_EXTENSIONS = (".inpcrd", ".rst7", ".rst", ".crd")
CHARMM_PARAMETER_EXTENSIONS = (".prm", ".par", ".rtf", ".str", ".inp")
CHARMM_COORDINATE_EXTENSIONS = (".crd", ".cor", ".pdb")

#: Folders searched for GROMACS' force-field files (``#include "amber99sb.ff/forcefield.itp"``).
GROMACS_INCLUDE_CANDIDATES = (
    "/usr/share/gromacs/top",
    "/usr/local/gromacs/share/gromacs/top",
    "/usr/local/share/gromacs/top",
    "/opt/gromacs/share/gromacs/top",
)


# ------------------------------------------------------------------ AMBER


def load_amber(prmtop, inpcrd, nonbonded_cutoff: float = 1.0, constraints: str | None = "hbonds",
               hydrogen_mass: float | None = None) -> PreparedSystem:
    """Load an AMBER topology and coordinates.

    Parameters
    ----------
    prmtop : str or path-like
        ``.prmtop``/``.parm7`` topology and parameters.
    inpcrd : str or path-like
        ``.inpcrd``/``.rst7`` coordinates; its box (if any) makes the system periodic (PME).
    nonbonded_cutoff, constraints, hydrogen_mass
        As in :func:`prepare_structure`.

    Returns
    -------
    PreparedSystem
    """
    from openmm import app

    prmtop, inpcrd = _existing_file(prmtop), _existing_file(inpcrd)
    coordinates = _read_with(app.AmberInpcrdFile, inpcrd, "AMBER coordinate")
    box = coordinates.boxVectors
    topology_file = _read_with(app.AmberPrmtopFile, prmtop, "AMBER prmtop",
                               periodicBoxVectors=box)
    options = _system_options(nonbonded_cutoff, constraints, hydrogen_mass, box is not None)
    source = f"{os.path.basename(prmtop)} + {os.path.basename(inpcrd)}"
    openmm_system = _create(topology_file, source, options)
    return _finish(openmm_system, topology_file.topology, coordinates.positions, options, source)


# ------------------------------------------------------------------ GROMACS


def find_gromacs_include_dir() -> str | None:
    """GROMACS' ``share/gromacs/top`` folder, from ``$GMXDATA`` or the usual places; None if absent."""
    candidates = []
    if os.environ.get("GMXDATA"):
        candidates.append(os.path.join(os.environ["GMXDATA"], "top"))
    if os.environ.get("CONDA_PREFIX"):
        candidates.append(os.path.join(os.environ["CONDA_PREFIX"], "share", "gromacs", "top"))
    candidates.extend(GROMACS_INCLUDE_CANDIDATES)
    for folder in candidates:
        if os.path.isdir(folder):
            return folder
    return None


def load_gromacs(top, gro, include_dir=None, nonbonded_cutoff: float = 1.0,
                 constraints: str | None = "hbonds",
                 hydrogen_mass: float | None = None) -> PreparedSystem:
    """Load a GROMACS topology and coordinates.

    Parameters
    ----------
    top : str or path-like
        ``.top`` topology; its ``#include`` files are looked for beside it and in ``include_dir``.
    gro : str or path-like
        ``.gro`` coordinates; its box makes the system periodic (PME) unless it is empty.
    include_dir : str or None
        GROMACS' force-field folder (``share/gromacs/top``); None to look for an installed one
        (see :func:`find_gromacs_include_dir`).
    nonbonded_cutoff, constraints, hydrogen_mass
        As in :func:`prepare_structure`.

    Returns
    -------
    PreparedSystem
    """
    from openmm import app, unit

    top, gro = _existing_file(top), _existing_file(gro)
    if include_dir is not None and not os.path.isdir(include_dir):
        raise PreparationError(f"--gromacs-include {include_dir}: no such folder")
    include_dir = include_dir or find_gromacs_include_dir() or os.path.dirname(os.path.abspath(top))
    coordinates = _read_with(app.GromacsGroFile, gro, "GROMACS .gro")
    box = coordinates.getPeriodicBoxVectors()
    if box is not None and min(np.diag(np.array(box.value_in_unit(unit.nanometer)))) <= 0:
        box = None  # a .gro written for vacuum has a zero box
    try:
        topology_file = app.GromacsTopFile(top, periodicBoxVectors=box, includeDir=include_dir)
    except Exception as exc:
        text = _one_line(exc)
        if "Could not locate #include file" in text:
            missing = text.split(":", 1)[1].strip()
            raise PreparationError(f"{top}: cannot find the included file {missing}; pass GROMACS' "
                                   f"topology folder (share/gromacs/top) with --gromacs-include "
                                   f"DIR") from exc
        raise InputFileError(f"{top}: not a readable GROMACS topology ({text})") from exc
    options = _system_options(nonbonded_cutoff, constraints, hydrogen_mass, box is not None)
    source = f"{os.path.basename(top)} + {os.path.basename(gro)}"
    openmm_system = _create(topology_file, source, options)
    return _finish(openmm_system, topology_file.topology, coordinates.positions, options, source)


# ------------------------------------------------------------------ CHARMM


def _charmm_box(box):
    """``box`` (3 lengths or 3 x 3 vectors, nm) as OpenMM box vectors, or None."""
    from openmm import Vec3, unit

    if box is None:
        return None
    array = np.asarray(box, np.float64)
    if array.shape == (3,):
        array = np.diag(array)
    if array.shape != (3, 3) or not np.all(np.isfinite(array)) or np.min(np.diag(array)) <= 0:
        raise PreparationError(f"the CHARMM box must be 3 positive lengths (nm) or 3 x 3 vectors, "
                               f"got {box!r}")
    return [Vec3(*map(float, row)) for row in array] * unit.nanometer


def _charmm_coordinates(path: str):
    """Positions and box (or None) from a CHARMM ``.crd``/``.cor`` or a PDB file."""
    from openmm import app

    if _extension(path) in (".pdb", ".ent"):
        pdb = _read_with(app.PDBFile, path, "PDB")
        return pdb.positions, pdb.topology.getPeriodicBoxVectors()
    return _read_with(app.CharmmCrdFile, path, "CHARMM coordinate").positions, None


def load_charmm(psf, parameter_files, coordinates, box=None, nonbonded_cutoff: float = 1.0,
                constraints: str | None = "hbonds",
                hydrogen_mass: float | None = None) -> PreparedSystem:
    """Load a CHARMM PSF with its parameter files and coordinates.

    Parameters
    ----------
    psf : str or path-like
        ``.psf`` structure.
    parameter_files : list of str
        CHARMM topology and parameter files (``.rtf``, ``.prm``, ``.par``, ``.str``, ``.inp``).
    coordinates : str or path-like
        ``.crd``/``.cor`` or ``.pdb`` coordinates.
    box : sequence or None
        Periodic box: 3 lengths (nm) of a rectangular box, or 3 x 3 vectors (rows, nm).  None
        takes the CRYST1 box of a PDB, or leaves the system non-periodic.
    nonbonded_cutoff, constraints, hydrogen_mass
        As in :func:`prepare_structure`.

    Returns
    -------
    PreparedSystem
    """
    from openmm import app

    psf = _existing_file(psf)
    parameter_files = [_existing_file(f) for f in parameter_files]
    coordinates = _existing_file(coordinates)
    if not parameter_files:
        raise PreparationError(f"{psf}: a CHARMM .psf needs its parameter files (.prm, .rtf, .str); "
                               f"pass them with --charmm-params")
    positions, file_box = _charmm_coordinates(coordinates)
    vectors = _charmm_box(box) if box is not None else file_box
    structure = _read_with(app.CharmmPsfFile, psf, "CHARMM PSF", periodicBoxVectors=vectors)
    try:
        parameters = app.CharmmParameterSet(*parameter_files)
    except Exception as exc:
        raise InputFileError(f"{', '.join(parameter_files)}: not readable CHARMM parameters "
                             f"({_one_line(exc, 160)})") from exc
    options = _system_options(nonbonded_cutoff, constraints, hydrogen_mass, vectors is not None)
    source = f"{os.path.basename(psf)} + {os.path.basename(coordinates)}"
    # flexibleConstraints=False as in ForceField.createSystem: no bond energy for constrained bonds
    openmm_system = _create(structure, source, options, parameters, flexibleConstraints=False)
    return _finish(openmm_system, structure.topology, positions, options, source)


# ------------------------------------------------------------------ dispatch on file types


ACCEPTED_INPUTS = ("one structure (.pdb, .cif); .prmtop/.parm7 + .inpcrd/.rst7; .top + .gro; "
                   ".psf + coordinates (.crd/.pdb) + parameters (.prm/.par/.rtf/.str/.inp)")


def _bad_inputs(paths) -> PreparationError:
    return PreparationError(f"cannot prepare {' + '.join(map(str, paths)) or 'nothing'}: give "
                            f"{ACCEPTED_INPUTS}")


def _split_options(options: dict, pre_parametrised: bool) -> tuple[dict, list[str]]:
    """The options a route takes, and notes on the structure options it ignores."""
    unknown = set(options) - set(STRUCTURE_OPTIONS) - set(SYSTEM_OPTIONS)
    if unknown:
        raise TypeError(f"unknown option(s): {', '.join(sorted(unknown))}")
    given = {key: value for key, value in options.items() if value is not None}
    if not pre_parametrised:
        return given, []
    ignored = sorted(key for key in given if key in STRUCTURE_OPTIONS)
    notes = [f"ignored {', '.join(ignored)}: the input is already parametrised"] if ignored else []
    return {key: value for key, value in given.items() if key in SYSTEM_OPTIONS}, notes


def load_inputs(paths, include_dir=None, parameter_files=(), charmm_box=None,
                **options) -> PreparedSystem:
    """Prepare a system from input files, choosing the route by their extensions.

    Parameters
    ----------
    paths : list of str
        One structure (``.pdb``, ``.cif``) -> :func:`prepare_structure`;
        ``.prmtop``/``.parm7`` + ``.inpcrd``/``.rst7`` -> :func:`load_amber`;
        ``.top`` + ``.gro`` -> :func:`load_gromacs`;
        ``.psf`` + ``.crd``/``.pdb`` + parameter files -> :func:`load_charmm`.
    include_dir : str or None
        GROMACS include folder.
    parameter_files : sequence of str
        More CHARMM parameter files (besides those in ``paths``).
    charmm_box : sequence or None
        CHARMM periodic box (see :func:`load_charmm`).
    **options
        ``nonbonded_cutoff``, ``constraints``, ``hydrogen_mass`` for every route, and the other
        keywords of :func:`prepare_structure` for a structure.  None means the default; structure
        options given for a pre-parametrised input are ignored and listed in ``notes``.

    Returns
    -------
    PreparedSystem

    Raises
    ------
    bencao.errors.PreparationError
        For a combination of files that is none of the above.
    """
    paths = [os.fspath(p) for p in paths]
    by_ext: dict[str, list[str]] = {}
    for path in paths:
        by_ext.setdefault(_extension(path), []).append(path)

    def take(extensions) -> list[str]:
        return [p for p in paths if _extension(p) in extensions]

    psf = by_ext.get(".psf", [])
    prmtop = take(AMBER_TOPOLOGY_EXTENSIONS)
    if psf:
        coordinates = take(CHARMM_COORDINATE_EXTENSIONS)
        parameters = take(CHARMM_PARAMETER_EXTENSIONS) + [os.fspath(f) for f in parameter_files]
        if len(psf) != 1 or len(coordinates) != 1 or len(psf) + len(coordinates) + len(
                take(CHARMM_PARAMETER_EXTENSIONS)) != len(paths):
            raise _bad_inputs(paths)
        kept, notes = _split_options(options, True)
        prepared = load_charmm(psf[0], parameters, coordinates[0], box=charmm_box, **kept)
    elif prmtop:
        coordinates = take(AMBER_COORDINATE_EXTENSIONS)
        if len(prmtop) != 1 or len(coordinates) != 1 or len(paths) != 2:
            raise _bad_inputs(paths)
        kept, notes = _split_options(options, True)
        prepared = load_amber(prmtop[0], coordinates[0], **kept)
    elif ".top" in by_ext:
        if len(by_ext[".top"]) != 1 or len(by_ext.get(".gro", [])) != 1 or len(paths) != 2:
            raise _bad_inputs(paths)
        kept, notes = _split_options(options, True)
        prepared = load_gromacs(by_ext[".top"][0], by_ext[".gro"][0], include_dir=include_dir,
                                **kept)
    elif len(paths) == 1 and _extension(paths[0]) in STRUCTURE_EXTENSIONS:
        kept, notes = _split_options(options, False)
        prepared = prepare_structure(paths[0], **kept)
    else:
        raise _bad_inputs(paths)
    prepared.notes = tuple(notes) + tuple(prepared.notes)
    return prepared
