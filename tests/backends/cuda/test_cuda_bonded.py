"""CUDA bonded kernels against the CPU backend, bit-identical reruns, and the CUDA errors.

The CUDA work runs in one subprocess (see ``cuda_harness``); the tests compare its results with
the CPU backend computed here.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import cuda_harness
import numpy as np
import pytest

import bencao
from bencao.backends.common.fixed_point import forces_from_fixed
from bencao.backends.common.laws.geometry import dihedral_geometry
from bencao.backends.cpu.bonded import CpuPositionRestraints
from bencao.backends.cpu.cmap import CpuCMAPTorsions
from bencao.constants import FORCE_SCALE
from bencao.forces import (
    CMAPTorsions,
    HarmonicAngles,
    HarmonicBonds,
    HarmonicImpropers,
    LJPairs,
    Nonbonded,
    PeriodicTorsions,
    PositionRestraints,
    VirtualSites,
)

# ------------------------------------------------------------------------------------------
# Cases, built the same way in this process (CPU) and in the subprocess (CUDA)
# ------------------------------------------------------------------------------------------


def alanine_bonded():
    """AMBER alanine dipeptide without its NonbondedForce: bonds, angles, torsions (and the
    impropers AMBER writes as torsions).  Positions are shaken by 0.01 nm (fixed seed) so that no
    term sits at its minimum, where forces vanish and a wrong force would go unnoticed."""
    from openmm import app
    from systems import alanine_dipeptide

    openmm_system, positions, _ = alanine_dipeptide(nonbondedMethod=app.NoCutoff)
    system = bencao.System.from_openmm(openmm_system)
    system = dataclasses.replace(
        system, terms=tuple(t for t in system.terms if not isinstance(t, Nonbonded))
    )
    positions = positions + np.random.default_rng(7).normal(scale=0.01, size=positions.shape)
    return system, positions


def _wrapped_theta0(positions, quads):
    """Equilibrium angles that put every improper on both branches of the wrapped difference:
    one 4 rad away (|d| > pi, the other way round the circle) and one 1 rad away."""
    theta = np.array([dihedral_geometry(positions, *q)[0] for q in quads])
    far = np.where(theta > 0, theta - 4.0, theta + 4.0)
    near = np.where(theta > 0, theta - 1.0, theta + 1.0)
    return np.concatenate([far, near])


def every_bonded_kind():
    """Eight atoms with every bonded kind the CUDA backend has, incl. wrapped and literal
    impropers, LJ pairs and (non-periodic) position restraints."""
    rng = np.random.default_rng(11)
    positions = np.cumsum(rng.normal(scale=0.09, size=(8, 3)), axis=0)
    quads = np.array([[0, 1, 2, 3], [4, 5, 6, 7], [1, 2, 3, 4]], np.int64)
    sigma, epsilon = 0.3, 0.5
    terms = (
        HarmonicBonds(atoms=np.array([[0, 1], [1, 2], [2, 3], [4, 5], [5, 6], [6, 7]]),
                      length=np.full(6, 0.12), k=np.full(6, 2.5e5)),
        HarmonicAngles(atoms=np.array([[0, 1, 2], [1, 2, 3], [4, 5, 6], [5, 6, 7]]),
                       angle=np.full(4, 1.9), k=np.full(4, 400.0)),
        PeriodicTorsions(atoms=np.concatenate([quads, quads]),
                         periodicity=np.array([1, 2, 3, 3, 1, 2]),
                         phase=np.array([0.0, np.pi, 0.3, 0.0, 1.2, np.pi]),
                         k=np.array([2.0, 5.0, 0.7, 1.1, 3.3, 0.4])),
        HarmonicImpropers(atoms=np.concatenate([quads, quads]),
                          theta0=_wrapped_theta0(positions, quads), k=np.full(6, 40.0),
                          wrap=True),
        HarmonicImpropers(atoms=quads, theta0=np.array([0.5, -2.0, 3.0]), k=np.full(3, 40.0),
                          wrap=False),
        LJPairs(atoms=np.array([[0, 3], [4, 7], [2, 5]]),
                c12=np.full(3, 4 * epsilon * sigma**12), c6=np.full(3, 4 * epsilon * sigma**6)),
        PositionRestraints(atoms=np.array([0, 5]), reference=positions[[0, 5]] + 0.05,
                           k=np.array([1000.0, 250.0])),
    )
    return bencao.System(masses=np.ones(8), terms=terms), positions


def periodic_restraints():
    """Restraints whose references lie a box length or more away: only the minimum image gives
    the right force.  Returns (term, positions nm, triclinic box nm)."""
    box = np.array([[2.0, 0.0, 0.0], [0.6, 2.2, 0.0], [-0.7, 0.9, 2.5]])
    positions = np.array([[0.1, 0.2, 0.3], [1.9, 2.0, 2.4], [1.0, -1.0, 0.5]])
    reference = positions + np.array([[2.05, 0.03, -0.02], [-0.6, -2.25, 0.1],
                                      [0.7, -0.9, -2.45]])
    term = PositionRestraints(atoms=np.array([0, 1, 2]), reference=reference,
                              k=np.array([800.0, 1200.0, 500.0]))
    return term, positions, box


def ff19sb_openmm():
    """Trp-cage (20 residues, 271 atoms) with AMBER ff19SB in vacuum: (openmm System with only
    its CMAPTorsionForce, positions nm shaken by 0.01 nm with a fixed seed, so that no torsion
    pair sits where the map is flat)."""
    import openmm as mm
    from openmm import app, unit
    from reference import data_path

    ff = app.ForceField("amber19-all.xml")
    pdb = app.PDBFile(data_path("1T2Y.pdb"))
    modeller = app.Modeller(pdb.topology, pdb.positions)
    modeller.addHydrogens(ff)
    openmm_system = ff.createSystem(modeller.topology, nonbondedMethod=app.NoCutoff)
    for index in reversed(range(openmm_system.getNumForces())):
        if not isinstance(openmm_system.getForce(index), mm.CMAPTorsionForce):
            openmm_system.removeForce(index)
    positions = np.array(modeller.positions.value_in_unit(unit.nanometer), np.float64)
    positions = positions + np.random.default_rng(19).normal(scale=0.01, size=positions.shape)
    return openmm_system, positions


def cmap_peptide():
    """The ff19SB trp-cage's CMAP term alone (23 phi/psi pairs on 6 of its 16 residue maps)."""
    openmm_system, positions = ff19sb_openmm()
    return bencao.System.from_openmm(openmm_system), positions


