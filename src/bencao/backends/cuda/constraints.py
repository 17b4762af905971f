"""Holonomic distance constraints on the GPU: SETTLE for rigid waters, SHAKE/RATTLE for the rest.

The GPU counterpart of :mod:`bencao.backends.cpu.constraints`.  The checks of the input and the
partition of the constraints into rigid three-site waters and SHAKE clusters are the CPU's
(:class:`~bencao.backends.common.constraint_tables.ConstraintTables`, built on the host, its
tables uploaded once).  On the device one thread solves one water (SETTLE) or one cluster
(Gauss-Seidel SHAKE/RATTLE, in the CPU's constraint order), with the laws the CPU runs:
``settle_one``, ``shake_cluster``, ``rattle_cluster`` and ``settle_velocities_one`` of
:mod:`bencao.backends.common.constraint_laws` compiled as CUDA device functions (the small
``@njit`` helpers they call, ``_row``, ``_sub``, ``_dot``..., are compiled for the GPU by Numba
along with them), so the arithmetic cannot drift apart.

Waters and clusters share no particle and each is computed by one thread in a fixed order, so the
results do not depend on how the threads are scheduled: reruns are bit-identical.

Failures do not stop the device: the kernels record them in a small int64 array on the device
(an atomic minimum, so the first failing water or cluster is reported whatever the thread order)
and :meth:`CudaConstraints.check` downloads it, raises :class:`ConstraintError` with the CPU's
message and clears it.  A caller that runs many steps on the device passes ``check=False`` and
calls ``check`` once per batch, which keeps the host out of every step.
"""

from __future__ import annotations

import numpy as np
from numba import cuda

from bencao.backends.common import constraint_laws
from bencao.backends.common.constraint_tables import MAX_ITERATIONS, ConstraintTables
from bencao.backends.cuda.common import device_version, launch_kernel
from bencao.errors import ConstraintError

__all__ = ["MAX_ITERATIONS", "ConstraintError", "CudaConstraints"]


# --------------------------------------------------------------------------------------------
# The shared per-item laws as device functions
# --------------------------------------------------------------------------------------------


settle_one = device_version(constraint_laws.settle_one)
shake_cluster = device_version(constraint_laws.shake_cluster)
rattle_cluster = device_version(constraint_laws.rattle_cluster)
settle_velocities_one = device_version(constraint_laws.settle_velocities_one)


# --------------------------------------------------------------------------------------------
# Kernels: one thread per water or per cluster
# --------------------------------------------------------------------------------------------

# Slots of the failure flags (an int64 device array).  Each holds the smallest key of a failure
# (an atomic minimum, so the same failure is reported whatever order the threads ran in), or
# _NO_FAILURE.  Water key: the water's index.  Cluster key: k * C + m for cluster k and its worst
# constraint m (C constraints; m < C, so the key orders by cluster first and decodes with divmod;
# k * C < C^2 fits int64 for any system that fits in memory).
_WATER_FLAG = 0
_SHAKE_FLAG = 1
_RATTLE_FLAG = 2
_N_FLAGS = 3
_NO_FAILURE = np.iinfo(np.int64).max


@cuda.jit
def settle_positions_kernel(reference, positions, water_atoms, water_masses, water_shape, flags):
    """SETTLE water w = thread index, in place; a failure lowers ``flags[_WATER_FLAG]`` to w.

    Parameters
    ----------
    reference, positions : (N, 3) float64 device arrays
        Reference and updated positions, nm; positions is overwritten (a failed water is left
        untouched).
    water_atoms : (W, 3) int64 device array
        O, H, H of each water.
    water_masses : (W, 2) float64 device array
        O and H masses, amu.
    water_shape : (W, 3) float64 device array
        ra, rb, rc, nm (see :class:`~bencao.backends.common.constraint_tables.ConstraintTables`).
    flags : (3,) int64 device array
        Failure flags.
    """
    w = cuda.grid(1)
    if w >= water_atoms.shape[0]:
        return
    ok = settle_one(reference, positions, water_atoms[w, 0], water_atoms[w, 1], water_atoms[w, 2],
                    water_masses[w, 0], water_masses[w, 1], water_shape[w, 0], water_shape[w, 1],
                    water_shape[w, 2])
    if not ok:
        cuda.atomic.min(flags, _WATER_FLAG, np.int64(w))


