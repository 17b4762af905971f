"""openmmtools' small test systems with Custom* forces, alchemical offsets and interaction
groups: energies and forces vs OpenMM's Reference at least as good as OpenMM's CPU platform.
Every system is checked in ``tests/validation/test_openmmtools_validation.py``."""

from __future__ import annotations

import pytest
from openmmtools_systems import build, system_names
from reference import check_against_openmm

pytest.importorskip("openmmtools")

#: Small (under 1,600 particles, seconds each) and between them every Custom* force bencao
#: imports: CustomBond/Angle/Torsion in the WCA chains, CustomExternalForce, CustomNonbonded
#: with interaction groups (alchemical), NonbondedForce parameter offsets (alchemical water).
QUICK = ["AlchemicalAlanineDipeptide", "AlchemicalWaterBox", "CustomExternalForcesTestSystem",
         "DoubleWellChain_WCAFluid", "DoubleWellDimer_WCAFluid", "CustomLennardJonesFluidMixture"]


@pytest.mark.parametrize("name", QUICK)
def test_quick_systems_match_reference_as_well_as_openmm_cpu(name):
    assert name in system_names()
    system, positions, box = build(name)
    check_against_openmm(system, positions, box)
