"""Simulation: a System, an integrator and a backend, stepping a state forward in time."""

from __future__ import annotations

import math

import numpy as np

from bencao.backends.cpu import integrate as kernels
from bencao.backends.cpu.backend import Evaluation
from bencao.constants import BOLTZMANN, DENSITY_FACTOR
from bencao.dynamics.barostat import MonteCarloBarostat, VolumeMoves, box_volume
from bencao.dynamics.integrators import (
    LangevinMiddleIntegrator,
    NoseHooverIntegrator,
    VerletIntegrator,
)
from bencao.dynamics.molecules import find_molecules
from bencao.dynamics.nose_hoover import NoseHooverChain
from bencao.errors import BlowUpError
from bencao.evaluate import make_backend
from bencao.profiling import phase
from bencao.state import State

INTEGRATORS = (VerletIntegrator, LangevinMiddleIntegrator, NoseHooverIntegrator)


def _as_nm(values):
    """Strip OpenMM units (to nm, nm/ps) if present."""
    if hasattr(values, "value_in_unit_system"):
        from openmm import unit

        values = values.value_in_unit_system(unit.md_unit_system)
    return values


class Simulation:
    """Molecular dynamics of one system.

    Parameters
    ----------
    system : bencao.System
        What to simulate.
    integrator : VerletIntegrator, LangevinMiddleIntegrator or NoseHooverIntegrator
        How to step it.
    positions : (N, 3) array_like
        Initial positions, nm.  Constraints are applied to them on construction.
    box : (3, 3) array_like or None
        Periodic box vectors as rows, nm; defaults to the system's box.
    velocities : (N, 3) array_like or None
        Initial velocities, nm/ps; zero if not given.
    seed : int or None
        Seed of the random stream (Langevin noise, barostat moves, initial velocities).  The
        same seed gives a bit-identical trajectory on any number of threads.
    backend : str
        "cpu", or "cuda" (an NVIDIA GPU, or Numba's CUDA simulator): steps then run wholly on
        the device (forces, constraints, MTS, noise, barostat moves; the Nosé–Hoover chain's
        few numbers are propagated on the host), the state coming back to the host once per
        ``step`` call; minimisation runs on the host with forces from the device.
    barostat : MonteCarloBarostat or None
        Pressure coupling (needs a periodic system).

    Notes
    -----
    One ``step(n)`` call runs n steps with no per-particle Python work: each step is a fixed
    sequence of compiled kernels (forces, kicks, drifts, constraints) on arrays allocated once.
    """

    def __init__(self, system, integrator, positions, box=None, velocities=None, seed=None,
                 backend: str = "cpu", barostat: MonteCarloBarostat | None = None):
        if not isinstance(integrator, INTEGRATORS):
            names = ", ".join(cls.__name__ for cls in INTEGRATORS)
            raise TypeError(f"integrator must be one of {names}, got {type(integrator).__name__}")
        self.system = system
        self.integrator = integrator
        self.backend = make_backend(system, backend)
        n = system.n_particles
        self.masses = np.ascontiguousarray(system.masses, np.float64)
        self.inverse_masses = np.divide(1.0, self.masses, out=np.zeros(n), where=self.masses > 0)
        positions, box = self.backend.check_inputs(_as_nm(positions), _as_nm(box))
        self._box = box
        self._rng = np.random.Generator(np.random.PCG64(seed))
        self._constraints = None
        if len(system.constraint_atoms):
            from bencao.backends.cpu.constraints import CpuConstraints

            self._constraints = CpuConstraints(system.constraint_atoms, system.constraint_lengths,
                                               self.masses, tolerance=integrator.constraint_tolerance)
        self.degrees_of_freedom = int(
            3 * np.count_nonzero(self.masses > 0) - len(system.constraint_atoms)
            - (3 if system.cm_motion_removal else 0)
        )
        if self._constraints is not None:
            self._constraints.apply_positions(positions, positions)  # the solver copies the reference
        self._positions = positions
        self._place_sites(self._positions)
        self._new_positions = np.empty_like(positions)
        self._unconstrained = np.empty_like(positions)
        self._velocities = np.zeros((n, 3))
        if velocities is not None:
            self.velocities = velocities
        self._noise = np.empty((n, 3))
        self.step_count = 0
        self.time = 0.0
        self._clock_origin = (0, 0.0)   # (step, time in ps) from which time counts with this dt
        self._fast = None    # Evaluation at the current positions (all forces unless MTS)
        self._slow = None    # reciprocal-space Evaluation at the current positions (MTS only)
        self._every = integrator.reciprocal_every if self.backend.has_reciprocal else 1
        self._chain = None
        if isinstance(integrator, NoseHooverIntegrator):
            self._chain = NoseHooverChain(
                integrator.temperature, integrator.collision_frequency, self.degrees_of_freedom,
                integrator.chain_length, integrator.chain_steps, integrator.yoshida_suzuki)
        self._device = None
        if hasattr(self.backend, "device_dynamics"):
            # Steps run entirely on the GPU; the host arrays above are refreshed after every
            # ``step`` call.  The device's random streams get their own seed, derived from
            # ``seed`` without drawing from ``self._rng``, so the host stream (initial velocities,
            # barostat moves) is the same on every backend.
            device_seed = int(np.random.SeedSequence(seed).generate_state(1, np.uint64)[0])
            self._device = self.backend.device_dynamics(
                integrator, self.masses, device_seed, cm_every=system.cm_motion_removal,
                every=self._every, chain=self._chain)
        self.barostat = barostat
        self._volume_moves = None
        if barostat is not None:
            if box is None:
                raise ValueError("a barostat needs a periodic system (the system has no box)")
            self._molecules = find_molecules(system)
            self._volume_moves = VolumeMoves(barostat, box_volume(box), len(self._molecules[0]) - 1)

    # -- state ------------------------------------------------------------------------------

    @property
    def positions(self) -> np.ndarray:
        """Current positions, nm (a copy)."""
        return self._positions.copy()

    @positions.setter
    def positions(self, positions) -> None:
        positions, _ = self.backend.check_inputs(_as_nm(positions), self._box)
        self._positions = positions
        self._place_sites(self._positions)
        self._invalidate()

    @property
    def velocities(self) -> np.ndarray:
        """Current velocities as stored by the integrator, nm/ps (a copy)."""
        return self._velocities.copy()

    @velocities.setter
    def velocities(self, velocities) -> None:
        velocities = np.array(_as_nm(velocities), dtype=np.float64)
        if velocities.shape != self._positions.shape:
            raise ValueError(f"velocities have shape {velocities.shape}; (N, 3) in nm/ps expected")
        if not np.all(np.isfinite(velocities)):
            raise ValueError("velocities are not finite")
        velocities[self.masses == 0] = 0.0
        self._velocities = velocities

    @property
    def constraints(self):
        """The constraint solver (``CpuConstraints``), or None if the system has no constraints."""
        return self._constraints

    @property
    def box(self) -> np.ndarray | None:
        """Current periodic box vectors as rows, nm (a copy)."""
        return None if self._box is None else self._box.copy()

    @property
    def state(self) -> State:
        """Positions, velocities, box and energies now (evaluates forces if they are stale)."""
        potential = self._potential_energy()
        kinetic = self._kinetic_energy()
        volume = density = None
        if self._box is not None:
            volume = box_volume(self._box)
            density = DENSITY_FACTOR * float(np.sum(self.masses)) / volume
        conserved = potential + kinetic + (self._chain.energy() if self._chain is not None else 0.0)
        return State(
            positions=self.positions, velocities=self.velocities, box=self.box,
            step=self.step_count, time=self.time, potential_energy=potential, kinetic_energy=kinetic,
            temperature=self._temperature(kinetic), degrees_of_freedom=self.degrees_of_freedom,
            volume=volume, density=density, conserved_energy=conserved,
        )

    def set_velocities_to_temperature(self, temperature: float, seed=None) -> None:
        """Draw Maxwell–Boltzmann velocities and scale them to exactly ``temperature`` (K).

        Velocity constraints are applied and centre-of-mass motion is removed if the system
        removes it.  ``seed`` None draws from the simulation's own random stream.
        """
        rng = self._rng if seed is None else np.random.Generator(np.random.PCG64(seed))
        kt = BOLTZMANN * float(temperature)
        velocities = rng.standard_normal(self._positions.shape) * np.sqrt(kt * self.inverse_masses)[:, None]
        if self.system.cm_motion_removal:
            kernels.remove_center_of_mass_motion(velocities, self.masses)
        if self._constraints is not None:
            self._constraints.apply_velocities(self._positions, velocities)
        current = self._temperature(kernels.kinetic_energy(velocities, self.masses))
        if current > 0:
            kernels.scale_velocities(velocities, math.sqrt(temperature / current))
        self._velocities = velocities

    def set_random_state(self, host_state: dict, device_state=None) -> None:
        """Continue the random streams of another simulation of the same system.

        Parameters
        ----------
        host_state : dict
            NumPy's ``bit_generator.state`` of the host stream (initial velocities, barostat).
        device_state : (N, 2) uint64 array or None
            The GPU's per-particle streams (``get_checkpoint_state()[0]["device.random"]``);
            ignored on the CPU, and None keeps the GPU's seeded streams.
        """
        self._rng.bit_generator.state = host_state
        if device_state is not None and self._device is not None:
            self._device.set_random_state(device_state)

    def set_clock(self, step: int, time: float) -> None:
        """Set the step count and simulated time (ps), e.g. to continue a previous stage."""
        self.step_count = int(step)
        self.time = float(time)
        self._clock_origin = (self.step_count, self.time)

    def set_temperature(self, temperature: float) -> None:
        """Change the thermostat's target temperature (K), e.g. along a heating ramp."""
        if not getattr(self.integrator, "thermostatted", False):
            raise ValueError(f"{type(self.integrator).__name__} has no temperature to set")
        self.integrator.temperature = float(temperature)
        if self._chain is not None:
            self._chain.kt = BOLTZMANN * float(temperature)

    # -- checkpoints ------------------------------------------------------------------------

    def get_checkpoint_state(self) -> tuple[dict, dict]:
        """Everything a bit-identical restart needs, as (arrays, JSON-able values).

        Positions, velocities, box, step and time, the random stream, the Nosé–Hoover chain, the
        barostat's adaptive proposal width and the neighbour lists' last builds (pair forces
        depend to the last bit on the box images chosen at a build).
        """
        arrays = {"positions": self._positions.copy(), "velocities": self._velocities.copy()}
        if self._box is not None:
            arrays["box"] = self._box.copy()
        if self._device is not None:
            arrays["device.random"] = self._device.get_random_state()
        if self._chain is not None:
            for key, value in self._chain.get_state().items():
                arrays[f"chain.{key}"] = np.asarray(value)
        for key, value in self.backend.get_state().items():
            arrays[f"backend.{key}"] = value
        # Cached forces at the current positions are kept, not recomputed on restart: they were
        # evaluated with the neighbour list of their time, whose box images the restarted list
        # may not share (a rejected barostat move rebuilds the list in between).
        cached = {}
        for name in ("fast", "slow"):
            evaluation = getattr(self, f"_{name}")
            if evaluation is not None:
                arrays[f"{name}.forces"] = evaluation.forces.copy()
                cached[name] = {"energy": evaluation.energy, "terms": dict(evaluation.terms)}
        values = {
            "step": self.step_count,
            "time": self.time,
            "clock_origin": list(self._clock_origin),
            "rng": self._rng.bit_generator.state,
            "temperature": getattr(self.integrator, "temperature", None),
            "barostat": None if self._volume_moves is None else self._volume_moves.get_state(),
            "cached": cached,
        }
        return arrays, values

    def set_checkpoint_state(self, arrays: dict, values: dict) -> None:
        """Restore what ``get_checkpoint_state`` returned (same system, integrator, barostat)."""
        if arrays["positions"].shape != self._positions.shape:
            raise ValueError("the checkpoint belongs to a system with a different number of particles")
        self._positions = np.array(arrays["positions"], np.float64)
        self._new_positions = np.empty_like(self._positions)
        self._velocities = np.array(arrays["velocities"], np.float64)
        if "box" in arrays:
            self._box = np.array(arrays["box"], np.float64)
        if self._device is not None and "device.random" in arrays:
            self._device.set_random_state(arrays["device.random"])
        if self._chain is not None:
            self._chain.set_state({"positions": arrays["chain.positions"],
                                   "velocities": arrays["chain.velocities"]})
        self.backend.set_state({key[len("backend."):]: value for key, value in arrays.items()
                                if key.startswith("backend.")})
        self.step_count = int(values["step"])
        self.time = float(values["time"])
        self._clock_origin = (int(values["clock_origin"][0]), float(values["clock_origin"][1]))
        self.set_random_state(values["rng"])
        if values.get("temperature") is not None and getattr(self.integrator, "thermostatted", False):
            self.set_temperature(values["temperature"])
        if self._volume_moves is not None and values.get("barostat") is not None:
            self._volume_moves.set_state(values["barostat"])
        self._invalidate()
        for name, cached in values.get("cached", {}).items():
            setattr(self, f"_{name}", Evaluation(energy=float(cached["energy"]),
                                                 forces=np.array(arrays[f"{name}.forces"]),
                                                 terms=dict(cached["terms"])))

    # -- running ----------------------------------------------------------------------------

    def step(self, n_steps: int) -> None:
        """Advance ``n_steps`` time steps."""
        if int(n_steps) != n_steps or n_steps < 0:
            raise ValueError(f"number of steps must be a non-negative whole number, got {n_steps!r}")
        if self._device is not None:
            self._step_on_device(int(n_steps))
            return
        if self._chain is not None:
            run_one = self._nose_hoover_step
        else:
            run_one = self._leapfrog_step
        if self._constraints is not None:
            self._constraints.tolerance = self.integrator.constraint_tolerance
        cm_every = self.system.cm_motion_removal
        barostat_every = self.barostat.frequency if self.barostat is not None else 0
        for _ in range(int(n_steps)):
            if cm_every and self.step_count % cm_every == 0:
                with phase("integration"):
                    kernels.remove_center_of_mass_motion(self._velocities, self.masses)
            run_one()
            self._advance_clock(1)
            if barostat_every and self.step_count % barostat_every == 0:
                self._volume_move()

    def _advance_clock(self, n_steps: int) -> None:
        self.step_count += n_steps
        origin_step, origin_time = self._clock_origin
        self.time = origin_time + (self.step_count - origin_step) * self.integrator.timestep

    def _step_on_device(self, n_steps: int) -> None:
        """``step`` on the GPU: the state goes up once and comes back once; barostat moves scale
        the positions on the device too (only the energies and the box cross over)."""
        device = self._device
        barostat_every = self.barostat.frequency if self.barostat is not None else 0
        device.upload(self._positions, self._velocities, self._box)
        remaining = n_steps
        while remaining:
            chunk = remaining
            if barostat_every:
                chunk = min(remaining, barostat_every - self.step_count % barostat_every)
            try:
                device.run(self.step_count, chunk)
            except BlowUpError as error:
                # Keep the last sound state, at the step that failed, as the CPU path does
                self._positions, self._velocities = device.download()
                self._advance_clock(getattr(error, "step", self.step_count) - self.step_count)
                self._invalidate()
                raise
            self._advance_clock(chunk)
            remaining -= chunk
            if barostat_every and self.step_count % barostat_every == 0:
                self._volume_move(device)
        self._positions, self._velocities = device.download()
        self._invalidate()

    def minimize(self, tolerance: float = 10.0, max_iterations: int = 0):
        """L-BFGS energy minimisation honouring constraints (see ``dynamics.minimize``).

        Parameters
        ----------
        tolerance : float
            Stop when the root-mean-square force is below this, kJ/mol/nm.
        max_iterations : int
            Upper bound on iterations; 0 means until converged.

        Returns
        -------
        bencao.dynamics.minimize.MinimizationResult
        """
        from bencao.dynamics.minimize import minimize_energy

        def energy_and_forces(positions):
            evaluation = self.backend.compute(positions, self._box)
            return evaluation.energy, evaluation.forces

        result = minimize_energy(energy_and_forces, self._positions, self.masses,
                                 constraints=self._constraints, tolerance=tolerance,
                                 max_iterations=max_iterations)
        self.positions = result.positions
        return result

    # -- the integrators --------------------------------------------------------------------

    def _leapfrog_step(self) -> None:
        """One Verlet or LangevinMiddle step (OpenMM's sequence), with impulse MTS kicks."""
        dt = self.integrator.timestep
        fast, slow = self._forces()
        with phase("integration"):
            kernels.kick(self._velocities, fast.forces, self.inverse_masses, dt)
            if slow is not None:
                kernels.kick(self._velocities, slow.forces, self.inverse_masses, dt * self._every)
        x, x_new = self._positions, self._new_positions
        if isinstance(self.integrator, LangevinMiddleIntegrator):
            if self._constraints is not None:
                with phase("constraints"):
                    self._constraints.apply_velocities(x, self._velocities)
            integrator = self.integrator
            with phase("random numbers"):
                self._rng.standard_normal(out=self._noise)
            with phase("integration"):
                kernels.langevin_drift(x, self._velocities, self._noise, self.inverse_masses, dt,
                                       math.exp(-integrator.friction * dt),
                                       BOLTZMANN * integrator.temperature, x_new)
        else:
            with phase("integration"):
                kernels.drift(x, self._velocities, dt, x_new)
        self._finish_drift(dt)

    def _nose_hoover_step(self) -> None:
        """One velocity-Verlet step wrapped in two half steps of the Nosé–Hoover chain."""
        dt = self.integrator.timestep
        self._thermostat_half_step(dt)
        fast, _ = self._forces()
        with phase("integration"):
            kernels.kick(self._velocities, fast.forces, self.inverse_masses, 0.5 * dt)
            kernels.drift(self._positions, self._velocities, dt, self._new_positions)
        self._finish_drift(dt)
        fast, _ = self._forces()
        with phase("integration"):
            kernels.kick(self._velocities, fast.forces, self.inverse_masses, 0.5 * dt)
        if self._constraints is not None:
            with phase("constraints"):
                self._constraints.apply_velocities(self._positions, self._velocities)
        self._thermostat_half_step(dt)

    def _thermostat_half_step(self, dt: float) -> None:
        with phase("thermostat"):
            kinetic = kernels.kinetic_energy(self._velocities, self.masses)
            scale = self._chain.propagate(kinetic, 0.5 * dt)
            kernels.scale_velocities(self._velocities, scale)

    def _finish_drift(self, dt: float) -> None:
        """Constrain the new positions, take velocities from the displacement, and move on."""
        x, x_new = self._positions, self._new_positions
        if self._constraints is not None:
            with phase("constraints"):
                unconstrained = self._unconstrained
                np.copyto(unconstrained, x_new)
                self._constraints.apply_positions(x, x_new)
                kernels.add_constraint_velocity(x_new, unconstrained, self.inverse_masses, dt,
                                                self._velocities)
        self._positions, self._new_positions = x_new, x
        self._place_sites(self._positions)
        self._invalidate()

    # -- forces and energies ----------------------------------------------------------------

    def _invalidate(self) -> None:
        self._fast = None
        self._slow = None

    def _place_sites(self, positions) -> None:
        if self.backend.virtual_sites is not None:
            with phase("virtual sites"):
                self.backend.virtual_sites.place(positions)

    def _forces(self):
        """(fast, slow) Evaluations at the current positions; slow is None unless this step
        applies the multiple-time-step reciprocal-space kick.

        Forces only: the fast evaluation's energy is NaN until ``_full_evaluation`` asks for it.
        """
        if self._every == 1:
            if self._fast is None:
                self._fast = self.backend.compute(self._positions, self._box, energy=False)
            return self._fast, None
        if self._fast is None:
            self._fast = self.backend.compute(self._positions, self._box, parts="direct",
                                              energy=False)
        slow = None
        if self.step_count % self._every == 0:
            if self._slow is None:
                self._slow = self.backend.compute(self._positions, self._box, parts="reciprocal")
            slow = self._slow
        return self._fast, slow

    def _fast_with_energy(self):
        """The fast evaluation with its energy filled in.

        The forces stay those the dynamics uses (the kernel that skips energies may round
        differently from the one that computes them), so a trajectory does not depend on how
        often energies are reported.
        """
        fast, _ = self._forces()
        if math.isnan(fast.energy):
            parts = "all" if self._every == 1 else "direct"
            with_energy = self.backend.compute(self._positions, self._box, parts=parts)
            fast = Evaluation(energy=with_energy.energy, forces=fast.forces,
                              terms=with_energy.terms)
            self._fast = fast
        return fast

    def _full_evaluation(self):
        """Energy and total forces at the current positions (all parts)."""
        fast = self._fast_with_energy()
        if self._every == 1:
            return fast
        if self._slow is None:
            self._slow = self.backend.compute(self._positions, self._box, parts="reciprocal")
        terms = dict(fast.terms)
        for name, energy in self._slow.terms.items():
            terms[name] = terms.get(name, 0.0) + energy
        return Evaluation(energy=fast.energy + self._slow.energy, forces=fast.forces + self._slow.forces,
                          terms=terms)

    def _potential_energy(self) -> float:
        return float(self._full_evaluation().energy)

    def _kinetic_energy(self) -> float:
        """Kinetic energy with OpenMM's convention for the integrator, kJ/mol."""
        shift = self.integrator.kinetic_shift
        if shift == 0.0:
            return float(kernels.kinetic_energy(self._velocities, self.masses))
        velocities = self._velocities.copy()
        kernels.kick(velocities, self._full_evaluation().forces, self.inverse_masses,
                     shift * self.integrator.timestep)
        if self._constraints is not None:
            self._constraints.apply_velocities(self._positions, velocities)
        return float(kernels.kinetic_energy(velocities, self.masses))

    def _temperature(self, kinetic: float) -> float:
        if self.degrees_of_freedom <= 0:
            return 0.0
        return 2.0 * kinetic / (self.degrees_of_freedom * BOLTZMANN)

    # -- pressure coupling ------------------------------------------------------------------

    def _volume_move(self, device=None) -> None:
        """One Monte Carlo volume move (see ``dynamics.barostat``), on the host or, given the
        ``DeviceDynamics`` that holds the state, on the device (the same random draws and test).

        Profiled as "barostat" around everything but the energy evaluations, which the backend
        times in its own phases.
        """
        moves = self._volume_moves
        old_energy = self._potential_energy() if device is None else device.potential_energy()
        with phase("barostat"):
            box = self._box
            volume = box_volume(box)
            new_volume = moves.propose(volume, self._rng.random())
            uniform = self._rng.random()
            if new_volume <= 0:
                moves.record(False, volume)
                return
            new_box = box * (new_volume / volume) ** (1.0 / 3.0)
            if device is None:
                new_positions = np.empty_like(self._positions)
                start, atoms = self._molecules
                kernels.scale_molecules(self._positions, start, atoms, np.linalg.inv(box),
                                        new_box, new_positions)
        if device is not None:
            change = device.scale_to(new_box, self._molecules) - old_energy
            with phase("barostat"):
                accepted = moves.accept(change, volume, new_volume, uniform)  # False if not finite
                moves.record(accepted, volume)
                if accepted:
                    self._box = new_box
                else:
                    device.undo_scale()
            return
        self._place_sites(new_positions)
        try:
            trial = self.backend.compute(new_positions, new_box)
            change = trial.energy - old_energy
        except BlowUpError:
            trial, change = None, math.inf
        with phase("barostat"):
            accepted = moves.accept(change, volume, new_volume, uniform)
            moves.record(accepted, volume)
        if accepted:
            self._positions = new_positions
            self._box = new_box
            self._invalidate()
            if self._every == 1:
                self._fast = trial
