"""``bencao info``: what a prepared system holds."""

from openmm import app, unit
from systems import alanine_dipeptide

import bencao
from bencao.cli import main


def test_info_lists_particles_terms_constraints_charge_and_box(tmp_path, capsys):
    system, _, _ = alanine_dipeptide(nonbondedMethod=app.PME, nonbondedCutoff=0.9 * unit.nanometer,
                                     constraints=app.HBonds)
    bencao.System.from_openmm(system).save(tmp_path / "system.npz")
    assert main(["info", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "particles     2269" in out
    assert "NonbondedForce" in out and "PME, cutoff 0.9 nm" in out
    # OpenMM's count for HBonds + rigid TIP3P on this system
    assert f"constraints   {system.getNumConstraints()}" in out
    assert "total charge  +0.0000 e" in out
    assert "box           " in out and "nm^3" in out


def test_info_on_a_missing_file_is_one_line(tmp_path, capsys):
    assert main(["info", str(tmp_path / "nothing.npz")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nothing.npz" in err[0]


def test_info_shows_a_custom_force_with_its_expression(tmp_path, capsys):
    import numpy as np

    from bencao.forces import CustomBonds

    term = CustomBonds(atoms=np.array([[0, 1], [1, 2]]), parameters=np.array([[1.0], [2.0]]),
                       expression="k*(r-0.1)^2", parameter_names=("k",))
    bencao.System(masses=np.ones(3), terms=(term,)).save(tmp_path / "system.npz")
    assert main(["info", str(tmp_path)]) == 0
    assert "CustomBondForce          2, k*(r-0.1)^2" in capsys.readouterr().out
