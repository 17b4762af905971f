"""``bencao prepare``: writes the files and a summary; user errors are one line and leave no
System file behind."""

import os

import numpy as np
from reference import data_path

import bencao
from bencao.cli import main
from bencao.io.files import load_state

FILES = {"system.npz", "state.npz", "structure.pdb", "structure.cif", "system.xml"}


def test_prepare_writes_the_files_and_a_summary(tmp_path, capsys):
    out = tmp_path / "out"
    status = main(["prepare", data_path("1T2Y.pdb"), "-o", str(out), "--no-solvent",
                   "--hydrogen-mass", "1.5", "--forcefield", "ff14SB"])
    assert status == 0
    assert FILES <= set(os.listdir(out))
    stdout = capsys.readouterr().out
    assert "271 atoms" in stdout and "no periodic box" in stdout
    assert "amber14" in stdout and "system.npz" in stdout
    system = bencao.System.load(out / "system.npz")
    assert system.n_particles == 271 and system.box is None
    assert np.isclose(system.masses, 1.5).sum() > 100
    assert load_state(out / "state.npz")["positions"].shape == (271, 3)


def test_prepare_reports_a_malformed_file_in_one_line(tmp_path, capsys):
    garbage = tmp_path / "garbage.pdb"
    garbage.write_text("REMARK nothing here\nATOM  broken\n")
    out = tmp_path / "out"
    status = main(["prepare", str(garbage), "-o", str(out)])
    assert status == 1
    stderr = capsys.readouterr().err
    assert stderr.startswith("bencao: error: ")
    assert stderr.count("\n") == 1 and str(garbage) in stderr
    assert not (out / "system.npz").exists()


def test_prepare_reports_an_unknown_force_field(tmp_path, capsys):
    status = main(["prepare", data_path("1T2Y.pdb"), "-o", str(tmp_path / "out"),
                   "--forcefield", "gromos"])
    assert status == 1
    stderr = capsys.readouterr().err
    assert stderr.startswith("bencao: error: unknown force field 'gromos'")
    assert stderr.count("\n") == 1
    assert not (tmp_path / "out").exists()