# (phi, psi) where the patch lookup has edge cases: next to the +-pi cut, exactly pi, just below
# 0 (wraps into the last patch), on a grid line, generic angles, and -1e-15 rad, which wraps to
# 2 pi - 1 ulp, whose quotient by the 24-point grid spacing rounds to 24.0: only the clamp keeps
# it in the last patch (pairs alternate between the maps, so the last entry is on the 24-point
# map).
CMAP_SPECIAL_ANGLES = [(np.pi - 1e-7, -np.pi + 1e-7), (-np.pi + 1e-9, 0.5), (np.pi, np.pi),
                       (-1e-9, 1e-9), (0.0, -2.0), (1.234, -0.777), (-2.5, 2.9), (0.3, -1e-15),
                       (-1e-15, -1e-15)]


def _torsion_quad(angle, origin):
    """Four atoms, nm, whose dihedral is ``angle`` (rad): a on +x, b at the origin, c on +z."""
    r, length = 0.12, 0.15
    quad = np.array([[r, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, length],
                     [r * np.cos(angle), r * np.sin(angle), length]])
    return quad + origin


def cmap_special_angles():
    """One CMAP pair per entry of CMAP_SPECIAL_ANGLES on two random maps (24 and 10 points),
    each pair on its own eight atoms.  Returns (CMAPTorsions, positions nm)."""
    rng = np.random.default_rng(5)
    positions, atoms = [], []
    for m, (phi, psi) in enumerate(CMAP_SPECIAL_ANGLES):
        positions += [_torsion_quad(phi, [m, 0.0, 0.0]), _torsion_quad(psi, [m, 0.5, 0.0])]
        atoms.append(np.arange(8 * m, 8 * m + 8))
    term = CMAPTorsions(map_sizes=np.array([24, 10]), map_offsets=np.array([0, 24 * 24]),
                        map_energies=np.concatenate([rng.normal(0, 5, 24 * 24),
                                                     rng.normal(0, 2, 10 * 10)]),
                        torsion_map=np.arange(len(atoms)) % 2, atoms=np.array(atoms))
    return term, np.vstack(positions)


