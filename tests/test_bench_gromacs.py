"""GROMACS beside bencao: the ParmEd conversion, the .mdp, md.log parsing and the command.

Everything but the last test runs without GROMACS (CI has none); that one runs ``gmx grompp`` and
a 20-step ``gmx mdrun`` when ``gmx`` is on the PATH.  No timing is asserted.
"""

import math
import shutil

import numpy as np
import pytest

from bencao.bench import gromacs_input
from bencao.bench.gromacs_input import (
    mdp_settings,
    openmm_pme,
    read_mdp,
    to_parmed,
    write_gromacs_files,
    write_mdp,
)
from bencao.bench.gromacs_log import (
    format_pair_list,
    grompp_notes,
    parse_energies,
    parse_md_log,
    parse_version,
)
from bencao.bench.systems import alanine_dipeptide_openmm
from bencao.cli import build_parser, main

# Conversion round trip: the .top holds charges to 8 decimals, sigma/epsilon and bonded
# parameters to 5-9 significant digits, so terms agree to well below these (measured: 2e-4
# kJ/mol on the 2.5e4 kJ/mol nonbonded energy, 3e-5 kJ/mol/nm on forces).
ENERGY_TOLERANCE = 1e-2  # kJ/mol, per force term
FORCE_TOLERANCE = 1e-2  # kJ/mol/nm, largest component difference


@pytest.fixture(scope="module")
def alanine():
    """Alanine dipeptide benchmark: (System, positions nm, box nm, Topology)."""
    return alanine_dipeptide_openmm(with_topology=True)


def _copy(system):
    import openmm as mm

    return mm.XmlSerializer.deserialize(mm.XmlSerializer.serialize(system))


def _terms(system, positions, box) -> dict:
    """{force class name: (energy kJ/mol, forces kJ/mol/nm)} on OpenMM's Reference platform."""
    import openmm as mm
    from openmm import unit

    system = _copy(system)
    for group, force in enumerate(system.getForces()):
        force.setForceGroup(group)
    context = mm.Context(system, mm.VerletIntegrator(0.001),
                         mm.Platform.getPlatformByName("Reference"))
    context.setPeriodicBoxVectors(*[mm.Vec3(*row) for row in box])
    context.setPositions(positions)
    terms = {}
    for group, force in enumerate(system.getForces()):
        state = context.getState(getEnergy=True, getForces=True, groups={group})
        terms[type(force).__name__] = (
            state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole),
            state.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer))
    return terms


def _rounded(gro):
    """Positions (nm) and box rows (nm) as a .gro file holds them (3 and 5 decimals)."""
    import parmed

    structure = parmed.load_file(str(gro))
    return np.array(structure.coordinates) / 10.0, np.diag(structure.box[:3] / 10.0)


# -- conversion -------------------------------------------------------------------------------


def test_gromacs_files_reproduce_the_systems_energy_forces_masses_and_constraints(alanine,
                                                                                   tmp_path):
    import parmed
    from openmm import app, unit

    system, positions, box, topology = alanine
    top, gro = write_gromacs_files(system, topology, positions, box, tmp_path)
    loaded = parmed.load_file(str(top), xyz=str(gro))
    # the original's nonbonded settings; flexibleConstraints=False drops the bond terms of
    # constrained bonds, as OpenMM's own createSystem does
    converted = loaded.createSystem(nonbondedMethod=app.PME, nonbondedCutoff=0.9 * unit.nanometer,
                                    constraints=app.HBonds, rigidWater=True,
                                    flexibleConstraints=False)
    assert converted.getNumParticles() == system.getNumParticles() == 2269
    assert converted.getNumConstraints() == system.getNumConstraints() == 3 * 749 + 12

    def masses(of):
        return np.array([of.getParticleMass(i).value_in_unit(unit.dalton)
                         for i in range(of.getNumParticles())])

    np.testing.assert_allclose(masses(converted), masses(system), atol=1e-6)
    solute_hydrogens = [atom.index for atom in topology.atoms()
                        if atom.element.symbol == "H" and atom.residue.name != "HOH"]
    assert np.allclose(masses(converted)[solute_hydrogens], 1.5)  # repartitioned, not 1.008

    # .gro rounds positions to 1e-3 nm: both Systems are evaluated at the rounded positions
    rounded, rounded_box = _rounded(gro)
    assert np.abs(rounded - positions).max() <= 5.0001e-4
    ours, theirs = _terms(system, rounded, rounded_box), _terms(converted, rounded, rounded_box)
    for name in ("HarmonicBondForce", "HarmonicAngleForce", "PeriodicTorsionForce",
                 "NonbondedForce"):
        (energy, forces), (energy_back, forces_back) = ours[name], theirs[name]
        assert energy_back == pytest.approx(energy, abs=ENERGY_TOLERANCE), name
        assert np.abs(forces_back - forces).max() < FORCE_TOLERANCE, name


