"""Import an ``openmm.System`` into a bencao :class:`~bencao.system.System`.

Forces are recognised by class and, for OpenMM's Custom* forces, by the exact energy expressions
OpenMM's app layer writes (CHARMM impropers, NBFIX tables, AMBER 12-6-4 ions, CHARMM-XML 1-4 LJ,
GROMACS pairs).  Anything else raises :class:`UnsupportedForceError` naming the force: a silent
wrong answer is never an option.
"""

from __future__ import annotations

import re

import numpy as np

from bencao.forces import (
    CMAPTorsions,
    HarmonicAngles,
    HarmonicBonds,
    HarmonicImpropers,
    LJPairs,
    Nonbonded,
    PeriodicTorsions,
    TabulatedPairs,
)
from bencao.system import System

#: OpenMM force class name -> (importer, what of that class bencao supports); each importer
#: registers itself with :func:`imports`, in the order listed to users.
IMPORTERS: dict[str, tuple] = {}


def imports(openmm_class: str, scope: str = ""):
    """Decorator: ``function(force, n_particles)`` turns an OpenMM ``openmm_class`` force into
    a term record of ``bencao.forces`` (``scope`` says which forms of it, for error messages).
    A function with ``takes_masses = True`` is called ``function(force, n_particles, masses)``
    (amu)."""

    def register(function):
        IMPORTERS[openmm_class] = (function, scope)
        return function

    return register


def supported_forces() -> list[str]:
    """The OpenMM forces bencao runs, as listed to users."""
    listed = [f"{name} ({scope})" if scope else name for name, (_, scope) in IMPORTERS.items()]
    return [*listed, "CMMotionRemover"]


class UnsupportedForceError(ValueError):
    """An OpenMM force (or a setting of one) that bencao cannot run."""

    def __init__(self, force_name: str, detail: str):
        super().__init__(
            f"{force_name}: {detail}. bencao supports: {', '.join(supported_forces())}."
        )


def _value(quantity) -> float:
    """Strip OpenMM units, converting to the MD unit system (nm, ps, amu, kJ/mol, rad, e)."""
    if hasattr(quantity, "value_in_unit_system"):
        from openmm import unit

        return quantity.value_in_unit_system(unit.md_unit_system)
    return quantity


def _normalize(expression: str) -> str:
    """Remove whitespace and empty statements so expressions compare as strings."""
    text = re.sub(r"\s+", "", expression)
    return ";".join(part for part in text.split(";") if part)


def _reject_globals(force, kind: str) -> None:
    if force.getNumGlobalParameters() > 0:
        names = [force.getGlobalParameterName(i) for i in range(force.getNumGlobalParameters())]
        raise UnsupportedForceError(kind, f"global parameters {names} are not supported")


def _check_not_periodic(force, kind: str) -> None:
    if force.usesPeriodicBoundaryConditions():
        raise UnsupportedForceError(
            kind, "periodic boundary conditions on a bonded force are not supported"
        )


# ---------------------------------------------------------------------------- bonded terms


@imports("HarmonicBondForce")
def _harmonic_bonds(force, n_particles: int) -> HarmonicBonds:
    _check_not_periodic(force, "HarmonicBondForce")
    rows = [force.getBondParameters(i) for i in range(force.getNumBonds())]
    return HarmonicBonds(
        atoms=np.array([r[:2] for r in rows], np.int64).reshape(-1, 2),
        length=np.array([_value(r[2]) for r in rows], np.float64),
        k=np.array([_value(r[3]) for r in rows], np.float64),
    )


@imports("HarmonicAngleForce")
def _harmonic_angles(force, n_particles: int) -> HarmonicAngles:
    _check_not_periodic(force, "HarmonicAngleForce")
    rows = [force.getAngleParameters(i) for i in range(force.getNumAngles())]
    return HarmonicAngles(
        atoms=np.array([r[:3] for r in rows], np.int64).reshape(-1, 3),
        angle=np.array([_value(r[3]) for r in rows], np.float64),
        k=np.array([_value(r[4]) for r in rows], np.float64),
    )


