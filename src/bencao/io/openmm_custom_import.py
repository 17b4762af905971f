"""Import OpenMM's CustomBond/Angle/Torsion/External/CompoundBond/CentroidBond and
CustomNonbonded forces:
any expression, with per-item (per-particle) and global parameters.

The forms OpenMM's app layer writes for CHARMM impropers, 1-4 Lennard-Jones pairs and the
NBFIX/12-6-4 type tables keep their hand-written kernels (``openmm_import.harmonic_impropers``,
``lj_pairs``, ``tabulated_pairs``) when they carry no global parameters; every other expression
becomes a term of ``bencao.forces.custom`` whose law is compiled from the expression.  Expressions are checked here, on import, so a malformed one
fails with the force's name before any run starts.
"""

from __future__ import annotations

import numpy as np

from bencao.backends.common.laws.custom import KINDS
from bencao.backends.common.laws.tabulated import table_functions, table_specs
from bencao.backends.common.pair_laws import MAX_INTERACTION_GROUPS
from bencao.expressions import ExpressionError, parse, rename_variables
from bencao.forces.custom import (
    CustomAngles,
    CustomBonds,
    CustomCentroidBonds,
    CustomCompoundBonds,
    CustomExternal,
    CustomPairs,
    CustomTorsions,
)
from bencao.io.openmm_import import (
    UnsupportedForceError,
    _value,
    harmonic_impropers,
    imports,
    lj_pairs,
    tabulated_pairs,
)


def _globals(force) -> tuple[tuple, tuple, tuple]:
    """(names, default values, names whose dE/dp is asked for) of a force's global parameters."""
    names = tuple(force.getGlobalParameterName(i) for i in range(force.getNumGlobalParameters()))
    values = tuple(float(force.getGlobalParameterDefaultValue(i))
                   for i in range(force.getNumGlobalParameters()))
    # CustomExternalForce has no energy parameter derivatives in OpenMM.
    count = getattr(force, "getNumEnergyParameterDerivatives", lambda: 0)()
    derivatives = tuple(force.getEnergyParameterDerivativeName(i) for i in range(count))
    return names, values, derivatives


#: OpenMM's tabulated function classes -> (kind, number of axes).
_TABLE_CLASSES = {"Continuous1DFunction": ("continuous1d", 1),
                  "Continuous2DFunction": ("continuous2d", 2),
                  "Continuous3DFunction": ("continuous3d", 3),
                  "Discrete1DFunction": ("discrete1d", 1), "Discrete2DFunction": ("discrete2d", 2),
                  "Discrete3DFunction": ("discrete3d", 3)}


def tabulated_functions(force, kind_name: str) -> tuple:
    """A force's tabulated functions as the dicts of ``forces.custom`` (name, kind, shape,
    ranges, periodic, values), read from OpenMM's ``getFunctionParameters``: sizes first, then
    the values (x fastest), then (min, max) per axis for a continuous function."""
    tables = []
    for index in range(force.getNumTabulatedFunctions()):
        name = force.getTabulatedFunctionName(index)
        function = force.getTabulatedFunction(index)
        entry = _TABLE_CLASSES.get(type(function).__name__)
        if entry is None:
            raise UnsupportedForceError(kind_name, f"tabulated function {name!r} of type "
                                        f"{type(function).__name__} is not supported")
        kind, axes = entry
        parameters = list(function.getFunctionParameters())
        if axes == 1:  # [values, min, max] or (values,)
            values = parameters[0] if kind == "continuous1d" else parameters
            shape, ranges = [len(values)], parameters[1:3] if kind == "continuous1d" else []
        else:
            shape, values, ranges = parameters[:axes], parameters[axes], parameters[axes + 1:]
        periodic = bool(function.getPeriodic()) if hasattr(function, "getPeriodic") else False
        tables.append({"name": name, "kind": kind, "shape": [int(n) for n in shape],
                       "ranges": [float(v) for v in ranges], "periodic": periodic,
                       "values": [float(v) for v in values]})
    return tuple(tables)


def _table_functions(tables, kind_name: str) -> dict:
    """The parser's functions of ``tables`` (to check an expression on import)."""
    return table_functions(table_specs(tables), kind_name)


def _custom_term(record, force, kind_name: str, item_count: int, item, parameter_names):
    """Build ``record`` from ``force``: ``item(i)`` gives (atoms, parameter values) of item i."""
    global_names, global_values, derivatives = _globals(force)
    expression = force.getEnergyFunction()
    functions = {"periodicdistance": (6, lambda *a: a[0])} if record is CustomExternal else {}
    try:
        parse(expression, kind_name, (*KINDS[record.kind][1], *parameter_names, *global_names),
              functions)
    except ExpressionError as error:
        raise UnsupportedForceError(kind_name, str(error).split(": ", 1)[1]) from None
    rows = [item(i) for i in range(item_count)]
    width = len(parameter_names)
    atoms = np.array([r[0] for r in rows], np.int64).reshape(-1, record.n_atoms)
    params = np.array([[float(_value(v)) for v in r[1]] for r in rows],
                      np.float64).reshape(len(rows), width)
    return record(atoms=atoms, parameters=params, expression=expression,
                  parameter_names=tuple(parameter_names), global_names=global_names,
                  global_values=global_values, derivative_names=derivatives,
                  periodic=bool(force.usesPeriodicBoundaryConditions()))


