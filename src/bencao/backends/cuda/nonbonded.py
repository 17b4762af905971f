"""OpenMM's NonbondedForce on the GPU: pairs, exceptions, PME, dispersion correction.

The CUDA counterpart of ``cpu.nonbonded.CpuNonbonded``, with the same physics term by term:

* regular pairs, :func:`pair_interaction` run by the shared pair loops of ``cuda.pair_loops``
  (the device Verlet list of ``cuda.pairs``; every pair for NoCutoff): plain Coulomb for
  NoCutoff, reaction field for the Cutoff methods (OpenMM's krf and crf), erfc(alpha r)/r for
  PME's real space; Lennard-Jones with Lorentz-Berthelot mixing and OpenMM's switching function
  (the CPU computes these pairs in its SIMD cluster kernels, whose arithmetic is its own);
* exceptions, one thread each, with the CPU's law (``common.pair_laws.exception_pair``,
  compiled for the device), including the removal of the reciprocal-space erf term of every
  excluded pair under PME;
* smooth PME reciprocal space (``cuda.pme``);
* the analytic dispersion correction (periodic methods), C / V with the CPU term's C.

Forces go into the int64 fixed-point accumulator with integer atomics, so they are
bit-identical run to run; energies are per-thread float64 partials added on the host with
``math.fsum`` (correctly rounded, hence independent of order), never float atomics.

Everything is float64 in this first slice; mixed precision (float32 pair arithmetic with
shared-memory tiles, float32 PME grid) is the next step.
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda

from bencao.backends.common.long_range_correction import lennard_jones_coefficient
from bencao.backends.common.pair_laws import (
    COULOMB_EWALD,
    COULOMB_PLAIN,
    COULOMB_REACTION_FIELD,
    TWO_OVER_SQRT_PI,
    reaction_field_constants,
)
from bencao.backends.common.pair_laws import exception_pair as common_exception_pair
from bencao.backends.common.parameter_offsets import OffsetNonbonded
from bencao.backends.common.registry import register_kernel
from bencao.backends.cuda.common import (
    device_function,
    device_version,
    launch_kernel,
    to_fixed,
)
from bencao.backends.cuda.pair_loops import (
    DEFAULT_BUFFER,
    CudaPairTerm,
    pair_loop_kernels,
)
from bencao.backends.cuda.pairs import minimum_image
from bencao.constants import ONE_4PI_EPS0
from bencao.forces import Nonbonded
from bencao.profiling import phase


@device_function
def pair_interaction(r2, qq, sigma, eps4, kind, alpha, krf, crf, switching, rsw, inv_width):
    """Coulomb + Lennard-Jones of one pair at squared distance ``r2`` (nm^2), in float64.

    ``qq`` is the charge product times 1/(4 pi eps0) (kJ/mol nm), ``sigma`` the mixed sigma
    (nm), ``eps4`` four times the mixed epsilon (kJ/mol).  Returns ``(f_over_r, energy)``:
    -dE/dr / r (kJ/mol/nm^2) and E (kJ/mol); the force on the second atom is
    ``f_over_r * (r_j - r_i)``.
    """
    inv_r2 = 1.0 / r2
    r = math.sqrt(r2)
    inv_r = 1.0 / r
    if kind == 2:
        ar = alpha * r
        erfc_term = math.erfc(ar) * inv_r
        e_coul = qq * erfc_term
        f_coul = qq * (erfc_term + TWO_OVER_SQRT_PI * alpha * math.exp(-ar * ar)) * inv_r2
    elif kind == 1:
        e_coul = qq * (inv_r + krf * r2 - crf)
        f_coul = qq * (inv_r * inv_r2 - 2.0 * krf)
    else:
        e_coul = qq * inv_r
        f_coul = e_coul * inv_r2
    sr2 = sigma * sigma * inv_r2
    sr6 = sr2 * sr2 * sr2
    e_lj = eps4 * (sr6 * sr6 - sr6)
    f_lj = eps4 * (12.0 * sr6 * sr6 - 6.0 * sr6) * inv_r2
    if switching and r > rsw:
        # OpenMM's switch S(x) = 1 - 10 x^3 + 15 x^4 - 6 x^5, x = (r - rsw) / (rc - rsw)
        t = (r - rsw) * inv_width
        s = 1.0 + t * t * t * (-10.0 + t * (15.0 - 6.0 * t))
        ds = -30.0 * t * t * (1.0 - t) * (1.0 - t) * inv_width
        f_lj = f_lj * s - e_lj * ds * inv_r
        e_lj *= s
    return f_coul + f_lj, e_coul + e_lj


@device_function
def _load(parameters, i):
    """Atom i's charge (times sqrt(1/(4 pi eps0))), sigma/2 and sqrt(4 epsilon)."""
    return parameters[0][i], parameters[1][i], parameters[2][i]