@imports("PeriodicTorsionForce")
def _periodic_torsions(force, n_particles: int) -> PeriodicTorsions:
    _check_not_periodic(force, "PeriodicTorsionForce")
    rows = [force.getTorsionParameters(i) for i in range(force.getNumTorsions())]
    return PeriodicTorsions(
        atoms=np.array([r[:4] for r in rows], np.int64).reshape(-1, 4),
        periodicity=np.array([r[4] for r in rows], np.int64),
        phase=np.array([_value(r[5]) for r in rows], np.float64),
        k=np.array([_value(r[6]) for r in rows], np.float64),
    )


@imports("CMAPTorsionForce")
def _cmap_torsions(force, n_particles: int) -> CMAPTorsions:
    _check_not_periodic(force, "CMAPTorsionForce")
    sizes, offsets, energies = [], [], []
    offset = 0
    for i in range(force.getNumMaps()):
        size, energy = force.getMapParameters(i)
        values = np.asarray(_value(energy), np.float64).ravel()
        sizes.append(size)
        offsets.append(offset)
        energies.append(values)
        offset += values.size
    rows = [force.getTorsionParameters(i) for i in range(force.getNumTorsions())]
    return CMAPTorsions(
        map_sizes=np.array(sizes, np.int64),
        map_offsets=np.array(offsets, np.int64),
        map_energies=np.concatenate(energies) if energies else np.zeros(0),
        torsion_map=np.array([r[0] for r in rows], np.int64),
        atoms=np.array([r[1:9] for r in rows], np.int64).reshape(-1, 8),
    )


# Harmonic improper expressions: normalized text -> (prefactor, wrap).  The pi constant varies.
_PI = r"pi=[0-9.eE+-]+"
_IMPROPER_FORMS = [
    (re.compile(r"k\*min\(dtheta,2\*pi-dtheta\)\^2;dtheta=abs\(theta-theta0\);" + _PI), 1.0, True),
    (re.compile(r"k\*\(theta-theta0\)\^2"), 1.0, False),
    (
        re.compile(
            r"0\.5\*k\*\(thetap-theta0\)\^2;thetap=step\(-\(theta-theta0\+pi\)\)\*2\*pi\+theta"
            r"\+step\(theta-theta0-pi\)\*\(-2\*pi\);" + _PI
        ),
        0.5,
        True,
    ),
]


def harmonic_impropers(force, n_particles: int) -> HarmonicImpropers:
    """The fast path of a CustomTorsionForce: one of the harmonic improper forms OpenMM's app
    layer writes (UnsupportedForceError otherwise)."""
    kind = "CustomTorsionForce"
    _check_not_periodic(force, kind)
    _reject_globals(force, kind)
    expression = _normalize(force.getEnergyFunction())
    for pattern, prefactor, wrap in _IMPROPER_FORMS:
        if pattern.fullmatch(expression):
            break
    else:
        raise UnsupportedForceError(
            kind, f"energy expression {force.getEnergyFunction()!r} is not a harmonic improper form"
        )
    names = [force.getPerTorsionParameterName(i) for i in range(force.getNumPerTorsionParameters())]
    if sorted(names) != ["k", "theta0"]:
        raise UnsupportedForceError(kind, f"per-torsion parameters {names}, expected k and theta0")
    ik, it = names.index("k"), names.index("theta0")
    rows = [force.getTorsionParameters(i) for i in range(force.getNumTorsions())]
    return HarmonicImpropers(
        atoms=np.array([r[:4] for r in rows], np.int64).reshape(-1, 4),
        theta0=np.array([r[4][it] for r in rows], np.float64),
        k=prefactor * np.array([r[4][ik] for r in rows], np.float64),
        wrap=wrap,
    )


_LJ14_SCALED = re.compile(r"([0-9.eE+-]+)\*epsilon\*\(\(sigma/r\)\^12-\(sigma/r\)\^6\)")
_PAIR_AC = "-C/r^6+A/r^12"


