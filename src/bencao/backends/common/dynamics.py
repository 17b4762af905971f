"""The step primitives every backend provides, and the loop that runs a scheme over them.

A backend's ``dynamics(...)`` returns a :class:`Dynamics`: it holds the state being integrated
(positions, velocities, box and the random streams, in host or device memory) and implements the
primitives the schemes of :mod:`bencao.dynamics.schemes` are written in.  ``Simulation`` talks
only to this interface, so it has no backend branches: the same sequence of primitives is one
step on every backend.
"""

from __future__ import annotations

from bencao.constants import BOLTZMANN
from bencao.errors import BlowUpError
from bencao.profiling import phase


class Dynamics:
    """Base of a backend's step primitives.

    Parameters
    ----------
    backend : bencao.backends.common.backend.Backend
        The compiled system.
    integrator : VerletIntegrator, LangevinMiddleIntegrator or NoseHooverIntegrator
        Read at every ``run`` (time step, temperature and tolerance may change between runs);
        its ``scheme`` is the step.
    masses : (N,) float64 array
        Particle masses, amu (0 for virtual sites).
    cm_every : int
        Remove centre-of-mass motion before every step whose number is a multiple of this
        (0: never).
    every : int
        Reciprocal-space forces every this many steps (impulse MTS); 1 for single stepping.
    chain : bencao.dynamics.nose_hoover.NoseHooverChain or None
        The thermostat chain of a Nosé–Hoover integrator (its few numbers live on the host).

    Notes
    -----
    Subclasses implement the primitives named in :mod:`bencao.dynamics.schemes` and
    ``set_positions``, ``set_velocities``, ``positions``, ``velocities``, ``box``,
    ``remove_center_of_mass_motion``, ``kinetic_energy``, ``scale_velocities``,
    ``evaluation``, ``scale_to``/``undo_scale`` (Monte Carlo volume moves) and the checkpoint
    pair ``get_state``/``set_state``.
    """

    def __init__(self, backend, integrator, masses, cm_every: int = 0, every: int = 1,
                 chain=None):
        self.backend = backend
        #: Reciprocal space every this many steps (impulse MTS); 1 when the system has no
        #: reciprocal-space term, whatever the integrator asks
        self.reciprocal_every = int(every)
        self.integrator = integrator
        self.masses = masses
        self.cm_every = int(cm_every)
        self.chain = chain

    def run(self, first_step: int, n_steps: int) -> None:
        """Advance ``n_steps`` steps from step number ``first_step``.

        Raises
        ------
        BlowUpError
            If the forces blew up; its ``step`` attribute is the number of the step that failed.
        """
        self.prepare_run()
        step = first_step
        try:
            for step in range(first_step, first_step + n_steps):
                self.step(step)
        except BlowUpError as error:
            if getattr(error, "step", None) is None:
                error.step = step
            raise

    def prepare_run(self) -> None:
        """Pick up integrator settings that may have changed since the last run."""

    def step(self, step: int) -> None:
        """One step number ``step``: centre-of-mass removal when due, then the scheme."""
        if self.cm_every and step % self.cm_every == 0:
            self.remove_center_of_mass_motion()
        self.integrator.scheme(self, self.integrator, step)

    def thermostat_half_step(self, dt: float) -> None:
        """Half a step of the Nosé–Hoover chain: propagate it with the kinetic energy, scale v."""
        with phase("thermostat"):
            scale = self.chain.propagate(self.kinetic_energy(), 0.5 * dt)
            self.scale_velocities(scale)

    def set_random_state(self, values) -> None:
        """Restore a device's own random streams (``get_state()[0]["device.random"]``); nothing
        on a backend whose noise comes from the simulation's host stream."""

    def set_temperature(self, temperature: float) -> None:
        """Change the heat bath's temperature (K): the integrator's and the chain's."""
        self.integrator.temperature = float(temperature)
        if self.chain is not None:
            self.chain.kt = BOLTZMANN * float(temperature)
