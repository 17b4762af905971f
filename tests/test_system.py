"""System files: round trip, no OpenMM needed to load, clear errors, atomic writes."""

import subprocess
import sys

import numpy as np
import pytest
from openmm import app, unit
from systems import solvated_trpcage

import bencao


@pytest.fixture(scope="module")
def system_and_positions():
    topology, positions, box, ff = solvated_trpcage(("amber14-all.xml", "amber14/tip4pew.xml"),
                                                    shape="octahedron", ions=False)
    system = ff.createSystem(topology, nonbondedMethod=app.PME, nonbondedCutoff=0.9 * unit.nanometer,
                             constraints=app.HBonds)
    return bencao.System.from_openmm(system), positions, box


def test_round_trip_gives_identical_results(tmp_path, system_and_positions):
    system, positions, box = system_and_positions
    path = tmp_path / "system.npz"
    system.save(path)
    loaded = bencao.System.load(path)
    assert [type(t) for t in loaded.terms] == [type(t) for t in system.terms]
    np.testing.assert_array_equal(loaded.virtual_sites.parents, system.virtual_sites.parents)
    np.testing.assert_array_equal(loaded.constraint_atoms, system.constraint_atoms)
    a = bencao.evaluate(system, positions, box)
    b = bencao.evaluate(loaded, positions, box)
    assert a.energy == b.energy
    np.testing.assert_array_equal(a.forces, b.forces)
    assert [p.name for p in tmp_path.iterdir()] == ["system.npz"]  # no temporary file left


def test_load_without_openmm(tmp_path, system_and_positions):
    system, positions, box = system_and_positions
    path = tmp_path / "system.npz"
    system.save(path)
    script = (
        "import sys; sys.modules['openmm'] = None\n"  # any import of openmm now fails
        "import bencao\n"
        f"s = bencao.System.load({str(path)!r})\n"
        "print(s.n_particles, len(s.terms))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.split() == [str(system.n_particles), str(len(system.terms))]


def test_malformed_file_gives_clear_error(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"this is not a system")
    with pytest.raises(ValueError, match="not a bencao System file"):
        bencao.System.load(bad)
    other = tmp_path / "other.npz"
    np.savez(other, x=np.zeros(3))
    with pytest.raises(ValueError, match="not a bencao System file"):
        bencao.System.load(other)


def test_failed_save_leaves_no_partial_file(tmp_path, system_and_positions, monkeypatch):
    system, _, _ = system_and_positions
    path = tmp_path / "system.npz"

    def explode(*args, **kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr(np, "savez", explode)
    with pytest.raises(OSError, match="No space"):
        system.save(path)
    assert list(tmp_path.iterdir()) == []


def test_bad_positions_and_box_are_reported(system_and_positions):
    system, positions, box = system_and_positions
    with pytest.raises(ValueError, match="shape"):
        bencao.evaluate(system, positions[:-1], box)
    broken = positions.copy()
    broken[3, 1] = np.nan
    with pytest.raises(ValueError, match=r"particles \[3\]"):
        bencao.evaluate(system, broken, box)
    with pytest.raises(ValueError, match="reduced form"):
        bencao.evaluate(system, positions, box[::-1])


def test_overlapping_atoms_are_diagnosed(system_and_positions):
    system, positions, box = system_and_positions
    clash = positions.copy()
    clash[0] = clash[40] + 1e-5  # a protein atom on top of another
    with pytest.raises(FloatingPointError, match=r"particle (0|40)\b.*NonbondedForce"):
        bencao.evaluate(system, clash, box)
