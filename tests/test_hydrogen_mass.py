"""Hydrogen-mass repartitioning gives the masses OpenMM's createSystem(hydrogenMass=...) gives."""

import numpy as np
import pytest
from openmm import app, unit
from reference import data_path

import bencao
from bencao.prep import repartition_hydrogen_mass


def _masses(system):
    return np.array([system.getParticleMass(i).value_in_unit(unit.dalton)
                     for i in range(system.getNumParticles())])


@pytest.mark.parametrize("constraints", [None, app.HBonds])
def test_matches_openmm_hydrogen_mass_on_dhfr(constraints):
    pdb = app.PDBFile(data_path("dhfr_solvated.pdb"))
    ff = app.ForceField("amber99sb.xml", "tip3p.xml")
    options = {"nonbondedMethod": app.PME, "nonbondedCutoff": 0.9 * unit.nanometer, "constraints": constraints}
    plain = bencao.System.from_openmm(ff.createSystem(pdb.topology, **options))
    expected = _masses(ff.createSystem(pdb.topology, hydrogenMass=1.5 * unit.amu, **options))
    repartitioned = repartition_hydrogen_mass(plain, 1.5)
    # same arithmetic, possibly in another order for heavy atoms with several hydrogens
    assert np.allclose(repartitioned.masses, expected, rtol=1e-13, atol=0)
    assert repartitioned.masses.sum() == pytest.approx(plain.masses.sum(), rel=1e-13)
    assert np.array_equal(plain.masses, bencao.System.from_openmm(
        ff.createSystem(pdb.topology, **options)).masses)  # the input is not modified


def test_refuses_to_strip_a_heavy_atom():
    prmtop = app.AmberPrmtopFile(data_path("alanine-dipeptide-explicit.prmtop"))
    system = bencao.System.from_openmm(prmtop.createSystem(constraints=app.HBonds))
    with pytest.raises(ValueError, match="smaller hydrogen mass"):
        repartition_hydrogen_mass(system, 5.0)
