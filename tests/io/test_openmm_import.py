"""Import of openmm.System: what is supported converts faithfully, the rest fails clearly."""

import numpy as np
import openmm as mm
import pytest
from openmm import app, unit
from systems import alanine_dipeptide

import bencao
from bencao.forces import (
    CustomBonds,
    CustomPairs,
    CustomTorsions,
    HarmonicImpropers,
    LJPairs,
    Nonbonded,
    TabulatedPairs,
)
from bencao.io.openmm_import import UnsupportedForceError


def _system_with(force, n=4):
    system = mm.System()
    for _ in range(n):
        system.addParticle(12.0)
    system.addForce(force)
    return system


@pytest.mark.parametrize(
    "force, name",
    [
        (mm.CustomHbondForce("distance(a1, d1)"), "CustomHbondForce"),
        (mm.RBTorsionForce(), "RBTorsionForce"),
        (mm.AndersenThermostat(300, 1.0), "AndersenThermostat"),
    ],
)
def test_unsupported_force_names_the_force(force, name):
    with pytest.raises(UnsupportedForceError, match=name) as info:
        bencao.System.from_openmm(_system_with(force))
    assert "supports" in str(info.value)  # and says what is supported


def test_other_custom_expressions_become_compiled_terms():
    """Expressions that are not an app-layer form run as laws compiled from the expression
    (tests/expressions and tests/backends/cpu/test_custom_*.py check their values)."""
    torsion = mm.CustomTorsionForce("k*cos(theta-theta0)")
    torsion.addPerTorsionParameter("k")
    torsion.addPerTorsionParameter("theta0")
    bond = mm.CustomBondForce("k*r^3")
    bond.addPerBondParameter("k")
    pair = mm.CustomNonbondedForce("eps1*eps2*r")
    pair.addPerParticleParameter("eps")
    for _ in range(4):
        pair.addParticle([1.0])
    for force, record in ((torsion, CustomTorsions), (bond, CustomBonds), (pair, CustomPairs)):
        assert isinstance(bencao.System.from_openmm(_system_with(force)).terms[0], record)


def _nonbonded(method):
    nb = mm.NonbondedForce()
    for _ in range(4):
        nb.addParticle(0.0, 0.3, 0.5)
    nb.setNonbondedMethod(method)
    return nb


def test_ljpme_is_refused_and_offsets_are_read():
    with pytest.raises(UnsupportedForceError, match="LJPME"):
        bencao.System.from_openmm(_system_with(_nonbonded(mm.NonbondedForce.LJPME)))
    nb = _nonbonded(mm.NonbondedForce.PME)
    nb.addGlobalParameter("lambda", 0.25)
    nb.addParticleParameterOffset("lambda", 0, 1.0, 0.0, 0.0)
    (term,) = bencao.System.from_openmm(_system_with(nb)).terms
    # tests/backends/cpu/test_parameter_offsets.py checks what the offsets do
    assert term.offset_names == ("lambda",) and term.offset_values == (0.25,)
    assert term.particle_offsets.tolist() == [[0, 0]]
    assert term.particle_offset_scales.tolist() == [[1.0, 0.0, 0.0]]


def test_recognised_custom_forms():
    impropers = [
        ("k*min(dtheta, 2*pi-dtheta)^2; dtheta = abs(theta-theta0); pi = 3.141593;", 1.0, True),
        ("k*(theta-theta0)^2", 1.0, False),
        ("0.5*k*(thetap-theta0)^2; thetap = step(-(theta-theta0+pi))*2*pi+theta+"
         "step(theta-theta0-pi)*(-2*pi); pi = 3.14159265358979", 0.5, True),
    ]
    for expression, prefactor, wrap in impropers:
        force = mm.CustomTorsionForce(expression)
        force.addPerTorsionParameter("k")
        force.addPerTorsionParameter("theta0")
        force.addTorsion(0, 1, 2, 3, [10.0, 0.2])
        term = bencao.System.from_openmm(_system_with(force)).terms[0]
        assert isinstance(term, HarmonicImpropers) and term.wrap == wrap
        assert term.k[0] == prefactor * 10.0 and term.theta0[0] == 0.2
    lj14 = mm.CustomBondForce("2*epsilon*((sigma/r)^12-(sigma/r)^6)")
    lj14.addPerBondParameter("sigma")
    lj14.addPerBondParameter("epsilon")
    lj14.addBond(0, 3, [0.3, 0.5])
    term = bencao.System.from_openmm(_system_with(lj14)).terms[0]
    assert isinstance(term, LJPairs)
    assert term.c12[0] == pytest.approx(2 * 0.5 * 0.3**12) and term.c6[0] == pytest.approx(2 * 0.5 * 0.3**6)


def test_amber_import_keeps_parameters_and_box():
    system, positions, box = alanine_dipeptide(nonbondedMethod=app.PME, nonbondedCutoff=0.9 * unit.nanometer,
                                               constraints=app.HBonds)
    ours = bencao.System.from_openmm(system)
    assert ours.n_particles == system.getNumParticles() == len(positions)
    np.testing.assert_allclose(ours.box, box)
    assert len(ours.constraint_atoms) == system.getNumConstraints()
    nb = next(t for t in ours.terms if isinstance(t, Nonbonded))
    assert nb.method == "PME" and nb.cutoff == pytest.approx(0.9)
    assert abs(nb.charges.sum()) < 1e-6
    assert ours.cm_motion_removal == 1


def test_tabulated_table_orientation_is_type1_type2():
    """Discrete2DFunction(x, y) = values[x + nx * y]: an asymmetric table must not be transposed."""
    pair = mm.CustomNonbondedForce("acoef(type1, type2)/r^12 - bcoef(type1, type2)/r^6;")
    pair.addPerParticleParameter("type")
    values = np.arange(6, dtype=float)  # nx = 2, ny = 3
    pair.addTabulatedFunction("acoef", mm.Discrete2DFunction(2, 3, values))
    pair.addTabulatedFunction("bcoef", mm.Discrete2DFunction(2, 3, values))
    for t in (0, 1, 1, 0):
        pair.addParticle([float(t)])
    term = bencao.System.from_openmm(_system_with(pair)).terms[0]
    assert isinstance(term, TabulatedPairs)
    assert term.c12[1, 0] == 1.0 and term.c12[0, 1] == 2.0
