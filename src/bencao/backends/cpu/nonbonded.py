"""NonbondedForce and tabulated pair terms on the CPU: neighbour list, pairs, exceptions, PME."""

from __future__ import annotations

import numba
import numpy as np

from bencao.backends.common.long_range_correction import (
    lennard_jones_coefficient,
    table_coefficient,
)
from bencao.backends.common.pair_laws import reaction_field_constants
from bencao.backends.common.parameter_offsets import OffsetNonbonded
from bencao.backends.common.registry import register_kernel
from bencao.backends.cpu.base import CpuTerm
from bencao.backends.cpu.cluster_energies import (
    ENERGY_DEGREE,
    cluster_pairs_energy,
    ewald_energy_polynomial,
)
from bencao.backends.cpu.cluster_kernels import CHUNK as CLUSTER_CHUNK
from bencao.backends.cpu.cluster_kernels import (
    COULOMB_EWALD,
    COULOMB_PLAIN,
    COULOMB_REACTION_FIELD,
    cluster_pairs_kernel,
    reduce_cluster_forces,
)
from bencao.backends.cpu.cluster_law import EWALD_COEFFICIENTS, ewald_force_coefficients
from bencao.backends.cpu.cluster_pairs import ClusterPairList
from bencao.backends.cpu.cluster_pairs_search import work_items
from bencao.backends.cpu.exceptions import exception_pairs, exception_scratch
from bencao.backends.cpu.neighbors import NeighborList, shift_vectors
from bencao.backends.cpu.pair_kernels import reduce_thread_forces, tabulated_pairs
from bencao.backends.cpu.threads import per_particle, streaming
from bencao.constants import ONE_4PI_EPS0
from bencao.forces.nonbonded import Nonbonded, TabulatedPairs
from bencao.profiling import phase

#: Default Verlet buffer, nm.  The list is rebuilt exactly when needed (two atoms may have
#: closed the buffer), so the buffer trades list builds against listed pairs and never costs
#: accuracy.  The kernel skips partners whose bounding box is beyond the cutoff at little cost
#: (~4 ns per listed pair), so a wide buffer pays.  DHFR at 4 fs, 2 threads (AMD Zen 5), pairs
#: + neighbour search per step: 0.2 nm 8.7 ms (a build every 4.8 steps), 0.3 nm 8.0 ms (every
#: 8.3), 0.4 nm 8.7 ms (every 14); alanine dipeptide: 0.87 and 0.88 ms at 0.2 and 0.3 nm.
DEFAULT_BUFFER = 0.3
#: Default buffer of the inner (pruned) list, nm; None: the outer list's, i.e. no pruning
#: between builds.  The kernel already drops, at every step, partners whose bounding box is
#: beyond the cutoff, so an inner list saves only that test on the partners it drops, and with
#: exact (displacement-bounded) lists it must be cut every few steps.  DHFR, 2 threads, pairs +
#: neighbour search per step: outer/inner 0.3/none 8.0 ms, 0.4/0.15 9.1 ms, 0.35/0.1 9.5 ms.
DEFAULT_PRUNE_BUFFER = None


class _PairTerm(CpuTerm):
    """Shared machinery of the pair terms: the neighbour list and per-thread buffers."""

    profile_phase = "nonbonded"
    work_per_particle = False

    def __init__(self, n_particles, cutoff, exclusions, periodic, buffer):
        self.periodic = periodic
        self.cutoff = cutoff
        self.neighbors = NeighborList(n_particles, cutoff, buffer, exclusions, periodic)
        self._thread_forces = np.zeros((0, n_particles, 3), np.int64)
        self._atom_energy = np.zeros(n_particles, np.float64)

    def _prepare(self, positions, box):
        """Update the list; return sorted positions, the box argument and the box shifts."""
        if self.neighbors.update(positions, box):
            self._sort_parameters(self.neighbors.order)
        # get_thread_id() stays below the configured maximum even if set_num_threads lowered it
        n_threads = numba.config.NUMBA_NUM_THREADS
        if self._thread_forces.shape[0] < n_threads:
            self._thread_forces = np.zeros((n_threads, len(self._atom_energy), 3), np.int64)
        sorted_positions = self.neighbors.sorted_positions(positions, box)
        box_arg = np.ascontiguousarray(box if self.periodic else np.eye(3), np.float64)
        return sorted_positions, box_arg, shift_vectors(box_arg if self.periodic else None)

    def _sort_parameters(self, order):
        raise NotImplementedError

    def get_state(self) -> dict:
        """Neighbour-list state for checkpoints (see ``NeighborList.get_state``)."""
        return self.neighbors.get_state()

    def set_state(self, state: dict) -> None:
        """Restore the neighbour list saved by ``get_state``."""
        self.neighbors.set_state(state)
        self._sort_parameters(self.neighbors.order)


