"""The files GROMACS reads for a benchmark: topology and coordinates (ParmEd) and the .mdp.

:func:`to_parmed` converts the OpenMM System of a benchmark, keeping what ParmEd's own
conversion would lose (repartitioned hydrogen masses, constrained bond lengths, rigid water);
:func:`mdp_settings` repeats the bencao/OpenMM benchmark settings in GROMACS's terms.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

#: Placeholder force constant for constrained bonds, kJ/mol/nm^2.  The System keeps no force
#: constant for a bond it constrains, but grompp wants one on every bond line; with
#: ``constraints = h-bonds`` only the length is used (as the constraint length).
CONSTRAINED_BOND_K = 2.0e5

#: Steps between energy evaluations, energy-file frames and log entries: far beyond a timed
#: run, so that energies are computed only at its first and last step, as in bencao's blocks.
ENERGY_INTERVAL = 10_000


# -- conversion -------------------------------------------------------------------------------


def _box_lengths_angles(box: np.ndarray) -> list[float]:
    """Box rows (nm) as ParmEd's [a, b, c (angstrom), alpha, beta, gamma (degrees)]."""
    a, b, c = (np.asarray(row, float) for row in box)

    def angle(u, v):
        return math.degrees(math.acos(float(u @ v) / (np.linalg.norm(u) * np.linalg.norm(v))))

    return [10 * np.linalg.norm(a), 10 * np.linalg.norm(b), 10 * np.linalg.norm(c),
            angle(b, c), angle(a, c), angle(a, b)]


def _constraints(system) -> dict:
    """The System's constraints as {(i, j) with i < j: length nm}."""
    from openmm import unit

    lengths = {}
    for index in range(system.getNumConstraints()):
        i, j, length = system.getConstraintParameters(index)
        lengths[(min(i, j), max(i, j))] = length.value_in_unit(unit.nanometer)
    return lengths


def _is_water(residue) -> bool:
    """An oxygen and two hydrogens: written as one SETTLE by ParmEd."""
    return sorted(atom.atomic_number for atom in residue.atoms) == [1, 1, 8]


def to_parmed(system, topology, positions: np.ndarray, box: np.ndarray):
    """A ParmEd Structure of the System, ready to be written as GROMACS files.

    Beyond ``parmed.openmm.load_topology``: the masses are the System's (ParmEd takes each
    element's standard mass, which would undo the hydrogen mass repartitioning); each
    constrained bond gets the constraint length (the System has no bond term for it); and each
    rigid water gets its H-H constraint as a bond, so that ParmEd writes ``[ settles ]`` with the
    System's O-H and H-H distances.

    Parameters
    ----------
    system : openmm.System
    topology : openmm.app.Topology
    positions : (N, 3) array
        Positions, nm.
    box : (3, 3) array
        Box vectors as rows, nm.

    Returns
    -------
    parmed.Structure

    Raises
    ------
    ValueError
        If a constraint is neither a bond to hydrogen nor within a water (GROMACS would not
        constrain it with ``constraints = h-bonds``), a bond to hydrogen is not constrained, or
        an atom's name disagrees with its element about being a hydrogen.
    """
    import parmed
    from openmm import unit

    struct = parmed.openmm.load_topology(topology, system, xyz=10.0 * np.asarray(positions))
    struct.box = _box_lengths_angles(box)
    for atom in struct.atoms:
        atom.mass = system.getParticleMass(atom.idx).value_in_unit(unit.dalton)
    constraints = _constraints(system)
    used = set()
    types = {}

    def bond_type(length_nm: float):
        if length_nm not in types:
            # ParmEd's units: kcal/mol/angstrom^2 with the 1/2 folded in, and angstrom
            types[length_nm] = parmed.BondType(CONSTRAINED_BOND_K / 2 / 418.4, 10 * length_nm)
            struct.bond_types.append(types[length_nm])
        return types[length_nm]

    for bond in struct.bonds:
        key = tuple(sorted((bond.atom1.idx, bond.atom2.idx)))
        hydrogen = 1 in (bond.atom1.atomic_number, bond.atom2.atomic_number)
        # grompp finds hydrogens by name (a first letter H), not by element
        if hydrogen != any(atom.name.upper().startswith("H") for atom in (bond.atom1, bond.atom2)):
            raise ValueError(f"bond {key} ({bond.atom1.name}-{bond.atom2.name}): GROMACS tells "
                             "hydrogens by an atom name starting with H, which these names defy")
        if hydrogen != (key in constraints):
            raise ValueError(f"bond {key} ({bond.atom1.name}-{bond.atom2.name}) is "
                             f"{'' if key in constraints else 'not '}constrained: GROMACS's "
                             "constraints = h-bonds would treat it otherwise")
        if key in constraints:
            used.add(key)
            if bond.type is None:
                bond.type = bond_type(constraints[key])
    for residue in struct.residues:
        if not _is_water(residue):
            continue
        first, second = (atom for atom in residue.atoms if atom.atomic_number == 1)
        key = (min(first.idx, second.idx), max(first.idx, second.idx))
        if key in constraints and second not in first.bond_partners:
            struct.bonds.append(parmed.Bond(first, second, type=bond_type(constraints[key])))
            used.add(key)
    if set(constraints) - used:
        key = min(set(constraints) - used)
        raise ValueError(f"{len(set(constraints) - used)} constraints (the first {key}) are "
                         "neither bonds to hydrogen nor within a water")
    struct.bond_types.claim()
    return struct


