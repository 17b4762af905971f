"""Alchemical systems built by openmmtools' AbsoluteAlchemicalFactory (``pytest -m
validation``): a guest in its host in water and a solute in water, at lambda_electrostatics x
lambda_sterics in {1, 0.5, 0} x {1, 0.6, 0.2, 0}.  Energies vs OpenMM's Reference platform at
least as good as OpenMM's CPU platform; the alchemical Custom* terms to 1e-9; dU/dlambda_sterics
equal to OpenMM's (to its float32 long-range integral) and to a central difference of energies to 1e-6."""

from __future__ import annotations

import itertools

import numpy as np
import openmm as mm
import pytest
from openmm import unit
from reference import force_agreement

import bencao
from bencao.backends.cpu.backend import CpuBackend

pytest.importorskip("openmmtools")
pytestmark = pytest.mark.validation

GRID = list(itertools.product([1.0, 0.5, 0.0], [1.0, 0.6, 0.2, 0.0]))


def _alchemical(name):
    """(alchemical openmm.System, positions nm, box nm) with dU/dlambda_sterics asked of every
    force that has it."""
    import mdtraj
    from openmmtools import alchemy, testsystems

    test_system = getattr(testsystems, name)()
    topology = mdtraj.Topology.from_openmm(test_system.topology)
    atoms = topology.select("resname B2" if name == "HostGuestExplicit" else "not water")
    factory = alchemy.AbsoluteAlchemicalFactory()
    system = factory.create_alchemical_system(
        test_system.system, alchemy.AlchemicalRegion(alchemical_atoms=atoms))
    for force in system.getForces():
        names = [force.getGlobalParameterName(i) for i in range(force.getNumGlobalParameters())] \
            if hasattr(force, "getNumGlobalParameters") else []
        if "lambda_sterics" in names and hasattr(force, "addEnergyParameterDerivative"):
            force.addEnergyParameterDerivative("lambda_sterics")
    positions = test_system.positions.value_in_unit(unit.nanometer)
    box = np.array([[v.value_in_unit(unit.nanometer) for v in row]
                    for row in system.getDefaultPeriodicBoxVectors()])
    return system, np.asarray(positions), box


@pytest.fixture(scope="module", params=["HostGuestExplicit", "AlanineDipeptideExplicit"])
def case(request):
    system, positions, box = _alchemical(request.param)
    contexts = {}
    for platform in ("Reference", "CPU"):
        context = mm.Context(system, mm.VerletIntegrator(0.001),
                             mm.Platform.getPlatformByName(platform))
        context.setPositions(positions)
        contexts[platform] = context
    return request.param, system, positions, box, contexts, CpuBackend(bencao.System.from_openmm(system))


def _set(case, lambda_electrostatics, lambda_sterics):
    _, _, _, _, contexts, backend = case
    for context in contexts.values():
        context.setParameter("lambda_electrostatics", lambda_electrostatics)
        context.setParameter("lambda_sterics", lambda_sterics)
    backend.set_parameter("lambda_electrostatics", lambda_electrostatics)
    backend.set_parameter("lambda_sterics", lambda_sterics)


def test_energies_and_derivatives_over_the_lambda_grid(case):
    name, system, positions, box, contexts, backend = case
    worst = {"energy": 0.0, "cpu_energy": 0.0, "derivative": 0.0, "difference": 0.0}
    for lambda_electrostatics, lambda_sterics in GRID:
        _set(case, lambda_electrostatics, lambda_sterics)
        states = {p: c.getState(getEnergy=True, getParameterDerivatives=True)
                  for p, c in contexts.items()}
        reference = states["Reference"].getPotentialEnergy()._value
        cpu = states["CPU"].getPotentialEnergy()._value
        ours = backend.compute(positions, box, parameter_derivatives=True)
        error, cpu_error = abs(ours.energy - reference), abs(cpu - reference)
        # OpenMM CPU parity, with the floor of tests/reference.py (5e-7 of E).
        assert error <= max(2 * cpu_error, 5e-7 * abs(reference)), (lambda_electrostatics,
                                                                     lambda_sterics)
        expected = states["Reference"].getEnergyParameterDerivatives()["lambda_sterics"]
        derivative = ours.parameter_derivatives["lambda_sterics"]
        # Both analytic; OpenMM 8.6 evaluates the long-range correction's integrand (part of
        # dU/dlambda here) in float32, ~1e-7 of that part.
        assert derivative == pytest.approx(expected, rel=1e-7, abs=1e-9)
        h = 1e-5
        energies = []
        for shifted in (lambda_sterics + h, lambda_sterics - h):
            backend.set_parameter("lambda_sterics", shifted)
            energies.append(backend.compute(positions, box).energy)
        backend.set_parameter("lambda_sterics", lambda_sterics)
        difference = (energies[0] - energies[1]) / (2 * h)
        # Central difference: truncation h^2 U'''/6 and the rounding of E (~1e-16 |E| / h);
        # |E| ~ 1e5 kJ/mol and h = 1e-5 make the second ~1e-6 kJ/mol, under 1e-6 relative of
        # any dU/dlambda above 1 kJ/mol; the absolute floor covers the windows where it is ~0.
        assert difference == pytest.approx(derivative, rel=1e-6, abs=1e-5)
        worst = {"energy": max(worst["energy"], error / abs(reference)),
                 "cpu_energy": max(worst["cpu_energy"], cpu_error / abs(reference)),
                 "derivative": max(worst["derivative"],
                                   abs(derivative - expected) / max(abs(expected), 1e-300)),
                 "difference": max(worst["difference"], abs(difference - derivative)
                                   / max(abs(derivative), 1e-300))}
    print(f"\nVALIDATION alchemical {name}: {worst}")


def test_forces_over_the_lambda_grid(case):
    name, system, positions, box, contexts, backend = case
    for lambda_electrostatics, lambda_sterics in GRID:
        _set(case, lambda_electrostatics, lambda_sterics)
        forces = {p: c.getState(getForces=True).getForces(asNumpy=True)._value
                  for p, c in contexts.items()}
        ours = backend.compute(positions, box).forces
        median, p99 = force_agreement(ours, forces["Reference"])
        cpu_median, cpu_p99 = force_agreement(forces["CPU"], forces["Reference"])
        print(f"\nVALIDATION alchemical forces {name} {lambda_electrostatics} {lambda_sterics}: "
              f"median {median:.3g} (CPU {cpu_median:.3g}), p99 {p99:.3g} (CPU {cpu_p99:.3g})")
        assert median <= max(1.05 * cpu_median, 1e-6)
        assert p99 <= max(1.05 * cpu_p99, 1e-5)
