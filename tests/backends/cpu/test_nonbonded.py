"""NonbondedForce and tabulated pair terms: analytic cases, finite differences, OpenMM Reference."""

import math

import numpy as np
import openmm as mm
import pytest
from openmm import app, unit
from reference import force_agreement, openmm_evaluation
from systems import water_box

import bencao
from bencao.constants import ONE_4PI_EPS0


def _two_particle_system(method, q=(0.5, -0.7), sigma=(0.3, 0.35), eps=(0.6, 0.9), box=3.0, **kw):
    system = mm.System()
    for _ in range(2):
        system.addParticle(12.0)
    nb = mm.NonbondedForce()
    nb.setNonbondedMethod(method)
    for i in range(2):
        nb.addParticle(q[i], sigma[i], eps[i])
    if method != mm.NonbondedForce.NoCutoff:
        nb.setCutoffDistance(kw.get("cutoff", 1.0))
    if "switch" in kw:
        nb.setUseSwitchingFunction(True)
        nb.setSwitchingDistance(kw["switch"])
    nb.setUseDispersionCorrection(False)
    system.addForce(nb)
    system.setDefaultPeriodicBoxVectors(*(mm.Vec3(*row) for row in np.eye(3) * box))
    return system


def test_two_charges_coulomb_and_lj_analytic():
    # the pair kernel works in float32 (as OpenMM's CPU platform does): 1e-6 relative is a few
    # float32 roundings (6e-8 each) of a dozen operations
    system = bencao.System.from_openmm(_two_particle_system(mm.NonbondedForce.NoCutoff))
    r = 0.42
    result = bencao.evaluate(system, [[0, 0, 0], [r, 0, 0]])
    sigma, eps = 0.325, math.sqrt(0.6 * 0.9)
    sr6 = (sigma / r) ** 6
    energy = ONE_4PI_EPS0 * 0.5 * -0.7 / r + 4 * eps * (sr6 * sr6 - sr6)
    force = ONE_4PI_EPS0 * 0.5 * -0.7 / r**2 + 4 * eps * (12 * sr6 * sr6 - 6 * sr6) / r
    assert result.energy == pytest.approx(energy, rel=1e-6)
    assert result.forces[1, 0] == pytest.approx(force, rel=1e-6)
    assert result.forces[0, 0] == pytest.approx(-force, rel=1e-6)
    assert np.abs(result.forces[:, 1:]).max() == 0.0


def test_lj_minimum_has_zero_force():
    system = bencao.System.from_openmm(
        _two_particle_system(mm.NonbondedForce.NoCutoff, q=(0, 0), sigma=(0.3, 0.3), eps=(1.0, 1.0))
    )
    r = 2 ** (1 / 6) * 0.3
    result = bencao.evaluate(system, [[0, 0, 0], [0, 0, r]])
    assert result.energy == pytest.approx(-1.0, rel=1e-6)  # float32 pair arithmetic
    # float32 cancellation of the 12 and 6 terms (~1e2 kJ/mol/nm each, 6e-8 relative rounding)
    assert np.abs(result.forces).max() < 1e-4


def test_reaction_field_analytic():
    system = bencao.System.from_openmm(
        _two_particle_system(mm.NonbondedForce.CutoffNonPeriodic, eps=(0, 0), cutoff=1.0)
    )
    r, rc, eps_s = 0.6, 1.0, 78.3
    krf = (eps_s - 1) / ((2 * eps_s + 1) * rc**3)
    crf = 3 * eps_s / ((2 * eps_s + 1) * rc)
    energy = ONE_4PI_EPS0 * 0.5 * -0.7 * (1 / r + krf * r * r - crf)
    result = bencao.evaluate(system, [[0, 0, 0], [r, 0, 0]])
    assert result.energy == pytest.approx(energy, rel=1e-6)  # float32 pair arithmetic
    beyond = bencao.evaluate(system, [[0, 0, 0], [1.01, 0, 0]])
    assert beyond.energy == 0.0 and np.abs(beyond.forces).max() == 0.0


def test_switching_function_analytic():
    system = bencao.System.from_openmm(
        _two_particle_system(mm.NonbondedForce.CutoffNonPeriodic, q=(0, 0), cutoff=1.0, switch=0.8)
    )
    r = 0.9
    x = (r - 0.8) / 0.2
    s = 1 - 10 * x**3 + 15 * x**4 - 6 * x**5
    sigma, eps = 0.325, math.sqrt(0.6 * 0.9)
    sr6 = (sigma / r) ** 6
    result = bencao.evaluate(system, [[0, 0, 0], [r, 0, 0]])
    # float32 pair arithmetic
    assert result.energy == pytest.approx(s * 4 * eps * (sr6 * sr6 - sr6), rel=1e-6)


