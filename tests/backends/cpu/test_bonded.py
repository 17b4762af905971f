"""Bonded CPU kernels: analytic cases, finite differences, and OpenMM's Reference platform."""

import math
from dataclasses import dataclass

import numpy as np
import openmm
import pytest
from numba import njit

import bencao
from bencao.backends.common.fixed_point import forces_from_fixed
from bencao.backends.common.laws import register_listed_law

# One class computes every listed term on the CPU (its law comes from backends.common.laws),
# except PeriodicTorsionForce, whose terms are summed per quadruple into a Fourier series
from bencao.backends.cpu.bonded import CpuListedTerm
from bencao.backends.cpu.bonded import CpuListedTerm as CpuHarmonicAngles
from bencao.backends.cpu.bonded import CpuListedTerm as CpuHarmonicBonds
from bencao.backends.cpu.bonded import CpuListedTerm as CpuHarmonicImpropers
from bencao.backends.cpu.bonded import CpuListedTerm as CpuLJPairs
from bencao.backends.cpu.periodic_torsions import CpuPeriodicTorsions
from bencao.forces.bonded import (
    HarmonicAngles,
    HarmonicBonds,
    HarmonicImpropers,
    LJPairs,
    PeriodicTorsions,
)

WRAP_EXPR = "k*min(dtheta, 2*pi-dtheta)^2; dtheta = abs(theta-theta0); pi = 3.141592653589793"
LITERAL_EXPR = "k*(theta-theta0)^2"


def evaluate(cpu_term, positions):
    """Energy (kJ/mol) and float forces (kJ/mol/nm) of one CPU term."""
    acc = np.zeros((len(positions), 3), dtype=np.int64)
    energy = cpu_term.compute(np.ascontiguousarray(positions, dtype=np.float64), None, acc)
    return energy, forces_from_fixed(acc)


def openmm_reference(force, positions):
    """Energy and forces of one OpenMM force on the Reference platform."""
    system = openmm.System()
    for _ in range(len(positions)):
        system.addParticle(1.0)
    system.addForce(force)
    context = openmm.Context(
        system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference")
    )
    context.setPositions(positions)
    state = context.getState(getEnergy=True, getForces=True)
    energy = state.getPotentialEnergy().value_in_unit(openmm.unit.kilojoule_per_mole)
    forces = state.getForces(asNumpy=True).value_in_unit(
        openmm.unit.kilojoule_per_mole / openmm.unit.nanometer
    )
    return energy, np.asarray(forces)


def assert_matches_reference(cpu_term, force, positions):
    energy, forces = evaluate(cpu_term, positions)
    ref_energy, ref_forces = openmm_reference(force, positions)
    # Same float64 formulas as OpenMM: only rounding differs (~1e-15); 1e-9 leaves room for
    # cancellation in sums of terms of both signs.
    assert energy == pytest.approx(ref_energy, rel=1e-9, abs=1e-12)
    # Relative to the largest component: the fixed-point accumulator rounds each contribution
    # to 2**-32 kJ/mol/nm, far below 1e-9 of typical forces but not of tiny components.
    scale = np.abs(ref_forces).max()
    assert np.abs(forces - ref_forces).max() <= 1e-9 * scale


def check_finite_difference(cpu_term, positions):
    """Central differences of the energy against the forces, per coordinate and along F."""
    energy0, forces = evaluate(cpu_term, positions)
    h = 1e-6  # nm; truncation h^2 E''' / 6 ~ 1e-9 and rounding eps E / h ~ 1e-9 kJ/mol/nm
    numeric = np.zeros_like(positions)
    for i in range(positions.shape[0]):
        for d in range(3):
            plus = positions.copy()
            minus = positions.copy()
            plus[i, d] += h
            minus[i, d] -= h
            numeric[i, d] = -(evaluate(cpu_term, plus)[0] - evaluate(cpu_term, minus)[0]) / (2 * h)
    scale = np.abs(forces).max()
    assert scale > 0.0
    # Both error sources above are ~1e-9 absolute; 1e-6 of the largest force bounds them.
    assert np.abs(numeric - forces).max() <= 1e-6 * scale
    # A step along the force must lower the energy at the rate |F|^2 per unit of F.
    step = 1e-6 / scale
    down = evaluate(cpu_term, positions + step * forces)[0]
    up = evaluate(cpu_term, positions - step * forces)[0]
    slope = (up - down) / (2 * step)
    assert slope == pytest.approx(np.sum(forces * forces), rel=1e-6)
    assert down < energy0 < up