@device_function
def _pair_law(r2, a, b, parameters):
    """The pair loops' law: Lorentz-Berthelot mixing of the two atoms' parameters, then
    :func:`pair_interaction` with the term's constants (``CudaNonbonded._parameters``)."""
    _, _, _, kind, alpha, krf, crf, switching, rsw, inv_width = parameters
    return pair_interaction(r2, a[0] * b[0], a[1] + b[1], a[2] * b[2], kind, alpha, krf, crf,
                            switching, rsw, inv_width)


_pair_kernels = pair_loop_kernels(_load, _pair_law)

#: The exception law of ``cpu.nonbonded``, compiled for the device from the same source.
exception_pair = device_version(common_exception_pair)


# ---------------------------------------------------------------------------------------------
# Exceptions.


@cuda.jit
def _exceptions(positions, atoms, chargeprod, sigma, epsilon, charges, box, periodic,
                coulomb_constant, alpha, ewald, forces, energies):
    """One thread per exception: plain Coulomb + LJ with its own parameters and, for
    Ewald/PME, minus the reciprocal-space erf(alpha r)/r of the pair (as
    ``cpu.exceptions.exception_pairs``); energy into ``energies[m]``."""
    m = cuda.grid(1)
    if m >= atoms.shape[0]:
        return
    i = atoms[m, 0]
    j = atoms[m, 1]
    ax = box[0, 0]
    bx = box[1, 0]
    by = box[1, 1]
    cx = box[2, 0]
    cy = box[2, 1]
    cz = box[2, 2]
    dx = positions[j, 0] - positions[i, 0]
    dy = positions[j, 1] - positions[i, 1]
    dz = positions[j, 2] - positions[i, 2]
    if periodic:
        dx, dy, dz = minimum_image(dx, dy, dz, ax, bx, by, cx, cy, cz)
    f_over_r, energy = exception_pair(dx * dx + dy * dy + dz * dz, chargeprod[m], sigma[m],
                                      epsilon[m], charges[i], charges[j], coulomb_constant,
                                      alpha, ewald)
    fx = f_over_r * dx
    fy = f_over_r * dy
    fz = f_over_r * dz
    if fx != 0.0 or fy != 0.0 or fz != 0.0:
        cuda.atomic.add(forces, (i, 0), to_fixed(-fx))
        cuda.atomic.add(forces, (i, 1), to_fixed(-fy))
        cuda.atomic.add(forces, (i, 2), to_fixed(-fz))
        cuda.atomic.add(forces, (j, 0), to_fixed(fx))
        cuda.atomic.add(forces, (j, 1), to_fixed(fy))
        cuda.atomic.add(forces, (j, 2), to_fixed(fz))
    energies[m] = energy


# ---------------------------------------------------------------------------------------------
# Host side.


