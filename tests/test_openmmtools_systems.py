"""openmmtools' small test systems with Custom* forces, alchemical offsets and interaction
groups: energies and forces vs OpenMM's Reference at least as good as OpenMM's CPU platform.
Every system is checked in ``tests/validation/test_openmmtools_validation.py``."""

from __future__ import annotations

import pytest
from openmmtools_systems import build, system_names
from reference import check_against_openmm

pytest.importorskip("openmmtools")

#: Small (seconds each) and between them every Custom* force bencao imports: CustomBondForce
#: in the WCA dimers and chains, CustomExternalForce, CustomNonbondedForce with interaction
#: groups (alchemical) and with a long-range correction (the mixture); and WaterBox, the
#: NonbondedForce PME kernel on water, where a float32 Ewald force written as 1/r^3 minus the
#: erf part fails parity (1.4x OpenMM CPU's median error).  Parameter offsets are checked in
#: tests/backends/cpu/test_parameter_offsets.py.
QUICK = ["AlchemicalAlanineDipeptide", "CustomExternalForcesTestSystem",
         "DoubleWellChain_WCAFluid", "DoubleWellDimer_WCAFluid", "CustomLennardJonesFluidMixture",
         "WaterBox"]


@pytest.mark.parametrize("name", QUICK)
def test_quick_systems_match_reference_as_well_as_openmm_cpu(name):
    assert name in system_names()
    system, positions, box = build(name)
    check_against_openmm(system, positions, box)