def _fast_path(build, force, n_particles):
    """The hand-written term for an app-layer form without globals, or None."""
    bonded = not hasattr(force, "getNonbondedMethod")
    if force.getNumGlobalParameters() or (bonded and force.usesPeriodicBoundaryConditions()):
        return None
    try:
        return build(force, n_particles)
    except UnsupportedForceError:
        return None


@imports("CustomBondForce", "any expression")
def _custom_bonds(force, n_particles: int):
    fast = _fast_path(lj_pairs, force, n_particles)
    if fast is not None:
        return fast
    names = [force.getPerBondParameterName(i) for i in range(force.getNumPerBondParameters())]

    def item(i):
        a, b, values = force.getBondParameters(i)
        return (a, b), values

    return _custom_term(CustomBonds, force, "CustomBondForce", force.getNumBonds(), item, names)


@imports("CustomAngleForce", "any expression")
def _custom_angles(force, n_particles: int):
    names = [force.getPerAngleParameterName(i) for i in range(force.getNumPerAngleParameters())]

    def item(i):
        a, b, c, values = force.getAngleParameters(i)
        return (a, b, c), values

    return _custom_term(CustomAngles, force, "CustomAngleForce", force.getNumAngles(), item,
                        names)


@imports("CustomTorsionForce", "any expression")
def _custom_torsions(force, n_particles: int):
    fast = _fast_path(harmonic_impropers, force, n_particles)
    if fast is not None:
        return fast
    names = [force.getPerTorsionParameterName(i)
             for i in range(force.getNumPerTorsionParameters())]

    def item(i):
        a, b, c, d, values = force.getTorsionParameters(i)
        return (a, b, c, d), values

    return _custom_term(CustomTorsions, force, "CustomTorsionForce", force.getNumTorsions(),
                        item, names)


@imports("CustomExternalForce", "any expression")
def _custom_external(force, n_particles: int):
    names = [force.getPerParticleParameterName(i)
             for i in range(force.getNumPerParticleParameters())]

    def item(i):
        particle, values = force.getParticleParameters(i)
        return (particle,), values

    return _custom_term(CustomExternal, force, "CustomExternalForce", force.getNumParticles(),
                        item, names)


_PAIR_METHODS = {0: "NoCutoff", 1: "CutoffNonPeriodic", 2: "CutoffPeriodic"}


@imports("CustomNonbondedForce", "any expression; type tables (NBFIX, 12-6-4) on their own kernel")
def _custom_pairs(force, n_particles: int):
    fast = _fast_path(tabulated_pairs, force, n_particles)
    if fast is not None:
        return fast
    kind = "CustomNonbondedForce"
    tables = tabulated_functions(force, kind)
    if force.getNumInteractionGroups() > MAX_INTERACTION_GROUPS:
        raise UnsupportedForceError(kind, f"{force.getNumInteractionGroups()} interaction "
                                    f"groups; at most {MAX_INTERACTION_GROUPS} are supported")
    groups = [force.getInteractionGroupParameters(g)
              for g in range(force.getNumInteractionGroups())]
    if force.getNumParticles() != n_particles:
        raise ValueError(f"{kind} has {force.getNumParticles()} particles, the System "
                         f"{n_particles}")
    names = [force.getPerParticleParameterName(i)
             for i in range(force.getNumPerParticleParameters())]
    global_names, global_values, derivatives = _globals(force)
    known = ("r", *(f"{n}{k}" for n in names for k in (1, 2)), *global_names)
    try:
        expression = _with_computed_values(force, kind, names, global_names, tables)
        parse(expression, kind, known, _table_functions(tables, kind))
    except ExpressionError as error:
        raise UnsupportedForceError(kind, str(error).split(": ", 1)[1]) from None
    params = np.array([force.getParticleParameters(i) for i in range(n_particles)],
                      np.float64).reshape(n_particles, len(names))
    exclusions = [force.getExclusionParticles(i) for i in range(force.getNumExclusions())]
    return CustomPairs(
        parameters=params, expression=expression, parameter_names=tuple(names),
        global_names=global_names, global_values=global_values, derivative_names=derivatives,
        exclusions=np.array(exclusions, np.int64).reshape(-1, 2),
        method=_PAIR_METHODS[force.getNonbondedMethod()],
        cutoff=float(_value(force.getCutoffDistance())),
        switch_distance=float(_value(force.getSwitchingDistance()))
        if force.getUseSwitchingFunction() else 0.0,
        long_range_correction=bool(force.getUseLongRangeCorrection()),
        group_first=np.array([a for first, _ in groups for a in first], np.int64),
        group_second=np.array([a for _, second in groups for a in second], np.int64),
        group_first_sizes=np.array([len(first) for first, _ in groups], np.int64),
        group_second_sizes=np.array([len(second) for _, second in groups], np.int64),
        tabulated_functions=tables)