def cmap_openmm(term, n_particles):
    """The same maps and pairs as an OpenMM System with one CMAPTorsionForce."""
    import openmm as mm

    force = mm.CMAPTorsionForce()
    for size, offset in zip(term.map_sizes, term.map_offsets):
        force.addMap(int(size), term.map_energies[offset:offset + size * size].tolist())
    for m, quads in zip(term.torsion_map, term.atoms):
        force.addTorsion(int(m), *map(int, quads))
    openmm_system = mm.System()
    for _ in range(n_particles):
        openmm_system.addParticle(1.0)
    openmm_system.addForce(force)
    return openmm_system


def virtual_site_system():
    """Three particles, the third a virtual site 30 % of the way from the first to the second,
    restrained to a point off the bond so that its force must be handed to both parents.
    Returns (system, positions nm; the site's row is nonsense, the backend places it)."""
    weights = np.zeros((1, 2, 3))
    weights[0, :, 0] = (0.7, 0.3)
    sites = VirtualSites(site=np.array([2]), kind=np.array([0]), parents=np.array([[0, 1]]),
                         weights=weights, params=np.zeros((1, 3)))
    bonds = HarmonicBonds(atoms=np.array([[0, 1]]), length=np.array([0.1]), k=np.array([1e3]))
    restraint = PositionRestraints(atoms=np.array([2]), reference=np.array([[0.05, 0.1, -0.02]]),
                                   k=np.array([800.0]))
    system = bencao.System(masses=np.array([1.0, 1.0, 0.0]), terms=(bonds, restraint),
                           virtual_sites=sites)
    return system, np.array([[0.0, 0.0, 0.0], [0.13, 0.02, 0.01], [5.0, 5.0, 5.0]])


def overlapping_pair():
    """Two atoms on top of each other with an LJ pair: the energy is infinite."""
    pair = LJPairs(atoms=np.array([[0, 1]]), c12=np.array([1e-6]), c6=np.array([1e-3]))
    return bencao.System(masses=np.ones(2), terms=(pair,)), np.zeros((2, 3))


def cuda_results(path):
    """Evaluate every case on the CUDA backend and pickle the results to ``path`` (subprocess)."""
    from bencao.backends.cpu.backend import BlowUpError
    from bencao.backends.cuda import using_simulator
    from bencao.backends.cuda.bonded import CudaPositionRestraints
    from bencao.backends.cuda.state import CudaState

    results = {"simulator": using_simulator()}
    for name, build in (("alanine", alanine_bonded), ("every_kind", every_bonded_kind)):
        system, positions = build()
        backend = bencao.make_backend(system, "cuda")
        first = backend.compute(positions)
        second = backend.compute(positions)  # the same backend, its device arrays reused
        fresh = bencao.evaluate(system, positions, backend="cuda")  # a new backend
        results[name] = [(r.energy, r.forces, r.terms) for r in (first, second, fresh)]

    term, positions, box = periodic_restraints()
    state = CudaState.allocate(len(positions))
    state.upload(positions, box)
    state.zero_forces()
    energy = CudaPositionRestraints(term).compute(state, box)
    results["periodic_restraints"] = (energy, forces_from_fixed(state.download_forces()))

    system, positions = cmap_peptide()
    backend = bencao.make_backend(system, "cuda")
    first = backend.compute(positions)
    second = backend.compute(positions)
    fresh = bencao.evaluate(system, positions, backend="cuda")
    results["cmap"] = [(r.energy, r.forces, r.terms) for r in (first, second, fresh)]

    term, positions = cmap_special_angles()
    result = bencao.evaluate(bencao.System(masses=np.ones(len(positions)), terms=(term,)),
                             positions, backend="cuda")
    results["cmap_special"] = (result.energy, result.forces, result.terms)

    system, positions = virtual_site_system()
    result = bencao.make_backend(system, "cuda").compute(positions)
    results["virtual_sites"] = (result.energy, result.forces, result.terms)

    system, positions = overlapping_pair()
    try:
        bencao.make_backend(system, "cuda").compute(positions)
        results["blow_up"] = None
    except BlowUpError as error:
        results["blow_up"] = (str(error), error.term, error.particles)

    cuda_harness.save(results, path)


# ------------------------------------------------------------------------------------------
# The subprocess (cuda_harness)
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_gpu() -> bool:
    """True if a real CUDA GPU is usable here (asked in a process without the simulator)."""
    return cuda_harness.real_gpu()