def lj_pairs(force, n_particles: int) -> LJPairs:
    """The fast path of a CustomBondForce: a 1-4 Lennard-Jones pair form of the app layer
    (UnsupportedForceError otherwise)."""
    kind = "CustomBondForce"
    _check_not_periodic(force, kind)
    _reject_globals(force, kind)
    expression = _normalize(force.getEnergyFunction())
    names = [force.getPerBondParameterName(i) for i in range(force.getNumPerBondParameters())]
    rows = [force.getBondParameters(i) for i in range(force.getNumBonds())]
    atoms = np.array([r[:2] for r in rows], np.int64).reshape(-1, 2)
    params = np.array([r[2] for r in rows], np.float64).reshape(len(rows), len(names))
    match = _LJ14_SCALED.fullmatch(expression)
    if match and sorted(names) == ["epsilon", "sigma"]:
        prefactor = float(match.group(1))
        sigma6 = params[:, names.index("sigma")] ** 6
        eps = params[:, names.index("epsilon")]
        return LJPairs(atoms=atoms, c12=prefactor * eps * sigma6**2, c6=prefactor * eps * sigma6)
    if expression == _PAIR_AC and sorted(names) == ["A", "C"]:
        return LJPairs(atoms=atoms, c12=params[:, names.index("A")], c6=params[:, names.index("C")])
    raise UnsupportedForceError(
        kind, f"energy expression {force.getEnergyFunction()!r} is not a Lennard-Jones pair form"
    )


# ---------------------------------------------------------------------------- non-bonded terms

_NONBONDED_METHODS = {0: "NoCutoff", 1: "CutoffNonPeriodic", 2: "CutoffPeriodic", 3: "Ewald", 4: "PME"}


@imports("NonbondedForce")
def _nonbonded(force, n_particles: int) -> Nonbonded:
    kind = "NonbondedForce"
    method = _NONBONDED_METHODS.get(force.getNonbondedMethod())
    if method is None:
        raise UnsupportedForceError(kind, "LJPME is not supported yet; use PME with a cutoff")
    if not force.getIncludeDirectSpace():
        raise UnsupportedForceError(kind, "setIncludeDirectSpace(False)")
    if force.getNumParticles() != n_particles:
        raise ValueError(
            f"NonbondedForce has {force.getNumParticles()} particles, the System {n_particles}"
        )
    particles = [force.getParticleParameters(i) for i in range(force.getNumParticles())]
    exceptions = [force.getExceptionParameters(i) for i in range(force.getNumExceptions())]
    alpha, nx, ny, nz = force.getPMEParameters()
    if method == "Ewald":
        alpha, nx, ny, nz = _value(alpha), 0, 0, 0  # Ewald kmax is always chosen from the tolerance
    return Nonbonded(
        charges=np.array([_value(p[0]) for p in particles], np.float64),
        sigma=np.array([_value(p[1]) for p in particles], np.float64),
        epsilon=np.array([_value(p[2]) for p in particles], np.float64),
        exception_atoms=np.array([e[:2] for e in exceptions], np.int64).reshape(-1, 2),
        exception_chargeprod=np.array([_value(e[2]) for e in exceptions], np.float64),
        exception_sigma=np.array([_value(e[3]) for e in exceptions], np.float64),
        exception_epsilon=np.array([_value(e[4]) for e in exceptions], np.float64),
        method=method,
        cutoff=float(_value(force.getCutoffDistance())),
        switch_distance=float(_value(force.getSwitchingDistance()))
        if force.getUseSwitchingFunction()
        else 0.0,
        reaction_field_dielectric=float(force.getReactionFieldDielectric()),
        ewald_error_tolerance=float(force.getEwaldErrorTolerance()),
        ewald_alpha=float(_value(alpha)),
        ewald_grid=np.array([nx, ny, nz], np.int64),
        dispersion_correction=bool(force.getUseDispersionCorrection()),
        exceptions_use_periodic=bool(force.getExceptionsUsePeriodicBoundaryConditions()),
        **_parameter_offsets(force),
    )