@pytest.fixture(scope="module")
def water():
    return water_box(2.4)


def _water_system(water, method, **options):
    topology, positions, box, ff = water
    system = ff.createSystem(topology, nonbondedMethod=method, nonbondedCutoff=1.0 * unit.nanometer,
                             rigidWater=False, **options)
    return system, positions, box


@pytest.mark.parametrize(
    "method, options",
    [
        (app.NoCutoff, {}),
        (app.CutoffNonPeriodic, {}),
        (app.CutoffPeriodic, {"switchDistance": 0.85 * unit.nanometer}),
        (app.Ewald, {}),
        (app.PME, {}),
        (app.PME, {"switchDistance": 0.8 * unit.nanometer}),
    ],
)
def test_water_box_matches_openmm_reference(water, method, options):
    system, positions, box = _water_system(water, method, **options)
    ref_energy, ref_forces, _, _ = openmm_evaluation(system, positions, box)
    cpu_energy, cpu_forces, _, _ = openmm_evaluation(system, positions, box, platform="CPU")
    result = bencao.evaluate(bencao.System.from_openmm(system), positions, box)
    median, p99 = force_agreement(result.forces, ref_forces)
    cpu_median, cpu_p99 = force_agreement(cpu_forces, ref_forces)
    # The bar: no worse than OpenMM's CPU platform, which like bencao's pair kernel works in
    # float32 (both ~1e-6 median here).  Measured ratios bencao/CPU: 0.85-1.16 (median) and
    # 0.92-1.27 (99th percentile, the largest with NoCutoff, whose rows sum ~1,500 pairs in
    # float32); 1.5 leaves room for OpenMM CPU's own run-to-run scatter (~5%).
    assert median < 1.5 * cpu_median
    assert p99 < 1.5 * cpu_p99
    assert median < 3e-6
    # energies are summed in float64: measured 1e-7 to 3e-6 relative, OpenMM CPU 7e-8 to 1e-5
    cpu_error = abs(cpu_energy - ref_energy) / abs(ref_energy)
    assert result.energy == pytest.approx(ref_energy, rel=max(2 * cpu_error, 1e-6))


def test_dispersion_correction_matches_openmm(water):
    """The energy difference with and without the correction equals OpenMM's, with switching."""
    topology, positions, box, ff = water
    energies = {}
    for use in (True, False):
        system = ff.createSystem(topology, nonbondedMethod=app.PME, nonbondedCutoff=1.0 * unit.nanometer,
                                 switchDistance=0.8 * unit.nanometer, rigidWater=False)
        for force in system.getForces():
            if isinstance(force, mm.NonbondedForce):
                force.setUseDispersionCorrection(use)
                force.setSwitchingDistance(0.8)
                force.setUseSwitchingFunction(True)
        ours = bencao.evaluate(bencao.System.from_openmm(system), positions, box).energy
        energies[use] = (ours, openmm_evaluation(system, positions, box)[0])
    ours = energies[True][0] - energies[False][0]
    theirs = energies[True][1] - energies[False][1]
    assert theirs < 0
    assert ours == pytest.approx(theirs, rel=1e-8)  # analytic + quadrature, float64 both sides


def test_finite_difference_pme(water):
    system, positions, box = _water_system(water, app.PME)
    ours = bencao.System.from_openmm(system)
    backend = bencao.make_backend(ours)
    result = backend.compute(positions, box)
    rng = np.random.default_rng(3)
    for atom in rng.choice(len(positions), 4, replace=False):
        direction = result.forces[atom] / np.linalg.norm(result.forces[atom])
        h = 2e-4
        plus, minus = positions.copy(), positions.copy()
        plus[atom] += h * direction
        minus[atom] -= h * direction
        slope = -(backend.compute(plus, box).energy - backend.compute(minus, box).energy) / (2 * h)
        # central differences with h = 2e-4 nm (a larger h meets the curvature of close
        # contacts: 0.02 kJ/mol/nm truncation here): the changed pair energies carry float32
        # rounding (~1e-5 kJ/mol per pair, ~1e-4 in all), up to ~1 kJ/mol/nm after dividing by
        # 2h (measured 0.3-1.5 at h = 1e-4); forces are 600-1900 kJ/mol/nm
        assert slope == pytest.approx(np.linalg.norm(result.forces[atom]), abs=1.5, rel=1e-4)


TABLE_FORMS = [
    ("(a/r6)^2-b/r6; r6=r^6; a=acoef(type1, type2); b=bcoef(type1, type2)", ("acoef", "bcoef")),
    ("(a/r6)^2-b/r6-c/r^4; r6=r^6;a=acoef(type1, type2);b=bcoef(type1, type2);c=ccoef(type1, type2);",
     ("acoef", "bcoef", "ccoef")),
    ("-c/r^4; c=ccoef(type1, type2)", ("ccoef",)),
    ("acoef(type1, type2)/r^12 - bcoef(type1, type2)/r^6;", ("acoef", "bcoef")),
]


