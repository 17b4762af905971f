"""Preparation: structures to Systems (:mod:`bencao.prep.prepare`), force fields by name, and
helpers that work on a bencao System (hydrogen-mass repartitioning)."""

from bencao.prep.forcefields import (
    force_field_files,
    known_force_fields,
    make_forcefield,
)
from bencao.prep.hydrogen_mass import repartition_hydrogen_mass
from bencao.prep.inputs import load_amber, load_charmm, load_gromacs, load_inputs
from bencao.prep.prepare import (
    PreparedSystem,
    prepare_structure,
    summarize,
    write_prepared,
)

__all__ = [
    "PreparedSystem",
    "force_field_files",
    "known_force_fields",
    "load_amber",
    "load_charmm",
    "load_gromacs",
    "load_inputs",
    "make_forcefield",
    "prepare_structure",
    "repartition_hydrogen_mass",
    "summarize",
    "write_prepared",
]
