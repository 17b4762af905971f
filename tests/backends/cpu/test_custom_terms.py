"""Custom angle, torsion and external terms against OpenMM, global parameters and dU/dp,
checkpoints, System files and the cache of compiled expressions."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import openmm as mm
import pytest

import bencao
from bencao.backends.cpu.backend import CpuBackend
from bencao.forces import CustomAngles, CustomBonds, CustomExternal, CustomTorsions

#: Triclinic box (nm), OpenMM's reduced form: the external term's minimum image must follow it.
BOX = np.array([[2.2, 0.0, 0.0], [0.4, 2.0, 0.0], [-0.5, 0.6, 1.9]])


def custom_system(n=24, seed=3):
    """Chain of ``n`` particles with custom angles, torsions, bonds and an external term with
    ``periodicdistance``; ``lam`` is shared by the bond and external terms, its derivative
    asked by the bond and torsion forces.  Returns (openmm.System, positions nm)."""
    rng = np.random.default_rng(seed)
    system = mm.System()
    system.setDefaultPeriodicBoxVectors(*(mm.Vec3(*row) for row in BOX))
    for _ in range(n):
        system.addParticle(12.0)
    bonds = mm.CustomBondForce("lam*0.5*k*(r-r0)^2 + (1-lam)*0.1*k*(r-r0)^4")
    for name in ("k", "r0"):
        bonds.addPerBondParameter(name)
    bonds.addGlobalParameter("lam", 0.7)
    bonds.addEnergyParameterDerivative("lam")
    angles = mm.CustomAngleForce("k*(cos(theta)-cos(t0))^2 + c*sin(theta)")
    for name in ("k", "t0"):
        angles.addPerAngleParameter(name)
    angles.addGlobalParameter("c", 1.5)
    torsions = mm.CustomTorsionForce("k*(1+cos(n*theta-ph)) + soft*theta^2")
    for name in ("k", "n", "ph"):
        torsions.addPerTorsionParameter(name)
    torsions.addGlobalParameter("soft", 0.2)
    torsions.addEnergyParameterDerivative("soft")
    external = mm.CustomExternalForce("0.5*kx*periodicdistance(x,y,z,x0,y0,z0)^2 + lam*(y-1)^2")
    for name in ("kx", "x0", "y0", "z0"):
        external.addPerParticleParameter(name)
    external.addGlobalParameter("lam", 0.7)
    for i in range(n - 1):
        bonds.addBond(i, i + 1, [rng.uniform(500, 2000), rng.uniform(0.1, 0.2)])
    for i in range(n - 2):
        angles.addAngle(i, i + 1, i + 2, [rng.uniform(20, 80), rng.uniform(1.6, 2.2)])
    for i in range(n - 3):
        torsions.addTorsion(i, i + 1, i + 2, i + 3, [rng.uniform(1, 10), float(rng.integers(1, 4)),
                                                     rng.uniform(-np.pi, np.pi)])
    for i in range(n):
        # References anywhere in the box: many particles are nearer another image of theirs.
        external.addParticle(i, [rng.uniform(50, 200), *rng.uniform(0, 2.0, 3)])
    for force in (bonds, angles, torsions, external):
        system.addForce(force)
    steps = rng.normal(size=(n, 3))
    positions = np.cumsum(0.15 * steps / np.linalg.norm(steps, axis=1)[:, None], axis=0) + 1.0
    return system, positions


def reference(system, positions, parameters):
    context = mm.Context(system, mm.VerletIntegrator(1.0), mm.Platform.getPlatformByName("Reference"))
    context.setPositions(positions)
    for name, value in parameters.items():
        context.setParameter(name, value)
    state = context.getState(getEnergy=True, getForces=True, getParameterDerivatives=True)
    return (state.getPotentialEnergy()._value, state.getForces(asNumpy=True)._value,
            dict(state.getEnergyParameterDerivatives()))


@pytest.fixture(scope="module")
def case():
    system, positions = custom_system()
    return system, positions, bencao.System.from_openmm(system)


def test_each_force_becomes_its_custom_term(case):
    _, _, system = case
    assert [type(t) for t in system.terms] == [CustomBonds, CustomAngles, CustomTorsions,
                                               CustomExternal]
    assert system.periodic  # periodicdistance makes the external force use the box


@pytest.mark.parametrize("parameters", [{}, {"lam": 0.25, "c": -0.5, "soft": 1.3}])
def test_energy_forces_and_derivatives_match_openmm(case, parameters):
    openmm_system, positions, system = case
    backend = CpuBackend(system)
    for name, value in parameters.items():
        backend.set_parameter(name, value)
    evaluation = backend.compute(positions, parameter_derivatives=True)
    energy, forces, derivatives = reference(openmm_system, positions, parameters)
    # float64 on both sides; SymPy reorders operations: rounding of the largest terms.
    assert evaluation.energy == pytest.approx(energy, rel=1e-11)
    # Fixed-point accumulation resolves 2^-32 kJ/mol/nm per addition.
    np.testing.assert_allclose(evaluation.forces, forces, rtol=1e-10, atol=1e-8)
    # OpenMM lists every global, with 0 for those no force asked the derivative of.
    assert set(evaluation.parameter_derivatives) == {"lam", "soft"} and derivatives["c"] == 0.0
    for name in ("lam", "soft"):
        value = derivatives[name]
        # Sums of float64 terms in different orders, as for the energy.
        assert evaluation.parameter_derivatives[name] == pytest.approx(value, rel=1e-11)


def test_derivatives_equal_central_differences_of_the_energy(case):
    _, positions, system = case
    backend = CpuBackend(system)
    analytic = backend.compute(positions, parameter_derivatives=True).parameter_derivatives
    # lam enters the external force too, whose derivative was not asked for (as in OpenMM, dU/dp
    # sums the forces that asked): difference only the bond force's energy.
    h = 1e-4
    for name, force_name in (("lam", "CustomBondForce"), ("soft", "CustomTorsionForce")):
        value = backend.get_parameter(name)
        energies = []
        for shifted in (value + h, value - h):
            backend.set_parameter(name, shifted)
            energies.append(backend.compute(positions).terms[force_name])
        backend.set_parameter(name, value)
        # Central difference error ~ h^2 E''' / 6; the energies are polynomial of degree 1 in
        # both parameters, so what remains is rounding of E (1e-16 E / h ~ 1e-10 relative).
        assert (energies[0] - energies[1]) / (2 * h) == pytest.approx(analytic[name], rel=1e-6)


def test_unknown_or_bad_parameter_values_are_refused(case):
    _, _, system = case
    backend = CpuBackend(system)
    with pytest.raises(ValueError, match=r"no force of this system has a global parameter "
                                         r"'lambda' \(it has: c, lam, soft\)"):
        backend.set_parameter("lambda", 1.0)
    with pytest.raises(ValueError, match="'lam': the value nan is not finite"):
        backend.set_parameter("lam", float("nan"))
    assert backend.parameters == {"lam": 0.7, "c": 1.5, "soft": 0.2}


def test_system_file_round_trip_keeps_expressions_and_parameters(case, tmp_path):
    _, positions, system = case
    system.save(tmp_path / "custom.npz")
    loaded = bencao.System.load(tmp_path / "custom.npz")
    for a, b in zip(system.terms, loaded.terms):
        assert type(a) is type(b)
        assert (a.expression, a.parameter_names, a.global_names, a.global_values,
                a.derivative_names, a.periodic) == (b.expression, b.parameter_names,
                                                    b.global_names, b.global_values,
                                                    b.derivative_names, b.periodic)
    first = CpuBackend(system).compute(positions)
    again = CpuBackend(loaded).compute(positions)
    assert again.energy == first.energy
    np.testing.assert_array_equal(again.forces, first.forces)


def test_simulation_parameter_change_takes_effect_and_survives_a_checkpoint(case):
    _, positions, system = case

    def simulation():
        return bencao.Simulation(system, bencao.LangevinMiddleIntegrator(300.0, 1.0, 0.001),
                                 positions, seed=11)

    sim = simulation()
    sim.step(5)
    sim.set_parameter("lam", 0.1)
    assert sim.get_parameter("lam") == 0.1
    # The cached forces of step 5 must not survive the change: the state's energy is the
    # backend's at the new value.
    fresh = CpuBackend(system)
    fresh.set_parameter("lam", 0.1)
    assert sim.state.potential_energy == fresh.compute(sim.positions, sim.box).energy
    arrays, values = sim.get_checkpoint_state()
    sim.step(10)
    restarted = simulation()
    assert restarted.get_parameter("lam") == 0.7
    restarted.set_checkpoint_state(arrays, values)
    assert restarted.get_parameter("lam") == 0.1
    restarted.step(10)
    np.testing.assert_array_equal(restarted.positions, sim.positions)


def test_second_process_neither_regenerates_nor_recompiles(tmp_path):
    """A fresh process with the same cache folder imports the generated module (it does not
    generate it again: that would fail in the second run) and loads the compiled loop from
    Numba's cache."""
    script = textwrap.dedent("""
        import sys
        sys.path.insert(0, %r)
        import bencao
        from bencao.backends.common.laws import custom
        from bencao.backends.cpu.backend import CpuBackend
        if sys.argv[1] == "again":
            def refuse(*args):
                raise AssertionError("generated again")
            custom._module_source = refuse
        from test_custom_terms import custom_system
        openmm_system, positions = custom_system(n=6)
        backend = CpuBackend(bencao.System.from_openmm(openmm_system))
        print(backend.compute(positions).energy)
        kernels = [t._kernel for t in backend.terms]
        print(sum(len(k.stats.cache_misses) for k in kernels))
    """ % os.path.dirname(__file__))
    env = {**os.environ, "BENCAO_CACHE_DIR": str(tmp_path), "NUMBA_CACHE_DIR": str(tmp_path / "nb")}
    runs = [subprocess.run([sys.executable, "-c", script, which], env=env, capture_output=True,
                           text=True, check=False, timeout=600) for which in ("first", "again")]
    for run in runs:
        assert run.returncode == 0, run.stderr[-2000:]
    first, second = (run.stdout.split("\n") for run in runs)
    assert first[0] == second[0]  # the same energy, to the last digit
    assert first[1] != "0"  # the first process compiled
    assert second[1] == "0"  # the second compiled nothing