@pytest.mark.parametrize("expression, tables", TABLE_FORMS)
@pytest.mark.parametrize("switch", [False, True])
def test_tabulated_pairs_match_openmm_reference(water, expression, tables, switch):
    """CustomNonbondedForce in the CHARMM NBFIX / AMBER LJ-table / 12-6-4 forms."""
    topology, positions, box, ff = water
    n = len(positions)
    rng = np.random.default_rng(7)
    # oxygens get one of two random types; hydrogens a third type without interactions (as
    # TIP3P's), since Modeller's box has H-H contacts across its faces
    n_types = 3
    is_hydrogen = np.array([atom.element.symbol == "H" for atom in topology.atoms()])
    types = np.where(is_hydrogen, 2, rng.integers(0, 2, n))
    sigma = rng.uniform(0.28, 0.33, (n_types, n_types))
    eps = rng.uniform(0.1, 0.8, (n_types, n_types))
    sigma, eps = (sigma + sigma.T) / 2, (eps + eps.T) / 2
    ccoef = rng.uniform(0.0, 0.01, (n_types, n_types))
    values = {
        "acoef": np.sqrt(4 * eps * sigma**12) if "(a/r6)" in expression else 4 * eps * sigma**12,
        "bcoef": 4 * eps * sigma**6,
        "ccoef": (ccoef + ccoef.T) / 2,
    }
    for table in values.values():
        table[2, :] = table[:, 2] = 0.0
    system = mm.System()
    for _ in range(n):
        system.addParticle(10.0)
    force = mm.CustomNonbondedForce(expression)
    force.addPerParticleParameter("type")
    for name in tables:
        force.addTabulatedFunction(name, mm.Discrete2DFunction(n_types, n_types, values[name].T.ravel()))
    for t in types:
        force.addParticle([float(t)])
    for residue in topology.residues():
        atoms = [atom.index for atom in residue.atoms()]
        for k, a in enumerate(atoms):
            for b in atoms[k + 1:]:
                force.addExclusion(a, b)
    force.setNonbondedMethod(mm.CustomNonbondedForce.CutoffPeriodic)
    force.setCutoffDistance(1.0)
    force.setUseLongRangeCorrection(True)
    if switch:
        force.setUseSwitchingFunction(True)
        force.setSwitchingDistance(0.85)
    system.addForce(force)
    system.setDefaultPeriodicBoxVectors(*(mm.Vec3(*row) for row in box))
    ref_energy, ref_forces, _, _ = openmm_evaluation(system, positions, box)
    result = bencao.evaluate(bencao.System.from_openmm(system), positions, box)
    median, p99 = force_agreement(result.forces, ref_forces)
    assert median < 2e-6 and p99 < 2e-5  # float32 pair arithmetic
    # OpenMM integrates the long-range correction numerically in float32 (Lepton vector code)
    assert result.energy == pytest.approx(ref_energy, rel=1e-5)


def test_forces_after_a_rebuild_equal_a_fresh_backend(water):
    """The list, coordinate and accumulator arrays are kept between builds with spare room
    (the number of clusters changes at almost every build).  A backend that has built before
    must give exactly the forces and energy of one that builds for the first time."""
    topology, positions, box, ff = water
    # 0.8 nm: cutoff + buffer fits twice in the 2.4 nm box, so there are several cells
    system = ff.createSystem(topology, nonbondedMethod=app.PME, nonbondedCutoff=0.8 * unit.nanometer)
    system = bencao.System.from_openmm(system)
    used = bencao.make_backend(system)
    used.compute(positions, box)
    # moved through the box's cells until the atoms per cell, and so the number of clusters,
    # change at a rebuild (the case of interest)
    for offset in np.arange(1, 13) * 0.1:
        clusters_before = _pair_list(used).n_clusters
        moved = positions + offset
        again = used.compute(moved, box)
        if _pair_list(used).n_clusters != clusters_before:
            break
    else:
        raise AssertionError("no offset changed the number of clusters")
    fresh = bencao.make_backend(system).compute(moved, box)
    assert np.array_equal(again.forces, fresh.forces)
    assert again.energy == fresh.energy


def _pair_list(backend):
    """The cluster-pair list of a backend's nonbonded term."""
    from bencao.backends.cpu.cluster_pairs import ClusterPairList

    for term in backend.terms:
        if isinstance(getattr(term, "neighbors", None), ClusterPairList):
            return term.neighbors
    raise AssertionError("no cluster-pair list")
