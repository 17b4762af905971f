"""CustomCompoundBondForce (e.g. Boresch restraints of free-energy calculations) against OpenMM's
Reference platform: every geometric function, per-bond and global parameters, dU/dp."""

from __future__ import annotations

import numpy as np
import openmm as mm
import pytest

import bencao
from bencao.backends.cpu.backend import CpuBackend
from bencao.forces import CustomCompoundBonds
from bencao.io.openmm_import import UnsupportedForceError

EXPRESSION = ("k*(distance(p1,p2)-r0)^2 + ka*(angle(p1,p2,p3)-a0)^2"
              " + kd*(1+cos(dihedral(p1,p2,p3,p4)-d0)) + lam*x1*y4"
              " + 0.1*pointdistance(x1,y1,z1,x3,y3,z3)"
              " + 0.2*pointangle(x1,y1,z1,x2,y2,z2,x4,y4,z4)"
              " + 0.3*sin(pointdihedral(x1,y1,z1,x2,y2,z2,x3,y3,z3,x4,y4,z4))")


def compound_system(expression=EXPRESSION, seed=4):
    """Eight particles, three bonds of four, the expression with lam's derivative asked."""
    rng = np.random.default_rng(seed)
    system = mm.System()
    for _ in range(8):
        system.addParticle(12.0)
    force = mm.CustomCompoundBondForce(4, expression)
    for name in ("k", "r0", "ka", "a0", "kd", "d0"):
        force.addPerBondParameter(name)
    force.addGlobalParameter("lam", 0.4)
    force.addEnergyParameterDerivative("lam")
    for _ in range(3):
        force.addBond(rng.choice(8, 4, replace=False).tolist(),
                      [1000.0, 0.15, 50.0, 1.9, 5.0, rng.uniform(-3, 3)])
    system.addForce(force)
    return system, rng.uniform(0, 1, (8, 3))


@pytest.mark.parametrize("lam", [0.4, -1.3])
def test_geometry_functions_and_derivatives_match_reference(lam):
    system, positions = compound_system()
    context = mm.Context(system, mm.VerletIntegrator(1.0), mm.Platform.getPlatformByName("Reference"))
    context.setPositions(positions)
    context.setParameter("lam", lam)
    state = context.getState(getEnergy=True, getForces=True, getParameterDerivatives=True)
    ours = bencao.System.from_openmm(system)
    assert isinstance(ours.terms[0], CustomCompoundBonds) and ours.terms[0].n_atoms == 4
    backend = CpuBackend(ours)
    backend.set_parameter("lam", lam)
    evaluation = backend.compute(positions, parameter_derivatives=True)
    # float64 on both sides; SymPy's analytic gradient of acos/atan2 forms against OpenMM's
    # geometric one: rounding of the largest terms.
    assert evaluation.energy == pytest.approx(state.getPotentialEnergy()._value, rel=1e-11)
    forces = state.getForces(asNumpy=True)._value
    # Fixed point (2^-32 per addition), and the two gradient forms' rounding.
    np.testing.assert_allclose(evaluation.forces, forces, rtol=1e-9, atol=1e-8)
    expected = state.getEnergyParameterDerivatives()["lam"]
    # dE/dlam = x1*y4 summed over three bonds in float64 on both sides.
    assert evaluation.parameter_derivatives["lam"] == pytest.approx(expected, rel=1e-12)


def test_a_particle_out_of_range_is_refused_naming_it():
    system, _ = compound_system("distance(p1,p5)")
    with pytest.raises(UnsupportedForceError, match=r"CustomCompoundBondForce: p5 is not a "
                                                     r"particle of the bond \(p1 \.\. p4\)"):
        bencao.System.from_openmm(system)


PERIODIC_EXPRESSION = ("k*(distance(p1,p2)-r0)^2 + ka*(angle(p1,p2,p3)-a0)^2"
                       " + kd*(1+cos(dihedral(p1,p2,p3,p4)-d0)) + lam*distance(p1,p4)")


def periodic_compound_system():
    """The compound system made periodic, each bond's particles spread over periodic images."""
    system, positions = compound_system(PERIODIC_EXPRESSION)
    system.getForce(0).setUsesPeriodicBoundaryConditions(True)
    box = np.diag([3.0, 3.1, 3.2])
    system.setDefaultPeriodicBoxVectors(*[mm.Vec3(*row) for row in box])
    # a bond spans less than half a box (as restraints do); every other particle one box away
    positions = 0.6 * positions
    positions[::2] += [3.0, -3.1, 0.0]
    return system, positions, box


def test_periodic_bonds_match_reference_across_the_box():
    """A periodic compound force (Boresch restraints in a water box): the bond's particles lie
    in different periodic images, OpenMM takes minimum images, so must bencao."""
    system, positions, box = periodic_compound_system()
    context = mm.Context(system, mm.VerletIntegrator(1.0), mm.Platform.getPlatformByName("Reference"))
    context.setPositions(positions)
    state = context.getState(getEnergy=True, getForces=True, getParameterDerivatives=True)
    ours = bencao.System.from_openmm(system)
    evaluation = CpuBackend(ours).compute(positions, box, parameter_derivatives=True)
    assert evaluation.terms["CustomCompoundBondForce"] == evaluation.energy
    # as in the test above: float64 on both sides, fixed point
    assert evaluation.energy == pytest.approx(state.getPotentialEnergy()._value, rel=1e-11)
    np.testing.assert_allclose(evaluation.forces, state.getForces(asNumpy=True)._value,
                               rtol=1e-9, atol=1e-8)
    assert evaluation.parameter_derivatives["lam"] == pytest.approx(
        state.getEnergyParameterDerivatives()["lam"], rel=1e-12)
