"""Integrators: what a time step does, as plain parameter records.

The records hold parameters only; ``bencao.Simulation`` runs them on a backend.  Units are ps,
K and 1/ps, as in OpenMM.  Velocities are stored the way OpenMM stores them for the same
integrator, so a user moving between the two engines reads the same numbers:

* ``VerletIntegrator`` and ``LangevinMiddleIntegrator`` are leapfrog schemes; the velocities
  they hold are half a step behind (Verlet) or the "middle" velocities (LangevinMiddle), and the
  reported kinetic energy follows OpenMM's convention for each (see ``kinetic_shift``).
* ``NoseHooverIntegrator`` is velocity Verlet with on-step velocities.

Multiple time stepping (``reciprocal_every=k`` on the leapfrog integrators) is impulse RESPA as
in Desmond and OpenMM's ``MTSLangevinIntegrator``: every k-th step the reciprocal-space force is
applied as one kick of k steps' worth, at the positions of that step; all other forces every step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from bencao.dynamics.schemes import leapfrog_step, velocity_verlet_nose_hoover_step

#: Integrator classes by the name a job file gives them (``integrator = "langevin"``), in the
#: order they are listed to users; each class registers itself with :func:`integrator`.
INTEGRATORS: dict[str, type] = {}


def integrator(job_name: str):
    """Class decorator: register an integrator record under its job-file name.

    A record holds parameters only and says what it is through class attributes: ``scheme``
    (its step, a function of :mod:`bencao.dynamics.schemes`), ``thermostatted`` (it has a
    ``temperature``), ``supports_mts`` (it honours ``reciprocal_every``), ``kinetic_shift``
    (OpenMM's reporting convention), ``friction_is_collision_frequency`` and ``from_stage`` (how
    a job-file stage builds it), ``make_chain`` (its thermostat chain, if any).
    """

    def register(cls):
        cls.job_name = job_name
        INTEGRATORS[job_name] = cls
        return cls

    return register


def _check_positive(name: str, value: float) -> float:
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return value


def _check_every(value: int) -> int:
    if int(value) != value or value < 1:
        raise ValueError(f"reciprocal_every must be a positive whole number of steps, got {value!r}")
    return int(value)


@integrator("verlet")
@dataclass
class VerletIntegrator:
    """Leapfrog Verlet (NVE), as OpenMM's ``VerletIntegrator``.

    Parameters
    ----------
    timestep : float
        Time step, ps.
    constraint_tolerance : float
        Relative tolerance of SHAKE/RATTLE constraints (SETTLE waters are exact).
    reciprocal_every : int
        Evaluate reciprocal-space (PME/Ewald) forces every this many steps (impulse RESPA);
        1 means single time stepping.
    """

    timestep: float
    constraint_tolerance: float = 1e-5
    reciprocal_every: int = 1

    #: The stored velocities lag positions by half a step; kinetic energy is reported for
    #: velocities advanced by this many time steps with the current forces, as OpenMM does.
    kinetic_shift = 0.5
    thermostatted = False
    supports_mts = True
    friction_is_collision_frequency = False
    scheme = staticmethod(leapfrog_step)

    @classmethod
    def from_stage(cls, temperature, friction, timestep, reciprocal_every=1):
        """As a job-file stage asks for it (no thermostat: temperature and friction unused)."""
        return cls(timestep, reciprocal_every=reciprocal_every)

    def make_chain(self, degrees_of_freedom):
        """The thermostat chain this integrator carries: none."""

    def __post_init__(self):
        self.timestep = _check_positive("timestep (ps)", self.timestep)
        self.constraint_tolerance = _check_positive("constraint_tolerance", self.constraint_tolerance)
        self.reciprocal_every = _check_every(self.reciprocal_every)


@integrator("langevin")
@dataclass
class LangevinMiddleIntegrator:
    """Langevin dynamics, BAOAB "middle" scheme, as OpenMM's ``LangevinMiddleIntegrator``.

    One step: kick by the forces (B), constrain velocities, half drift (A), Ornstein–Uhlenbeck
    velocity update (O), half drift (A), constrain positions and set velocities from the
    constrained displacement.

    Parameters
    ----------
    temperature : float
        Heat-bath temperature, K.
    friction : float
        Friction coefficient, 1/ps.
    timestep : float
        Time step, ps.
    constraint_tolerance : float
        Relative tolerance of SHAKE/RATTLE constraints.
    reciprocal_every : int
        Evaluate reciprocal-space forces every this many steps (impulse RESPA).
    """

    temperature: float
    friction: float
    timestep: float
    constraint_tolerance: float = 1e-5
    reciprocal_every: int = 1

    kinetic_shift = 0.0
    thermostatted = True
    supports_mts = True
    friction_is_collision_frequency = False
    scheme = staticmethod(leapfrog_step)

    @classmethod
    def from_stage(cls, temperature, friction, timestep, reciprocal_every=1):
        """As a job-file stage asks for it: temperature K, friction 1/ps, timestep ps."""
        return cls(temperature, friction, timestep, reciprocal_every=reciprocal_every)

    def make_chain(self, degrees_of_freedom):
        """The thermostat chain this integrator carries: none."""

    def __post_init__(self):
        self.temperature = _check_positive("temperature (K)", self.temperature)
        if not math.isfinite(self.friction) or self.friction < 0:
            raise ValueError(f"friction must be >= 0 (1/ps), got {self.friction!r}")
        self.friction = float(self.friction)
        self.timestep = _check_positive("timestep (ps)", self.timestep)
        self.constraint_tolerance = _check_positive("constraint_tolerance", self.constraint_tolerance)
        self.reciprocal_every = _check_every(self.reciprocal_every)


@integrator("nose-hoover")
@dataclass
class NoseHooverIntegrator:
    """Velocity Verlet with a Nosé–Hoover chain thermostat (NVT).

    The chain is Martyna–Tuckerman–Klein's, propagated with multiple time steps and a
    Suzuki–Yoshida factorisation for half a step before and after each velocity-Verlet step, with
    the parameters of OpenMM's ``NoseHooverIntegrator``.  OpenMM 8 wraps the same chain around a
    leapfrog "middle" scheme instead, so the two sample the same ensemble but their trajectories
    differ.

    Parameters
    ----------
    temperature : float
        Thermostat temperature, K.
    collision_frequency : float
        Frequency of the coupling, 1/ps; the chain masses are Q1 = Ndf kT / w^2, Qj = kT / w^2.
    timestep : float
        Time step, ps.
    chain_length : int
        Number of thermostats in the chain.
    chain_steps : int
        Multiple-time-step substeps of the chain propagation per half step.
    yoshida_suzuki : {1, 3, 5, 7}
        Order of the Suzuki–Yoshida weights.
    constraint_tolerance : float
        Relative tolerance of SHAKE/RATTLE constraints.

    Notes
    -----
    ``Simulation.state.conserved_energy`` reports the conserved quantity
    ``K + U + sum_j Q_j v_j^2 / 2 + Ndf kT xi_1 + sum_{j>1} kT xi_j``.
    """

    temperature: float
    collision_frequency: float
    timestep: float
    chain_length: int = 3
    chain_steps: int = 3
    yoshida_suzuki: int = 7
    constraint_tolerance: float = 1e-5

    kinetic_shift = 0.0
    thermostatted = True
    supports_mts = False
    #: A job file's 'friction' is this integrator's collision frequency (so it must be > 0)
    friction_is_collision_frequency = True
    reciprocal_every = 1
    scheme = staticmethod(velocity_verlet_nose_hoover_step)

    @classmethod
    def from_stage(cls, temperature, friction, timestep, reciprocal_every=1):
        """As a job-file stage asks for it: the stage's friction (1/ps) is the collision
        frequency; ``reciprocal_every`` must be 1 (the job file checks it)."""
        return cls(temperature, friction, timestep)

    def make_chain(self, degrees_of_freedom):
        """The Nosé–Hoover chain for a system with ``degrees_of_freedom``."""
        from bencao.dynamics.nose_hoover import NoseHooverChain

        return NoseHooverChain(self.temperature, self.collision_frequency, degrees_of_freedom,
                               self.chain_length, self.chain_steps, self.yoshida_suzuki)

    def __post_init__(self):
        self.temperature = _check_positive("temperature (K)", self.temperature)
        self.collision_frequency = _check_positive("collision_frequency (1/ps)", self.collision_frequency)
        self.timestep = _check_positive("timestep (ps)", self.timestep)
        self.constraint_tolerance = _check_positive("constraint_tolerance", self.constraint_tolerance)
        if int(self.chain_length) != self.chain_length or self.chain_length < 1:
            raise ValueError(f"chain_length must be >= 1, got {self.chain_length!r}")
        if int(self.chain_steps) != self.chain_steps or self.chain_steps < 1:
            raise ValueError(f"chain_steps must be >= 1, got {self.chain_steps!r}")
        if self.yoshida_suzuki not in (1, 3, 5, 7):
            raise ValueError(f"yoshida_suzuki must be 1, 3, 5 or 7, got {self.yoshida_suzuki!r}")
