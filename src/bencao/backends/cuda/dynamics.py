"""Steps on the GPU: Verlet, LangevinMiddle and Nosé–Hoover, constraints and MTS, on the device.

Positions, velocities, forces and the random streams stay in device memory for a whole
``run(n)``; the host sees them only when a caller asks (a report, a checkpoint), and Monte Carlo
volume moves scale the molecules on the device too (:meth:`CudaDynamics.scale_to`).  A step is the
scheme of :mod:`bencao.dynamics.schemes` that the CPU runs too, primitive for primitive, so CPU
and CUDA trajectories differ only by the rounding of the force kernels.  The Nosé–Hoover chain's
few numbers are propagated on the host from a kinetic energy summed on the device.

Nothing in a step waits for the host, except the neighbour list's small displacement check.
Blow-ups are caught without a per-step transfer: the kick raises a device flag when a force
reached the fixed-point clamp, the flag is read every ``CHECK_EVERY`` steps, and a flagged batch
is replayed from its saved start one step at a time (bit-identically: the same kernels and
random streams) to stop at the first bad step and name its atoms, as the CPU backend does.

Random numbers are Numba's xoroshiro128+ generators, one stream per particle: a particle's noise
depends only on the seed, its index and the step, never on the launch geometry, so runs are
bit-identical, and saving the (N,) stream states continues a run bit-identically.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from numba import cuda
from numba.cuda.random import xoroshiro128p_dtype

from bencao.backends.common.dynamics import Dynamics
from bencao.backends.common.force_cache import ForceCache
from bencao.backends.cuda import integrate as kernels
from bencao.backends.cuda.common import launch_kernel
from bencao.backends.cuda.device import using_simulator
from bencao.constants import BOLTZMANN, FORCE_CLAMP, FORCE_SCALE
from bencao.errors import BlowUpError
from bencao.profiling import phase

#: Steps run on the device between reads of the blow-up flag (one 8-byte transfer each).
CHECK_EVERY = 50

#: A fixed-point force component at or beyond this means the structure blew up: the CPU
#: backend's test (half the clamp) in fixed-point units.
BLOW_UP_FIXED = np.int64(0.5 * FORCE_CLAMP * FORCE_SCALE)

def _seeded_states(n: int, seed: int) -> np.ndarray:
    """(n,) xoroshiro128+ states drawn from NumPy's SeedSequence of ``seed``.

    Numba's ``create_xoroshiro128p_states`` spaces the streams 2**64 draws apart by jumping
    each state from the previous one, a serial loop on the host (minutes for 10^5 particles in
    the CUDA simulator).  Independently hashed 128-bit starting points are as good here: two
    of n streams overlap within a run of L draws with probability about n^2 L / 2^128 (1e-17
    for a million particles over 10^9 steps).
    """
    words = np.random.SeedSequence(int(seed)).generate_state(2 * n, np.uint64).reshape(n, 2)
    words[(words[:, 0] == 0) & (words[:, 1] == 0), 0] = 1  # the one state xoroshiro cannot leave
    states = np.empty(n, dtype=xoroshiro128p_dtype)
    states["s0"] = words[:, 0]
    states["s1"] = words[:, 1]
    return states


# ----------------------------------------------------------------------------------------------


class CudaDynamics(Dynamics):
    """The step primitives of a ``CudaBackend``'s system, on the device (see
    :class:`bencao.backends.common.dynamics.Dynamics` for the parameters).

    Parameters
    ----------
    seed : int
        Seed of the per-particle random streams.
    positions : (N, 3) float64 array
        Initial positions, nm; uploaded and constrained on the device.
    box : (3, 3) float64 array or None
        Box vectors as rows, nm.
    every : int
        Reciprocal-space forces every this many steps (impulse MTS); 1 for single stepping.

    Notes
    -----
    The host sees positions and velocities only when it asks (``positions``, ``velocities``:
    one download each).  Forces stay in the device's fixed-point accumulator between the kick
    that computed them and the next change of positions, so a Nosé–Hoover step reuses the
    forces of the previous step's end.
    """

    def __init__(self, backend, integrator, masses, seed, positions, box, cm_every=0, every=1,
                 chain=None):
        super().__init__(backend, integrator, masses, cm_every=cm_every, every=every,
                         chain=chain)
        # Which force group the accumulator holds for the current positions (None: none)
        self._accumulated = None
        self._step = 0
        self.cache = ForceCache(backend, every)
        self._kinetic = cuda.to_device(np.zeros(1, np.int64))
        n = backend.n_particles
        self.n = n
        masses = np.ascontiguousarray(masses, np.float64)
        inverse = np.divide(1.0, masses, out=np.zeros(n), where=masses > 0)
        self._masses = cuda.to_device(masses)
        self._inverse_masses = cuda.to_device(inverse)
        total_mass = float(np.sum(masses))
        self._inverse_total_mass = 1.0 / total_mass if total_mass > 0 else 0.0
        self.constraints = None
        system = backend.system
        if len(system.constraint_atoms):
            from bencao.backends.cuda.constraints import CudaConstraints

            self.constraints = CudaConstraints(system.constraint_atoms, system.constraint_lengths,
                                               masses, tolerance=integrator.constraint_tolerance)
        self._velocities = cuda.to_device(np.zeros((n, 3), np.float64))
        self._new_positions = cuda.device_array((n, 3), np.float64)
        self._unconstrained = cuda.device_array((n, 3), np.float64)
        self._momentum = cuda.to_device(np.zeros(3, np.int64))
        self._blown = cuda.to_device(np.full(1, np.iinfo(np.int64).max, np.int64))
        self.random_states = cuda.to_device(_seeded_states(max(n, 1), seed))
        # Saved start of the current batch, replayed if the batch blows up
        self._saved_positions = cuda.device_array((n, 3), np.float64)
        self._saved_velocities = cuda.device_array((n, 3), np.float64)
        self._saved_random = cuda.device_array(self.random_states.shape, xoroshiro128p_dtype)
        self._box = None
        self.set_positions(positions, box)
        if self.constraints is not None:
            state = self.backend.state
            self.constraints.apply_positions(state.positions, state.positions)
            self.backend.place_virtual_sites()

    # -- the state ----------------------------------------------------------------------------

    @property
    def positions(self) -> np.ndarray:
        """Current positions, nm (downloaded)."""
        return self.backend.state.positions.copy_to_host()

    @property
    def velocities(self) -> np.ndarray:
        """Current velocities, nm/ps (downloaded)."""
        return self._velocities.copy_to_host()

    @property
    def box(self):
        """Current box vectors as rows, nm, or None."""
        return self._box

    def set_positions(self, positions, box) -> None:
        """Upload ``positions`` (nm) and ``box`` and place the virtual sites on the device."""
        self.backend.state.upload(positions, box)
        self._box = None if box is None else np.array(box, np.float64)
        self.backend.place_virtual_sites()
        self._moved()

    def set_velocities(self, velocities) -> None:
        """Upload ``velocities`` (nm/ps)."""
        self._velocities.copy_to_device(np.ascontiguousarray(velocities, np.float64))

    def _moved(self) -> None:
        """The positions or box changed: forget the forces of the old ones."""
        self._accumulated = None
        self.cache.invalidate()

    def get_random_state(self) -> np.ndarray:
        """The per-particle random stream states, (N, 2) uint64, for a checkpoint."""
        states = self.random_states.copy_to_host()
        return np.stack([states["s0"], states["s1"]], axis=1)

    def set_random_state(self, values: np.ndarray) -> None:
        """Restore what :meth:`get_random_state` returned."""
        values = np.asarray(values, np.uint64)
        states = self.random_states.copy_to_host()
        if values.shape != (len(states), 2):
            raise ValueError(f"random stream states of shape {values.shape}; "
                             f"({len(states)}, 2) expected")
        states["s0"] = values[:, 0]
        states["s1"] = values[:, 1]
        self.random_states.copy_to_device(states)

    def get_state(self) -> tuple[dict, dict]:
        """(arrays, values) a bit-identical restart needs beyond positions and velocities: the
        random streams and the cached evaluations."""
        arrays, values = self.cache.get_state()
        arrays["device.random"] = self.get_random_state()
        return arrays, values

    def set_state(self, arrays: dict, values: dict) -> None:
        """Restore what :meth:`get_state` returned."""
        if "device.random" in arrays:
            self.set_random_state(arrays["device.random"])
        self.cache.set_state(arrays, values)

    # -- stepping -----------------------------------------------------------------------------

    def run(self, first_step: int, n_steps: int) -> None:
        """Advance ``n_steps`` steps from step number ``first_step``, all on the device.

        Raises
        ------
        BlowUpError
            If the forces blew up; the message names the step, the atoms and the term, the
            error's ``step`` attribute is that step's number, and the device holds the state
            at its start (the last sound one).
        ConstraintError
            If constraints failed (checked once per batch of ``CHECK_EVERY`` steps).
        """
        if self.constraints is not None:
            self.constraints.tolerance = self.integrator.constraint_tolerance
        self._moved()
        done = 0
        while done < n_steps:
            batch = min(CHECK_EVERY, n_steps - done)
            self._save()
            start = first_step + done
            for step in range(start, start + batch):
                self.step(step)
            if self._blown_at() is not None:
                self._replay(start, batch)  # raises
            if self.constraints is not None:
                self.constraints.check(self.backend.state.positions)
            done += batch

    def step(self, step: int) -> None:
        self._step = step
        super().step(step)

    def kick(self, dt: float, parts: str) -> None:
        """v += dt F / m with the forces of ``parts``, flagging a blow-up at this step."""
        if self._accumulated != parts:
            self.backend.accumulate(self._box, parts)
            self._accumulated = parts
        with phase("integration"):
            launch_kernel(kernels.kick, self.n)(self._velocities, self.backend.state.forces,
                                                self._inverse_masses, dt, BLOW_UP_FIXED,
                                                self._step, self._blown)

    def constrain_velocities(self) -> None:
        if self.constraints is not None:
            with phase("constraints"):
                self.constraints.apply_velocities(self.backend.state.positions, self._velocities,
                                                  check=False)

    def drift(self, dt: float) -> None:
        with phase("integration"):
            launch_kernel(kernels.drift, self.n)(self.backend.state.positions, self._velocities,
                                                 dt, self._new_positions)

    def langevin_drift(self, dt: float, friction: float, temperature: float) -> None:
        c = math.exp(-friction * dt)
        kt = BOLTZMANN * temperature
        with phase("integration"), _quiet_simulator():
            launch_kernel(kernels.langevin_drift, self.n)(
                self.backend.state.positions, self._velocities, self.random_states,
                self._inverse_masses, dt, c, kt * (1.0 - c * c), self._new_positions)

    def constrain_positions(self, dt: float) -> None:
        state = self.backend.state
        x, x_new = state.positions, self._new_positions
        if self.constraints is not None:
            with phase("constraints"):
                self._unconstrained.copy_to_device(x_new)
                self.constraints.apply_positions(x, x_new, check=False)
                launch_kernel(kernels.add_constraint_velocity, self.n)(
                    x_new, self._unconstrained, self._inverse_masses, 1.0 / dt, self._velocities)
        state.positions, self._new_positions = x_new, x
        self.backend.place_virtual_sites()
        self._moved()

    def remove_center_of_mass_motion(self) -> None:
        with phase("integration"):
            self._momentum.copy_to_device(np.zeros(3, np.int64))
            launch_kernel(kernels.sum_momentum, self.n)(self._velocities, self._masses,
                                                        self._momentum)
            launch_kernel(kernels.subtract_drift_velocity, self.n)(
                self._velocities, self._masses, self._momentum, self._inverse_total_mass)

    def scale_velocities(self, factor: float) -> None:
        launch_kernel(kernels.scale_velocities, self.n)(self._velocities, factor)

    def kinetic_energy(self, shift: float = 0.0) -> float:
        """Kinetic energy, kJ/mol, summed on the device (one 8-byte transfer), of the velocities
        advanced by ``shift`` time steps with the current forces and constrained (OpenMM's
        convention for leapfrog integrators)."""
        velocities = self._velocities
        if shift != 0.0:
            velocities = cuda.device_array_like(self._velocities)
            velocities.copy_to_device(self._velocities)
            forces = self.evaluation().forces  # all parts, whatever the MTS grouping
            inverse = self._inverse_masses.copy_to_host()
            host = velocities.copy_to_host()
            host += (shift * self.integrator.timestep) * inverse[:, None] * forces
            velocities.copy_to_device(host)
            if self.constraints is not None:
                self.constraints.apply_velocities(self.backend.state.positions, velocities)
        self._kinetic.copy_to_device(np.zeros(1, np.int64))
        launch_kernel(kernels.sum_kinetic, self.n)(velocities, self._masses, self._kinetic)
        return 0.5 * float(self._kinetic.copy_to_host()[0]) * (1.0 / kernels.KINETIC_SCALE)

    # -- energies, minimisation and Monte Carlo volume moves ----------------------------------

    def evaluation(self):
        """Energy and forces at the current positions (all parts), an ``Evaluation``."""
        evaluation = self.cache.full(self.positions, self._box)
        self._accumulated = None  # the evaluation used the device's accumulator
        return evaluation

    @property
    def host_constraints(self):
        """The constraints as a solver of host arrays (for the minimiser), or None."""
        return None if self.constraints is None else _HostConstraints(self.constraints)

    def potential_energy(self) -> float:
        """Potential energy at the positions on the device, kJ/mol (all parts)."""
        self._accumulated = None
        return float(sum(self.backend.accumulate(self._box, "all", energy=True).values()))

    def scale_to(self, new_box, molecules) -> float:
        """Move every molecule's centre with the box into ``new_box`` (nm), on the device, and
        return the potential energy there (kJ/mol); :meth:`undo_scale` takes the move back.

        Parameters
        ----------
        new_box : (3, 3) float64 array
            The proposed box vectors as rows, nm.
        molecules : tuple of int64 arrays
            ``(start, atoms)``, the CSR molecule table of ``dynamics.molecules.find_molecules``
            (uploaded on the first move).
        """
        if getattr(self, "_molecules", None) is None:
            start, atoms = molecules
            self._molecules = (cuda.to_device(np.ascontiguousarray(start, np.int64)),
                               cuda.to_device(np.ascontiguousarray(atoms, np.int64)))
        start, atoms = self._molecules
        state = self.backend.state
        self._box_before_move = self._box
        launch_kernel(kernels.scale_molecules, start.shape[0] - 1)(
            state.positions, start, atoms, cuda.to_device(np.linalg.inv(self._box)),
            cuda.to_device(np.ascontiguousarray(new_box, np.float64)), self._new_positions)
        # The scaled positions become current; the old ones wait in the spare array
        state.positions, self._new_positions = self._new_positions, state.positions
        self._box = np.array(new_box, np.float64)
        state.set_box(self._box)
        self.backend.place_virtual_sites()
        self._moved()
        return self.potential_energy()

    def undo_scale(self) -> None:
        """Return to the positions and box before the last :meth:`scale_to` (a rejected move)."""
        state = self.backend.state
        state.positions, self._new_positions = self._new_positions, state.positions
        self._box = self._box_before_move
        state.set_box(self._box)
        self._moved()

    # -- blow-ups -----------------------------------------------------------------------------

    def _save(self) -> None:
        """Keep the state at the start of a batch (device-to-device copies)."""
        self._saved_positions.copy_to_device(self.backend.state.positions)
        self._saved_velocities.copy_to_device(self._velocities)
        launch_kernel(kernels.copy_random_states, self.n)(self.random_states, self._saved_random)
        self._saved_chain = None if self.chain is None else self.chain.get_state()

    def _blown_at(self):
        value = int(self._blown.copy_to_host()[0])
        return None if value == np.iinfo(np.int64).max else value

    def _replay(self, start: int, batch: int) -> None:
        """Rerun a flagged batch from its start, checking every step, and raise at the bad one."""
        self._blown.copy_to_device(np.full(1, np.iinfo(np.int64).max, np.int64))
        self.backend.state.positions.copy_to_device(self._saved_positions)
        self._velocities.copy_to_device(self._saved_velocities)
        launch_kernel(kernels.copy_random_states, self.n)(self._saved_random, self.random_states)
        if self.chain is not None:
            self.chain.set_state(self._saved_chain)
        self._moved()
        # Nosé–Hoover flags the forces at the end of a step, which are those of the next step's
        # start: the positions after the batch's last step are checked too
        for step in range(start, start + batch + 1):
            positions = self.backend.state.positions.copy_to_host()
            try:
                # The backend's own test and diagnosis, on the positions of this step
                self.backend.compute(positions, self._box)
            except BlowUpError as error:
                failure = BlowUpError(f"at step {step}: {error}", error.particles, error.term)
                failure.step = step  # the device now holds the state of this step
                raise failure from None
            self._moved()
            if step < start + batch:
                self.step(step)
        raise BlowUpError(f"a force reached the fixed-point limit in steps {start}.."
                          f"{start + batch - 1} but not when they were rerun one by one; "
                          "please report this")


class _HostConstraints:
    """A ``CudaConstraints`` as a solver of host arrays, for the minimiser (which works on the
    host): each call uploads, solves on the device and downloads."""

    def __init__(self, device):
        self._device = device

    @property
    def tolerance(self) -> float:
        return self._device.tolerance

    @property
    def constraint_atoms(self) -> np.ndarray:
        return self._device.constraint_atoms

    @property
    def constraint_lengths(self) -> np.ndarray:
        return self._device.constraint_lengths

    def apply_positions(self, reference, positions) -> None:
        """Constrain host ``positions`` (nm, in place) along the bonds of ``reference``."""
        reference_device = cuda.to_device(np.ascontiguousarray(reference, np.float64))
        positions_device = cuda.to_device(np.ascontiguousarray(positions, np.float64))
        self._device.apply_positions(reference_device, positions_device)
        positions[...] = positions_device.copy_to_host()

    def max_relative_error(self, positions) -> float:
        """Largest |d - d0| / d0 over all constraints at host ``positions`` (nm)."""
        return self._device.max_relative_error(positions)


class _quiet_simulator:
    """In Numba's CUDA simulator, silence the uint64 overflow warnings of xoroshiro128+ (its
    arithmetic wraps on purpose; on a GPU there is nothing to silence)."""

    def __enter__(self):
        self._active = using_simulator()
        if self._active:
            self._errstate = np.errstate(over="ignore")
            self._errstate.__enter__()
            self._warnings = warnings.catch_warnings()
            self._warnings.__enter__()
            warnings.simplefilter("ignore")
        return self

    def __exit__(self, *exc):
        if self._active:
            self._warnings.__exit__(*exc)
            self._errstate.__exit__(*exc)
        return False