# ---------------------------------------------------------------------------------------------
# (a) analytic cases
# ---------------------------------------------------------------------------------------------


def test_bond_stretched_analytic():
    k, r0 = 2.5e5, 0.1
    pos = np.array([[0.0, 0.0, 0.0], [r0 + 0.01, 0.0, 0.0]])
    term = CpuHarmonicBonds(HarmonicBonds(np.array([[0, 1]]), np.array([r0]), np.array([k])))
    assert term.name == "HarmonicBondForce"
    energy, forces = evaluate(term, pos)
    assert energy == pytest.approx(0.5 * k * 0.01**2, rel=1e-12)
    # Stretched: the atoms are pulled together with |F| = k * 0.01.
    np.testing.assert_allclose(forces, [[k * 0.01, 0, 0], [-k * 0.01, 0, 0]], rtol=1e-9, atol=1e-9)


def test_bond_coincident_atoms_finite():
    term = CpuHarmonicBonds(HarmonicBonds(np.array([[0, 1]]), np.array([0.1]), np.array([1e3])))
    energy, forces = evaluate(term, np.zeros((2, 3)))
    assert energy == pytest.approx(0.5 * 1e3 * 0.01)
    assert np.all(forces == 0.0)


def test_angle_analytic():
    k, theta0, theta = 400.0, math.radians(90.0), math.radians(100.0)
    ra, rc = 0.1, 0.15
    pos = np.array([[ra, 0, 0], [0, 0, 0], [rc * math.cos(theta), rc * math.sin(theta), 0]])
    term = CpuHarmonicAngles(
        HarmonicAngles(np.array([[0, 1, 2]]), np.array([theta0]), np.array([k]))
    )
    assert term.name == "HarmonicAngleForce"
    energy, forces = evaluate(term, pos)
    d = theta - theta0
    assert energy == pytest.approx(0.5 * k * d * d, rel=1e-12)
    # dtheta/dx_a = -y/ra, dtheta/dx_c = (-sin, cos)/rc: the forces close the angle.
    fa = np.array([0.0, k * d / ra, 0.0])
    fc = -k * d / rc * np.array([-math.sin(theta), math.cos(theta), 0.0])
    np.testing.assert_allclose(forces, [fa, -fa - fc, fc], rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("theta", [0.0, math.pi])
def test_angle_straight_is_finite_and_matches_openmm(theta):
    # a, b, c collinear: the bending direction is undefined; OpenMM (clamped cross product)
    # applies no force and the energy is that of theta = 0 or pi exactly.
    pos = np.array([[0.1, 0, 0], [0, 0, 0], [0.12 * math.cos(theta), 0, 0]])
    term = HarmonicAngles(np.array([[0, 1, 2]]), np.array([1.9]), np.array([300.0]))
    energy, forces = evaluate(CpuHarmonicAngles(term), pos)
    assert energy == pytest.approx(0.5 * 300.0 * (theta - 1.9) ** 2, rel=1e-12)
    assert np.all(forces == 0.0)
    force = openmm.HarmonicAngleForce()
    force.addAngle(0, 1, 2, 1.9, 300.0)
    ref_energy, ref_forces = openmm_reference(force, pos)
    assert np.all(ref_forces == 0.0)
    # OpenMM takes acos of a cosine rounded to 1 - eps, off by up to sqrt(2 eps) = 2.1e-8 rad
    # here (we use atan2, exact); the energy may differ by k |theta - theta0| times that.
    assert energy == pytest.approx(ref_energy, abs=300.0 * abs(theta - 1.9) * 2.2e-8)
    # Almost straight: the clamp keeps the force finite and bounded by k |dtheta| / (r 1e-6 nm^2)
    # scale, instead of 0/0.
    nearly = pos + [[0, 0, 0], [0, 0, 0], [0, 1e-9, 0]]
    energy, forces = evaluate(CpuHarmonicAngles(term), nearly)
    assert np.all(np.isfinite(forces)) and np.isfinite(energy)


def rotated(positions, seed=0):
    """positions in a random orientation and place: internal coordinates are unchanged."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    if np.linalg.det(q) < 0:  # keep a proper rotation, a reflection flips the dihedral sign
        q[:, 0] = -q[:, 0]
    return positions @ q.T + rng.uniform(-1, 1, 3)


def torsion_positions(phi, r=0.12, length=0.15):
    """a on +x, b at the origin, c on +z, d at azimuth phi: the dihedral a-b-c-d is +phi."""
    end = [r * math.cos(phi), r * math.sin(phi), length]
    return np.array([[r, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, length], end])


def test_torsion_analytic():
    k, n, phase, phi, r = 3.0, 3, 0.4, 1.1, 0.12
    term = CpuPeriodicTorsions(
        PeriodicTorsions(np.array([[0, 1, 2, 3]]), np.array([n]), np.array([phase]), np.array([k]))
    )
    assert term.name == "PeriodicTorsionForce"
    energy, forces = evaluate(term, torsion_positions(phi, r))
    assert energy == pytest.approx(k * (1 + math.cos(n * phi - phase)), rel=1e-12)
    dE = -k * n * math.sin(n * phi - phase)
    # d moves on a circle of radius r about the b-c axis: dphi/dx_d = e_phi / r; a the same with
    # the opposite sense.
    tangent = np.array([-math.sin(phi), math.cos(phi), 0])
    np.testing.assert_allclose(forces[3], -dE / r * tangent, rtol=1e-9)
    np.testing.assert_allclose(forces[0], dE / r * np.array([0, 1.0, 0]), rtol=1e-9, atol=1e-9)
    # Internal force: no net force, no net torque.
    np.testing.assert_allclose(forces.sum(axis=0), 0.0, atol=1e-8)
    torque = np.cross(torsion_positions(phi, r), forces).sum(axis=0)
    np.testing.assert_allclose(torque, 0.0, atol=1e-8)


def test_torsion_sign_matches_openmm_convention():
    # A CustomTorsionForce 'theta' reports OpenMM's signed angle directly as the energy.
    for phi in (0.7, -0.7, 2.9, -2.9, math.pi):
        force = openmm.CustomTorsionForce("theta")
        force.addTorsion(0, 1, 2, 3, [])
        ref_energy, _ = openmm_reference(force, torsion_positions(phi))
        assert ref_energy == pytest.approx(phi, abs=1e-12)
        # k (1 + cos(theta - pi/2)) = k (1 + sin theta) is odd in theta's sign.
        term = CpuPeriodicTorsions(
            PeriodicTorsions(
                np.array([[0, 1, 2, 3]]), np.array([1]), np.array([math.pi / 2]), np.array([1.0])
            )
        )
        energy = evaluate(term, torsion_positions(phi))[0]
        assert energy == pytest.approx(1 + math.sin(phi), abs=1e-12)


@pytest.mark.parametrize("wrap", [True, False])
def test_improper_analytic_across_the_wrap(wrap):
    k, theta0, phi = 50.0, math.radians(170.0), math.radians(-170.0)
    term = CpuHarmonicImpropers(
        HarmonicImpropers(np.array([[0, 1, 2, 3]]), np.array([theta0]), np.array([k]), wrap)
    )
    assert term.name == "CustomTorsionForce"
    energy, forces = evaluate(term, torsion_positions(phi))
    literal = phi - theta0
    d = 2 * math.pi - abs(literal) if wrap else literal
    assert energy == pytest.approx(k * d * d, rel=1e-12)
    # Wrapped: theta growing from -170 deg moves away from +170 deg round the back: dE/dtheta > 0.
    dE = 2 * k * d if wrap else 2 * k * literal
    r = 0.12
    tangent = np.array([-math.sin(phi), math.cos(phi), 0])
    np.testing.assert_allclose(forces[3], -dE / r * tangent, rtol=1e-9)


def test_lj_pair_analytic():
    eps, sigma = 0.6, 0.3
    c12, c6 = 4 * eps * sigma**12, 4 * eps * sigma**6
    term = CpuLJPairs(LJPairs(np.array([[0, 1]]), np.array([c12]), np.array([c6])))
    assert term.name == "CustomBondForce"
    rmin = 2 ** (1 / 6) * sigma
    energy, forces = evaluate(term, np.array([[0, 0, 0], [0, rmin, 0]]))
    assert energy == pytest.approx(-eps, rel=1e-12)
    assert np.abs(forces).max() < 1e-9  # the minimum: no force
    energy, forces = evaluate(term, np.array([[0, 0, 0], [0, 0, sigma]]))
    assert energy == pytest.approx(0.0, abs=1e-12)
    # At r = sigma, -dE/dr = 24 eps / sigma, pushing the atoms apart.
    push = 24 * eps / sigma
    np.testing.assert_allclose(forces, [[0, 0, -push], [0, 0, push]], rtol=1e-9, atol=1e-9)


def test_torsion_with_collinear_atoms_is_finite():
    # a, b, c collinear: OpenMM reports theta = pi/2 (normalised dot of a zero normal is 0) and
    # a 0/0 force; we match the energy and apply no force instead of NaN.
    pos = np.array([[-0.1, 0, 0], [0, 0, 0], [0.15, 0, 0], [0.2, 0.1, 0.05]])
    torsion = PeriodicTorsions(
        np.array([[0, 1, 2, 3]]), np.array([2]), np.array([0.3]), np.array([4.0])
    )
    improper = HarmonicImpropers(np.array([[0, 1, 2, 3]]), np.array([0.3]), np.array([4.0]), True)
    for cpu, force in (
        (CpuPeriodicTorsions(torsion), openmm.PeriodicTorsionForce()),
        (CpuHarmonicImpropers(improper), openmm.CustomTorsionForce(WRAP_EXPR)),
    ):
        if isinstance(force, openmm.PeriodicTorsionForce):
            force.addTorsion(0, 1, 2, 3, 2, 0.3, 4.0)
        else:
            force.addPerTorsionParameter("theta0")
            force.addPerTorsionParameter("k")
            force.addTorsion(0, 1, 2, 3, [0.3, 4.0])
        energy, forces = evaluate(cpu, pos)
        assert np.all(np.isfinite(forces))
        assert energy == pytest.approx(openmm_reference(force, pos)[0], rel=1e-12)


# ---------------------------------------------------------------------------------------------
# Random systems shared by (b) finite differences and (c) OpenMM comparison
# ---------------------------------------------------------------------------------------------

N_ATOMS = 10


def random_positions(seed):
    """Atoms spread over ~0.5 nm, no two closer than 0.1 nm (keeps LJ and angles tame)."""
    rng = np.random.default_rng(seed)
    pos = [rng.uniform(0, 0.5, 3)]
    while len(pos) < N_ATOMS:
        p = rng.uniform(0, 0.5, 3)
        if min(np.linalg.norm(p - q) for q in pos) > 0.1:
            pos.append(p)
    return np.array(pos)


def random_tuples(rng, width, count):
    rows = [rng.choice(N_ATOMS, width, replace=False) for _ in range(count)]
    return np.array(rows, dtype=np.int64)


def random_system(kind, seed):
    """(CpuTerm, equivalent OpenMM force) with random parameters."""
    rng = np.random.default_rng(seed)
    m = 12
    if kind == "bonds":
        atoms = random_tuples(rng, 2, m)
        length, k = rng.uniform(0.1, 0.3, m), rng.uniform(1e3, 3e5, m)
        force = openmm.HarmonicBondForce()
        for a, l0, kk in zip(atoms, length, k):
            force.addBond(int(a[0]), int(a[1]), l0, kk)
        return CpuHarmonicBonds(HarmonicBonds(atoms, length, k)), force
    if kind == "angles":
        atoms = random_tuples(rng, 3, m)
        angle, k = rng.uniform(1.5, 3.1, m), rng.uniform(50, 800, m)
        force = openmm.HarmonicAngleForce()
        for a, t0, kk in zip(atoms, angle, k):
            force.addAngle(*map(int, a), t0, kk)
        return CpuHarmonicAngles(HarmonicAngles(atoms, angle, k)), force
    if kind == "torsions":
        atoms = random_tuples(rng, 4, m)
        per, phase, k = rng.integers(1, 7, m), rng.uniform(-np.pi, np.pi, m), rng.uniform(-5, 20, m)
        force = openmm.PeriodicTorsionForce()
        for a, n, ph, kk in zip(atoms, per, phase, k):
            force.addTorsion(*map(int, a), int(n), ph, kk)
        return CpuPeriodicTorsions(PeriodicTorsions(atoms, per, phase, k)), force
    if kind in ("impropers_wrap", "impropers_literal"):
        wrap = kind == "impropers_wrap"
        atoms = random_tuples(rng, 4, m)
        theta0, k = rng.uniform(-np.pi, np.pi, m), rng.uniform(10, 500, m)
        force = openmm.CustomTorsionForce(WRAP_EXPR if wrap else LITERAL_EXPR)
        force.addPerTorsionParameter("theta0")
        force.addPerTorsionParameter("k")
        for a, t0, kk in zip(atoms, theta0, k):
            force.addTorsion(*map(int, a), [t0, kk])
        return CpuHarmonicImpropers(HarmonicImpropers(atoms, theta0, k, wrap)), force
    if kind == "lj_pairs":
        atoms = random_tuples(rng, 2, m)
        sigma, eps = rng.uniform(0.1, 0.35, m), rng.uniform(0.05, 1.0, m)
        force = openmm.CustomBondForce("4*epsilon*((sigma/r)^12-(sigma/r)^6)")
        force.addPerBondParameter("sigma")
        force.addPerBondParameter("epsilon")
        for a, s, e in zip(atoms, sigma, eps):
            force.addBond(int(a[0]), int(a[1]), [s, e])
        c12, c6 = 4 * eps * sigma**12, 4 * eps * sigma**6
        return CpuLJPairs(LJPairs(atoms, c12, c6)), force
    raise ValueError(kind)


KINDS = ["bonds", "angles", "torsions", "impropers_wrap", "impropers_literal", "lj_pairs"]


# ---------------------------------------------------------------------------------------------
# (b) finite differences
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_forces_are_minus_energy_gradient(kind):
    cpu, _ = random_system(kind, seed=11)
    check_finite_difference(cpu, random_positions(seed=5))


# ---------------------------------------------------------------------------------------------
# (c) OpenMM Reference
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("kind", KINDS)
def test_matches_openmm_reference(kind, seed):
    cpu, force = random_system(kind, seed)
    assert_matches_reference(cpu, force, random_positions(seed + 100))


@pytest.mark.parametrize("offset", [1e-7, -1e-7, 0.0, 1e-3, -1e-3])
def test_torsion_near_pi_matches_openmm(offset):
    # Near +-pi OpenMM switches from acos to asin and the sign flips: both must be followed.
    pos = rotated(torsion_positions(math.pi - offset), seed=3)
    force = openmm.PeriodicTorsionForce()
    force.addTorsion(0, 1, 2, 3, 1, 0.2, 5.0)
    force.addTorsion(0, 1, 2, 3, 3, -1.0, 2.0)
    cpu = CpuPeriodicTorsions(
        PeriodicTorsions(
            np.array([[0, 1, 2, 3]] * 2),
            np.array([1, 3]),
            np.array([0.2, -1.0]),
            np.array([5.0, 2.0]),
        )
    )
    assert_matches_reference(cpu, force, pos)


@pytest.mark.parametrize("wrap", [True, False])
@pytest.mark.parametrize("phi", [-3.1, -2.9, 3.0, 0.3])
def test_improper_near_wrap_matches_openmm(wrap, phi):
    # theta0 near +-pi with theta on the other side of the cut: the wrapped and literal forms
    # differ there, and both must match their OpenMM expression.
    theta0 = np.array([3.0, -3.05])
    k = np.array([120.0, 80.0])
    force = openmm.CustomTorsionForce(WRAP_EXPR if wrap else LITERAL_EXPR)
    force.addPerTorsionParameter("theta0")
    force.addPerTorsionParameter("k")
    force.addTorsion(0, 1, 2, 3, [theta0[0], k[0]])
    force.addTorsion(3, 2, 1, 0, [theta0[1], k[1]])
    atoms = np.array([[0, 1, 2, 3], [3, 2, 1, 0]])
    cpu = CpuHarmonicImpropers(HarmonicImpropers(atoms, theta0, k, wrap))
    assert_matches_reference(cpu, force, rotated(torsion_positions(phi), seed=4))


def test_torsion_series_equals_the_term_by_term_law():
    """The CPU's PeriodicTorsionForce kernel sums each quadruple's terms into one Fourier
    series; the generic loop evaluates the law term by term.  On quadruples with up to four
    terms (multiplicities 1-6, any phase, a repeated multiplicity), quadruples in both atom
    orders, a count that is not a whole number of 8-lane blocks, and one collinear quadruple,
    both must give the same energy and forces.  Tolerances: both are float64 with different
    operation orders (energy: a few ulps of the sum); forces also go through the int64 fixed
    point (2^-32 kJ/mol/nm), and acos near 0 and pi loses a few more ulps in the generic path."""
    rng = np.random.default_rng(17)
    n_atoms = 60
    positions = rng.uniform(0.0, 1.5, (n_atoms, 3))
    positions[[1, 3, 2]] = [[0.5, 0.5, 0.5], [0.75, 0.5, 0.5], [1.0, 0.5, 0.5]]  # collinear
    quadruples = [np.array([0, 1, 3, 2])]
    while len(quadruples) < 45:
        quadruples.append(rng.choice(n_atoms, 4, replace=False))
    quadruples.append(quadruples[5][::-1])
    atoms, periodicity, phase, k = [], [], [], []
    for q in quadruples:
        for _ in range(rng.integers(1, 5)):
            atoms.append(q)
            periodicity.append(rng.integers(1, 7))
            phase.append(rng.choice([0.0, math.pi, rng.uniform(-math.pi, math.pi)]))
            k.append(rng.uniform(0.1, 20.0))
    atoms.append(quadruples[7])  # a repeated multiplicity on one quadruple
    periodicity.append(periodicity[0])
    phase.append(0.4)
    k.append(3.0)
    term = PeriodicTorsions(np.array(atoms), np.array(periodicity), np.array(phase),
                            np.array(k))
    series = CpuPeriodicTorsions(term)
    assert len(series.quadruples) == len(quadruples) and len(quadruples) % 8 != 0
    energy, forces = evaluate(series, positions)
    generic_energy, generic_forces = evaluate(CpuListedTerm(term), positions)
    assert energy == pytest.approx(generic_energy, rel=1e-13)
    np.testing.assert_allclose(forces, generic_forces, rtol=0, atol=1e-8)
    assert np.abs(forces).max() > 10.0  # forces that matter


def test_empty_terms_do_nothing():
    pos = random_positions(0)
    for cpu in (
        CpuHarmonicBonds(HarmonicBonds(np.zeros((0, 2), np.int64), np.zeros(0), np.zeros(0))),
        CpuPeriodicTorsions(
            PeriodicTorsions(
                np.zeros((0, 4), np.int64), np.zeros(0, np.int64), np.zeros(0), np.zeros(0)
            )
        ),
        CpuLJPairs(LJPairs(np.zeros((0, 2), np.int64), np.zeros(0), np.zeros(0))),
    ):
        energy, forces = evaluate(cpu, pos)
        assert energy == 0.0 and np.all(forces == 0.0)


# ---------------------------------------------------------------------------------------------
# (d) a new listed term needs no backend edit
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MorseBonds:
    """A toy record: E = depth (1 - exp(-a (r - length)))^2 per bond (kJ/mol, 1/nm, nm)."""

    atoms: np.ndarray
    depth: np.ndarray
    a: np.ndarray
    length: np.ndarray
    name = "MorseBondForce"


@njit(cache=True, inline="always")
def morse_bond(dx, dy, dz, params, m):
    """Its law, columns (depth, a, length): (E, f) with F_i = f (x_j - x_i)."""
    r = math.sqrt(dx * dx + dy * dy + dz * dz)
    x = math.exp(-params[m, 1] * (r - params[m, 2]))
    dE_dr = 2.0 * params[m, 0] * params[m, 1] * (1.0 - x) * x
    return params[m, 0] * (1.0 - x) ** 2, dE_dr / r


def test_a_registered_law_runs_on_the_cpu_backend_without_backend_code():
    register_listed_law(MorseBonds, 2, morse_bond, lambda t: (t.depth, t.a, t.length))
    rng = np.random.default_rng(21)
    atoms = random_tuples(rng, 2, 12)
    term = MorseBonds(atoms, rng.uniform(100, 400, 12), rng.uniform(10, 25, 12),
                      rng.uniform(0.1, 0.3, 12))
    positions = random_positions(seed=8)
    system = bencao.System(masses=np.ones(N_ATOMS), terms=(term,))
    result = bencao.evaluate(system, positions)
    r = np.linalg.norm(positions[atoms[:, 1]] - positions[atoms[:, 0]], axis=1)
    expected = np.sum(term.depth * (1 - np.exp(-term.a * (r - term.length))) ** 2)
    assert result.terms == {"MorseBondForce": pytest.approx(expected, rel=1e-12)}
    # The backend built the term from the registration alone; its forces are -grad E.
    (cpu,) = bencao.make_backend(system, "cpu").terms
    np.testing.assert_array_equal(evaluate(cpu, positions)[1], result.forces)
    check_finite_difference(cpu, positions)
