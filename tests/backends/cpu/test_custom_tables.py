"""OpenMM's tabulated functions (Continuous1D/2D/3D, periodic or not, Discrete1D/2D/3D) in
CustomCompoundBondForce and CustomNonbondedForce expressions, against OpenMM's Reference
platform; the tables survive a saved System."""

from __future__ import annotations

import numpy as np
import openmm as mm
import pytest

import bencao
from bencao.backends.cpu.backend import CpuBackend


def compound_with_tables(seed=1, n=10):
    """Bonds of three particles whose energy calls every kind of table, with arguments inside
    and outside each continuous table's range (where OpenMM's function is 0) and beyond the
    periodic ones' (where they wrap).  Returns (openmm.System, positions nm)."""
    rng = np.random.default_rng(seed)
    system = mm.System()
    for _ in range(n):
        system.addParticle(12.0)
    force = mm.CustomCompoundBondForce(
        3, "k*f1(distance(p1,p2)) + g2(distance(p1,p3), angle(p1,p2,p3))"
           " + h3(x1, y1, z1) + w1(dihedral(p1,p2,p3,p1) + 4*x2) + w2(x3, 3*y3)"
           " + lam*(d1(4*x1) + d2(3*y2, 2*z2) + d3(2*x3, 2*y3, 2*z3))")
    force.addPerBondParameter("k")
    force.addGlobalParameter("lam", 0.3)
    force.addEnergyParameterDerivative("lam")
    periodic = rng.normal(size=9)
    periodic[-1] = periodic[0]  # a periodic spline's ends are one point
    grid2 = rng.normal(size=(5, 4))
    grid2[-1, :], grid2[:, -1] = grid2[0, :], grid2[:, 0]
    tables = {
        "f1": mm.Continuous1DFunction(list(rng.normal(size=12)), 0.0, 0.9),
        "g2": mm.Continuous2DFunction(7, 6, list(rng.normal(size=42)), 0.0, 1.2, 0.0, 3.2),
        "h3": mm.Continuous3DFunction(5, 6, 4, list(rng.normal(size=120)),
                                      0.1, 0.7, -0.1, 1.0, 0.0, 0.8),
        "w1": mm.Continuous1DFunction(list(periodic), -1.0, 1.5, True),
        "w2": mm.Continuous2DFunction(4, 5, list(grid2.reshape(-1)), 0.0, 0.5, 0.0, 0.7, True),
        "d1": mm.Discrete1DFunction(list(rng.normal(size=4))),
        "d2": mm.Discrete2DFunction(3, 2, list(rng.normal(size=6))),
        "d3": mm.Discrete3DFunction(2, 3, 2, list(rng.normal(size=12))),
    }
    for name, table in tables.items():
        force.addTabulatedFunction(name, table)
    for i in range(n - 2):
        force.addBond([i, i + 1, i + 2], [rng.uniform(1, 3)])
    system.addForce(force)
    return system, rng.uniform(0.0, 1.0, (n, 3))


def reference(system, positions):
    context = mm.Context(system, mm.VerletIntegrator(1.0), mm.Platform.getPlatformByName("Reference"))
    context.setPositions(positions)
    state = context.getState(getEnergy=True, getForces=True, getParameterDerivatives=True)
    return (state.getPotentialEnergy()._value, state.getForces(asNumpy=True)._value,
            dict(state.getEnergyParameterDerivatives()))


def test_every_kind_of_table_matches_reference():
    system, positions = compound_with_tables()
    # some x1 beyond h3's x range [0.1, 0.7], where it is 0
    assert (positions[:-2, 0] > 0.7).any() and (positions[:-2, 0] < 0.7).any()
    evaluation = CpuBackend(bencao.System.from_openmm(system)).compute(
        positions, parameter_derivatives=True)
    energy, forces, derivatives = reference(system, positions)
    # float64 on both sides; OpenMM's spline coefficients and bencao's Hermite corner data are
    # the same patches rounded differently: ~1e-15 of each term.
    assert evaluation.energy == pytest.approx(energy, rel=1e-11)
    # fixed-point force sums (2^-32 kJ/mol/nm) on forces of tens of kJ/mol/nm
    np.testing.assert_allclose(evaluation.forces, forces, rtol=1e-9, atol=1e-8)
    assert evaluation.parameter_derivatives["lam"] == pytest.approx(derivatives["lam"],
                                                                    rel=1e-12)