def periodic_custom_system():
    """The custom system with its bond, angle and torsion forces periodic (OpenMM's
    ``setUsesPeriodicBoundaryConditions``) and every other particle of the chain moved by a box
    vector, so each item spans periodic images.  Returns (openmm.System, positions nm, box)."""
    system, positions = custom_system()
    for index in range(3):
        system.getForce(index).setUsesPeriodicBoundaryConditions(True)
    positions[::2] += BOX[0] - BOX[1] + BOX[2]
    return system, positions, BOX


def test_periodic_bonds_angles_and_torsions_take_minimum_images():
    """OpenMM takes minimum-image vectors in periodic custom bonded forces, and so must bencao
    (without them these bonds would be a box long)."""
    openmm_system, positions, box = periodic_custom_system()
    system = bencao.System.from_openmm(openmm_system)
    assert [t.periodic for t in system.terms] == [True, True, True, True]
    evaluation = CpuBackend(system).compute(positions, box, parameter_derivatives=True)
    energy, forces, derivatives = reference(openmm_system, positions, {})
    assert set(evaluation.terms) == {"CustomBondForce", "CustomAngleForce",
                                     "CustomTorsionForce", "CustomExternalForce"}
    # As in the test above: float64 on both sides, fixed-point forces.
    assert evaluation.energy == pytest.approx(energy, rel=1e-11)
    np.testing.assert_allclose(evaluation.forces, forces, rtol=1e-10, atol=1e-8)
    for name in ("lam", "soft"):
        assert evaluation.parameter_derivatives[name] == pytest.approx(derivatives[name],
                                                                       rel=1e-11)
