"""Simulation: a System, an integrator and a backend, stepping a state forward in time."""

from __future__ import annotations

import math

import numpy as np

from bencao.constants import BOLTZMANN, DENSITY_FACTOR
from bencao.dynamics.barostat import MonteCarloBarostat, VolumeMoves, box_volume
from bencao.dynamics.integrators import INTEGRATORS
from bencao.dynamics.molecules import find_molecules
from bencao.errors import BlowUpError
from bencao.evaluate import make_backend
from bencao.profiling import phase
from bencao.state import State


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
        How to step it (any record registered in ``bencao.dynamics.integrators.INTEGRATORS``).
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
        few numbers are propagated on the host), the state coming back to the host only when
        asked for; minimisation runs on the host with forces from the device.
    barostat : MonteCarloBarostat or None
        Pressure coupling (needs a periodic system).

    Notes
    -----
    The backend's step primitives (``backend.dynamics``) hold the state; one ``step(n)`` call
    runs the integrator's scheme (:mod:`bencao.dynamics.schemes`) n times over them, with no
    per-particle Python work, and Monte Carlo volume moves in between.  Nothing here depends on
    which backend it is.
    """

    def __init__(self, system, integrator, positions, box=None, velocities=None, seed=None,
                 backend: str = "cpu", barostat: MonteCarloBarostat | None = None):
        if type(integrator) not in INTEGRATORS.values():
            names = ", ".join(cls.__name__ for cls in INTEGRATORS.values())
            raise TypeError(f"integrator must be one of {names}, got {type(integrator).__name__}")
        self.system = system
        self.integrator = integrator
        self.backend = make_backend(system, backend)
        self.masses = np.ascontiguousarray(system.masses, np.float64)
        positions, box = self.backend.check_inputs(_as_nm(positions), _as_nm(box))
        self._rng = np.random.Generator(np.random.PCG64(seed))
        self.degrees_of_freedom = int(
            3 * np.count_nonzero(self.masses > 0) - len(system.constraint_atoms)
            - (3 if system.cm_motion_removal else 0)
        )
        every = integrator.reciprocal_every if self.backend.has_reciprocal else 1
        self._dynamics = self.backend.dynamics(
            integrator, self.masses, positions, box, seed=seed, rng=self._rng,
            cm_every=system.cm_motion_removal, every=every,
            chain=integrator.make_chain(self.degrees_of_freedom))
        if velocities is not None:
            self.velocities = velocities
        self.step_count = 0
        self.time = 0.0
        self._clock_origin = (0, 0.0)   # (step, time in ps) from which time counts with this dt
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
        return np.array(self._dynamics.positions)

    @positions.setter
    def positions(self, positions) -> None:
        positions, box = self.backend.check_inputs(_as_nm(positions), self._dynamics.box)
        self._dynamics.set_positions(positions, box)

    @property
    def velocities(self) -> np.ndarray:
        """Current velocities as stored by the integrator, nm/ps (a copy)."""
        return np.array(self._dynamics.velocities)

    @velocities.setter
    def velocities(self, velocities) -> None:
        velocities = np.array(_as_nm(velocities), dtype=np.float64)
        if velocities.shape != (self.system.n_particles, 3):
            raise ValueError(f"velocities have shape {velocities.shape}; (N, 3) in nm/ps expected")
        if not np.all(np.isfinite(velocities)):
            raise ValueError("velocities are not finite")
        velocities[self.masses == 0] = 0.0
        self._dynamics.set_velocities(velocities)

    @property
    def constraints(self):
        """The backend's constraint solver, or None if the system has no constraints."""
        return self._dynamics.constraints

    @property
    def box(self) -> np.ndarray | None:
        """Current periodic box vectors as rows, nm (a copy)."""
        box = self._dynamics.box
        return None if box is None else box.copy()

    @property
    def currentStep(self) -> int:  # OpenMM's name, for OpenMM-style reporters
        """The step count, under OpenMM's name (``Simulation.currentStep``)."""
        return self.step_count

    @property
    def state(self) -> State:
        """Positions, velocities, box and energies now (evaluates forces if they are stale)."""
        potential = float(self._dynamics.evaluation().energy)
        kinetic = float(self._dynamics.kinetic_energy(self.integrator.kinetic_shift))
        box = self.box
        volume = density = None
        if box is not None:
            volume = box_volume(box)
            density = DENSITY_FACTOR * float(np.sum(self.masses)) / volume
        chain = self._dynamics.chain
        conserved = potential + kinetic + (chain.energy() if chain is not None else 0.0)
        return State(
            positions=self.positions, velocities=self.velocities, box=box,
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
        inverse_masses = np.divide(1.0, self.masses, out=np.zeros_like(self.masses),
                                   where=self.masses > 0)
        velocities = rng.standard_normal((self.system.n_particles, 3)) \
            * np.sqrt(kt * inverse_masses)[:, None]
        dynamics = self._dynamics
        dynamics.set_velocities(velocities)
        if self.system.cm_motion_removal:
            dynamics.remove_center_of_mass_motion()
        dynamics.constrain_velocities()
        current = self._temperature(dynamics.kinetic_energy())
        if current > 0:
            dynamics.scale_velocities(math.sqrt(temperature / current))

    def set_random_state(self, host_state: dict, device_state=None) -> None:
        """Continue the random streams of another simulation of the same system.

        Parameters
        ----------
        host_state : dict
            NumPy's ``bit_generator.state`` of the host stream (initial velocities, barostat,
            Langevin noise on the CPU).
        device_state : (N, 2) uint64 array or None
            A GPU's per-particle streams (``get_checkpoint_state()[0]["device.random"]``);
            ignored on the CPU, and None keeps the GPU's seeded streams.
        """
        self._rng.bit_generator.state = host_state
        if device_state is not None:
            self._dynamics.set_random_state(device_state)

    def set_clock(self, step: int, time: float) -> None:
        """Set the step count and simulated time (ps), e.g. to continue a previous stage."""
        self.step_count = int(step)
        self.time = float(time)
        self._clock_origin = (self.step_count, self.time)

    def set_temperature(self, temperature: float) -> None:
        """Change the thermostat's target temperature (K), e.g. along a heating ramp."""
        if not getattr(self.integrator, "thermostatted", False):
            raise ValueError(f"{type(self.integrator).__name__} has no temperature to set")
        self._dynamics.set_temperature(temperature)

    def set_parameter(self, name: str, value: float) -> None:
        """Set a global parameter of the system's forces (OpenMM's ``Context.setParameter``),
        e.g. an alchemical lambda or a restraint strength; the next step uses it.  The value is
        saved in checkpoints.  ValueError if no force has the parameter."""
        self.backend.set_parameter(name, value)
        # Forces kept from the last step were computed with the old value.
        self._dynamics.cache.invalidate()

    def get_parameter(self, name: str) -> float:
        """Current value of a global parameter (ValueError if no force has it)."""
        return self.backend.get_parameter(name)

    # -- checkpoints ------------------------------------------------------------------------

    def get_checkpoint_state(self) -> tuple[dict, dict]:
        """Everything a bit-identical restart needs, as (arrays, JSON-able values).

        Positions, velocities, box and step and time, the random streams, the Nosé–Hoover chain,
        the barostat's adaptive proposal width, the neighbour lists' last builds (pair forces
        depend to the last bit on the box images chosen at a build) and the forces cached at
        the current positions (kept, not recomputed on restart: they were evaluated with the
        neighbour list of their time, whose box images a restarted list may not share).
        """
        arrays = {"positions": self.positions, "velocities": self.velocities}
        if self._dynamics.box is not None:
            arrays["box"] = self.box
        chain = self._dynamics.chain
        if chain is not None:
            for key, value in chain.get_state().items():
                arrays[f"chain.{key}"] = np.asarray(value)
        for key, value in self.backend.get_state().items():
            arrays[f"backend.{key}"] = value
        dynamics_arrays, cached = self._dynamics.get_state()
        arrays.update(dynamics_arrays)
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
        if arrays["positions"].shape != (self.system.n_particles, 3):
            raise ValueError("the checkpoint belongs to a system with a different number of particles")
        dynamics = self._dynamics
        box = np.array(arrays["box"], np.float64) if "box" in arrays else dynamics.box
        dynamics.set_positions(np.array(arrays["positions"], np.float64), box)
        dynamics.set_velocities(np.array(arrays["velocities"], np.float64))
        if dynamics.chain is not None:
            dynamics.chain.set_state({"positions": arrays["chain.positions"],
                                      "velocities": arrays["chain.velocities"]})
        self.backend.set_state({key[len("backend."):]: value for key, value in arrays.items()
                                if key.startswith("backend.")})
        self.step_count = int(values["step"])
        self.time = float(values["time"])
        self._clock_origin = (int(values["clock_origin"][0]), float(values["clock_origin"][1]))
        self._rng.bit_generator.state = values["rng"]
        if values.get("temperature") is not None and getattr(self.integrator, "thermostatted", False):
            self.set_temperature(values["temperature"])
        if self._volume_moves is not None and values.get("barostat") is not None:
            self._volume_moves.set_state(values["barostat"])
        dynamics.set_state(arrays, values.get("cached", {}))

    # -- running ----------------------------------------------------------------------------

    def step(self, n_steps: int) -> None:
        """Advance ``n_steps`` time steps.

        Raises
        ------
        BlowUpError
            If the forces blew up; the simulation is left at the step that failed.
        """
        if int(n_steps) != n_steps or n_steps < 0:
            raise ValueError(f"number of steps must be a non-negative whole number, got {n_steps!r}")
        barostat_every = self.barostat.frequency if self.barostat is not None else 0
        remaining = int(n_steps)
        while remaining:
            chunk = remaining
            if barostat_every:
                chunk = min(remaining, barostat_every - self.step_count % barostat_every)
            try:
                self._dynamics.run(self.step_count, chunk)
            except BlowUpError as error:
                self._advance_clock(getattr(error, "step", self.step_count) - self.step_count)
                raise
            self._advance_clock(chunk)
            remaining -= chunk
            if barostat_every and self.step_count % barostat_every == 0:
                self._volume_move()

    def run(self, n_steps: int, reporters=()) -> None:
        """Advance ``n_steps`` time steps, handing the state to each reporter when it asks.

        Reporters follow OpenMM's protocol: ``describeNextReport(simulation)`` gives the steps
        until its next report (a tuple whose first item is the step count, or a dict with
        ``"steps"``; 0 or less means none), and ``report(simulation, state)`` receives a
        :class:`bencao.State` at that step.  bencao's own reporters
        (``bencao.reporters``) answer ``describe_next_report`` as well.

        Parameters
        ----------
        n_steps : int
            Time steps to run.
        reporters : sequence
            Objects with ``describeNextReport`` (or ``describe_next_report``) and ``report``.
        """
        if int(n_steps) != n_steps or n_steps < 0:
            raise ValueError(f"number of steps must be a non-negative whole number, got {n_steps!r}")
        end = self.step_count + int(n_steps)
        while self.step_count < end:
            chunk = end - self.step_count
            asked = [_steps_until_report(reporter, self) for reporter in reporters]
            for steps in asked:
                if steps > 0:
                    chunk = min(chunk, steps)
            self.step(chunk)
            due = [reporter for reporter, steps in zip(reporters, asked) if steps == chunk]
            if due:
                state = self.state
                for reporter in due:
                    reporter.report(self, state)

    def _advance_clock(self, n_steps: int) -> None:
        self.step_count += n_steps
        origin_step, origin_time = self._clock_origin
        self.time = origin_time + (self.step_count - origin_step) * self.integrator.timestep

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

        box = self._dynamics.box

        def energy_and_forces(positions):
            evaluation = self.backend.compute(positions, box)
            return evaluation.energy, evaluation.forces

        result = minimize_energy(energy_and_forces, self.positions, self.masses,
                                 constraints=self._dynamics.host_constraints, tolerance=tolerance,
                                 max_iterations=max_iterations)
        self.positions = result.positions
        return result

    def _temperature(self, kinetic: float) -> float:
        if self.degrees_of_freedom <= 0:
            return 0.0
        return 2.0 * kinetic / (self.degrees_of_freedom * BOLTZMANN)

    # -- pressure coupling ------------------------------------------------------------------

    def _volume_move(self) -> None:
        """One Monte Carlo volume move (see ``dynamics.barostat``): the same random draws and
        test on every backend, the molecules scaled where the state lives.

        Profiled as "barostat" (twice: the proposal with the scaling, then the test) around
        everything but the energy evaluations, which the backend times in its own phases.
        """
        moves = self._volume_moves
        dynamics = self._dynamics
        old_energy = dynamics.potential_energy()
        with phase("barostat"):
            box = dynamics.box
            volume = box_volume(box)
            new_volume = moves.propose(volume, self._rng.random())
            uniform = self._rng.random()
            if new_volume <= 0:
                moves.record(False, volume)
                return
            new_box = box * (new_volume / volume) ** (1.0 / 3.0)
            # the trial energy inside is timed in the backend's own (nested) phases
            change = dynamics.scale_to(new_box, self._molecules) - old_energy
        with phase("barostat"):
            accepted = moves.accept(change, volume, new_volume, uniform)  # False if not finite
            moves.record(accepted, volume)
        if not accepted:
            dynamics.undo_scale()


def _steps_until_report(reporter, simulation) -> int:
    """Steps until ``reporter``'s next report (0: none), from OpenMM's ``describeNextReport``
    (a tuple or a dict) or bencao's ``describe_next_report``."""
    if hasattr(reporter, "describe_next_report"):
        return int(reporter.describe_next_report(simulation).steps)
    request = reporter.describeNextReport(simulation)
    steps = request["steps"] if isinstance(request, dict) else request[0]
    return max(int(steps), 0)