@register_kernel("cpu", Nonbonded)
class CpuNonbonded(CpuTerm):
    """OpenMM's NonbondedForce: real-space pairs, exceptions, Ewald/PME reciprocal space and the
    dispersion correction.

    The regular pairs run on the cluster-pair list and SIMD kernel (``cluster_pairs``,
    ``cluster_kernels``) in float32; exceptions and the Ewald exclusion corrections in float64.

    Parameters
    ----------
    term : bencao.forces.Nonbonded
        Parameters.
    default_box : (3, 3) float64 array or None
        The system's default box (Ewald/PME parameters are chosen from it, as OpenMM does).
    buffer : float
        Verlet buffer, nm.
    """

    profile_phase = "nonbonded"
    work_per_particle = False  # its exceptions limit themselves
    #: ``compute(..., energy=False)`` skips the pair energies (a separate float64 pass)
    energy_optional = True

    @classmethod
    def from_term(cls, term, system, buffer=DEFAULT_BUFFER):
        """The kernel of ``system``'s ``term``, with the system's box as the default box (inside
        an :class:`OffsetNonbonded` when global parameters shift its parameters)."""
        if term.has_offsets:
            return OffsetNonbonded(term, lambda plain: cls(plain, system.box, buffer=buffer))
        return cls(term, system.box, buffer=buffer)

    def __init__(self, term, default_box, buffer=DEFAULT_BUFFER,
                 prune_buffer=DEFAULT_PRUNE_BUFFER):
        self.name = term.name
        self.term = term
        self.periodic = term.periodic
        n = len(term.charges)
        self.cutoff = term.cutoff if term.method != "NoCutoff" else np.inf
        self.neighbors = ClusterPairList(n, self.cutoff, buffer, term.exception_atoms, term.periodic,
                                         prune_buffer)
        self.reciprocal = None
        self.alpha = 0.0
        self._ewald = np.zeros(EWALD_COEFFICIENTS, np.float32)
        self._energy_polynomial = np.zeros(ENERGY_DEGREE + 1)
        self.krf = self.crf = 0.0
        if term.method in ("Ewald", "PME"):
            from bencao.backends.cpu.pme import CpuEwald, CpuPME

            cls = CpuPME if term.method == "PME" else CpuEwald
            self.reciprocal = cls(term, n, default_box)
            self.alpha = float(self.reciprocal.alpha)
            self.coulomb_kind = COULOMB_EWALD
            self._ewald = ewald_force_coefficients(self.alpha, term.cutoff).astype(np.float32)
            self._energy_polynomial = ewald_energy_polynomial(self.alpha, term.cutoff)
        elif term.method in ("CutoffPeriodic", "CutoffNonPeriodic"):
            self.krf, self.crf = reaction_field_constants(term.cutoff,
                                                          term.reaction_field_dielectric)
            self.coulomb_kind = COULOMB_REACTION_FIELD
        else:
            self.coulomb_kind = COULOMB_PLAIN
        self.switching = bool(0 < term.switch_distance < term.cutoff)
        self.dispersion_coefficient = 0.0
        if term.dispersion_correction and term.periodic:
            self.dispersion_coefficient = lennard_jones_coefficient(
                term.sigma, term.epsilon, term.cutoff, term.switch_distance
            )
        self._thread_forces = np.zeros((0, 3, 0), np.int64)
        self._coordinates = np.zeros((3, 0), np.float32)
        self._exception_scratch = exception_scratch(term.exception_atoms)
        self._items_key = None
        self._box_cache = None  # (box bytes, what _box_constants returns)

    def _update(self, positions, box, energy):
        """Rebuild the list if needed (re-sorting the parameters) and refresh coordinates:
        float32 for the forces, and float64 too if ``energy``."""
        nl = self.neighbors
        with phase("neighbour search"):
            if nl.update(positions, box):
                self._sort_parameters()
        with phase("pairs"):
            slots = len(nl.slot_atom)
            n_threads = numba.config.NUMBA_NUM_THREADS
            # The number of slots changes at almost every build.  The accumulators keep spare
            # slots (beyond ``slots`` they stay zero: the kernel never writes there and the
            # reduction zeroes what it reads), so that they are not reallocated, and their
            # pages faulted in again, each time.
            stored = self._thread_forces.shape
            if stored[0] != n_threads or stored[2] < slots:
                self._thread_forces = np.zeros((n_threads, 3, int(slots * 1.1) + 64), np.int64)
            if self._x.shape[0] != slots:
                if self._coordinates.shape[1] < slots:
                    spare = int(slots * 1.1) + 64
                    self._coordinates = np.empty((3, spare), np.float32)
                    self._coordinates64 = np.empty((3, spare))
                    self._energies = np.zeros(spare // 8)
                self._x, self._y, self._z = (row[:slots] for row in self._coordinates)
                self._x64, self._y64, self._z64 = (row[:slots] for row in self._coordinates64)
                self._cluster_energy = self._energies[:nl.n_clusters]
            with streaming(slots):
                nl.coordinates(positions, box, self._x, self._y, self._z)
                if energy:
                    nl.coordinates(positions, box, self._x64, self._y64, self._z64)

    def _work_items(self):
        """The pair kernel's parallel work items over the inner list, made again only when the
        list has changed (a build or a prune), not at every step."""
        nl = self.neighbors
        key = (nl.builds, nl.prunes)
        if self._items_key != key:
            self._items = work_items(nl.inner_counts, CLUSTER_CHUNK)
            self._items_key = key
        return self._items

    def _sort_parameters(self):
        """Per-slot float32 parameters in the order of the last build (zero on padding)."""
        t = self.term
        slot_atom = self.neighbors.slot_atom
        atoms = np.maximum(slot_atom, 0)
        padding = slot_atom < 0
        self._charge64 = np.where(padding, 0.0, t.charges[atoms] * np.sqrt(ONE_4PI_EPS0))
        self._charge = self._charge64.astype(np.float32)
        self._half_sigma64 = np.where(padding, 0.0, 0.5 * t.sigma[atoms])
        self._sqrt_4epsilon64 = np.where(padding, 0.0, np.sqrt(4.0 * t.epsilon[atoms]))
        self._half_sigma = self._half_sigma64.astype(np.float32)
        self._sqrt_4epsilon = self._sqrt_4epsilon64.astype(np.float32)
        self._x = np.empty(0, np.float32)

    def get_state(self) -> dict:
        """Neighbour-list state for checkpoints (see ``ClusterPairList.get_state``)."""
        return self.neighbors.get_state()

    def set_state(self, state: dict) -> None:
        """Restore the neighbour list saved by ``get_state``."""
        self.neighbors.set_state(state)
        if state.get("reference") is not None:
            self._sort_parameters()

    def compute(self, positions, box, forces, energy=True):
        """Add NonbondedForce forces to ``forces`` (int64 fixed point); return the energy, kJ/mol
        (NaN if ``energy`` is False: the real-space pair energy is then not computed)."""
        result = self.compute_direct(positions, box, forces, energy)
        if self.reciprocal is not None:
            with phase("reciprocal space"):
                result += self.reciprocal.compute(positions, box, forces)
        return result

    def compute_direct(self, positions, box, forces, energy=True):
        """Everything but reciprocal space (pairs, exceptions, dispersion correction), kJ/mol.

        Multiple time stepping evaluates this part every step and ``reciprocal`` less often.
        With ``energy`` False only forces are computed and NaN is returned.
        """
        t = self.term
        self._update(positions, box, energy)
        nl = self.neighbors
        box_arg, shifts, shifts32, volume = self._box_constants(box)
        with phase("pairs"):
            cluster_pairs_kernel(
                self._x, self._y, self._z, self._charge, self._half_sigma, self._sqrt_4epsilon,
                nl.inner_j, nl.inner_shift, nl.inner_columns, nl.inner_counts,
                shifts32, self.cutoff**2, self.coulomb_kind,
                self._ewald, self.krf, self.switching, t.switch_distance, self.cutoff,
                self._thread_forces, items=self._work_items(),
            )
            with streaming(len(nl.slot_atom)):
                reduce_cluster_forces(self._thread_forces, nl.slot_atom, forces)
        result = np.nan
        if energy:
            with phase("pair energies"):
                cluster_pairs_energy(
                    self._x64, self._y64, self._z64, self._charge64, self._half_sigma64,
                    self._sqrt_4epsilon64, nl.inner_j, nl.inner_shift, nl.inner_columns,
                    nl.inner_counts,
                    shifts, self.cutoff**2,
                    self.coulomb_kind, self._energy_polynomial, self.krf, self.crf, self.switching,
                    t.switch_distance, self.cutoff, self._cluster_energy,
                )
                result = float(np.sum(self._cluster_energy))
        with phase("exceptions"), per_particle(len(positions)):
            result += exception_pairs(
                positions, t.exception_atoms, t.exception_chargeprod, t.exception_sigma,
                t.exception_epsilon, t.charges, box_arg, self.periodic and t.exceptions_use_periodic,
                ONE_4PI_EPS0, self.alpha, self.reciprocal is not None, forces,
                self._exception_scratch,
            )
        if self.dispersion_coefficient:
            result += self.dispersion_coefficient / volume
        return result

    def _box_constants(self, box):
        """The box (nm; the identity without periodicity), its 27 shift vectors in float64 and
        float32 (nm) and its volume (nm^3), made again only when the box changes: at every step
        NumPy's small-array calls for them took ~0.06 ms."""
        key = None if box is None else np.asarray(box, np.float64).tobytes()
        if self._box_cache is None or self._box_cache[0] != key:
            box_arg = np.ascontiguousarray(box if self.periodic else np.eye(3), np.float64)
            shifts = shift_vectors(box_arg if self.periodic else None)
            volume = np.nan if box is None else abs(np.linalg.det(box))
            self._box_cache = (key, (box_arg, shifts, shifts.astype(np.float32), volume))
        return self._box_cache[1]


@register_kernel("cpu", TabulatedPairs)
class CpuTabulatedPairs(_PairTerm):
    """Type-tabulated c12/c6/c4 pair potential (CustomNonbondedForce NBFIX and 12-6-4 forms).

    Parameters
    ----------
    term : bencao.forces.TabulatedPairs
        Parameters.
    buffer : float
        Verlet buffer, nm.
    """

    @classmethod
    def from_term(cls, term, system, buffer=DEFAULT_BUFFER):
        """The kernel of ``system``'s ``term``."""
        return cls(term, buffer=buffer)

    def __init__(self, term, buffer=DEFAULT_BUFFER):
        self.name = term.name
        self.term = term
        cutoff = term.cutoff if term.method != "NoCutoff" else np.inf
        super().__init__(len(term.types), cutoff, term.exclusions, term.periodic, buffer)
        self._c12 = np.ascontiguousarray(term.c12, np.float32)
        self._c6 = np.ascontiguousarray(term.c6, np.float32)
        self._c4 = np.ascontiguousarray(term.c4, np.float32)
        self.correction_coefficient = 0.0
        if term.long_range_correction and term.periodic:
            self.correction_coefficient = table_coefficient(
                term.types, term.c12, term.c6, term.c4, term.cutoff, term.switch_distance
            )
        self._sort_parameters(self.neighbors.order)

    def _sort_parameters(self, order):
        self._types = self.term.types[order].astype(np.int64)

    def compute(self, positions, box, forces):
        """Add the pair forces to ``forces`` (int64 fixed point); return the energy, kJ/mol."""
        sorted_positions, box_arg, shifts = self._prepare(positions, box)
        nl = self.neighbors
        tabulated_pairs(
            sorted_positions, self._types, self._c12, self._c6, self._c4, nl.neighbors, nl.counts,
            shifts, nl.minimum_image_mode, box_arg, self.cutoff, self.term.switch_distance, self._thread_forces,
            self._atom_energy,
        )
        energy = float(np.sum(self._atom_energy))
        reduce_thread_forces(self._thread_forces, nl.order, forces)
        if self.correction_coefficient:
            energy += self.correction_coefficient / abs(np.linalg.det(box))
        return energy
