"""Real systems: energies and forces agree with OpenMM's Reference platform at least as well as
OpenMM's own CPU platform does (DESIGN.md correctness ladder, rung 4)."""

import numpy as np
import openmm as mm
from openmm import app, unit
from reference import check_against_openmm, data_path
from systems import alanine_dipeptide, dhfr, solvated_trpcage

NM = unit.nanometer


def test_dhfr_benchmark_system():
    system, positions, box = dhfr(nonbondedMethod=app.PME, nonbondedCutoff=0.9 * NM,
                                  constraints=app.HBonds, hydrogenMass=1.5 * unit.amu)
    check_against_openmm(system, positions, box)


def test_alanine_dipeptide_amber_prmtop_pme():
    system, positions, box = alanine_dipeptide(nonbondedMethod=app.PME, nonbondedCutoff=0.9 * NM)
    check_against_openmm(system, positions, box)


def test_bpti_amber14_vacuum():
    pdb = app.PDBFile(data_path("bpti.pdb"))
    ff = app.ForceField("amber14-all.xml")
    system = ff.createSystem(pdb.topology, nonbondedMethod=app.NoCutoff)
    check_against_openmm(system, np.array(pdb.positions.value_in_unit(NM)))


def test_amber14_tip3pfb_rhombic_dodecahedron():
    topology, positions, box, ff = solvated_trpcage(
        ("amber14-all.xml", "amber14/tip3pfb.xml"), shape="dodecahedron"
    )
    assert box[2, 0] != 0 and box[2, 1] != 0  # really triclinic
    system = ff.createSystem(topology, nonbondedMethod=app.PME, nonbondedCutoff=1.0 * NM,
                             constraints=app.HBonds)
    check_against_openmm(system, positions, box)


def test_amber19_cmap_opc_truncated_octahedron():
    """ff19SB (CMAP) with the four-site OPC water (virtual sites) in a truncated octahedron."""
    topology, positions, box, ff = solvated_trpcage(
        ("amber19-all.xml", "amber19/opc.xml"), shape="octahedron"
    )
    system = ff.createSystem(topology, nonbondedMethod=app.PME, nonbondedCutoff=0.9 * NM)
    assert any(isinstance(f, mm.CMAPTorsionForce) for f in system.getForces())
    assert any(system.isVirtualSite(i) for i in range(system.getNumParticles()))
    check_against_openmm(system, positions, box)


def test_tip4pew_virtual_sites_cutoff_periodic():
    topology, positions, box, ff = solvated_trpcage(("amber14-all.xml", "amber14/tip4pew.xml"))
    system = ff.createSystem(topology, nonbondedMethod=app.CutoffPeriodic, nonbondedCutoff=0.9 * NM)
    check_against_openmm(system, positions, box)


def test_charmm36_cmap_urey_bradley_impropers_lj_tables():
    """charmm36.xml: CMAP, Urey-Bradley, harmonic impropers, LJ tables + 1-4 LJ pair bonds."""
    topology, positions, box, ff = solvated_trpcage(("charmm36.xml", "charmm36/water.xml"))
    system = ff.createSystem(topology, nonbondedMethod=app.PME, nonbondedCutoff=1.2 * NM,
                             switchDistance=1.0 * NM)
    kinds = {type(f).__name__ for f in system.getForces()}
    assert {"CMAPTorsionForce", "CustomTorsionForce", "CustomNonbondedForce", "CustomBondForce"} <= kinds
    check_against_openmm(system, positions, box)


def _add_12_6_4(system, topology, ion_residue, c4_ion_oxygen):
    """Move LJ of a system into an AMBER 12-6-4 CustomNonbondedForce, as OpenMM's prmtop reader
    does for LENNARD_JONES_CCOEF, with a C4 term between one ion and water oxygens."""
    nb = next(f for f in system.getForces() if isinstance(f, mm.NonbondedForce))
    params = [nb.getParticleParameters(i) for i in range(nb.getNumParticles())]
    keys = [(p[1].value_in_unit(NM), p[2].value_in_unit(unit.kilojoule_per_mole)) for p in params]
    unique = sorted(set(keys))
    ion_atom = next(ion_residue.atoms()).index
    ion_type = len(unique)
    types = [unique.index(k) for k in keys]
    types[ion_atom] = ion_type
    unique.append(keys[ion_atom])
    n = len(unique)
    acoef, bcoef, ccoef = np.zeros((n, n)), np.zeros((n, n)), np.zeros((n, n))
    for i, (si, ei) in enumerate(unique):
        for j, (sj, ej) in enumerate(unique):
            sigma, eps = 0.5 * (si + sj), np.sqrt(ei * ej)
            acoef[i, j] = np.sqrt(4 * eps * sigma**12)
            bcoef[i, j] = 4 * eps * sigma**6
    oxygen_types = {types[a.index] for a in topology.atoms() if a.residue.name == "HOH" and a.element.symbol == "O"}
    for t in oxygen_types:
        ccoef[ion_type, t] = ccoef[t, ion_type] = c4_ion_oxygen
    force = mm.CustomNonbondedForce("(a/r6)^2-b/r6-c/r^4; r6=r^6;a=acoef(type1, type2);"
                                    "b=bcoef(type1, type2);c=ccoef(type1, type2);")
    for name, table in (("acoef", acoef), ("bcoef", bcoef), ("ccoef", ccoef)):
        force.addTabulatedFunction(name, mm.Discrete2DFunction(n, n, table.T.ravel()))
    force.addPerParticleParameter("type")
    for t in types:
        force.addParticle([float(t)])
    for k in range(nb.getNumExceptions()):
        i, j = nb.getExceptionParameters(k)[:2]
        force.addExclusion(i, j)
    force.setNonbondedMethod(mm.CustomNonbondedForce.CutoffPeriodic)
    force.setCutoffDistance(nb.getCutoffDistance())
    force.setUseLongRangeCorrection(True)
    for i, p in enumerate(params):
        nb.setParticleParameters(i, p[0], p[1], 0.0)
    system.addForce(force)


def test_magnesium_12_6_4():
    topology, positions, box, ff = solvated_trpcage(("amber14-all.xml", "amber14/tip3p.xml"))
    system = ff.createSystem(topology, nonbondedMethod=app.PME, nonbondedCutoff=0.9 * NM)
    sodium = next(r for r in topology.residues() if r.name == "NA")
    nb = next(f for f in system.getForces() if isinstance(f, mm.NonbondedForce))
    index = next(sodium.atoms()).index
    # Li/Merz 12-6-4 Mg2+ for TIP3P: Rmin/2 = 1.437 A, eps = 0.02 kcal/mol, C4 = 132 kcal/mol A^4
    sigma = 2 * 0.1437 / 2 ** (1 / 6)
    nb.setParticleParameters(index, 2.0, sigma, 0.02 * 4.184)
    _add_12_6_4(system, topology, sodium, 132 * 4.184 * 1e-4)
    check_against_openmm(system, positions, box)
