"""openmmtools' test systems (``openmmtools.testsystems``) as the acceptance of the Custom*
forces: which exist, which bencao cannot run yet and why, and how to evaluate one."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

#: Systems bencao does not aim to run: AMOEBA's multipoles are another force field.
EXCLUDED = {"AMOEBAIonBox": "AMOEBA force field (AmoebaMultipoleForce ...)",
            "AMOEBAProteinBox": "AMOEBA force field (AmoebaMultipoleForce ...)"}

#: Systems that need a force bencao has not implemented yet: name -> the force (none today).
NOT_YET: dict[str, str] = {}


#: Systems whose total force misses parity with OpenMM's CPU platform (OpenMM 8.6, measured
#: 2026-12), each of whose forces alone is at parity (checked by the validation suite):
#: CustomGBForceSystem, 99th percentile 2.1e-5 vs 6.4e-6.  Its GB screening cancels (1 - 1/78)
#: of the Coulomb force at long range, and OpenMM CPU computes both in float32 from the same
#: distances, so their rounding errors cancel too; bencao's GB force is exact in float64
#: (median 1.8e-12 vs OpenMM CPU's 3.3e-7) and its NonbondedForce alone below OpenMM CPU's
#: (median 5.7e-7 vs 6.3e-7, p99 3.1e-6 vs 3.6e-6), but the float32 Coulomb error is left
#: uncancelled against a total 78 times smaller.  Every water box, the LJ fluids and grid and
#: the host-guest system are at or below OpenMM CPU's error since the Ewald force is computed
#: as erfc-weighted product rather than 1/r^3 minus the erf part.  LennardJonesPair, one pair,
#: is compared over many configurations (``test_openmmtools_validation.FEW_PARTICLES``).
KERNEL_GAP = ("CustomGBForceSystem",)


def system_names() -> list[str]:
    """Every TestSystem class of openmmtools.testsystems, sorted (empty without openmmtools)."""
    try:
        from openmmtools import testsystems
    except ImportError:
        return []
    return sorted(name for name, cls in inspect.getmembers(testsystems, inspect.isclass)
                  if issubclass(cls, testsystems.TestSystem) and cls is not testsystems.TestSystem)


def marked(name: str):
    """``name`` as a pytest parameter, marked for what bencao does not run (yet)."""
    if name in EXCLUDED:
        return pytest.param(name, marks=pytest.mark.skip(reason=EXCLUDED[name]))
    if name in KERNEL_GAP:
        return pytest.param(name, marks=pytest.mark.xfail(
            strict=False, reason="NonbondedForce direct-space float32 error above OpenMM CPU's "
                                 "(openmmtools_systems.KERNEL_GAP)"))
    if name in NOT_YET:
        # strict: the day the force is implemented, the mark must go.
        return pytest.param(name, marks=pytest.mark.xfail(
            strict=True, reason=f"{NOT_YET[name]} is not implemented yet"))
    return name


def build(name: str):
    """(openmm.System, positions nm, box nm or None) of test system ``name``, the positions
    moved by up to 0.005 nm (fixed seed) so that none sits at a minimum where forces vanish."""
    from openmm import unit
    from openmmtools import testsystems

    test_system = getattr(testsystems, name)()
    system = test_system.system
    positions = np.asarray(test_system.positions.value_in_unit(unit.nanometer), np.float64)
    positions = positions + np.random.default_rng(17).uniform(-0.005, 0.005, positions.shape)
    box = None
    if system.usesPeriodicBoundaryConditions():
        box = np.array([[v.value_in_unit(unit.nanometer) for v in row]
                        for row in system.getDefaultPeriodicBoxVectors()])
    return system, positions, box
