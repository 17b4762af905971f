"""Every system of ``openmmtools.testsystems`` (``pytest -m validation``): bencao imports it
and matches OpenMM's Reference platform at least as well as OpenMM's CPU platform does, or it
is marked with the reason it is not run (AMOEBA) or not yet run (a force not implemented)."""

from __future__ import annotations

import pytest
from openmmtools_systems import build, marked, system_names
from reference import check_against_openmm

pytest.importorskip("openmmtools")
pytestmark = pytest.mark.validation


@pytest.mark.parametrize("name", [marked(name) for name in system_names()])
def test_system_matches_reference_as_well_as_openmm_cpu(name):
    system, positions, box = build(name)
    result = check_against_openmm(system, positions, box)
    print(f"\nVALIDATION openmmtools {name}: {result}")