@register_kernel("cuda", Nonbonded)
class CudaNonbonded(CudaPairTerm):
    """OpenMM's NonbondedForce on the GPU.

    Parameters
    ----------
    term : bencao.forces.Nonbonded
        Parameters.
    default_box : (3, 3) float64 array or None
        The system's default box, nm (PME's alpha and grid are chosen from it, as OpenMM does).
    buffer : float
        Verlet buffer, nm.

    Attributes
    ----------
    name : str
        ``term.name`` ("NonbondedForce").
    reciprocal : CudaPME or None
        Reciprocal space (``compute(state, box) -> float``) for PME, else None.
    alpha : float
        Ewald separation parameter, 1/nm (0 without PME).
    neighbors : CudaPairList or None
        The Verlet list (None for NoCutoff).
    cutoff : float
        Cutoff, nm (inf for NoCutoff).

    Raises
    ------
    TypeError
        For a term this backend does not run yet (plain Ewald).
    """

    @classmethod
    def from_term(cls, term, system):
        """The kernel of ``system``'s ``term``, with the system's box as the default box (inside
        an :class:`OffsetNonbonded` when global parameters shift its parameters)."""
        if term.has_offsets:
            return OffsetNonbonded(term, lambda plain: cls(plain, system.box))
        return cls(term, system.box)

    def __init__(self, term, default_box, buffer=DEFAULT_BUFFER):
        if not isinstance(term, Nonbonded):
            raise TypeError(f"{type(term).__name__} ({term.name}) is not yet on the CUDA "
                            "backend; use backend='cpu'")
        if term.method == "Ewald":
            raise TypeError("Ewald is not yet on the CUDA backend; use PME")
        self.name = term.name
        self.term = term
        self.periodic = term.periodic
        self.n = n = len(term.charges)
        self.reciprocal = None
        self.alpha = 0.0
        self.krf = self.crf = 0.0
        if term.method == "PME":
            from bencao.backends.cuda.pme import CudaPME

            self.reciprocal = CudaPME(term, n, default_box)
            self.alpha = self.reciprocal.alpha
            self.coulomb_kind = COULOMB_EWALD
        elif term.method in ("CutoffPeriodic", "CutoffNonPeriodic"):
            self.krf, self.crf = reaction_field_constants(term.cutoff,
                                                          term.reaction_field_dielectric)
            self.coulomb_kind = COULOMB_REACTION_FIELD
        else:
            self.coulomb_kind = COULOMB_PLAIN
        no_cutoff = term.method == "NoCutoff"
        self._init_pairs(None if no_cutoff else term.cutoff, buffer, term.exception_atoms)
        self.switching = bool(not no_cutoff and 0 < term.switch_distance < term.cutoff)
        self.dispersion_coefficient = 0.0
        if term.dispersion_correction and term.periodic:
            self.dispersion_coefficient = lennard_jones_coefficient(
                term.sigma, term.epsilon, term.cutoff, term.switch_distance)
        # Per-atom parameters: charge times sqrt(1/(4 pi eps0)) (so qi qj carries the Coulomb
        # constant), sigma/2 and sqrt(4 epsilon) (so sums and products give the LB mixing).
        one = max(n, 1)
        inv_width = 1.0 / (self.cutoff - term.switch_distance) if self.switching else 0.0
        self._parameters = (
            cuda.to_device(np.resize(term.charges * math.sqrt(ONE_4PI_EPS0), one)),
            cuda.to_device(np.resize(0.5 * term.sigma, one)),
            cuda.to_device(np.resize(np.sqrt(4.0 * term.epsilon), one)),
            self.coulomb_kind, float(self.alpha), self.krf, self.crf, self.switching,
            float(term.switch_distance), inv_width)
        self._plain_charges = cuda.to_device(np.resize(np.asarray(term.charges, np.float64), one))
        m = len(term.exception_atoms)
        self._n_exceptions = m
        if m:
            self._exc_atoms = cuda.to_device(np.ascontiguousarray(term.exception_atoms, np.int64))
            self._exc_chargeprod = cuda.to_device(np.asarray(term.exception_chargeprod, np.float64))
            self._exc_sigma = cuda.to_device(np.asarray(term.exception_sigma, np.float64))
            self._exc_epsilon = cuda.to_device(np.asarray(term.exception_epsilon, np.float64))
            self._exc_energies = cuda.device_array(m, np.float64)

    def compute(self, state, box, energy=True):
        """Add NonbondedForce forces to ``state.forces``; return the energy, kJ/mol (NaN if
        ``energy`` is False and the term has no reciprocal part to report).

        Parameters
        ----------
        state : object
            ``state.positions`` ((N, 3) float64 device array, nm) and ``state.forces`` ((N, 3)
            int64 device array, ``bencao.constants.FORCE_SCALE`` units per kJ/mol/nm).
        box : (3, 3) float64 array or None
            Box vectors as rows, nm, OpenMM's reduced form (host); None if not periodic.
        energy : bool
            Sum and return the energy.
        """
        result = self.compute_direct(state, box, energy)
        if self.reciprocal is not None:
            with phase("reciprocal space"):
                result += self.reciprocal.compute(state, box, energy)
        return result

    def compute_direct(self, state, box, energy=True):
        """Everything but reciprocal space (pairs, exceptions, dispersion correction), kJ/mol;
        NaN if ``energy`` is False (the forces are the same either way)."""
        t = self.term
        box_device = self._device_box(box)
        total = self._pair_energy(_pair_kernels, self._parameters, state, box, energy)
        if self._n_exceptions:
            with phase("exceptions"):
                launch_kernel(_exceptions, self._n_exceptions)(
                    state.positions, self._exc_atoms, self._exc_chargeprod, self._exc_sigma,
                    self._exc_epsilon, self._plain_charges, box_device,
                    self.periodic and t.exceptions_use_periodic, ONE_4PI_EPS0, self.alpha,
                    self.reciprocal is not None, state.forces, self._exc_energies)
            if energy:
                total += math.fsum(self._exc_energies.copy_to_host())
        if not energy:
            return math.nan
        if self.dispersion_coefficient:
            total += self.dispersion_coefficient / abs(np.linalg.det(box))
        return total