def write_gromacs_files(system, topology, positions: np.ndarray, box: np.ndarray,
                        directory, name: str = "system") -> tuple[Path, Path]:
    """Write ``name.top`` and ``name.gro`` (3 decimals of nm) of a System into ``directory``.

    Parameters
    ----------
    system, topology, positions, box
        As in :func:`to_parmed`.
    directory : str or Path
    name : str
        Base name of the files.

    Returns
    -------
    top, gro : Path
    """
    directory = Path(directory)
    struct = to_parmed(system, topology, positions, box)
    top, gro = directory / f"{name}.top", directory / f"{name}.gro"
    struct.save(str(top), overwrite=True)
    struct.save(str(gro), overwrite=True)
    return top, gro


# -- settings ---------------------------------------------------------------------------------


def openmm_pme(system) -> dict:
    """OpenMM's PME parameters for ``system``: ``alpha_per_nm``, ``grid``, ``cutoff_nm``,
    ``dispersion_correction``.

    Read from a Reference-platform Context, which chooses them as the CPU platform does (from
    the NonbondedForce's error tolerance and the System's default box).
    """
    import openmm as mm
    from openmm import unit

    (force,) = [f for f in system.getForces() if isinstance(f, mm.NonbondedForce)]
    context = mm.Context(system, mm.VerletIntegrator(0.001),
                         mm.Platform.getPlatformByName("Reference"))
    alpha, nx, ny, nz = force.getPMEParametersInContext(context)
    del context
    return {"alpha_per_nm": float(alpha), "grid": [int(nx), int(ny), int(nz)],
            "cutoff_nm": force.getCutoffDistance().value_in_unit(unit.nanometer),
            "dispersion_correction": bool(force.getUseDispersionCorrection())}


def mdp_settings(pme: dict, timestep: float = 0.004, temperature: float = 300.0,
                 friction: float = 1.0, seed: int = 1, continuation: bool = False) -> dict:
    """The .mdp options that repeat the bencao/OpenMM benchmark in GROMACS.

    PME is matched to OpenMM's exactly rather than through GROMACS's own choice: the grid is
    given per dimension (``fourier-nx/ny/nz`` override ``fourierspacing``), the spline order is
    OpenMM's 5, and ``ewald-rtol`` is erfc(alpha * cutoff) for OpenMM's alpha, the equation
    GROMACS solves for its splitting parameter, so both use the same alpha.  Both potentials are
    plain cutoffs (no shift, as in OpenMM), which changes energies by a constant only.

    Parameters
    ----------
    pme : dict
        :func:`openmm_pme` of the System.
    timestep : float
        Time step, ps.
    temperature : float
        Thermostat and initial-velocity temperature, K.
    friction : float
        Langevin friction, 1/ps (GROMACS's ``tau-t`` is its inverse).
    seed : int
        Seed of the initial velocities and of the stochastic dynamics.
    continuation : bool
        Take the positions as they are (no constraining of the start), for comparing energies
        at the first step.

    Returns
    -------
    dict
        Option name to value, in file order.
    """
    cutoff = pme["cutoff_nm"]
    nx, ny, nz = pme["grid"]
    return {
        # nsteps is replaced by mdrun -nsteps; 0 would make grompp expect a single-point run
        "integrator": "sd", "dt": timestep, "nsteps": ENERGY_INTERVAL,
        "tc-grps": "System", "tau-t": 1.0 / friction, "ref-t": temperature, "ld-seed": seed,
        "gen-vel": "no" if continuation else "yes", "gen-temp": temperature, "gen-seed": seed,
        "continuation": "yes" if continuation else "no",
        "constraints": "h-bonds", "constraint-algorithm": "lincs",
        # GROMACS sets rlist and nstlist itself from verlet-buffer-tolerance (left at its default
        # 0.005 kJ/mol/ps per atom); rlist = cutoff only avoids grompp's note that it does so
        "cutoff-scheme": "Verlet", "pbc": "xyz", "rlist": cutoff,
        "coulombtype": "PME", "coulomb-modifier": "None", "rcoulomb": cutoff,
        "vdwtype": "Cut-off", "vdw-modifier": "None", "rvdw": cutoff,
        "DispCorr": "EnerPres" if pme["dispersion_correction"] else "no",
        "pme-order": 5, "fourier-nx": nx, "fourier-ny": ny, "fourier-nz": nz,
        "ewald-rtol": f"{math.erfc(pme['alpha_per_nm'] * cutoff):.8e}",
        # centre-of-mass motion removal needs energies computed: as rarely as they are
        "comm-mode": "Linear", "nstcomm": ENERGY_INTERVAL,
        "nstcalcenergy": ENERGY_INTERVAL, "nstenergy": ENERGY_INTERVAL, "nstlog": ENERGY_INTERVAL,
        "nstxout": 0, "nstvout": 0, "nstfout": 0, "nstxout-compressed": 0,
    }


def write_mdp(path, settings: dict) -> Path:
    """Write ``settings`` (:func:`mdp_settings`) as an .mdp file; returns its path."""
    path = Path(path)
    path.write_text("".join(f"{key:<22} = {value}\n" for key, value in settings.items()))
    return path


def read_mdp(path) -> dict:
    """Option name to value (str) of an .mdp file, comments dropped."""
    options = {}
    for line in Path(path).read_text().splitlines():
        line = line.split(";", 1)[0].strip()
        if "=" in line:
            key, value = (part.strip() for part in line.split("=", 1))
            options[key.replace("_", "-")] = value
    return options
