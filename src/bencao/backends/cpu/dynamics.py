"""The step primitives on the CPU: host arrays, Numba kernels, one random stream shared with the
simulation (Langevin noise, barostat moves and initial velocities draw from it in turn)."""

from __future__ import annotations

import math

import numpy as np

from bencao.backends.common.dynamics import Dynamics
from bencao.backends.common.force_cache import ForceCache
from bencao.backends.cpu import integrate as kernels
from bencao.backends.cpu.threads import per_particle, streaming
from bencao.constants import BOLTZMANN
from bencao.errors import BlowUpError
from bencao.profiling import phase


class CpuDynamics(Dynamics):
    """Verlet, LangevinMiddle and Nosé–Hoover steps of a ``CpuBackend``'s system (see
    :class:`bencao.backends.common.dynamics.Dynamics` for the parameters).

    Parameters
    ----------
    rng : numpy.random.Generator
        The simulation's random stream; Langevin noise is drawn from it.
    every : int
        Reciprocal space every this many steps (impulse MTS).
    positions : (N, 3) float64 array
        Initial positions, nm; constrained here (the solver copies them as its reference).
    box : (3, 3) float64 array or None
        Box vectors as rows, nm.
    """

    def __init__(self, backend, integrator, masses, rng, positions, box, cm_every=0, every=1,
                 chain=None):
        super().__init__(backend, integrator, masses, cm_every=cm_every, every=every,
                         chain=chain)
        from bencao.backends.cpu.constraints import CpuConstraints

        system = backend.system
        n = system.n_particles
        self.inverse_masses = np.divide(1.0, masses, out=np.zeros(n), where=masses > 0)
        self._rng = rng
        self.cache = ForceCache(backend, every)
        self.constraints = None
        if len(system.constraint_atoms):
            self.constraints = CpuConstraints(system.constraint_atoms, system.constraint_lengths,
                                              masses, tolerance=integrator.constraint_tolerance)
            self.constraints.apply_positions(positions, positions)
        self._positions = positions
        self._box = box
        self._place_sites(positions)
        self._velocities = np.zeros((n, 3))
        self._new_positions = np.empty_like(positions)
        self._unconstrained = np.empty_like(positions)
        self._noise = np.empty((n, 3))
        self._before_move = None

    # -- the state ----------------------------------------------------------------------------

    @property
    def positions(self) -> np.ndarray:
        """Current positions, nm (the array itself)."""
        return self._positions

    @property
    def velocities(self) -> np.ndarray:
        """Current velocities, nm/ps (the array itself)."""
        return self._velocities

    @property
    def box(self):
        """Current box vectors as rows, nm, or None."""
        return self._box

    def set_positions(self, positions, box) -> None:
        """Make ``positions`` (nm; virtual sites are placed here) and ``box`` current."""
        self._positions = positions
        self._new_positions = np.empty_like(positions)
        self._box = box
        self._place_sites(positions)
        self.cache.invalidate()

    def set_velocities(self, velocities) -> None:
        """Make ``velocities`` (nm/ps) current."""
        self._velocities = velocities

    # -- primitives ---------------------------------------------------------------------------

    def prepare_run(self) -> None:
        if self.constraints is not None:
            self.constraints.tolerance = self.integrator.constraint_tolerance

    def kick(self, dt: float, parts: str) -> None:
        forces = self.cache.group(parts, self._positions, self._box).forces
        with phase("integration"), streaming(len(self._positions)):
            kernels.kick(self._velocities, forces, self.inverse_masses, dt)

    def constrain_velocities(self) -> None:
        if self.constraints is not None:
            with phase("constraints"), per_particle(len(self._positions)):
                self.constraints.apply_velocities(self._positions, self._velocities)

    def drift(self, dt: float) -> None:
        with phase("integration"), streaming(len(self._positions)):
            kernels.drift(self._positions, self._velocities, dt, self._new_positions)

    def langevin_drift(self, dt: float, friction: float, temperature: float) -> None:
        with phase("random numbers"):
            kernels.standard_normal_fill(self._rng, self._noise.reshape(-1))
        with phase("integration"), streaming(len(self._positions)):
            kernels.langevin_drift(self._positions, self._velocities, self._noise,
                                   self.inverse_masses, dt, math.exp(-friction * dt),
                                   BOLTZMANN * temperature, self._new_positions)

    def constrain_positions(self, dt: float) -> None:
        x, x_new = self._positions, self._new_positions
        if self.constraints is not None:
            with phase("constraints"):
                np.copyto(self._unconstrained, x_new)
                with per_particle(len(x)):
                    self.constraints.apply_positions(x, x_new)
                with streaming(len(x)):
                    kernels.add_constraint_velocity(x_new, self._unconstrained,
                                                    self.inverse_masses, dt, self._velocities)
        self._positions, self._new_positions = x_new, x
        self._place_sites(self._positions)
        self.cache.invalidate()

    def remove_center_of_mass_motion(self) -> None:
        with phase("integration"):
            kernels.remove_center_of_mass_motion(self._velocities, self.masses)

    def scale_velocities(self, factor: float) -> None:
        kernels.scale_velocities(self._velocities, factor)

    def kinetic_energy(self, shift: float = 0.0) -> float:
        """Kinetic energy, kJ/mol, of the velocities advanced by ``shift`` time steps with the
        current forces and constrained (OpenMM's convention for leapfrog integrators)."""
        if shift == 0.0:
            return float(kernels.kinetic_energy(self._velocities, self.masses))
        velocities = self._velocities.copy()
        kernels.kick(velocities, self.evaluation().forces, self.inverse_masses,
                     shift * self.integrator.timestep)
        if self.constraints is not None:
            self.constraints.apply_velocities(self._positions, velocities)
        return float(kernels.kinetic_energy(velocities, self.masses))

    def _place_sites(self, positions) -> None:
        if self.backend.virtual_sites is not None:
            with phase("virtual sites"):
                self.backend.virtual_sites.place(positions)

    # -- energies and volume moves ------------------------------------------------------------

    def evaluation(self):
        """Energy and forces at the current positions (all parts), an ``Evaluation``."""
        return self.cache.full(self._positions, self._box)

    def potential_energy(self) -> float:
        """Potential energy at the current positions (all parts), kJ/mol."""
        return float(self.evaluation().energy)

    @property
    def host_constraints(self):
        """The constraint solver (it works on host arrays), or None: for the minimiser."""
        return self.constraints

    def scale_to(self, new_box, molecules) -> float:
        """Move every molecule's centre with the box into ``new_box`` (nm) and return the
        potential energy there, kJ/mol (inf if the forces blew up); :meth:`undo_scale` takes the
        move back."""
        new_positions = np.empty_like(self._positions)
        start, atoms = molecules
        kernels.scale_molecules(self._positions, start, atoms, np.linalg.inv(self._box), new_box,
                                new_positions)
        self._place_sites(new_positions)
        try:
            trial = self.backend.compute(new_positions, new_box)
            energy = trial.energy
        except BlowUpError:
            trial, energy = None, math.inf
        self._before_move = (self._positions, self._box, self.cache.fast, self.cache.slow)
        self._positions = new_positions
        self._box = np.array(new_box, np.float64)
        self.cache.invalidate()
        if self.cache.every == 1:
            self.cache.fast = trial
        return energy

    def undo_scale(self) -> None:
        """Return to the positions, box and forces before the last :meth:`scale_to`."""
        self._positions, self._box, self.cache.fast, self.cache.slow = self._before_move
        self._before_move = None

    # -- checkpoints --------------------------------------------------------------------------

    def get_state(self) -> tuple[dict, dict]:
        """(arrays, values) a bit-identical restart needs beyond positions and velocities."""
        return self.cache.get_state()

    def set_state(self, arrays: dict, values: dict) -> None:
        """Restore what :meth:`get_state` returned."""
        self.cache.set_state(arrays, values)
