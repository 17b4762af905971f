"""The CUDA backend on real systems, on a real GPU: forces against OpenMM's Reference platform
(the core engine's bar: no worse than OpenMM's CPU platform) and bit-identical dynamics.

These systems have 10^4 to 10^5 atoms: far too many for Numba's CUDA simulator, which runs every
GPU thread in Python (the simulated tests use small boxes), so every test here skips, saying
why, where there is no GPU.  Run them on a GPU machine with ``pytest tests/backends/cuda``.
"""

from __future__ import annotations

import numpy as np
import pytest
from openmm import app, unit
from systems import dhfr, solvated_trpcage
from test_evaluate import check_against_openmm

import bencao


def _real_gpu() -> bool:
    from numba import config

    if config.ENABLE_CUDASIM:
        return False  # the simulator: these systems would take hours
    from numba import cuda

    return bool(cuda.is_available())


pytestmark = pytest.mark.skipif(not _real_gpu(), reason="needs an NVIDIA GPU (too large for "
                                                         "Numba's CUDA simulator)")

NM = unit.nanometer


def _dhfr():
    return dhfr(nonbondedMethod=app.PME, nonbondedCutoff=0.9 * NM, constraints=app.HBonds,
                hydrogenMass=1.5 * unit.amu)


def test_dhfr_forces_on_the_gpu_match_reference():
    check_against_openmm(*_dhfr(), backend="cuda")


def test_protein_in_a_rhombic_dodecahedron_on_the_gpu_matches_reference():
    topology, positions, box, ff = solvated_trpcage(("amber14-all.xml", "amber14/tip3pfb.xml"),
                                                    shape="dodecahedron")
    system = ff.createSystem(topology, nonbondedMethod=app.PME, nonbondedCutoff=1.0 * NM,
                             constraints=app.HBonds)
    check_against_openmm(system, positions, box, backend="cuda")


def test_tip4pew_virtual_sites_on_the_gpu_match_reference():
    topology, positions, box, ff = solvated_trpcage(("amber14-all.xml", "amber14/tip4pew.xml"))
    system = ff.createSystem(topology, nonbondedMethod=app.PME, nonbondedCutoff=0.9 * NM)
    check_against_openmm(system, positions, box, backend="cuda")


def test_dhfr_dynamics_on_the_gpu_are_bit_identical_run_to_run():
    system, positions, box = _dhfr()

    def run():
        simulation = bencao.Simulation(bencao.System.from_openmm(system),
                                       bencao.LangevinMiddleIntegrator(300.0, 1.0, 0.004),
                                       positions, box, backend="cuda", seed=11)
        simulation.minimize(max_iterations=20)
        simulation.set_velocities_to_temperature(300.0)
        simulation.step(200)
        state = simulation.state
        return state.positions, state.velocities, state.potential_energy

    first, second = run(), run()
    assert np.array_equal(first[0], second[0])
    assert np.array_equal(first[1], second[1])
    assert first[2] == second[2]


def test_amber19_cmap_opc_octahedron_on_the_gpu_matches_reference():
    """ff19SB (CMAP) with four-site OPC water (virtual sites) in a truncated octahedron."""
    topology, positions, box, ff = solvated_trpcage(("amber19-all.xml", "amber19/opc.xml"),
                                                    shape="octahedron")
    system = ff.createSystem(topology, nonbondedMethod=app.PME, nonbondedCutoff=0.9 * NM)
    check_against_openmm(system, positions, box, backend="cuda")


def test_charmm36_on_the_gpu_matches_reference():
    """CMAP, Urey-Bradley, harmonic impropers, LJ tables (CustomNonbondedForce) and 1-4 pairs."""
    topology, positions, box, ff = solvated_trpcage(("charmm36.xml", "charmm36/water.xml"))
    system = ff.createSystem(topology, nonbondedMethod=app.PME, nonbondedCutoff=1.2 * NM,
                             switchDistance=1.0 * NM)
    check_against_openmm(system, positions, box, backend="cuda")