@cuda.jit
def settle_velocities_kernel(positions, velocities, water_atoms, water_masses):
    """Remove the velocity along the three bonds of water w = thread index, exactly, in place.

    Parameters
    ----------
    positions : (N, 3) float64 device array
        Constrained positions, nm.
    velocities : (N, 3) float64 device array
        Velocities, nm/ps; overwritten.
    water_atoms, water_masses
        As for :func:`settle_positions_kernel`.
    """
    w = cuda.grid(1)
    if w >= water_atoms.shape[0]:
        return
    w_o = 1.0 / water_masses[w, 0]
    w_h = 1.0 / water_masses[w, 1]
    settle_velocities_one(positions, velocities, water_atoms[w, 0], water_atoms[w, 1],
                          water_atoms[w, 2], w_o, w_h)


@cuda.jit
def shake_kernel(reference, positions, pairs, lengths, inverse_masses, order, offsets, tolerance,
                 max_iterations, flags):
    """Gauss-Seidel SHAKE of cluster k = thread index, in place.

    Parameters
    ----------
    reference, positions : (N, 3) float64 device arrays
        Reference and updated positions, nm; positions is overwritten.
    pairs : (C, 2) int64 device array
        Constrained particle pairs.
    lengths : (C,) float64 device array
        Constraint lengths, nm.
    inverse_masses : (N,) float64 device array
        1 / mass, 1/amu (0 for massless particles).
    order, offsets : int64 device arrays
        Cluster k holds constraints order[offsets[k]:offsets[k + 1]], swept in that order.
    tolerance : float64
        Relative length tolerance.
    max_iterations : int64
        Sweeps before giving up; a failure lowers ``flags[_SHAKE_FLAG]`` to k * C + worst.
    flags : (3,) int64 device array
        Failure flags.
    """
    k = cuda.grid(1)
    if k >= offsets.shape[0] - 1:
        return
    worst = shake_cluster(reference, positions, pairs, lengths, inverse_masses,
                          order[offsets[k]:offsets[k + 1]], tolerance, max_iterations)
    if worst >= 0:
        cuda.atomic.min(flags, _SHAKE_FLAG, np.int64(k) * pairs.shape[0] + worst)


@cuda.jit
def rattle_kernel(positions, velocities, pairs, lengths, inverse_masses, order, offsets,
                  tolerance, max_iterations, flags):
    """Gauss-Seidel RATTLE of cluster k = thread index, in place; arguments as
    :func:`shake_kernel` (velocities nm/ps), failures in ``flags[_RATTLE_FLAG]``."""
    k = cuda.grid(1)
    if k >= offsets.shape[0] - 1:
        return
    worst = rattle_cluster(positions, velocities, pairs, lengths, inverse_masses,
                           order[offsets[k]:offsets[k + 1]], tolerance, max_iterations)
    if worst >= 0:
        cuda.atomic.min(flags, _RATTLE_FLAG, np.int64(k) * pairs.shape[0] + worst)


# --------------------------------------------------------------------------------------------
# Public interface
# --------------------------------------------------------------------------------------------


def _is_device_array(array) -> bool:
    # Duck typing: numba.cuda.is_cuda_array is missing from the simulator, whose arrays are not
    # real device arrays but do have the device-array methods used here.
    return hasattr(array, "copy_to_host") and hasattr(array, "is_c_contiguous")


def _span(array) -> tuple[int, int]:
    """[first byte, last byte + 1) of a C-contiguous device array."""
    interface = getattr(array, "__cuda_array_interface__", None)
    if interface is None:  # the simulator's arrays wrap host arrays
        interface = array.__array_interface__
    start = int(interface["data"][0])
    return start, start + int(array.nbytes)


def _overlap(a, b) -> bool:
    a0, a1 = _span(a)
    b0, b1 = _span(b)
    return a0 < b1 and b0 < a1


