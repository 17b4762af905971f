"""Virtual sites: placement and force distribution against analytic cases, finite differences and
OpenMM's Reference platform; conversion from an OpenMM System."""

import numpy as np
import openmm
import pytest

from bencao.backends.cpu.virtual_sites import CpuVirtualSites
from bencao.constants import ONE_4PI_EPS0
from bencao.forces.virtual_sites import (
    LINEAR,
    LOCAL_COORDINATES,
    OUT_OF_PLANE,
    VirtualSites,
)
from bencao.io.openmm_virtual_sites import virtual_sites_from_openmm


def table(rows, width=3):
    """VirtualSites from rows (site, kind, parents, weights (P, 3) or None, params or None)."""
    n = len(rows)
    parents = np.full((n, width), -1, dtype=np.int64)
    weights = np.zeros((n, width, 3))
    params = np.zeros((n, 3))
    for m, (_, _, par, w, prm) in enumerate(rows):
        parents[m, : len(par)] = par
        if w is not None:
            weights[m, : len(par)] = w
        if prm is not None:
            params[m] = prm
    return VirtualSites(
        site=np.array([r[0] for r in rows], dtype=np.int64),
        kind=np.array([r[1] for r in rows], dtype=np.int64),
        parents=parents,
        weights=weights,
        params=params,
    )


# ---------------------------------------------------------------------------------------------
# (a) analytic cases
# ---------------------------------------------------------------------------------------------


def test_linear_site_places_weighted_average_and_splits_force():
    vs = CpuVirtualSites(table([(2, LINEAR, [0, 1], [[0.3, 0, 0], [0.7, 0, 0]], None)], width=2))
    pos = np.array([[0.0, 0.0, 0.0], [1.0, 2.0, 3.0], [9.0, 9.0, 9.0]])
    vs.place(pos)
    np.testing.assert_allclose(pos[2], [0.7, 1.4, 2.1], rtol=1e-15)
    forces = np.array([[0.0, 0, 0], [0, 0, 0], [10.0, -20.0, 5.0]])
    vs.distribute(pos, forces)
    np.testing.assert_allclose(forces, [[3.0, -6.0, 1.5], [7.0, -14.0, 3.5], [0, 0, 0]], rtol=1e-15)