def test_a_continuous_table_is_a_smooth_spline_through_its_values():
    """Between the tests against OpenMM: f1 at its grid points is the value tabulated, and the
    force is the derivative of the energy (central difference)."""
    system = mm.System()
    for _ in range(2):
        system.addParticle(1.0)
    values = [0.0, 1.0, 4.0, 2.0, -1.0, 0.5]
    force = mm.CustomCompoundBondForce(2, "f(distance(p1,p2))")
    force.addTabulatedFunction("f", mm.Continuous1DFunction(values, 0.2, 0.7))
    force.addBond([0, 1], [])
    system.addForce(force)
    backend = CpuBackend(bencao.System.from_openmm(system))

    def at(r):
        return backend.compute(np.array([[0.0, 0.0, 0.0], [r, 0.0, 0.0]]))

    for k, value in enumerate(values):
        # the corner data hold the values exactly; x is rounded in 0.2 + 0.1 k
        assert at(0.2 + 0.1 * k).energy == pytest.approx(value, abs=1e-12)
    h = 1e-6
    slope = (at(0.43 + h).energy - at(0.43 - h).energy) / (2 * h)
    # central difference: error h^2 f''' / 6 ~ 1e-10, rounding 1e-16 / h ~ 1e-10
    assert at(0.43).forces[1, 0] == pytest.approx(-slope, rel=1e-7)
    assert at(0.75).energy == 0.0 and at(0.15).energy == 0.0  # outside [min, max]


def pairs_with_tables(n=125, edge=2.5, seed=2):
    """A periodic fluid whose CustomNonbondedForce is a Continuous1D table of r scaled by a
    Discrete2D table of particle types (and a global); returns (openmm.System, positions)."""
    rng = np.random.default_rng(seed)
    system = mm.System()
    system.setDefaultPeriodicBoxVectors(mm.Vec3(edge, 0, 0), mm.Vec3(0, edge, 0),
                                        mm.Vec3(0, 0, edge))
    force = mm.CustomNonbondedForce("scale*mix(type1, type2)*u(r)")
    force.addPerParticleParameter("type")
    force.addGlobalParameter("scale", 1.3)
    r = np.linspace(0.25, 1.0, 40)
    force.addTabulatedFunction("u", mm.Continuous1DFunction(list(4 * ((0.3 / r)**12 - (0.3 / r)**6)),
                                                            0.25, 1.0))
    force.addTabulatedFunction("mix", mm.Discrete2DFunction(3, 3, [1.0, 0.5, 0.2, 0.5, 2.0, 0.7,
                                                                   0.2, 0.7, 1.5]))
    force.setNonbondedMethod(mm.CustomNonbondedForce.CutoffPeriodic)
    force.setCutoffDistance(0.9)
    for i in range(n):
        system.addParticle(20.0)
        force.addParticle([float(i % 3)])
    system.addForce(force)
    grid = np.stack(np.meshgrid(*[np.arange(5)] * 3, indexing="ij"), -1).reshape(-1, 3)
    return system, grid * (edge / 5) + rng.uniform(-0.08, 0.08, (n, 3))


def test_tables_in_a_custom_nonbonded_force_match_reference():
    system, positions = pairs_with_tables()
    evaluation = CpuBackend(bencao.System.from_openmm(system)).compute(positions)
    energy, forces, _ = reference(system, positions)
    # float64 pairs summed in different orders (1e-13); fixed-point sums of ~50 pair forces
    assert evaluation.energy == pytest.approx(energy, rel=1e-11)
    np.testing.assert_allclose(evaluation.forces, forces, rtol=1e-9, atol=1e-8)


def test_a_saved_system_keeps_its_tables(tmp_path):
    system, positions = compound_with_tables()
    ours = bencao.System.from_openmm(system)
    ours.save(tmp_path / "tables.npz")
    loaded = bencao.System.load(tmp_path / "tables.npz")
    assert loaded.terms[0].tabulated_functions == ours.terms[0].tabulated_functions
    first = CpuBackend(ours).compute(positions)
    again = CpuBackend(loaded).compute(positions)
    assert again.energy == first.energy
    np.testing.assert_array_equal(again.forces, first.forces)