def _parameter_offsets(force) -> dict:
    """The global parameters and particle/exception parameter offsets of a NonbondedForce, as
    the ``Nonbonded`` fields of the same names."""
    names = [force.getGlobalParameterName(i) for i in range(force.getNumGlobalParameters())]
    values = [float(force.getGlobalParameterDefaultValue(i)) for i in range(len(names))]
    particle = [force.getParticleParameterOffset(i)
                for i in range(force.getNumParticleParameterOffsets())]
    exception = [force.getExceptionParameterOffset(i)
                 for i in range(force.getNumExceptionParameterOffsets())]
    for offset in (*particle, *exception):
        if offset[0] not in names:
            raise UnsupportedForceError("NonbondedForce", f"a parameter offset uses {offset[0]!r}, "
                                        "which is not a global parameter of the force")
    return {
        "offset_names": tuple(names),
        "offset_values": tuple(values),
        "particle_offsets": np.array([(names.index(o[0]), o[1]) for o in particle],
                                     np.int64).reshape(-1, 2),
        "particle_offset_scales": np.array([o[2:5] for o in particle], np.float64).reshape(-1, 3),
        "exception_offsets": np.array([(names.index(o[0]), o[1]) for o in exception],
                                      np.int64).reshape(-1, 2),
        "exception_offset_scales": np.array([o[2:5] for o in exception],
                                            np.float64).reshape(-1, 3),
    }


# CustomNonbondedForce expressions: normalized text -> which tables give (c12, c6, c4) and how.
# Each value maps our coefficient to (tabulated function name, power applied to its value).
_TABLE_FORMS = {
    "(a/r6)^2-b/r6;r6=r^6;a=acoef(type1,type2);b=bcoef(type1,type2)": {
        "c12": ("acoef", 2),
        "c6": ("bcoef", 1),
    },
    "(a/r6)^2-b/r6-c/r^4;r6=r^6;a=acoef(type1,type2);b=bcoef(type1,type2);c=ccoef(type1,type2)": {
        "c12": ("acoef", 2),
        "c6": ("bcoef", 1),
        "c4": ("ccoef", 1),
    },
    "-c/r^4;c=ccoef(type1,type2)": {"c4": ("ccoef", 1)},
    "acoef(type1,type2)/r^12-bcoef(type1,type2)/r^6": {"c12": ("acoef", 1), "c6": ("bcoef", 1)},
}
_CUSTOM_NB_METHODS = {0: "NoCutoff", 1: "CutoffNonPeriodic", 2: "CutoffPeriodic"}