def _with_computed_values(force, kind: str, names, global_names, tables=()) -> str:
    """A CustomNonbondedForce's energy with its computed values (``addComputedValue``: a value
    per particle from its parameters and the globals) appended as definitions of ``<value>1``
    and ``<value>2``, the pair's first and second particle's.  The law, its derivatives and
    the long-range correction then see one expression, exact, of the particles' parameters.

    Each value's own definitions are renamed per particle (``d`` -> ``d_<value>1``) so that the
    two copies and the energy's definitions never collide."""
    statements = [force.getEnergyFunction().rstrip().rstrip(";")]
    for k in range(force.getNumComputedValues()):
        value, text = force.getComputedValueParameters(k)
        where = f"{kind}: computed value {value!r}"
        try:
            parse(text, kind, (*names, *global_names), _table_functions(tables, kind))
        except ExpressionError as error:  # name the value: "<force>: computed value 'v': .."
            raise ExpressionError(f"{where}: {str(error).split(': ', 1)[1]}") from None
        for particle in (1, 2):
            def rename(name, particle=particle, value=value):
                if name in global_names:
                    return name
                return f"{name}{particle}" if name in names else f"{name}_{value}{particle}"

            main, *definitions = rename_variables(text, where, rename)
            statements += [f"{value}{particle} = {main}", *definitions]
    return "; ".join(statements)


def _compound_fields(force, kind: str, n: int, prefix: str) -> dict:
    """The fields a CustomCompoundBondForce and a CustomCentroidBondForce share: bonds of ``n``
    items named ``<prefix>1 ..`` (p: particles, g: groups), parameters, expression, periodicity.
    The expression is checked here.  A periodic force's items are imaged next to the bond's
    first one by the backends, which keeps distances, angles and dihedrals as OpenMM's but
    moves the coordinates of the others by box vectors, so a periodic expression that uses
    the coordinates x1, y1, .. themselves is refused."""
    import re

    from bencao.backends.common.laws.custom_compound import (
        geometry_functions,
        known_names,
    )

    items = {"p": "particles", "g": "groups"}[prefix]
    expression = force.getEnergyFunction()
    periodic = force.usesPeriodicBoundaryConditions()
    if periodic and re.search(r"\b[xyz]\d+\b", expression):
        raise UnsupportedForceError(kind, f"coordinates (x1, y1, ...) in the expression of a "
                                    f"periodic force are not supported yet; distance, angle and "
                                    f"dihedral of the {items} are")
    tables = tabulated_functions(force, kind)
    names = [force.getPerBondParameterName(i) for i in range(force.getNumPerBondParameters())]
    global_names, global_values, derivatives = _globals(force)
    try:
        parse(expression, kind, known_names(n, names, global_names, prefix),
              {**geometry_functions(n, kind, prefix), **_table_functions(tables, kind)})
    except ExpressionError as error:
        raise UnsupportedForceError(kind, str(error).split(": ", 1)[1]) from None
    rows = [force.getBondParameters(i) for i in range(force.getNumBonds())]
    return {
        "atoms": np.array([r[0] for r in rows], np.int64).reshape(len(rows), n),
        "parameters": np.array([[float(v) for v in r[1]] for r in rows],
                               np.float64).reshape(len(rows), len(names)),
        "expression": expression, "parameter_names": tuple(names),
        "global_names": global_names, "global_values": global_values,
        "derivative_names": derivatives, "periodic": periodic, "tabulated_functions": tables}


@imports("CustomCompoundBondForce", "any expression of the particles' positions")
def _custom_compound_bonds(force, n_particles: int):
    return CustomCompoundBonds(**_compound_fields(
        force, "CustomCompoundBondForce", force.getNumParticlesPerBond(), "p"))


@imports("CustomCentroidBondForce", "any expression of the group centroids' positions")
def _custom_centroid_bonds(force, n_particles: int, masses: np.ndarray):
    kind = "CustomCentroidBondForce"
    fields = _compound_fields(force, kind, force.getNumGroupsPerBond(), "g")
    group_atoms, group_weights, offsets = [], [], [0]
    for g in range(force.getNumGroups()):
        particles, weights = force.getGroupParameters(g)
        particles = np.asarray(particles, np.int64)
        # OpenMM: no weights means the particles' masses
        weights = np.asarray(weights, np.float64) if len(weights) else masses[particles]
        if len(particles) == 0 or weights.sum() == 0.0:
            raise UnsupportedForceError(kind, f"group {g} has no particles or zero total weight")
        group_atoms.append(particles)
        group_weights.append(weights / weights.sum())
        offsets.append(offsets[-1] + len(particles))
    return CustomCentroidBonds(
        **fields, group_offsets=np.array(offsets, np.int64),
        group_atoms=np.concatenate(group_atoms) if group_atoms else np.zeros(0, np.int64),
        group_weights=np.concatenate(group_weights) if group_weights else np.zeros(0))


_custom_centroid_bonds.takes_masses = True