def test_out_of_plane_site_analytic():
    w12, w13, wc = 0.3, 0.2, 1.5
    vs = CpuVirtualSites(table([(3, OUT_OF_PLANE, [0, 1, 2], None, [w12, w13, wc])]))
    pos = np.array([[0.0, 0, 0], [0.1, 0, 0], [0, 0.1, 0], [5.0, 5.0, 5.0]])
    vs.place(pos)
    # r12 x r13 = 0.01 z
    np.testing.assert_allclose(pos[3], [0.1 * w12, 0.1 * w13, 0.01 * wc], rtol=1e-14)
    forces = np.zeros((4, 3))
    forces[3] = [0.0, 0.0, 1.0]
    vs.distribute(pos, forces)
    # d site / d r2 = w12 I - wc [r13]x, so F2 = w12 f + wc r13 x f = w12 z + 0.1 wc x;
    # likewise F3 = w13 f + wc f x r12 = w13 z + 0.1 wc y; F1 takes the rest.
    f2 = np.array([0.1 * wc, 0, w12])
    f3 = np.array([0, 0.1 * wc, w13])
    np.testing.assert_allclose(forces[1], f2, rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(forces[2], f3, rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(forces[0], [0, 0, 1] - f2 - f3, rtol=1e-14, atol=1e-15)
    assert np.all(forces[3] == 0.0)


def test_local_coordinates_site_analytic():
    # Frame built from an orthogonal but scaled triple: ex = x, ez = z, ey = y.
    local = [0.03, 0.02, -0.015]
    vs = CpuVirtualSites(
        table(
            [(3, LOCAL_COORDINATES, [0, 1, 2], [[1, -1, -1], [0, 1, 0], [0, 0, 1]], local)]
        )
    )
    pos = np.array([[0.1, 0.2, 0.3], [0.35, 0.2, 0.3], [0.1, 0.25, 0.3], [0, 0, 0]])
    vs.place(pos)
    np.testing.assert_allclose(pos[3], pos[0] + local, rtol=1e-14)
    # Push the site along +x.  The site moves rigidly with the frame, so the parents must get the
    # same total force and the same torque about any point.
    forces = np.zeros((4, 3))
    forces[3] = [2.0, -1.0, 0.5]
    torque = np.cross(pos[3], forces[3])
    vs.distribute(pos, forces)
    np.testing.assert_allclose(forces[:3].sum(axis=0), [2.0, -1.0, 0.5], rtol=1e-13)
    parent_torque = np.cross(pos[:3], forces[:3]).sum(axis=0)
    np.testing.assert_allclose(parent_torque, torque, rtol=1e-12, atol=1e-14)
    # A unit push along y: atom 1 (the x axis, |X| = 0.25) takes lx / |X| = 0.12 of it as a
    # lever; the torque about x, -lz = 0.015, is carried by atom 2 (the y axis, at y = 0.05) as
    # 0.3 along z; the origin atom takes the rest.
    forces = np.zeros((4, 3))
    forces[3] = [0.0, 1.0, 0.0]
    vs.distribute(pos, forces)
    expected = [[0.0, 0.88, -0.3], [0.0, 0.12, 0.0], [0.0, 0.0, 0.3], [0.0, 0.0, 0.0]]
    np.testing.assert_allclose(forces, expected, rtol=1e-12, atol=1e-14)


# ---------------------------------------------------------------------------------------------
# A system with every kind of site, in OpenMM and as a table
# ---------------------------------------------------------------------------------------------

# Particle layout: molecule A = water O 0, H 1, H 2, M site 9 (ThreeParticleAverage) and a site 3
# that averages O with the M site (a site built from a later-numbered site); molecule B = atoms
# 4, 5, 6, 10 with a LocalCoordinatesSite 7 (3 parents), an OutOfPlaneSite 8 and a
# LocalCoordinatesSite 11 on four parents.  Only A-B pairs interact.
N = 12
REAL = [0, 1, 2, 4, 5, 6, 10]
MOL_A = [0, 1, 2, 3, 9]
MOL_B = [4, 5, 6, 7, 8, 10, 11]
CHARGES = np.array([0.0, 0.52, 0.52, 0.15, -0.4, 0.3, 0.25, -0.6, 0.35, -1.19, 0.5, -0.25])
SIGMA = np.array([0.315, 1, 1, 0.2, 0.32, 0.25, 0.3, 1, 1, 0.25, 0.3, 1.0])
EPSILON = np.array([0.65, 0, 0, 0.1, 0.4, 0.2, 0.3, 0, 0, 0.05, 0.5, 0.0])


def build_openmm_system():
    system = openmm.System()
    for i in range(N):
        system.addParticle(0.0 if i not in REAL else 12.0)
    a = 0.128
    system.setVirtualSite(9, openmm.ThreeParticleAverageSite(0, 1, 2, 1 - 2 * a, a, a))
    system.setVirtualSite(3, openmm.TwoParticleAverageSite(0, 9, 0.6, 0.4))
    system.setVirtualSite(
        7,
        openmm.LocalCoordinatesSite(
            4, 5, 6, openmm.Vec3(0.5, 0.3, 0.2), openmm.Vec3(-1, 1, 0), openmm.Vec3(-1, 0, 1),
            openmm.Vec3(0.03, 0.02, -0.015),
        ),
    )
    system.setVirtualSite(8, openmm.OutOfPlaneSite(4, 5, 6, 0.3, 0.2, 1.5))
    system.setVirtualSite(
        11,
        openmm.LocalCoordinatesSite(
            [4, 5, 6, 10], [0.25, 0.25, 0.25, 0.25], [-1, 0.5, 0.5, 0], [0, -1, 0, 1],
            openmm.Vec3(-0.01, 0.04, 0.02),
        ),
    )
    nb = openmm.NonbondedForce()
    nb.setNonbondedMethod(openmm.NonbondedForce.NoCutoff)
    for i in range(N):
        nb.addParticle(CHARGES[i], SIGMA[i], EPSILON[i])
    for mol in (MOL_A, MOL_B):
        for x, i in enumerate(mol):
            for j in mol[x + 1 :]:
                nb.addException(i, j, 0.0, 1.0, 0.0)
    system.addForce(nb)
    return system


def real_positions(seed):
    """Water A near the origin, molecule B ~0.4 nm away, a little random distortion."""
    rng = np.random.default_rng(seed)
    pos = np.zeros((N, 3))
    pos[0] = [0.0, 0.0, 0.0]
    pos[1] = [0.09572, 0.0, 0.0]
    pos[2] = [-0.024, 0.0927, 0.0]
    pos[4] = [0.40, 0.05, 0.10]
    pos[5] = [0.52, 0.10, 0.12]
    pos[6] = [0.38, 0.18, 0.05]
    pos[10] = [0.45, -0.05, 0.25]
    pos[REAL] += rng.normal(0, 0.01, (len(REAL), 3))
    return pos


def pair_energy_forces(pos):
    """NumPy Coulomb + Lorentz-Berthelot LJ between molecules A and B (kJ/mol, kJ/mol/nm)."""
    energy = 0.0
    forces = np.zeros_like(pos)
    for i in MOL_A:
        for j in MOL_B:
            d = pos[j] - pos[i]
            r = np.linalg.norm(d)
            sig = 0.5 * (SIGMA[i] + SIGMA[j])
            eps = np.sqrt(EPSILON[i] * EPSILON[j])
            sr6 = (sig / r) ** 6
            energy += ONE_4PI_EPS0 * CHARGES[i] * CHARGES[j] / r + 4 * eps * (sr6 * sr6 - sr6)
            # -dE/dr
            f = ONE_4PI_EPS0 * CHARGES[i] * CHARGES[j] / r**2 + 24 * eps * (2 * sr6 * sr6 - sr6) / r
            forces[j] += f * d / r
            forces[i] -= f * d / r
    return energy, forces


def openmm_context(system):
    return openmm.Context(
        system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference")
    )


# ---------------------------------------------------------------------------------------------
# Conversion
# ---------------------------------------------------------------------------------------------


def test_conversion_orders_sites_after_their_parents_and_keeps_parameters():
    vs = virtual_sites_from_openmm(build_openmm_system())
    order = vs.site.tolist()
    assert sorted(order) == [3, 7, 8, 9, 11]
    assert order.index(9) < order.index(3)  # 3 is built from site 9
    m = order.index(11)
    assert vs.kind[m] == LOCAL_COORDINATES
    assert vs.parents[m].tolist() == [4, 5, 6, 10]
    np.testing.assert_array_equal(vs.weights[m, :, 0], [0.25, 0.25, 0.25, 0.25])
    np.testing.assert_array_equal(vs.weights[m, :, 1], [-1, 0.5, 0.5, 0])
    np.testing.assert_array_equal(vs.weights[m, :, 2], [0, -1, 0, 1])
    np.testing.assert_allclose(vs.params[m], [-0.01, 0.04, 0.02], rtol=1e-15)
    m = order.index(8)
    assert vs.kind[m] == OUT_OF_PLANE
    np.testing.assert_allclose(vs.params[m], [0.3, 0.2, 1.5], rtol=1e-15)
    m = order.index(3)
    assert vs.kind[m] == LINEAR and vs.parents[m].tolist() == [0, 9, -1, -1]
    np.testing.assert_allclose(vs.weights[m, :2, 0], [0.6, 0.4], rtol=1e-15)


def test_conversion_without_sites_is_empty():
    system = openmm.System()
    system.addParticle(1.0)
    assert len(virtual_sites_from_openmm(system)) == 0


def test_conversion_rejects_unsupported_site():
    system = openmm.System()
    system.addParticle(1.0)
    system.addParticle(0.0)
    system.setVirtualSite(
        1,
        openmm.SymmetrySite(
            0,
            openmm.Vec3(1, 0, 0),
            openmm.Vec3(0, 1, 0),
            openmm.Vec3(0, 0, 1),
            openmm.Vec3(0.1, 0, 0),
            False,
        ),
    )
    with pytest.raises(ValueError, match="SymmetrySite.*LocalCoordinatesSite"):
        virtual_sites_from_openmm(system)


# ---------------------------------------------------------------------------------------------
# (c) OpenMM Reference: placement and distributed forces
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1])
def test_placement_matches_openmm(seed):
    system = build_openmm_system()
    pos = real_positions(seed)
    context = openmm_context(system)
    context.setPositions(pos)
    context.computeVirtualSites()
    state = context.getState(getPositions=True)
    ref = state.getPositions(asNumpy=True).value_in_unit(openmm.unit.nanometer)
    placed = CpuVirtualSites(virtual_sites_from_openmm(system)).place(pos.copy())
    # Same float64 formulas; 1e-14 nm is a few ulps of ~0.5 nm coordinates.
    np.testing.assert_allclose(placed, ref, rtol=0, atol=1e-14)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_distributed_forces_match_openmm(seed):
    system = build_openmm_system()
    vs = CpuVirtualSites(virtual_sites_from_openmm(system))
    pos = vs.place(real_positions(seed))
    energy, forces = pair_energy_forces(pos)
    vs.distribute(pos, forces)
    context = openmm_context(system)
    context.setPositions(pos)
    state = context.getState(getEnergy=True, getForces=True)
    kj_nm = openmm.unit.kilojoule_per_mole / openmm.unit.nanometer
    ref = state.getForces(asNumpy=True).value_in_unit(kj_nm)
    ref_energy = state.getPotentialEnergy().value_in_unit(openmm.unit.kilojoule_per_mole)
    # The NumPy pair sum and OpenMM's are the same float64 arithmetic up to order: ~1e-14.
    assert energy == pytest.approx(ref_energy, rel=1e-12)
    # Forces on real atoms: the distribution formulas differ only in arrangement (ours is a
    # compact vector form of OpenMM's SymPy-expanded one); 1e-9 of the largest force.
    assert np.abs(forces[REAL] - ref[REAL]).max() <= 1e-9 * np.abs(ref[REAL]).max()
    assert np.all(forces[[3, 7, 8, 9, 11]] == 0.0)