def test_water_is_written_as_settles_with_the_systems_geometry(alanine):
    system, positions, box, topology = alanine
    structure = to_parmed(system, topology, positions, box)
    water = next(residue for residue in structure.residues if residue.name == "HOH")
    lengths = {frozenset((bond.atom1.name, bond.atom2.name)): bond.type.req / 10.0
               for bond in structure.bonds if bond.atom1 in water.atoms}
    # the prmtop's rigid TIP3P: O-H 0.09572 nm, H-H 0.15136 nm (the constraint lengths)
    assert lengths[frozenset(("O", "H1"))] == pytest.approx(0.09572)
    assert lengths[frozenset(("H1", "H2"))] == pytest.approx(0.15136, abs=1e-5)


def test_constraints_gromacs_would_not_make_are_refused(alanine):
    system, positions, box, topology = alanine
    carbons = [atom.index for atom in topology.atoms() if atom.element.symbol == "C"]
    bonded = _copy(system)  # a heavy-atom bond: h-bonds would leave it flexible
    bonded.addConstraint(carbons[0], carbons[1], 0.15)
    with pytest.raises(ValueError, match="is constrained"):
        to_parmed(bonded, topology, positions, box)
    unbonded = _copy(system)  # two atoms of different residues: no GROMACS option constrains it
    unbonded.addConstraint(carbons[0], carbons[-1], 0.5)
    with pytest.raises(ValueError, match="neither bonds to hydrogen nor within a water"):
        to_parmed(unbonded, topology, positions, box)


# -- settings ---------------------------------------------------------------------------------


def test_openmm_pme_parameters_are_openmms_choice(alanine):
    pme = openmm_pme(alanine[0])
    # OpenMM: alpha = sqrt(-ln(2 * tolerance)) / cutoff for its default tolerance 5e-4
    assert pme["alpha_per_nm"] == pytest.approx(math.sqrt(-math.log(1e-3)) / 0.9, rel=1e-6)
    assert pme["grid"] == [30, 30, 29]
    assert pme["cutoff_nm"] == pytest.approx(0.9)
    assert pme["dispersion_correction"]


