"""CustomCentroidBondForce (centroid restraints of binding free energies, e.g. openmmtools'
restraints) against OpenMM's Reference platform: mass and explicit weights, every geometric
function of groups, periodic images, dU/dp."""

from __future__ import annotations

import numpy as np
import openmm as mm
import pytest

import bencao
from bencao.backends.cpu.backend import CpuBackend
from bencao.forces import CustomCentroidBonds
from bencao.io.openmm_import import UnsupportedForceError

GEOMETRY = ("k*(distance(g1,g2)-r0)^2 + ka*(angle(g1,g2,g3)-a0)^2"
            " + kd*(1+cos(dihedral(g1,g2,g3,g4)-d0))")
EXPRESSION = GEOMETRY + " + lam*x1*y4"
#: Periodic forces may not use coordinates themselves (see the refusal test)
PERIODIC_EXPRESSION = GEOMETRY + " + lam*distance(g1,g4)^2"


def centroid_system(expression=None, periodic=False, seed=6):
    """Twelve particles of unequal masses in four groups (two by mass, two with explicit
    weights), two bonds of four groups, lam's derivative asked."""
    rng = np.random.default_rng(seed)
    system = mm.System()
    for mass in rng.uniform(1.0, 16.0, 12):
        system.addParticle(mass)
    if expression is None:
        expression = PERIODIC_EXPRESSION if periodic else EXPRESSION
    force = mm.CustomCentroidBondForce(4, expression)
    for name in ("k", "r0", "ka", "a0", "kd", "d0"):
        force.addPerBondParameter(name)
    force.addGlobalParameter("lam", 0.4)
    force.addEnergyParameterDerivative("lam")
    force.addGroup([0, 1, 2])
    force.addGroup([3, 4, 5, 6])
    force.addGroup([7, 8], [0.3, 0.7])
    force.addGroup([9, 10, 11], [1.0, 2.0, 3.0])
    force.addBond([0, 1, 2, 3], [1000.0, 0.3, 50.0, 1.9, 5.0, 0.4])
    force.addBond([3, 0, 2, 1], [500.0, 0.5, 20.0, 1.2, 3.0, -1.1])
    force.setUsesPeriodicBoundaryConditions(periodic)
    system.addForce(force)
    box = None
    positions = rng.uniform(0, 1.2, (12, 3))
    if periodic:
        box = np.diag([2.0, 2.1, 2.2])
        system.setDefaultPeriodicBoxVectors(*[mm.Vec3(*row) for row in box])
        positions[7:] += [2.0, 0.0, -2.2]  # groups 3, 4 one box away: images matter
    return system, positions, box


def _reference(system, positions, box, lam):
    context = mm.Context(system, mm.VerletIntegrator(1.0),
                         mm.Platform.getPlatformByName("Reference"))
    if box is not None:
        context.setPeriodicBoxVectors(*[mm.Vec3(*row) for row in box])
    context.setPositions(positions)
    context.setParameter("lam", lam)
    return context.getState(getEnergy=True, getForces=True, getParameterDerivatives=True)


@pytest.mark.parametrize("periodic", [False, True])
@pytest.mark.parametrize("lam", [0.4, -1.3])
def test_centroid_bonds_match_reference(periodic, lam):
    system, positions, box = centroid_system(periodic=periodic)
    state = _reference(system, positions, box, lam)
    ours = bencao.System.from_openmm(system)
    term = ours.terms[0]
    assert isinstance(term, CustomCentroidBonds) and term.n_atoms == 4
    backend = CpuBackend(ours)
    backend.set_parameter("lam", lam)
    evaluation = backend.compute(positions, box, parameter_derivatives=True)
    # float64 on both sides: rounding of the largest terms
    assert evaluation.energy == pytest.approx(state.getPotentialEnergy()._value, rel=1e-11)
    # fixed point (2^-32 per addition) and the two gradient forms' rounding
    np.testing.assert_allclose(evaluation.forces, state.getForces(asNumpy=True)._value,
                               rtol=1e-9, atol=1e-8)
    expected = state.getEnergyParameterDerivatives()["lam"]
    # lam * x1 * y4 or lam * distance^2, float64 on both sides
    assert evaluation.parameter_derivatives["lam"] == pytest.approx(expected, rel=1e-12)


def test_weights_default_to_masses_and_are_normalised():
    system, _, _ = centroid_system()
    term = bencao.System.from_openmm(system).terms[0]
    masses = np.array([system.getParticleMass(i)._value for i in range(3)])
    # one division each, as computed here: equal to the last bit or two
    np.testing.assert_allclose(term.group_weights[:3], masses / masses.sum(), rtol=1e-15)
    np.testing.assert_allclose(term.group_weights[7:9], [0.3, 0.7], rtol=1e-15)


def test_a_group_out_of_range_is_refused_naming_it():
    system, _, _ = centroid_system("distance(g1,g5)")
    with pytest.raises(UnsupportedForceError, match=r"CustomCentroidBondForce: g5 is not a "
                                                     r"group of the bond \(g1 \.\. g4\)"):
        bencao.System.from_openmm(system)


def test_saved_system_keeps_the_groups(tmp_path):
    system, positions, box = centroid_system(periodic=True)
    ours = bencao.System.from_openmm(system)
    path = tmp_path / "centroid.npz"
    ours.save(path)
    loaded = bencao.System.load(path)
    first = CpuBackend(ours).compute(positions, box)
    second = CpuBackend(loaded).compute(positions, box)
    assert first.energy == second.energy
    assert np.array_equal(first.forces, second.forces)


def test_coordinates_in_a_periodic_expression_are_refused():
    system, _, _ = centroid_system(EXPRESSION, periodic=True)
    with pytest.raises(UnsupportedForceError, match=r"CustomCentroidBondForce: coordinates "
                                                     r"\(x1, y1, \.\.\.\) in the expression"):
        bencao.System.from_openmm(system)
