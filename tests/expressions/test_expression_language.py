"""OpenMM's expression language as bencao reads it, checked against OpenMM itself.

Every expression is evaluated by OpenMM's Reference platform (Lepton) and by bencao's CPU
backend (the expression parsed, differentiated by SymPy and compiled) as a CustomBondForce over
four bonds of different lengths; energies and forces must agree.  A wrong precedence, a wrong
function or a wrong derivative shows as a difference.  Malformed expressions must fail on import
with one line naming the force and the offending text.
"""

from __future__ import annotations

import numpy as np
import openmm as mm
import pytest

import bencao
from bencao.backends.common.fixed_point import forces_from_fixed
from bencao.backends.cpu.backend import CpuBackend
from bencao.io.openmm_import import UnsupportedForceError

#: Bond lengths (nm) the expressions are evaluated at: short, near 1, past 1 and past 2, in
#: four directions, none at a kink of step/min/max/abs/floor/ceil.
LENGTHS = (0.35, 0.8, 1.3, 2.1)

#: Each exercises part of the grammar or a function; together they cover every function of
#: Lepton's table (bencao.expressions.FUNCTIONS).
EXPRESSIONS = [
    "-r^2 + 2^-r + r^2^0.5",                       # unary minus below ^, ^ groups to the right
    "2*-r - - r + (r - -r)*3",                     # unary minus after operators
    "a*b; a=b+r; b=sqrt(r)",                        # definitions may use those after them
    "4*eps*((sig/r)^12-(sig/r)^6); eps=0.5; sig=0.3",
    "exp(-r) + log(r) + sqrt(r)",
    "sin(r) + cos(r) + tan(0.5*r)",
    "sec(0.3*r) + csc(r+0.5) + cot(r+0.5)",
    "asin(0.3*r/(1+r)) + acos(0.3*r/(1+r)) + atan(r)",
    "atan2(r, 1-r) + atan2(-1, r)",
    "sinh(r) + cosh(0.5*r) + tanh(r)",
    "erf(r) + erfc(2*r)",
    "step(r-1)*r^3 + delta(floor(r)-1)*r",
    "square(r) + cube(r) + recip(r)",
    "min(r, 1)*max(r, 0.5) + abs(r-1)",
    "floor(3*r) + ceil(2*r)*r",
    "select(step(r-1), r^2, 3*r)",
    "1e-1*r + .5*r^-2 + 3.5E+0 + 2.5e-1*r^3",
    "1.25*(r-0.3)^4 + r^1.5 + r^-1.5",
]


def _bond_system(expressions, parameters=None):
    """An OpenMM System with one CustomBondForce per expression (force group = index) over the
    four bonds of :data:`LENGTHS`, and the positions."""
    rng = np.random.default_rng(7)
    system = mm.System()
    positions = []
    for length in LENGTHS:
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction)
        start = rng.uniform(-1, 1, 3)
        positions += [start, start + length * direction]
        system.addParticle(12.0)
        system.addParticle(12.0)
    for group, expression in enumerate(expressions):
        force = mm.CustomBondForce(expression)
        for name, _ in (parameters or {}).get("per_bond", []):
            force.addPerBondParameter(name)
        for name, value in (parameters or {}).get("globals", []):
            force.addGlobalParameter(name, value)
        values = [v for _, v in (parameters or {}).get("per_bond", [])]
        for b in range(len(LENGTHS)):
            force.addBond(2 * b, 2 * b + 1, values)
        force.setForceGroup(group)
        system.addForce(force)
    return system, np.array(positions)


def _reference_by_group(system, positions):
    context = mm.Context(system, mm.VerletIntegrator(1.0), mm.Platform.getPlatformByName("Reference"))
    context.setPositions(positions)
    results = []
    for group in range(system.getNumForces()):
        state = context.getState(getEnergy=True, getForces=True, groups={group})
        results.append((state.getPotentialEnergy()._value, state.getForces(asNumpy=True)._value))
    return results


def _assert_terms_match(system, positions):
    reference = _reference_by_group(system, positions)
    backend = CpuBackend(bencao.System.from_openmm(system))
    for term, (energy, forces) in zip(backend.terms, reference):
        fixed, ours = backend.term_forces(term, positions, None)
        # Same formula in float64, its operations reordered by SymPy's canonical form: a few
        # ulp of the largest intermediate.
        assert ours == pytest.approx(energy, rel=1e-11, abs=1e-12)
        # Fixed-point forces carry 2^-32 kJ/mol/nm per addition; the derivative is analytic
        # on both sides (Lepton's and SymPy's), so the rest is rounding.
        np.testing.assert_allclose(forces_from_fixed(fixed), forces, rtol=1e-10, atol=1e-8)


@pytest.mark.parametrize("start", range(0, len(EXPRESSIONS), 6))
def test_expressions_and_their_derivatives_match_openmm(start):
    system, positions = _bond_system(EXPRESSIONS[start:start + 6])
    _assert_terms_match(system, positions)


def test_per_item_and_global_parameters_match_openmm():
    parameters = {"per_bond": [("k", 310.0), ("r0", 0.9)], "globals": [("lam", 0.35)]}
    system, positions = _bond_system(["lam*k*(r-r0)^2 + (1-lam)*exp(-k*r/1000)"], parameters)
    _assert_terms_match(system, positions)


@pytest.mark.parametrize("expression, message", [
    ("r+", "the expression ends too early in 'r+'"),
    ("(r*2", "missing ')' in '(r*2'"),
    ("r $ 2", "unexpected character '$'"),
    ("foo(r)", "unknown function 'foo' in 'foo(r)'"),
    ("min(r)", "min() takes 2 arguments, got 1"),
    ("k*r", "'k' in 'k*r' is neither a parameter nor a variable"),
    ("b; a=r; b=a*2", "'a' in 'b; a=r; b=a*2' is neither a parameter nor a variable"),
    ("r; 2*r", "'2*r' is not a definition"),
])
def test_malformed_expressions_fail_on_import_naming_force_and_text(expression, message):
    system, _ = _bond_system([expression])
    with pytest.raises(UnsupportedForceError) as error:
        bencao.System.from_openmm(system)
    text = str(error.value)
    assert text.startswith("CustomBondForce: ")
    assert message in text
    assert "\n" not in text


def test_renaming_variables_keeps_functions_numbers_and_definitions_apart():
    from bencao.expressions import rename_variables

    statements = rename_variables("sqrt(eps)*e + max(e, 1e-3); e = 1+0.3*lam;", "test",
                                  lambda name: {"lam": "lam"}.get(name, f"{name}_1"))
    assert statements == ["sqrt(eps_1)*e_1 + max(e_1, 1e-3)", "e_1 = 1+0.3*lam"]