def test_mdp_repeats_the_benchmark_settings(tmp_path):
    pme = {"alpha_per_nm": 2.92029, "grid": [56, 56, 56], "cutoff_nm": 0.9,
           "dispersion_correction": True}
    options = read_mdp(write_mdp(tmp_path / "run.mdp", mdp_settings(pme, seed=7)))
    assert options["integrator"] == "sd"
    assert float(options["dt"]) == pytest.approx(0.004)
    assert float(options["tau-t"]) == pytest.approx(1.0)  # friction 1/ps
    assert float(options["ref-t"]) == float(options["gen-temp"]) == pytest.approx(300.0)
    assert options["gen-vel"] == "yes" and options["gen-seed"] == options["ld-seed"] == "7"
    assert options["constraints"] == "h-bonds" and options["constraint-algorithm"] == "lincs"
    assert options["cutoff-scheme"] == "Verlet" and options["coulombtype"] == "PME"
    assert float(options["rcoulomb"]) == float(options["rvdw"]) == pytest.approx(0.9)
    assert options["vdw-modifier"] == options["coulomb-modifier"] == "None"  # OpenMM's plain cutoff
    assert options["DispCorr"] == "EnerPres"
    assert options["pme-order"] == "5"
    assert [int(options[f"fourier-n{axis}"]) for axis in "xyz"] == [56, 56, 56]
    # GROMACS solves erfc(beta * rc) = ewald-rtol for beta: that must give OpenMM's alpha back
    rtol = float(options["ewald-rtol"])
    low, high = 0.0, 10.0
    for _ in range(60):
        middle = 0.5 * (low + high)
        low, high = (middle, high) if math.erfc(middle * 0.9) > rtol else (low, middle)
    assert low == pytest.approx(2.92029, rel=1e-6)
    assert "verlet-buffer-tolerance" not in options  # GROMACS's default buffer is compared
    assert int(options["nstcalcenergy"]) >= 1000 and int(options["nstxout-compressed"]) == 0
    without = mdp_settings({**pme, "dispersion_correction": False}, continuation=True)
    assert without["DispCorr"] == "no" and without["continuation"] == "yes"
    assert without["gen-vel"] == "no"


# -- reading GROMACS's output -----------------------------------------------------------------

# Lines in the format of a GROMACS 2022 md.log (values made up for the test).
MD_LOG = """\
   nstlist                        = 10
   rlist                          = 0.99
Changing nstlist from 10 to 20, rlist from 0.99 to 1.097

Using a dual 4x4 pair-list setup updated with dynamic pruning:
  outer list: updated every 20 steps, buffer 0.197 nm, rlist 1.097 nm
  inner list: updated every  4 steps, buffer 0.017 nm, rlist 0.917 nm
At tolerance 0.005 kJ/mol/ps per atom, equivalent classical 1x1 list would be:
  outer list: updated every 20 steps, buffer 0.292 nm, rlist 1.192 nm
  inner list: updated every  4 steps, buffer 0.038 nm, rlist 0.938 nm

           Step           Time
              0        0.00000

   Energies (kJ/mol)
           Bond          Angle    Proper Dih. Per. Imp. Dih.          LJ-14
    1.04900e-01    1.61908e+00    8.03479e+00    6.04627e-02    2.07488e+01
     Coulomb-14        LJ (SR)  Disper. corr.   Coulomb (SR)   Coul. recip.
    2.04471e+02    3.12025e+03   -1.20498e+02   -2.86264e+04    7.24706e+02
      Potential    Kinetic En.   Total Energy    Temperature Pres. DC (bar)
   -2.46669e+04    5.85246e+03   -1.88144e+04    3.09742e+02   -1.16363e+02
 Pressure (bar)   Constr. rmsd
   -1.69991e+03    2.39141e-05

step 500: resetting all time and cycle counters

	<====  A V E R A G E S  ====>

   Energies (kJ/mol)
           Bond          Angle
    9.99900e+00    9.99900e+00

               Core t (s)   Wall t (s)        (%)
       Time:        5.016        2.508      200.0
                 (ns/day)    (hour/ns)
Performance:       69.037        0.348
"""


def test_md_log_gives_performance_pair_list_and_step_energies():
    log = parse_md_log(MD_LOG)
    assert log["ns_per_day"] == pytest.approx(69.037)
    assert (log["core_s"], log["wall_s"]) == (pytest.approx(5.016), pytest.approx(2.508))
    assert log["reset_step"] == 500
    assert (log["nstlist_requested"], log["rlist_requested_nm"]) == (10, pytest.approx(0.99))
    assert log["pair_list"] == "dual 4x4, dynamic pruning"
    # the list in use, not the "equivalent classical 1x1 list" printed after it
    assert (log["nstlist"], log["rlist_nm"], log["buffer_nm"]) == (20, pytest.approx(1.097),
                                                                  pytest.approx(0.197))
    assert (log["nstlist_prune"], log["rlist_inner_nm"]) == (4, pytest.approx(0.917))
    energies = log["energies"]
    assert list(energies) == [0]  # the averages are not a step
    assert energies[0]["Proper Dih."] == pytest.approx(8.03479)  # a name with a space
    assert energies[0]["Potential"] == pytest.approx(-2.46669e4)
    assert energies[0]["Constr. rmsd"] == pytest.approx(2.39141e-05)
    line = format_pair_list(log)
    assert "rlist 1.097 nm" in line and "nstlist 20 (from 10)" in line
    assert "inner rlist 0.917 nm pruned every 4 steps" in line


