"""Terms whose energy is an expression: OpenMM's CustomBondForce, CustomAngleForce,
CustomTorsionForce, CustomExternalForce (listed terms) and CustomNonbondedForce (pairs).

Each record holds the expression text (OpenMM's expression language, see
``bencao.expressions``), the per-item parameter table and the global parameters with their
default values; the backends compile the expression into a law
(``bencao.backends.common.laws.custom``).  Global parameter values can change at run time
(``Backend.set_parameter``); the record keeps the defaults.  Units are OpenMM's: nm, rad,
kJ/mol, and whatever units the expression gives its parameters.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bencao.forces.registry import term_record


def index_pairs(pairs) -> np.ndarray:
    """``pairs`` (particle pairs, or None for none) as an (M, 2) int64 array."""
    return np.asarray(np.zeros((0, 2)) if pairs is None else pairs, np.int64).reshape(-1, 2)


def _normalise_parameters(term) -> None:
    """Make a custom term's names and values tuples of plain values (saved System files hold
    them as JSON lists) and check the global parameters are consistent."""
    for key, cast in (("parameter_names", str), ("global_names", str),
                      ("global_values", float), ("derivative_names", str)):
        object.__setattr__(term, key, tuple(cast(v) for v in getattr(term, key)))
    if len(term.global_names) != len(term.global_values):
        raise ValueError(f"{term.name}: {len(term.global_names)} global parameters but "
                         f"{len(term.global_values)} default values")
    unknown = sorted(set(term.derivative_names) - set(term.global_names))
    if unknown:
        raise ValueError(f"{term.name}: derivatives asked of {unknown}, which are not "
                         "global parameters of the force")


#: Kinds of OpenMM tabulated function and their number of arguments.
TABLE_KINDS = {"continuous1d": 1, "continuous2d": 2, "continuous3d": 3,
               "discrete1d": 1, "discrete2d": 2, "discrete3d": 3}


def _normalise_tables(term) -> None:
    """Make a term's ``tabulated_functions`` a tuple of plain dicts (as saved System files hold
    them) and check each: name, kind (:data:`TABLE_KINDS`), grid points per axis (x first),
    (min, max) per axis for a continuous function, periodic or not, values (x fastest)."""
    tables = []
    for table in term.tabulated_functions:
        kind = str(table["kind"])
        if kind not in TABLE_KINDS:
            raise ValueError(f"{term.name}: tabulated function {table['name']!r} has unknown "
                             f"kind {kind!r}; expected one of {', '.join(TABLE_KINDS)}")
        shape = [int(n) for n in table["shape"]]
        ranges = [float(v) for v in table.get("ranges", ())]
        values = [float(v) for v in np.asarray(table["values"], np.float64).reshape(-1)]
        continuous = kind.startswith("continuous")
        if (len(shape) != TABLE_KINDS[kind] or len(values) != int(np.prod(shape))
                or len(ranges) != (2 * len(shape) if continuous else 0)):
            raise ValueError(f"{term.name}: tabulated function {table['name']!r}: "
                             f"{len(values)} values, grid {shape} and ranges {ranges} do not "
                             f"fit a {kind} function")
        tables.append({"name": str(table["name"]), "kind": kind, "shape": shape,
                       "ranges": ranges, "periodic": bool(table.get("periodic", False)),
                       "values": values})
    object.__setattr__(term, "tabulated_functions", tuple(tables))


@dataclass(frozen=True)
class CustomListedTerm:
    """Fields common to the custom listed terms (a base, not a term itself).

    Parameters
    ----------
    atoms : (M, n) int64 array
        Particles of each item (n = 2 for bonds, 3 for angles with the vertex in the middle,
        4 for torsions, 1 for external terms).
    parameters : (M, P) float64 array
        Per-item parameter values, columns in the order of ``parameter_names``.
    expression : str
        Energy, kJ/mol, in OpenMM's expression language.
    parameter_names : tuple of str
        Names of the per-item parameters.
    global_names : tuple of str
        Names of the global parameters.
    global_values : tuple of float
        Their default values.
    derivative_names : tuple of str
        Global parameters whose energy derivative dE/dp is asked for
        (OpenMM's ``addEnergyParameterDerivative``).
    periodic : bool
        The force uses the periodic box: an external term's ``periodicdistance``; a bond's,
        angle's or torsion's particles imaged next to its first (:func:`single_particle_groups`).
    tabulated_functions : tuple of dict
        OpenMM's tabulated functions the expression calls (compound and centroid bonds): name,
        kind (:data:`TABLE_KINDS`), shape (points per axis, x first), ranges ((min, max) per
        axis, continuous kinds), periodic, values (x fastest).
    """

    atoms: np.ndarray
    parameters: np.ndarray
    expression: str
    parameter_names: tuple = ()
    global_names: tuple = ()
    global_values: tuple = ()
    derivative_names: tuple = ()
    periodic: bool = False
    tabulated_functions: tuple = ()

    #: Particles per item
    n_atoms = 2
    #: Law kind of ``bencao.backends.common.laws.custom``
    kind = "bond"

    def __post_init__(self):
        object.__setattr__(self, "periodic", bool(self.periodic))
        _normalise_parameters(self)
        _normalise_tables(self)


@term_record
@dataclass(frozen=True)
class CustomBonds(CustomListedTerm):
    """E(r) per bond, r the distance between its two particles (OpenMM CustomBondForce)."""

    name = "CustomBondForce"
    n_atoms = 2
    kind = "bond"


@term_record
@dataclass(frozen=True)
class CustomAngles(CustomListedTerm):
    """E(theta) per angle, theta at the middle particle, rad (OpenMM CustomAngleForce)."""

    name = "CustomAngleForce"
    n_atoms = 3
    kind = "angle"


@term_record
@dataclass(frozen=True)
class CustomTorsions(CustomListedTerm):
    """E(theta) per torsion, theta the dihedral angle in (-pi, pi] (OpenMM CustomTorsionForce)."""

    name = "CustomTorsionForce"
    n_atoms = 4
    kind = "torsion"


@term_record
@dataclass(frozen=True)
class CustomExternal(CustomListedTerm):
    """E(x, y, z) per particle, its position in nm (OpenMM CustomExternalForce); the
    expression may use ``periodicdistance(x, y, z, x0, y0, z0)`` (minimum image in the box)."""

    name = "CustomExternalForce"
    n_atoms = 1
    kind = "external"


@term_record
@dataclass(frozen=True)
class CustomPairs:
    """E(r) between every pair of particles not excluded, within the cutoff (OpenMM
    CustomNonbondedForce with its own expression).

    The expression sees ``r`` (nm), ``<name>1`` and ``<name>2`` for each per-particle parameter
    (the pair's first and second particle) and the global parameters.  With a switch distance
    the energy is multiplied by OpenMM's switching function from there to the cutoff.

    Parameters
    ----------
    parameters : (N, P) float64 array
        Per-particle parameter values, columns in the order of ``parameter_names``.
    expression : str
        Pair energy, kJ/mol, in OpenMM's expression language.
    parameter_names, global_names, global_values, derivative_names : tuple
        As for :class:`CustomListedTerm`.
    exclusions : (M, 2) int64 array
        Pairs that do not interact.
    method : str
        "NoCutoff", "CutoffNonPeriodic" or "CutoffPeriodic".
    cutoff : float
        Cutoff, nm.
    switch_distance : float
        Where switching starts, nm (0 for none).
    long_range_correction : bool
        Add OpenMM's long-range correction C / V (periodic only).
    group_first, group_second : (K,) int64 arrays
        Interaction groups, concatenated: the particles of set 1 (set 2) of every group.
    group_first_sizes, group_second_sizes : (G,) int64 arrays
        How many particles each group's set 1 (set 2) has; no groups: all pairs interact.
    tabulated_functions : tuple of dict
        As for :class:`CustomListedTerm`.
    """

    parameters: np.ndarray
    expression: str
    parameter_names: tuple = ()
    global_names: tuple = ()
    global_values: tuple = ()
    derivative_names: tuple = ()
    exclusions: np.ndarray = None
    method: str = "NoCutoff"
    cutoff: float = 1.0
    switch_distance: float = 0.0
    long_range_correction: bool = False
    group_first: np.ndarray = None
    group_second: np.ndarray = None
    group_first_sizes: np.ndarray = None
    group_second_sizes: np.ndarray = None
    tabulated_functions: tuple = ()

    name = "CustomNonbondedForce"
    kind = "pair"

    def __post_init__(self):
        _normalise_parameters(self)
        _normalise_tables(self)
        object.__setattr__(self, "exclusions", index_pairs(self.exclusions))
        object.__setattr__(self, "long_range_correction", bool(self.long_range_correction))
        for key in ("group_first", "group_second", "group_first_sizes", "group_second_sizes"):
            value = getattr(self, key)
            object.__setattr__(self, key, np.zeros(0, np.int64) if value is None
                               else np.asarray(value, np.int64).reshape(-1))

    def interaction_groups(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """(set 1, set 2) particle arrays of each interaction group; [] when all pairs interact."""
        ends1 = np.cumsum(self.group_first_sizes)
        ends2 = np.cumsum(self.group_second_sizes)
        return [(self.group_first[e1 - n1:e1], self.group_second[e2 - n2:e2])
                for n1, e1, n2, e2 in zip(self.group_first_sizes, ends1,
                                          self.group_second_sizes, ends2)]

    @property
    def periodic(self) -> bool:
        """True when the method uses periodic boundary conditions."""
        return self.method == "CutoffPeriodic"


@term_record
@dataclass(frozen=True)
class CustomCompoundBonds(CustomListedTerm):
    """E of the positions of the n particles of each bond (OpenMM CustomCompoundBondForce): the
    expression sees x1, y1, z1 .. xn, yn, zn (nm) and ``distance``, ``angle``, ``dihedral`` of
    the particles p1 .. pn (see ``backends.common.laws.custom_compound``).  If ``periodic``,
    the particles after the first are taken at their images nearest the first
    (:func:`single_particle_groups`)."""

    name = "CustomCompoundBondForce"
    kind = "compound"

    @property
    def n_atoms(self) -> int:
        """Particles per bond (``atoms`` is (M, n))."""
        return int(np.asarray(self.atoms).shape[1])


@term_record
@dataclass(frozen=True)
class CustomCentroidBonds(CustomListedTerm):
    """E of the centroids of the n groups of each bond (OpenMM CustomCentroidBondForce): the
    expression sees the centroids' x1, y1, z1 .. xn, yn, zn (nm) and ``distance``, ``angle``,
    ``dihedral`` of the groups g1 .. gn.  A group's centroid is the weighted mean of its
    particles' positions; the force on it is shared among them in proportion to their weights.

    Parameters
    ----------
    atoms : (M, n) int64 array
        The groups of each bond (indices into the groups below), not particles.
    group_atoms : (A,) int64 array
        The particles of every group, group after group.
    group_offsets : (G + 1,) int64 array
        Group g holds ``group_atoms[group_offsets[g]:group_offsets[g + 1]]``.
    group_weights : (A,) float64 array
        Each particle's weight in its group, normalised to sum to 1 per group (OpenMM's default
        weights are the masses).
    periodic : bool
        Centroids of groups 2 .. n are taken at their images nearest the first group's, so the
        expression sees minimum-image distances (as OpenMM's pairwise images whenever every
        group lies within half a box of the first).  The other fields are as for
        :class:`CustomListedTerm`.
    """

    group_atoms: np.ndarray = None
    group_offsets: np.ndarray = None
    group_weights: np.ndarray = None
    #: How the expression names the bond's items: "g" (groups); "p" for a periodic
    #: CustomCompoundBondForce run as one-particle groups (:func:`single_particle_groups`)
    item_prefix: str = "g"

    name = "CustomCentroidBondForce"
    kind = "centroid"

    def __post_init__(self):
        super().__post_init__()
        for key, dtype in (("group_atoms", np.int64), ("group_offsets", np.int64),
                           ("group_weights", np.float64)):
            value = getattr(self, key)
            object.__setattr__(self, key, np.asarray([] if value is None else value, dtype))
        if len(self.group_offsets) == 0:
            object.__setattr__(self, "group_offsets", np.zeros(1, np.int64))
        groups = len(self.group_offsets) - 1
        bonds = np.asarray(self.atoms, np.int64)
        if bonds.size and (bonds.min() < 0 or bonds.max() >= groups):
            raise ValueError(f"{self.name}: a bond names group {int(bonds.max())}, but there "
                             f"are {groups} groups")
        if len(self.group_atoms) != len(self.group_weights):
            raise ValueError(f"{self.name}: {len(self.group_atoms)} group particles but "
                             f"{len(self.group_weights)} weights")

    @property
    def n_atoms(self) -> int:
        """Groups per bond (``atoms`` is (M, n))."""
        return int(np.asarray(self.atoms).shape[1])


#: The geometric variable of a periodic custom bond, angle or torsion, as a definition of the
#: compound expression language (OpenMM computes each from minimum-image vectors).
_PERIODIC_GEOMETRY = {"bond": "r = distance(p1, p2)", "angle": "theta = angle(p1, p2, p3)",
                      "torsion": "theta = dihedral(p1, p2, p3, p4)"}


def runs_as_centroids(term: CustomListedTerm) -> bool:
    """True for a periodic custom bond, angle, torsion or compound bond term: the backends run
    it as :func:`single_particle_groups`."""
    return term.periodic and term.kind in (*_PERIODIC_GEOMETRY, "compound")


def single_particle_groups(term: CustomListedTerm) -> CustomCentroidBonds:
    """A periodic CustomCompoundBondForce, or a periodic custom bond, angle or torsion term, as
    centroids of one-particle groups (group k is particle k, weight 1): the same energy of the
    same positions, with the item's particles imaged next to its first one.

    A bond, angle or torsion expression gets its variable as a last definition (``E(r); r =
    distance(p1, p2)``), which every definition before it may use, as Lepton reads them."""
    expression = term.expression
    if term.kind in _PERIODIC_GEOMETRY:
        expression = f"{expression.rstrip().rstrip(';')}; {_PERIODIC_GEOMETRY[term.kind]}"
    n = int(np.max(term.atoms)) + 1 if np.size(term.atoms) else 0
    return CustomCentroidBonds(
        atoms=term.atoms, parameters=term.parameters, expression=expression,
        parameter_names=term.parameter_names, global_names=term.global_names,
        global_values=term.global_values, derivative_names=term.derivative_names,
        periodic=True, tabulated_functions=term.tabulated_functions, group_atoms=np.arange(n),
        group_offsets=np.arange(n + 1), group_weights=np.ones(n), item_prefix="p")
