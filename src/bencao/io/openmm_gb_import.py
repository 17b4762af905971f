"""Import OpenMM's CustomGBForce (any expressions; the app layer's HCT, OBC1, OBC2, GBn, GBn2)
and GBSAOBCForce, which becomes the CustomGBForce it equals."""

from __future__ import annotations

import math

import numpy as np

from bencao.constants import ONE_4PI_EPS0
from bencao.forces.custom_gb import GB_TYPES, GBSAOBC, CustomGB
from bencao.io.openmm_custom_import import _globals
from bencao.io.openmm_import import UnsupportedForceError, _value, imports

_METHODS = {0: "NoCutoff", 1: "CutoffNonPeriodic", 2: "CutoffPeriodic"}


def _tables(force, kind: str):
    """(names, shapes, concatenated values) of the force's discrete tabulated functions."""
    names, shapes, values = [], [], []
    for i in range(force.getNumTabulatedFunctions()):
        function = force.getTabulatedFunction(i)
        name = type(function).__name__
        parameters = function.getFunctionParameters()
        if name == "Discrete1DFunction":
            shape, data = (len(parameters),), parameters
        elif name in ("Discrete2DFunction", "Discrete3DFunction"):
            shape, data = tuple(int(n) for n in parameters[:-1]), parameters[-1]
        else:
            raise UnsupportedForceError(kind, f"tabulated function {name} is not supported yet "
                                        "(Discrete1D/2D/3D are)")
        names.append(force.getTabulatedFunctionName(i))
        shapes.append(shape)
        values.append(np.asarray(data, np.float64))
    return tuple(names), tuple(shapes), (np.concatenate(values) if values else np.zeros(0))


def _check(term, kind: str) -> CustomGB:
    """Check now that the passes can compute ``term`` and parse every expression, so that a
    bad one fails on import with one line naming the force."""
    from bencao.backends.common.laws.custom_gb import check_expressions
    from bencao.backends.common.laws.custom_gb_passes import check_supported

    try:
        check_supported(term)
        check_expressions(term)
    except ValueError as error:  # ExpressionError too
        # "CustomGBForce computed value 'B': ..." -> "computed value 'B': ..." after the kind.
        raise UnsupportedForceError(kind, str(error).removeprefix(term.name).lstrip(" :")) \
            from None
    return term


@imports("CustomGBForce", "any expressions, Discrete tabulated functions")
def _custom_gb(force, n_particles: int) -> CustomGB:
    kind = "CustomGBForce"
    if force.getNumParticles() != n_particles:
        raise ValueError(f"{kind} has {force.getNumParticles()} particles, the System "
                         f"{n_particles}")
    names = [force.getPerParticleParameterName(i)
             for i in range(force.getNumPerParticleParameters())]
    values = [force.getComputedValueParameters(i) for i in range(force.getNumComputedValues())]
    energies = [force.getEnergyTermParameters(i) for i in range(force.getNumEnergyTerms())]
    global_names, global_values, derivatives = _globals(force)
    table_names, table_shapes, table_values = _tables(force, kind)
    exclusions = [force.getExclusionParticles(i) for i in range(force.getNumExclusions())]
    params = np.array([force.getParticleParameters(i) for i in range(n_particles)],
                      np.float64).reshape(n_particles, len(names))
    term = CustomGB(
        parameters=params, parameter_names=tuple(names),
        value_names=tuple(v[0] for v in values), value_expressions=tuple(v[1] for v in values),
        value_types=tuple(GB_TYPES[int(v[2])] for v in values),
        energy_expressions=tuple(e[0] for e in energies),
        energy_types=tuple(GB_TYPES[int(e[1])] for e in energies),
        global_names=global_names, global_values=global_values, derivative_names=derivatives,
        exclusions=np.array(exclusions, np.int64).reshape(-1, 2),
        method=_METHODS[force.getNonbondedMethod()],
        cutoff=float(_value(force.getCutoffDistance())),
        table_names=table_names, table_shapes=table_shapes, table_values=table_values)
    return _check(term, kind)


@imports("GBSAOBCForce", "as the CustomGBForce of the same model")
def _gbsa_obc(force, n_particles: int) -> GBSAOBC:
    """OpenMM's GBSAOBCForce (OBC2 Born radii with the engulfed-atom correction of its own
    kernels, dielectric offset 0.009 nm, ACE surface term, no exclusions) as a CustomGB."""
    kind = "GBSAOBCForce"
    if force.getNumParticles() != n_particles:
        raise ValueError(f"{kind} has {force.getNumParticles()} particles, the System "
                         f"{n_particles}")
    rows = [force.getParticleParameters(i) for i in range(n_particles)]
    charge = np.array([_value(r[0]) for r in rows], np.float64)
    offset_radius = np.array([_value(r[1]) for r in rows], np.float64) - 0.009
    scaled = np.array([float(r[2]) for r in rows], np.float64) * offset_radius
    method = _METHODS[force.getNonbondedMethod()]
    cutoff = float(_value(force.getCutoffDistance()))
    prefactor = ONE_4PI_EPS0 * (1.0 / force.getSoluteDielectric()
                                - 1.0 / force.getSolventDielectric())
    surface = 4.0 * math.pi * float(_value(force.getSurfaceAreaEnergy()))
    inverse = "1/f" if method == "NoCutoff" else f"(1/f-{1.0 / cutoff!r})"
    energies = [(f"-0.5*{prefactor!r}*charge^2/B", "single")]
    if surface:
        energies.append((f"{surface!r}*(radius+0.14)^2*(radius/B)^6; radius=or+0.009", "single"))
    energies.append((f"-{prefactor!r}*charge1*charge2*{inverse}; "
                     "f=sqrt(r^2+B1*B2*exp(-r^2/(4*B1*B2)))", "pair_no_exclusions"))
    term = GBSAOBC(
        parameters=np.stack([charge, offset_radius, scaled], axis=1),
        parameter_names=("charge", "or", "sr"), value_names=("I", "B"),
        value_expressions=(
            "step(r+sr2-or1)*0.5*(1/L-1/U+0.25*(r-sr2^2/r)*(1/(U^2)-1/(L^2))+0.5*log(L/U)/r"
            "+step(sr2-r-or1)*2*(1/or1-1/L)); U=r+sr2; L=max(or1, D); D=abs(r-sr2)",
            "1/(1/or-tanh(psi-0.8*psi^2+4.85*psi^3)/radius); psi=I*or; radius=or+0.009"),
        value_types=("pair_no_exclusions", "single"),
        energy_expressions=tuple(e for e, _ in energies),
        energy_types=tuple(k for _, k in energies),
        method=method, cutoff=cutoff)
    return _check(term, kind)