@pytest.fixture(scope="module")
def cuda(tmp_path_factory):
    """The pickled results of :func:`cuda_results`, on the GPU if there is one."""
    path = tmp_path_factory.mktemp("cuda") / "results.pkl"
    return cuda_harness.cuda_results("test_cuda_bonded", path)


def assert_same_as_cpu(system, positions, cuda_result):
    energy, forces, terms = cuda_result
    cpu = bencao.make_backend(system, "cpu").compute(positions)
    # Both backends compute in float64 with the same formulas.  On a GPU, a*b+c is fused into one
    # FMA and sqrt/trig may round differently, so values may differ by an ulp (~1e-16 relative);
    # each contribution is then truncated to 2^-32 kJ/mol/nm, where an ulp can flip the last unit.
    # 1e-9 relative (plus a few fixed-point units) covers both; a wrong formula, sign or atom
    # index is off by O(1).
    assert set(terms) == set(cpu.terms)
    for name, value in cpu.terms.items():
        assert terms[name] == pytest.approx(value, rel=1e-9, abs=1e-12), name
    assert energy == pytest.approx(cpu.energy, rel=1e-9, abs=1e-12)
    scale = np.abs(cpu.forces).max()
    assert scale > 1.0  # the case really has forces to compare
    np.testing.assert_allclose(forces, cpu.forces, rtol=0, atol=1e-9 * scale + 8 / FORCE_SCALE)


# ------------------------------------------------------------------------------------------
# Tests
# ------------------------------------------------------------------------------------------


def test_cuda_is_a_listed_backend():
    from bencao.evaluate import BACKENDS

    assert "cuda" in BACKENDS


def test_alanine_dipeptide_bonded_terms_match_cpu(cuda):
    system, positions = alanine_bonded()
    assert {type(t).__name__ for t in system.terms} == {
        "HarmonicBonds", "HarmonicAngles", "PeriodicTorsions"}
    assert_same_as_cpu(system, positions, cuda["alanine"][0])


def test_every_bonded_kind_matches_cpu(cuda):
    system, positions = every_bonded_kind()
    assert_same_as_cpu(system, positions, cuda["every_kind"][0])
    assert set(cuda["every_kind"][0][2]) == {
        "HarmonicBondForce", "HarmonicAngleForce", "PeriodicTorsionForce", "CustomTorsionForce",
        "CustomBondForce", "PositionRestraints"}


def test_periodic_restraints_use_the_minimum_image_like_cpu(cuda):
    term, positions, box = periodic_restraints()
    fixed = np.zeros((len(positions), 3), np.int64)
    cpu_energy = CpuPositionRestraints(term).compute(positions, box, fixed)
    energy, forces = cuda["periodic_restraints"]
    assert energy == pytest.approx(cpu_energy, rel=1e-9)
    np.testing.assert_allclose(forces, forces_from_fixed(fixed), rtol=0, atol=1e-6)
    # The references are about a box vector away; without the minimum image the energy would be
    # thousands of kJ/mol, with it each displacement is a few hundredths of a nm.
    assert energy < 10.0


@pytest.mark.parametrize("case", ["alanine", "every_kind", "cmap"])
def test_forces_and_energy_bit_identical_run_to_run(cuda, case):
    (e1, f1, t1), (e2, f2, t2), (e3, f3, t3) = cuda[case]
    assert f1.tobytes() == f2.tobytes() == f3.tobytes()
    assert np.float64(e1).tobytes() == np.float64(e2).tobytes() == np.float64(e3).tobytes()
    assert t1 == t2 == t3


def assert_same_as_openmm_reference(openmm_system, positions, cuda_result):
    """CUDA CMAP energy and forces against OpenMM's Reference platform (its own splines)."""
    from reference import openmm_evaluation

    energy, forces, _ = cuda_result
    ref_energy, ref_forces, _, _ = openmm_evaluation(openmm_system, positions)
    # The same periodic splines and bicubic patches, all in float64: only rounding differs
    # (~1e-14 after the spline solves, as tests/backends/cpu/test_cmap.py finds for the CPU);
    # 1e-9 leaves room for cancellation between pairs of both signs.
    assert energy == pytest.approx(ref_energy, rel=1e-9, abs=1e-12)
    # Relative to the largest component: fixed point rounds each contribution to 2**-32.
    assert np.abs(forces - ref_forces).max() <= 1e-9 * np.abs(ref_forces).max()


