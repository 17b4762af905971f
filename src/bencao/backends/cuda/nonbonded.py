"""OpenMM's NonbondedForce on the GPU: pairs, exceptions, PME, dispersion correction.

The CUDA counterpart of ``cpu.nonbonded.CpuNonbonded``, with the same physics term by term:

* regular pairs on a device-built Verlet list (``cuda.pairs``): plain Coulomb for NoCutoff
  (all pairs, no list), reaction field for the Cutoff methods (OpenMM's krf and crf),
  erfc(alpha r)/r for PME's real space; Lennard-Jones with Lorentz-Berthelot mixing and
  OpenMM's switching function;
* exceptions, one thread each, including the removal of the reciprocal-space erf term of every
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

from bencao.backends.common.exclusions import exclusion_table
from bencao.backends.common.long_range_correction import lennard_jones_coefficient
from bencao.backends.cuda.common import device_function, launch_kernel, to_fixed
from bencao.backends.cuda.pairs import CudaPairList, minimum_image
from bencao.constants import ONE_4PI_EPS0
from bencao.forces import Nonbonded
from bencao.profiling import phase

#: Coulomb kinds of the pair kernels (the same numbers as ``cpu.cluster_kernels``).
COULOMB_PLAIN = 0  #: 1/r (NoCutoff)
COULOMB_REACTION_FIELD = 1  #: 1/r + krf r^2 - crf (CutoffNonPeriodic, CutoffPeriodic)
COULOMB_EWALD = 2  #: erfc(alpha r)/r (Ewald, PME real space)

#: Verlet buffer, nm.  The list is rebuilt exactly when needed, so the buffer trades list
#: builds against listed pairs and never costs accuracy (the CPU list's default; not yet tuned
#: for the GPU).
DEFAULT_BUFFER = 0.2


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
        f_coul = qq * (erfc_term + 1.1283791670955126 * alpha * math.exp(-ar * ar)) * inv_r2
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


# ---------------------------------------------------------------------------------------------
# Pair and exception kernels.


@cuda.jit
def _listed_pairs(positions, charges, half_sigma, sqrt_4eps, neighbors, counts, box, periodic,
                  cutoff2, kind, alpha, krf, crf, switching, rsw, inv_width, forces, energies):
    """One thread per atom i over its list: pair forces into the fixed-point accumulator, the
    energy of i's pairs into ``energies[i]``.

    The force on i is summed over its list in float64 (list order: fixed) and converted once;
    each partner's share is converted and added with an integer atomic per component.
    """
    i = cuda.grid(1)
    if i >= positions.shape[0]:
        return
    xi = positions[i, 0]
    yi = positions[i, 1]
    zi = positions[i, 2]
    qi = charges[i]
    si = half_sigma[i]
    ei = sqrt_4eps[i]
    ax = box[0, 0]
    bx = box[1, 0]
    by = box[1, 1]
    cx = box[2, 0]
    cy = box[2, 1]
    cz = box[2, 2]
    fxi = 0.0
    fyi = 0.0
    fzi = 0.0
    energy = 0.0
    for k in range(counts[i]):
        j = neighbors[i, k]
        dx = positions[j, 0] - xi
        dy = positions[j, 1] - yi
        dz = positions[j, 2] - zi
        if periodic:
            dx, dy, dz = minimum_image(dx, dy, dz, ax, bx, by, cx, cy, cz)
        r2 = dx * dx + dy * dy + dz * dz
        if r2 >= cutoff2:
            continue
        f, e = pair_interaction(r2, qi * charges[j], si + half_sigma[j], ei * sqrt_4eps[j],
                                kind, alpha, krf, crf, switching, rsw, inv_width)
        energy += e
        fx = f * dx
        fy = f * dy
        fz = f * dz
        fxi -= fx
        fyi -= fy
        fzi -= fz
        cuda.atomic.add(forces, (j, 0), to_fixed(fx))
        cuda.atomic.add(forces, (j, 1), to_fixed(fy))
        cuda.atomic.add(forces, (j, 2), to_fixed(fz))
    cuda.atomic.add(forces, (i, 0), to_fixed(fxi))
    cuda.atomic.add(forces, (i, 1), to_fixed(fyi))
    cuda.atomic.add(forces, (i, 2), to_fixed(fzi))
    energies[i] = energy


@cuda.jit
def _all_pairs(positions, charges, half_sigma, sqrt_4eps, excl_start, excl_atoms, forces,
               energies):
    """NoCutoff: one thread per atom i over every j > i, plain Coulomb + LJ, no list.

    The exclusions of i are sorted and j increases, so one pointer walks them alongside.  (The
    work per thread falls with i; fine for the small systems run without a cutoff.)
    """
    i = cuda.grid(1)
    n = positions.shape[0]
    if i >= n:
        return
    xi = positions[i, 0]
    yi = positions[i, 1]
    zi = positions[i, 2]
    qi = charges[i]
    si = half_sigma[i]
    ei = sqrt_4eps[i]
    e = excl_start[i]
    e1 = excl_start[i + 1]
    while e < e1 and excl_atoms[e] <= i:
        e += 1
    fxi = 0.0
    fyi = 0.0
    fzi = 0.0
    energy = 0.0
    for j in range(i + 1, n):
        if e < e1 and excl_atoms[e] == j:
            e += 1
            continue
        dx = positions[j, 0] - xi
        dy = positions[j, 1] - yi
        dz = positions[j, 2] - zi
        f, pe = pair_interaction(dx * dx + dy * dy + dz * dz, qi * charges[j],
                                 si + half_sigma[j], ei * sqrt_4eps[j], 0, 0.0, 0.0, 0.0,
                                 False, 0.0, 0.0)
        energy += pe
        fx = f * dx
        fy = f * dy
        fz = f * dz
        fxi -= fx
        fyi -= fy
        fzi -= fz
        cuda.atomic.add(forces, (j, 0), to_fixed(fx))
        cuda.atomic.add(forces, (j, 1), to_fixed(fy))
        cuda.atomic.add(forces, (j, 2), to_fixed(fz))
    cuda.atomic.add(forces, (i, 0), to_fixed(fxi))
    cuda.atomic.add(forces, (i, 1), to_fixed(fyi))
    cuda.atomic.add(forces, (i, 2), to_fixed(fzi))
    energies[i] = energy


@cuda.jit
def _exceptions(positions, atoms, chargeprod, sigma, epsilon, charges, box, periodic,
                coulomb_constant, alpha, ewald, forces, energies):
    """One thread per exception: plain Coulomb + LJ with its own parameters and, for
    Ewald/PME, minus the reciprocal-space erf(alpha r)/r of the pair (as
    ``cpu.nonbonded.exception_pairs``); energy into ``energies[m]``."""
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
    r2 = dx * dx + dy * dy + dz * dz
    r = math.sqrt(r2)
    energy = 0.0
    f_over_r = 0.0
    if chargeprod[m] != 0.0 or epsilon[m] != 0.0:
        inv_r2 = 1.0 / r2
        e_coul = coulomb_constant * chargeprod[m] / r
        sr2 = sigma[m] * sigma[m] * inv_r2
        sr6 = sr2 * sr2 * sr2
        energy += e_coul + 4.0 * epsilon[m] * (sr6 * sr6 - sr6)
        f_over_r += (e_coul + 4.0 * epsilon[m] * (12.0 * sr6 * sr6 - 6.0 * sr6)) * inv_r2
    if ewald:
        qq = coulomb_constant * charges[i] * charges[j]
        if qq != 0.0:
            two_over_sqrt_pi = 1.1283791670955126
            ar = alpha * r
            if ar < 1e-8:
                # erf(ar)/r -> 2 alpha/sqrt(pi) as r -> 0 (coincident sites); force -> 0
                energy -= qq * two_over_sqrt_pi * alpha
            else:
                erf_term = math.erf(ar) / r
                energy -= qq * erf_term
                f_over_r -= qq * (erf_term - two_over_sqrt_pi * alpha * math.exp(-ar * ar)) / r2
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


class CudaNonbonded:
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

    Raises
    ------
    TypeError
        For a term this backend does not run yet (plain Ewald).
    """

    profile_phase = "nonbonded"
    #: ``compute(..., energy=False)`` skips summing the energies (and returns NaN)
    energy_optional = True

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
            eps = term.reaction_field_dielectric
            self.krf = (eps - 1.0) / ((2.0 * eps + 1.0) * term.cutoff**3)
            self.crf = 3.0 * eps / ((2.0 * eps + 1.0) * term.cutoff)
            self.coulomb_kind = COULOMB_REACTION_FIELD
        else:
            self.coulomb_kind = COULOMB_PLAIN
        self.neighbors = None
        self.switching = False
        if term.method != "NoCutoff":
            self.cutoff = float(term.cutoff)
            self.neighbors = CudaPairList(n, self.cutoff, buffer, term.exception_atoms,
                                          self.periodic)
            self.switching = bool(0 < term.switch_distance < term.cutoff)
        self.dispersion_coefficient = 0.0
        if term.dispersion_correction and term.periodic:
            self.dispersion_coefficient = lennard_jones_coefficient(
                term.sigma, term.epsilon, term.cutoff, term.switch_distance)
        # Per-atom parameters: charge times sqrt(1/(4 pi eps0)) (so qi qj carries the Coulomb
        # constant), sigma/2 and sqrt(4 epsilon) (so sums and products give the LB mixing).
        one = max(n, 1)
        self._charges = cuda.to_device(np.resize(term.charges * math.sqrt(ONE_4PI_EPS0), one))
        self._half_sigma = cuda.to_device(np.resize(0.5 * term.sigma, one))
        self._sqrt_4eps = cuda.to_device(np.resize(np.sqrt(4.0 * term.epsilon), one))
        self._plain_charges = cuda.to_device(np.resize(np.asarray(term.charges, np.float64), one))
        self._energies = cuda.device_array(one, np.float64)
        if self.neighbors is None:
            start, partners = exclusion_table(n, term.exception_atoms)
            self._excl_start = cuda.to_device(start)
            self._excl_atoms = cuda.to_device(partners if len(partners) else np.zeros(1, np.int64))
        m = len(term.exception_atoms)
        self._n_exceptions = m
        if m:
            self._exc_atoms = cuda.to_device(np.ascontiguousarray(term.exception_atoms, np.int64))
            self._exc_chargeprod = cuda.to_device(np.asarray(term.exception_chargeprod, np.float64))
            self._exc_sigma = cuda.to_device(np.asarray(term.exception_sigma, np.float64))
            self._exc_epsilon = cuda.to_device(np.asarray(term.exception_epsilon, np.float64))
            self._exc_energies = cuda.device_array(m, np.float64)
        self._box_host = None
        self._box_device = cuda.to_device(np.eye(3))

    def _device_box(self, box):
        """The box as a device array, re-sent only when it changed (identity if not periodic)."""
        if not self.periodic:
            return self._box_device
        box = np.ascontiguousarray(box, np.float64)
        if self._box_host is None or not np.array_equal(box, self._box_host):
            self._box_host = box.copy()
            self._box_device = cuda.to_device(box)
        return self._box_device

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
        n = self.n
        total = 0.0
        if n:
            if self.neighbors is None:
                with phase("pairs"):
                    launch_kernel(_all_pairs, n)(
                        state.positions, self._charges, self._half_sigma, self._sqrt_4eps,
                        self._excl_start, self._excl_atoms, state.forces, self._energies)
            else:
                with phase("neighbour search"):
                    self.neighbors.update(state.positions, box)
                nl = self.neighbors
                inv_width = 1.0 / (self.cutoff - t.switch_distance) if self.switching else 0.0
                with phase("pairs"):
                    launch_kernel(_listed_pairs, n)(
                        state.positions, self._charges, self._half_sigma, self._sqrt_4eps,
                        nl.neighbors, nl.counts, box_device, self.periodic, self.cutoff**2,
                        self.coulomb_kind, self.alpha, self.krf, self.crf, self.switching,
                        float(t.switch_distance), inv_width, state.forces, self._energies)
            if energy:
                total += math.fsum(self._energies.copy_to_host()[:n])
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

    def get_state(self) -> dict:
        """Neighbour-list state for checkpoints (see ``CudaPairList.get_state``)."""
        return {} if self.neighbors is None else self.neighbors.get_state()

    def set_state(self, state: dict) -> None:
        """Restore the neighbour list saved by ``get_state``."""
        if self.neighbors is not None and state:
            self.neighbors.set_state(state)