def test_md_log_without_the_optional_lines_gives_none():
    log = parse_md_log("Using a 4x4 pair-list setup:\n"
                       "  updated every 10 steps, buffer 0.100 nm, rlist 1.000 nm\n")
    assert (log["nstlist"], log["rlist_nm"], log["pair_list"]) == (10, pytest.approx(1.0), "4x4")
    assert log["ns_per_day"] is None and log["nstlist_prune"] is None
    assert parse_energies("") == {}
    assert "nstlist 10" in format_pair_list(log)


def test_grompp_notes_and_version():
    output = ("NOTE 1 [file system.top, line 269]:\n"
              "  The bond in molecule-type system1 between atoms 5 C and 6 O has an\n"
              "  estimated oscillational period of 2.4e-02 ps.\n\n"
              "WARNING 1 [file system.top, line 23699]:\n"
              "  You are using Ewald electrostatics in a system with net charge.\n\n")
    notes = grompp_notes(output)
    assert notes == [("NOTE: The bond in molecule-type system1 between atoms 5 C and 6 O has an "
                      "estimated oscillational period of 2.4e-02 ps."),
                     "WARNING: You are using Ewald electrostatics in a system with net charge."]
    version = parse_version("GROMACS version:    2022.5-Debian_2022.5_2\n"
                            "Precision:          mixed\n"
                            "SIMD instructions:  SSE4.1\n")
    assert version["version"] == "2022.5" and version["simd"] == "SSE4.1"
    assert version["precision"] == "mixed"


def _fake_gmx(directory, warning: str):
    """A ``gmx`` that fails as grompp does on one warning, unless given ``-maxwarn``."""
    script = directory / "gmx"
    script.write_text("#!/bin/sh\n"
                      'case "$*" in *-maxwarn*) echo "NOTE 1 [file a.top]:"; '
                      'echo "  a note"; exit 0;; esac\n'
                      f'printf "WARNING 1 [file a.top, line 3]:\\n  {warning}\\n\\n" >&2\n'
                      'echo "Too many warnings (1)." >&2\nexit 1\n')
    script.chmod(0o755)
    return str(script)


def test_grompp_allows_only_the_net_charge_warning(tmp_path):
    from bencao.bench.gromacs import GromacsError, grompp

    gmx = _fake_gmx(tmp_path, "You are using Ewald electrostatics in a system with net charge.")
    assert grompp(gmx, tmp_path, "run.mdp", "a.gro", "a.top") == ["NOTE: a note"]
    gmx = _fake_gmx(tmp_path, "Something else is wrong.")
    with pytest.raises(GromacsError) as failure:
        grompp(gmx, tmp_path, "run.mdp", "a.gro", "a.top")
    message = str(failure.value)
    assert "\n" not in message and "grompp -f run.mdp" in message
    assert "WARNING: Something else is wrong." in message


# -- the command ------------------------------------------------------------------------------


def test_compare_is_repeatable_and_defaults_to_openmm():
    from bencao.cli.bench import _compared

    parser = build_parser()

    def compared(*arguments):
        return _compared(parser.parse_args(["bench", "alanine", *arguments]))

    assert compared() == {"openmm"}
    assert compared("--compare", "none") == set()
    assert compared("--compare", "gromacs", "--compare", "openmm") == {"gromacs", "openmm"}
    assert compared("--compare", "gromacs") == {"gromacs"}