def test_cmap_peptide_matches_cpu_and_openmm_reference(cuda):
    system, positions = cmap_peptide()
    (term,) = system.terms
    assert isinstance(term, CMAPTorsions) and len(term.atoms) == 23
    # Several residue maps, so a wrong map index or patch offset cannot go unnoticed.
    assert len(set(term.torsion_map.tolist())) == 6
    assert_same_as_cpu(system, positions, cuda["cmap"][0])
    assert set(cuda["cmap"][0][2]) == {"CMAPTorsionForce"}
    openmm_system, _ = ff19sb_openmm()
    assert_same_as_openmm_reference(openmm_system, positions, cuda["cmap"][0])


def test_cmap_edge_angles_match_cpu_and_openmm_reference(cuda):
    term, positions = cmap_special_angles()
    # Every pair really sits where it should: the cut at +-pi and the wrap below 0 are reached.
    for m, (phi, psi) in enumerate(CMAP_SPECIAL_ANGLES):
        got = (dihedral_geometry(positions, *term.atoms[m, :4])[0],
               dihedral_geometry(positions, *term.atoms[m, 4:])[0])
        np.testing.assert_allclose(np.cos(got), np.cos([phi, psi]), rtol=0, atol=1e-12)
        np.testing.assert_allclose(np.sin(got), np.sin([phi, psi]), rtol=0, atol=1e-12)
    # The last pair needs the clamp: its wrapped angle divided by the grid spacing is 24.0.
    theta = dihedral_geometry(positions, *term.atoms[-1, :4])[0]
    assert term.torsion_map[-1] == 0 and term.map_sizes[0] == 24
    assert np.fmod(theta + 2 * np.pi, 2 * np.pi) / (2 * np.pi / 24) == 24.0
    system = bencao.System(masses=np.ones(len(positions)), terms=(term,))
    assert_same_as_cpu(system, positions, cuda["cmap_special"])
    assert_same_as_openmm_reference(cmap_openmm(term, len(positions)), positions,
                                    cuda["cmap_special"])
    # The patch tables the GPU interpolates are the CPU term's own (built once on the host).
    assert CpuCMAPTorsions(term).coeffs.shape == (24 * 24 + 10 * 10, 16)


def test_virtual_sites_are_placed_and_their_forces_distributed_like_cpu(cuda):
    # Once refused; now on the device (tests/backends/cuda/test_cuda_virtual_sites.py has the
    # water box and every site kind).  The restraint acts only on the site: without placement
    # or distribution the parents' forces would be the bond's alone.
    system, positions = virtual_site_system()
    assert_same_as_cpu(system, positions, cuda["virtual_sites"])


def test_blow_up_is_reported_with_the_culprit(cuda):
    message, term, particles = cuda["blow_up"]
    assert term == "CustomBondForce"
    assert sorted(particles) == [0, 1]
    assert "blew up" in message


def test_no_gpu_and_no_simulator_gives_a_clear_error(real_gpu):
    if real_gpu:
        pytest.skip("a real CUDA GPU is available, so there is no error to see")
    code = f"""
        import sys
        sys.path[:0] = [{cuda_harness.HERE!r}]
        import numpy as np
        import bencao
        from bencao.backends.cuda import cuda_available, using_simulator
        from test_cuda_bonded import overlapping_pair
        print(cuda_available(), using_simulator())
        try:
            bencao.make_backend(overlapping_pair()[0], "cuda")
        except RuntimeError as error:
            print("RuntimeError:", error)
    """
    out = cuda_harness.python(code, simulator=False)
    assert out.returncode == 0, out.stderr[-4000:]
    lines = out.stdout.strip().splitlines()
    assert lines[-2] == "False False"
    assert lines[-1].startswith("RuntimeError: no CUDA GPU found")
    assert "bencao[cuda]" in lines[-1] and "NUMBA_ENABLE_CUDASIM=1" in lines[-1]


def test_bench_on_cuda_without_a_gpu_says_what_to_install(real_gpu):
    if real_gpu:
        pytest.skip("a CUDA GPU is present here")
    out = subprocess.run([sys.executable, "-m", "bencao.cli", "bench", "dhfr", "--backend", "cuda",
                          "--steps", "1", "--repeats", "1", "--compare", "none"],
                         env=cuda_harness.environment(simulator=False), capture_output=True,
                         text=True, check=False, timeout=600)
    assert out.returncode == 1
    assert "bencao: error: no CUDA GPU found; install bencao[cuda]" in out.stderr
