"""Force fields by name: which OpenMM XML files make up a protein force field and its water.

A force field is named once (``amber14``, ``amber19``, ``charmm36``...) and the water model
separately, because every protein force field is parametrised for, and ships, its own set of
water and ion files: ``tip3p`` means ``amber14/tip3p.xml`` with amber14 and CHARMM's modified
TIP3P (``charmm36/water.xml``) with charmm36.  Each water file also carries the ions that go with
that water model.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from bencao.errors import PreparationError


@dataclass(frozen=True)
class ForceFieldSpec:
    """A protein force field and the water models it supports.

    Parameters
    ----------
    name : str
        Canonical name (``amber14``).
    files : tuple of str
        OpenMM XML files of the force field proper (protein, nucleic acids, lipids).
    waters : dict
        Water model name -> OpenMM XML file of that water and its ions.
    default_water : str
        The water model the force field was parametrised with or recommends.
    """

    name: str
    files: tuple
    waters: dict
    default_water: str


def _amber_waters(folder: str) -> dict:
    """The water models that OpenMM ships for an Amber force field, in ``folder``."""
    names = ("tip3p", "tip3pfb", "opc", "opc3", "spce", "tip4pew", "tip4pfb")
    return {name: f"{folder}/{name}.xml" for name in names}


def _charmm_waters(folder: str) -> dict:
    """The water models that OpenMM ships for a CHARMM force field, in ``folder``."""
    waters = {
        # CHARMM's own TIP3P has Lennard-Jones sites on the hydrogens; it is what C36 was fitted with
        "tip3p": f"{folder}/water.xml",
        "tip3p-pme-b": f"{folder}/tip3p-pme-b.xml",
        "tip3p-pme-f": f"{folder}/tip3p-pme-f.xml",
    }
    for name in ("spce", "tip4pew", "tip4p2005", "tip5p", "tip5pew"):
        waters[name] = f"{folder}/{name}.xml"
    return waters


_SPECS = [
    ForceFieldSpec("amber14", ("amber14-all.xml",), _amber_waters("amber14"), "tip3p"),
    # ff19SB was fitted to be used with OPC water
    ForceFieldSpec("amber19", ("amber19-all.xml",), _amber_waters("amber19"), "opc"),
    ForceFieldSpec("charmm36", ("charmm36.xml",), _charmm_waters("charmm36"), "tip3p"),
    ForceFieldSpec("charmm36_2024", ("charmm36_2024.xml",), _charmm_waters("charmm36_2024"),
                   "tip3p"),
]

#: Other spellings users type for the same force fields (matched case-insensitively).
ALIASES = {
    "ff14SB": "amber14",
    "amber14sb": "amber14",
    "ff19SB": "amber19",
    "amber19sb": "amber19",
    "charmm": "charmm36",
}

#: Modeller.addSolvent only knows five water geometries; each model is solvated with the box of
#: the same number of sites (the virtual sites are placed from the force field afterwards, and
#: the first constraint projection brings the O-H geometry to the model's own).
SOLVENT_BOX = {
    "tip3p": "tip3p", "tip3pfb": "tip3p", "opc3": "tip3p",
    "tip3p-pme-b": "tip3p", "tip3p-pme-f": "tip3p",
    "spce": "spce",
    "opc": "tip4pew", "tip4pew": "tip4pew", "tip4pfb": "tip4pew", "tip4p2005": "tip4pew",
    "tip5p": "tip5p", "tip5pew": "tip5p",
}


def _openmm_data_folder() -> str:
    """OpenMM's folder of force-field XML files."""
    import openmm.app

    return os.path.join(os.path.dirname(openmm.app.__file__), "data")


def _available_specs() -> dict:
    """Canonical name -> spec for the force fields this OpenMM installation ships."""
    data = _openmm_data_folder()
    return {spec.name: spec for spec in _SPECS
            if all(os.path.exists(os.path.join(data, f)) for f in spec.files)}


def known_force_fields() -> list[str]:
    """Names of the force fields available here (canonical names, then aliases)."""
    specs = _available_specs()
    return list(specs) + [alias for alias, name in ALIASES.items() if name in specs]


def force_field_spec(forcefield: str) -> ForceFieldSpec:
    """The spec of a force field, by canonical name or alias (case-insensitive).

    Raises
    ------
    bencao.errors.PreparationError
        If the name is unknown; the message lists the known names.
    """
    specs = _available_specs()
    key = str(forcefield).strip().lower()
    key = {alias.lower(): name for alias, name in ALIASES.items()}.get(key, key)
    if key not in specs:
        raise PreparationError(f"unknown force field {forcefield!r}; known force fields: "
                               f"{', '.join(known_force_fields())}")
    return specs[key]


def water_model(forcefield: str, water: str | None = None) -> str:
    """The water model name, ``water`` or the force field's recommended one when None.

    Raises
    ------
    bencao.errors.PreparationError
        If the force field does not ship that water model; the message lists those it does.
    """
    spec = force_field_spec(forcefield)
    if water is None:
        return spec.default_water
    key = str(water).strip().lower()
    data = _openmm_data_folder()
    available = [name for name, f in spec.waters.items() if os.path.exists(os.path.join(data, f))]
    if key not in available:
        raise PreparationError(f"water model {water!r} is not available with {spec.name}; "
                               f"choose one of: {', '.join(available)}")
    return key


def force_field_files(forcefield: str, water: str | None = None) -> list[str]:
    """OpenMM XML files of a force field and its water model.

    Parameters
    ----------
    forcefield : str
        ``amber14`` (aliases ``ff14SB``, ``amber14sb``), ``amber19`` (``ff19SB``), ``charmm36``
        or ``charmm36_2024``.
    water : str or None
        Water model (``tip3p``, ``opc``, ``spce``, ``tip4pew``...); None for the force field's
        recommended one (amber14: tip3p, amber19: opc, charmm36: CHARMM's tip3p).

    Returns
    -------
    list of str
        File names as ``openmm.app.ForceField`` takes them.

    Raises
    ------
    bencao.errors.PreparationError
        For an unknown force field or a water model it does not ship.
    """
    spec = force_field_spec(forcefield)
    return [*spec.files, spec.waters[water_model(forcefield, water)]]


def make_forcefield(forcefield: str, water: str | None = None):
    """An ``openmm.app.ForceField`` for a force field and water model (see force_field_files)."""
    from openmm import app

    return app.ForceField(*force_field_files(forcefield, water))