# ---------------------------------------------------------------------------------------------
# (b) finite differences: energy as a function of the real atoms only
# ---------------------------------------------------------------------------------------------


def test_distributed_forces_are_minus_gradient_wrt_real_atoms():
    vs = CpuVirtualSites(virtual_sites_from_openmm(build_openmm_system()))

    def energy_of(real):
        return pair_energy_forces(vs.place(real.copy()))[0]

    pos = vs.place(real_positions(3))
    _, forces = pair_energy_forces(pos)
    vs.distribute(pos, forces)
    h = 1e-6  # nm; central-difference truncation ~h^2 E''' ~ 1e-8 and rounding eps E / h ~ 1e-8
    numeric = np.zeros_like(pos)
    for i in REAL:
        for d in range(3):
            plus = pos.copy()
            minus = pos.copy()
            plus[i, d] += h
            minus[i, d] -= h
            numeric[i, d] = -(energy_of(plus) - energy_of(minus)) / (2 * h)
    scale = np.abs(forces).max()
    # Error sources above are ~1e-8 absolute against forces of ~100 kJ/mol/nm.
    assert np.abs(numeric - forces).max() <= 1e-6 * scale
    # A step along the distributed force lowers the energy at the rate |F|^2.
    step = 1e-6 / scale
    slope = (energy_of(pos - step * forces) - energy_of(pos + step * forces)) / (2 * step)
    assert slope == pytest.approx(np.sum(forces**2), rel=1e-6)


def test_total_force_and_torque_are_conserved():
    # Distribution is a rigid-frame map: sum of forces and torque about the origin unchanged.
    vs = CpuVirtualSites(virtual_sites_from_openmm(build_openmm_system()))
    pos = vs.place(real_positions(4))
    rng = np.random.default_rng(9)
    forces = rng.normal(0, 50, (N, 3))
    total, torque = forces.sum(axis=0), np.cross(pos, forces).sum(axis=0)
    vs.distribute(pos, forces)
    # Sums of ~12 terms of magnitude ~50: rounding ~1e-13.
    np.testing.assert_allclose(forces.sum(axis=0), total, rtol=0, atol=1e-11)
    np.testing.assert_allclose(np.cross(pos, forces).sum(axis=0), torque, rtol=0, atol=1e-11)