class CudaConstraints:
    """Holonomic distance constraints on the GPU: SETTLE for rigid three-site waters, SHAKE
    (positions) / RATTLE (velocities) for every other constraint; the CPU's
    :class:`~bencao.backends.cpu.constraints.CpuConstraints` on device arrays, built on the same
    :class:`~bencao.backends.common.constraint_tables.ConstraintTables`.

    Parameters
    ----------
    constraint_atoms : (C, 2) int array
        Particle pairs.
    constraint_lengths : (C,) float array
        Target distances, nm.
    masses : (N,) float array
        Particle masses, amu; a particle of mass 0 is never moved (at most one per constraint).
    tolerance : float
        Relative tolerance, as the CPU class's: SHAKE stops when |d - d0| / d0 <= tolerance for
        every constraint, RATTLE when |(v_i - v_j) . (r_i - r_j)| / d0^2 <= tolerance / (1 ps).
        SETTLE is exact to rounding whatever the tolerance.  May be changed between calls.
    max_iterations : int
        Gauss-Seidel sweeps per cluster before a failure is recorded.

    Attributes
    ----------
    n_constraints : int
        Number of constraints, C.
    n_waters : int
        Number of waters handled by SETTLE.
    n_clusters : int
        Number of independent SHAKE/RATTLE clusters.
    tolerance : float
        As the parameter; may be changed between calls.
    max_iterations : int
        As the parameter; may be changed between calls.

    Raises
    ------
    ValueError
        For the inputs the CPU class refuses (same checks, same messages).

    Notes
    -----
    Every array handed to the methods is an (N, 3) float64 C-contiguous device array (a
    ``numba.cuda`` device array) updated in place; nothing goes to the host unless a failure
    has to be described.  Failures are recorded on the device and raised by :meth:`check`,
    which ``apply_positions`` and ``apply_velocities`` call themselves unless told not to.
    """

    def __init__(self, constraint_atoms, constraint_lengths, masses, tolerance=1e-5, *,
                 max_iterations=MAX_ITERATIONS):
        # The shared tables check the input and partition the constraints; keep them for the
        # error messages and relative_errors.
        host = ConstraintTables(constraint_atoms, constraint_lengths, masses)
        self._host = host
        self.n_constraints = host.n_constraints
        self.n_waters = host.n_waters
        self.n_clusters = host.n_clusters
        self.tolerance = float(tolerance)
        self.max_iterations = int(max_iterations)
        self._n_particles = host._n_particles

        def upload(array, dtype):
            return cuda.to_device(np.ascontiguousarray(array, dtype=dtype))

        self._water_atoms = upload(host._water_atoms, np.int64)
        self._water_masses = upload(host._water_masses, np.float64)
        self._water_shape = upload(host._water_shape, np.float64)
        self._pairs = upload(host._pairs, np.int64)
        self._lengths = upload(host._lengths, np.float64)
        self._inverse_masses = upload(host._inverse_masses, np.float64)
        self._cluster_order = upload(host._cluster_order, np.int64)
        self._cluster_offsets = upload(host._cluster_offsets, np.int64)
        self._no_failure = np.full(_N_FLAGS, _NO_FAILURE, dtype=np.int64)
        self._flags_host = np.empty(_N_FLAGS, dtype=np.int64)
        self._flags = cuda.to_device(self._no_failure)
        # Copy of the reference when it shares memory with the positions (allocated once)
        self._scratch = None

    # ----------------------------------------------------------------------------------------

    def apply_positions(self, reference, positions, *, check=True) -> None:
        """Enforce every constraint, in place on the device.

        Particles move along the constraint vectors of ``reference``, weighted by inverse mass, as
        SHAKE and SETTLE do; massless particles do not move.  Waters are solved exactly, other
        constraints to ``tolerance``.

        Parameters
        ----------
        reference : (N, 3) float64 C-contiguous device array
            Constrained positions before the unconstrained update, nm.  May be ``positions``
            itself (it is then copied to a device scratch array kept by this object).
        positions : (N, 3) float64 C-contiguous device array
            Positions to correct, nm; overwritten.
        check : bool
            Call :meth:`check` before returning (one small download, which waits for the
            kernels).  With False, failures stay recorded on the device until :meth:`check`.

        Raises
        ------
        ConstraintError
            If ``check`` and a cluster did not converge or a water had no SETTLE solution.
            Positions are then partly updated (a failed water is left as it was).
        ValueError
            If an array is not an (N, 3) float64 C-contiguous device array.
        """
        self._require(reference, "reference")
        self._require(positions, "positions")
        if _overlap(reference, positions):
            # SETTLE and SHAKE read the reference while other threads write positions
            if self._scratch is None:
                self._scratch = cuda.device_array((self._n_particles, 3), dtype=np.float64)
            self._scratch.copy_to_device(reference)
            reference = self._scratch
        if self.n_waters:
            launch_kernel(settle_positions_kernel, self.n_waters)(
                reference, positions, self._water_atoms, self._water_masses, self._water_shape,
                self._flags)
        if self.n_clusters:
            launch_kernel(shake_kernel, self.n_clusters)(
                reference, positions, self._pairs, self._lengths, self._inverse_masses,
                self._cluster_order, self._cluster_offsets, np.float64(self.tolerance),
                np.int64(self.max_iterations), self._flags)
        if check:
            self.check(positions)

    def apply_velocities(self, positions, velocities, *, check=True) -> None:
        """Remove the relative velocity along every constraint, in place on the device (SETTLE's
        velocity part for waters, RATTLE for clusters).

        Parameters
        ----------
        positions : (N, 3) float64 C-contiguous device array
            Constrained positions, nm.
        velocities : (N, 3) float64 C-contiguous device array
            Velocities, nm/ps; overwritten.
        check : bool
            Call :meth:`check` before returning, as in :meth:`apply_positions`.

        Raises
        ------
        ConstraintError
            If ``check`` and a cluster did not converge.
        ValueError
            If an array is not an (N, 3) float64 C-contiguous device array.
        """
        self._require(positions, "positions")
        self._require(velocities, "velocities")
        if self.n_waters:
            launch_kernel(settle_velocities_kernel, self.n_waters)(
                positions, velocities, self._water_atoms, self._water_masses)
        if self.n_clusters:
            launch_kernel(rattle_kernel, self.n_clusters)(
                positions, velocities, self._pairs, self._lengths, self._inverse_masses,
                self._cluster_order, self._cluster_offsets, np.float64(self.tolerance),
                np.int64(self.max_iterations), self._flags)
        if check:
            self.check(positions, velocities)

    def check(self, positions, velocities=None) -> None:
        """Raise the first failure recorded on the device since the last check, and clear it.

        One download of a few int64s (which waits for the kernels already launched); positions
        (and velocities) are downloaded only to describe a failure.

        Parameters
        ----------
        positions : (N, 3) float64 device (or host) array
            Positions, nm, used to describe the failing constraint: those after the step that
            failed when called from ``apply_*``, the current ones when the check was deferred.
        velocities : (N, 3) float64 device (or host) array, optional
            Velocities, nm/ps; if given, a RATTLE failure also reports the relative speed.

        Raises
        ------
        ConstraintError
            With the CPU class's message: the atoms, the length and target of the worst
            constraint, and what to do.  A SETTLE failure is reported before a SHAKE failure,
            which is reported before a RATTLE failure; the flags are cleared in any case.
        """
        self._flags.copy_to_host(self._flags_host)
        if np.all(self._flags_host == _NO_FAILURE):
            return
        flags = self._flags_host.copy()
        self._flags.copy_to_device(self._no_failure)
        host = self._host
        positions = _to_host(positions)
        if flags[_WATER_FLAG] != _NO_FAILURE:
            raise host.settle_failure(positions, int(flags[_WATER_FLAG]))
        if flags[_SHAKE_FLAG] != _NO_FAILURE:
            c = int(flags[_SHAKE_FLAG]) % self.n_constraints
            raise host.shake_failure(positions, c, self.tolerance, self.max_iterations)
        c = int(flags[_RATTLE_FLAG]) % self.n_constraints
        if velocities is not None:
            velocities = _to_host(velocities)
        raise host.rattle_failure(positions, c, self.tolerance, self.max_iterations, velocities)

    def max_relative_error(self, positions) -> float:
        """Largest |d - d0| / d0 over all constraints (0 if there are none).

        Parameters
        ----------
        positions : (N, 3) float64 device (or host) array
            Positions, nm (downloaded).
        """
        return self._host.max_relative_error(_to_host(positions))

    def relative_errors(self, positions) -> np.ndarray:
        """|d - d0| / d0 of every constraint, in the order given to the constructor, as a host
        (C,) float64 array.

        Parameters
        ----------
        positions : (N, 3) float64 device (or host) array
            Positions, nm (downloaded).
        """
        return self._host.relative_errors(_to_host(positions))

    @property
    def constraint_atoms(self) -> np.ndarray:
        """(C, 2) int64 host array: the constrained particle pairs, in the constructor's order."""
        return self._host.constraint_atoms

    @property
    def constraint_lengths(self) -> np.ndarray:
        """(C,) float64 host array: the constrained distances, nm."""
        return self._host.constraint_lengths

    @property
    def settled(self) -> np.ndarray:
        """Boolean host mask over the constraints: True for those SETTLE solves (rigid waters)."""
        return self._host.settled

    # ----------------------------------------------------------------------------------------

    def _require(self, array, name) -> None:
        if not (_is_device_array(array) and array.dtype == np.float64
                and tuple(array.shape) == (self._n_particles, 3) and array.is_c_contiguous()):
            raise ValueError(f"{name}: expected a C-contiguous float64 device array of shape "
                             f"({self._n_particles}, 3) to work on in place")


def _to_host(array) -> np.ndarray:
    """A C-contiguous float64 host copy of a device array (or a host array as it is)."""
    if _is_device_array(array):
        array = array.copy_to_host()
    return np.ascontiguousarray(array, dtype=np.float64)
