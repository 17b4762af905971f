"""Preparation in implicit solvent: ``prepare_structure(..., implicit=MODEL)`` and
``bencao prepare --solvent implicit --gb MODEL``."""

from __future__ import annotations

import pytest
from reference import check_against_openmm, data_path

from bencao.cli import main
from bencao.errors import PreparationError
from bencao.forces import CustomGB, Nonbonded
from bencao.prep import prepare_structure


@pytest.fixture(scope="module")
def gbn2():
    return prepare_structure(data_path("1T2Y.pdb"), "amber14", implicit="gbn2")


def test_implicit_system_has_gb_no_water_no_box(gbn2):
    assert gbn2.box is None
    assert not any(r.name == "HOH" for r in gbn2.topology.residues())
    kinds = {type(t) for t in gbn2.system.terms}
    assert CustomGB in kinds
    (nonbonded,) = [t for t in gbn2.system.terms if isinstance(t, Nonbonded)]
    assert nonbonded.method == "NoCutoff"
    assert "gbn2 implicit solvent" in gbn2.source


def test_implicit_system_matches_openmm_reference(gbn2):
    check_against_openmm(gbn2.openmm_system, gbn2.positions)


def test_bad_model_or_force_field_is_refused():
    with pytest.raises(PreparationError, match="unknown implicit-solvent model 'gbsw'"):
        prepare_structure(data_path("1T2Y.pdb"), "amber14", implicit="gbsw")
    with pytest.raises(PreparationError, match="AMBER force fields.*not charmm36"):
        prepare_structure(data_path("1T2Y.pdb"), "charmm36", implicit="obc2")


def test_command_line_writes_an_implicit_system(tmp_path, capsys):
    assert main(["prepare", data_path("1T2Y.pdb"), "--solvent", "implicit", "--gb", "obc2",
                 "-o", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    assert "obc2 implicit solvent" in printed and "no periodic box" in printed
    assert (tmp_path / "out" / "system.npz").exists()
