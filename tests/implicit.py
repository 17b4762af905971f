"""Implicit-solvent test systems and the comparison of a GB force with OpenMM's Reference."""

from __future__ import annotations

import numpy as np
import openmm as mm
import pytest
from openmm import app
from reference import data_path

import bencao
from bencao.backends.common.fixed_point import forces_from_fixed
from bencao.backends.cpu.backend import CpuBackend


def trpcage(model, **options):
    """Trp-cage (1T2Y, 304 atoms) in amber14 with OpenMM's ``implicit/<model>.xml``, no cutoff
    (``options`` go to ``createSystem``); positions moved by up to 0.005 nm (fixed seed) so that
    no force sits at a minimum.  Returns (openmm.System, positions nm)."""
    pdb = app.PDBFile(data_path("1T2Y.pdb"))
    forcefield = app.ForceField("amber14-all.xml", f"implicit/{model}.xml")
    modeller = app.Modeller(pdb.topology, pdb.positions)
    modeller.addHydrogens(forcefield)
    system = forcefield.createSystem(modeller.topology, nonbondedMethod=app.NoCutoff, **options)
    positions = np.asarray(modeller.positions.value_in_unit(mm.unit.nanometer))
    positions += np.random.default_rng(5).uniform(-0.005, 0.005, positions.shape)
    return system, positions


def gb_group(system, positions):
    """Energy and forces of the system's GB force alone on OpenMM's Reference platform."""
    for force in system.getForces():
        is_gb = isinstance(force, (mm.CustomGBForce, mm.GBSAOBCForce))
        force.setForceGroup(1 if is_gb else 0)
    context = mm.Context(system, mm.VerletIntegrator(0.001), mm.Platform.getPlatformByName("Reference"))
    context.setPositions(positions)
    state = context.getState(getEnergy=True, getForces=True, groups={1})
    return state.getPotentialEnergy()._value, state.getForces(asNumpy=True)._value


def assert_gb_matches(system, positions, box=None):
    """The GB force of ``system`` on bencao's CPU backend equals OpenMM Reference's; returns
    the backend."""
    energy, forces = gb_group(system, positions)
    backend = CpuBackend(bencao.System.from_openmm(system))
    (term,) = [t for t in backend.terms if t.name in ("CustomGBForce", "GBSAOBCForce")]
    fixed, ours = backend.term_forces(term, positions, box)
    # float64 on both sides over the same sums (OpenMM evaluates the same expressions with
    # Lepton): rounding of ~N^2 terms.
    assert ours == pytest.approx(energy, rel=1e-11)
    # Fixed point resolves 2^-32 kJ/mol/nm per particle sum; the chain rule adds ~N terms of
    # the size of the largest forces, rounded at 1e-16 each.
    scale = np.abs(forces).max()
    np.testing.assert_allclose(forces_from_fixed(fixed), forces, rtol=0, atol=1e-11 * scale + 1e-8)
    return backend