def test_compare_gromacs_without_gmx_exits_before_any_timing(monkeypatch, tmp_path, capsys):
    import bencao.bench.dynamics

    monkeypatch.setenv("PATH", str(tmp_path))  # an empty directory: no gmx, no gmx_mpi

    def no_timing(*args, **kwargs):
        raise AssertionError("timed although gmx is missing")

    monkeypatch.setattr(bencao.bench.dynamics, "bench_dynamics", no_timing)
    assert main(["bench", "dhfr", "--compare", "gromacs", "--compare", "openmm"]) == 2
    assert capsys.readouterr().err.strip() == (
        "bencao bench: --compare gromacs needs GROMACS's gmx on the PATH "
        "(Debian/Ubuntu: apt install gromacs; conda: gromacs)")
    assert main(["bench", "forces", "--compare", "gromacs"]) == 2
    assert "dynamics benchmarks" in capsys.readouterr().err


# -- with GROMACS -----------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("gmx") is None, reason="GROMACS's gmx is not on the PATH")
def test_gmx_runs_the_converted_system_at_openmms_energy(alanine):
    from bencao.bench.gromacs import GromacsRun

    system, positions, box, topology = alanine
    # continuation: GROMACS takes the .gro positions as they are, so that step 0 is evaluated
    # where OpenMM is
    with GromacsRun(system, topology, positions, box, threads=1, continuation=True) as gromacs:
        run = gromacs.run(20)
        rounded, rounded_box = _rounded(gromacs.directory / "system.gro")
    assert math.isfinite(run["ns_per_day"]) and run["ns_per_day"] > 0
    assert run["steps"] == 20 and run["process_wall_s"] > 0
    assert run["rlist_nm"] is None or run["rlist_nm"] >= 0.9
    step0 = run["energies"][0]
    ours = _terms(system, rounded, rounded_box)
    # md.log prints 6 significant digits; bonded terms are small
    assert step0["Bond"] == pytest.approx(ours["HarmonicBondForce"][0], abs=1e-3)
    assert step0["Angle"] == pytest.approx(ours["HarmonicAngleForce"][0], abs=1e-3)
    assert step0["Proper Dih."] + step0["Per. Imp. Dih."] == pytest.approx(
        ours["PeriodicTorsionForce"][0], abs=1e-3)
    # the nonbonded total (-2.5e4 kJ/mol): mixed precision, the same PME grid, order and alpha,
    # and a dispersion correction that differs in detail (GROMACS leaves out excluded pairs and
    # the r^-12 part); measured 0.11 kJ/mol apart
    assert step0["Potential"] == pytest.approx(sum(energy for energy, _ in ours.values()), abs=2.0)
    assert gromacs_input.ENERGY_INTERVAL > 20  # energies only at the first and last step


@pytest.mark.skipif(shutil.which("gmx") is None, reason="GROMACS's gmx is not on the PATH")
def test_bench_json_reports_gromacs_beside_bencao(capsys):
    import json

    assert main(["bench", "alanine", "--compare", "gromacs", "--steps", "2", "--repeats", "1",
                 "--gromacs-steps", "20", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert "openmm_ns_per_day" not in report  # only what --compare asked for
    assert report["gromacs_steps_per_run"] == 20 and len(report["gromacs_runs_ns_per_day"]) == 1
    assert report["speed_ratio_gromacs"] == pytest.approx(
        report["bencao_ns_per_day"] / report["gromacs_ns_per_day"])
    assert report["gromacs_version"] and report["gromacs_simd"]
    settings = report["gromacs_settings"]
    assert settings["dt"] == pytest.approx(0.004) and settings["pme-order"] == 5
    assert [settings[f"fourier-n{axis}"] for axis in "xyz"] == report["settings"]["pme_grid"]
    assert set(report["gromacs_pair_list"]) >= {"rlist_nm", "nstlist", "nstlist_prune"}