def tabulated_pairs(force, n_particles: int) -> TabulatedPairs:
    """The fast path of a CustomNonbondedForce: the acoef/bcoef/ccoef type-table forms of
    NBFIX and 12-6-4 (UnsupportedForceError otherwise)."""
    kind = "CustomNonbondedForce"
    _reject_globals(force, kind)
    expression = _normalize(force.getEnergyFunction())
    form = _TABLE_FORMS.get(expression)
    if form is None:
        raise UnsupportedForceError(
            kind, f"energy expression {force.getEnergyFunction()!r} is not a recognised table form"
        )
    if force.getNumInteractionGroups() > 0:
        raise UnsupportedForceError(kind, "interaction groups are not supported")
    if force.getNumComputedValues() > 0:
        raise UnsupportedForceError(kind, "computed values are not supported")
    names = [force.getPerParticleParameterName(i) for i in range(force.getNumPerParticleParameters())]
    if names != ["type"]:
        raise UnsupportedForceError(kind, f"per-particle parameters {names}, expected ['type']")
    if force.getNumParticles() != n_particles:
        raise ValueError(
            f"CustomNonbondedForce has {force.getNumParticles()} particles, the System {n_particles}"
        )
    types = np.array([force.getParticleParameters(i)[0] for i in range(n_particles)])
    if np.any(types != np.round(types)):
        raise UnsupportedForceError(kind, "non-integer type parameters")
    types = types.astype(np.int64)
    tables = {}
    for i in range(force.getNumTabulatedFunctions()):
        function = force.getTabulatedFunction(i)
        if type(function).__name__ != "Discrete2DFunction":
            raise UnsupportedForceError(kind, f"tabulated function type {type(function).__name__}")
        xsize, ysize, values = function.getFunctionParameters()
        # Discrete2DFunction(x, y) is values[x + xsize * y]; table[t1, t2] = f(t1, t2).
        tables[force.getTabulatedFunctionName(i)] = np.asarray(values, np.float64).reshape(
            ysize, xsize
        ).T
    n_types = int(types.max()) + 1 if types.size else 0
    coefficients = {}
    for key in ("c12", "c6", "c4"):
        if key in form:
            table_name, power = form[key]
            if table_name not in tables:
                raise UnsupportedForceError(kind, f"tabulated function {table_name!r} is missing")
            table = tables[table_name]
            if table.shape[0] < n_types or table.shape[1] < n_types:
                raise ValueError(f"{kind}: table {table_name!r} is smaller than the number of types")
            coefficients[key] = table**power
        else:
            coefficients[key] = np.zeros((max(n_types, 1), max(n_types, 1)))
    method = _CUSTOM_NB_METHODS[force.getNonbondedMethod()]
    exclusions = [force.getExclusionParticles(i) for i in range(force.getNumExclusions())]
    return TabulatedPairs(
        types=types,
        c12=coefficients["c12"],
        c6=coefficients["c6"],
        c4=coefficients["c4"],
        exclusions=np.array(exclusions, np.int64).reshape(-1, 2),
        method=method,
        cutoff=float(_value(force.getCutoffDistance())),
        switch_distance=float(_value(force.getSwitchingDistance()))
        if force.getUseSwitchingFunction()
        else 0.0,
        long_range_correction=bool(force.getUseLongRangeCorrection()),
    )


# ---------------------------------------------------------------------------- the system


def system_from_openmm(openmm_system) -> System:
    """Convert an ``openmm.System`` into a bencao System.

    Parameters
    ----------
    openmm_system : openmm.System
        A system built by OpenMM's app layer (AMBER, CHARMM, GROMACS inputs or ForceField XML).

    Returns
    -------
    System
        The same model, as NumPy parameter tables (nm, kJ/mol, e, amu, rad).

    Raises
    ------
    UnsupportedForceError
        For a force class, expression or setting bencao does not implement.
    """
    from bencao.io.openmm_virtual_sites import virtual_sites_from_openmm

    n = openmm_system.getNumParticles()
    masses = np.array([_value(openmm_system.getParticleMass(i)) for i in range(n)], np.float64)
    terms = []
    cm_removal = 0
    from bencao.io import (
        openmm_custom_import,  # noqa: F401 - registers the Custom* importers
        openmm_gb_import,  # noqa: F401 - registers CustomGB, GBSAOBC importers
    )

    for force in openmm_system.getForces():
        name = type(force).__name__
        if name == "CMMotionRemover":
            cm_removal = int(force.getFrequency())
        elif name in IMPORTERS:
            importer = IMPORTERS[name][0]
            # an importer that needs the particle masses (centroid weights) says so
            extra = (masses,) if getattr(importer, "takes_masses", False) else ()
            terms.append(importer(force, n, *extra))
        else:
            raise UnsupportedForceError(name, "this force type is not supported")
    constraints = [openmm_system.getConstraintParameters(i) for i in range(openmm_system.getNumConstraints())]
    box = None
    if openmm_system.usesPeriodicBoundaryConditions():
        box = np.array([_value(v) for v in openmm_system.getDefaultPeriodicBoxVectors()], np.float64)
        box = np.array([[float(x) for x in row] for row in box], np.float64)
    return System(
        masses=masses,
        terms=tuple(terms),
        constraint_atoms=np.array([c[:2] for c in constraints], np.int64).reshape(-1, 2),
        constraint_lengths=np.array([_value(c[2]) for c in constraints], np.float64),
        virtual_sites=virtual_sites_from_openmm(openmm_system),
        box=box,
        cm_motion_removal=cm_removal,
    )
