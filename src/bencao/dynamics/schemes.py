"""Time steps written once, as sequences of primitives every backend provides.

A scheme is a function ``scheme(primitives, integrator, step)`` that advances one step by
calling the backend's primitives (:class:`bencao.backends.common.dynamics.Dynamics`):

``kick(dt, parts)``
    v += dt F/m with the forces of ``parts`` ("all", "direct" or "reciprocal") at the current
    positions (evaluated once per configuration).
``constrain_velocities()``
    Remove the velocity components along constraints (RATTLE / SETTLE).
``drift(dt)``
    x' = x + dt v into the spare position array.
``langevin_drift(dt, friction, temperature)``
    The A-O-A middle of a LangevinMiddle step into the spare array: half drift,
    Ornstein–Uhlenbeck velocity update, half drift.
``constrain_positions(dt)``
    Constrain x', add the constraint displacement / dt to v, make x' current and place the
    virtual sites.
``thermostat_half_step(dt)``
    Half a step of the Nosé–Hoover chain: propagate it with the kinetic energy and scale v.

Centre-of-mass motion removal and Monte Carlo volume moves happen between steps and are not part
of a scheme.  The sequences are OpenMM's for the same integrators, so the velocities stored are
those OpenMM stores.
"""

from __future__ import annotations


def leapfrog_step(primitives, integrator, step: int) -> None:
    """One Verlet or LangevinMiddle step (BAOAB "middle"), with impulse-MTS reciprocal kicks.

    Kick by the fast forces; on every ``reciprocal_every``-th step also kick by ``every`` steps'
    worth of reciprocal-space force; then drift (Verlet) or constrain velocities and A-O-A
    (LangevinMiddle); then constrain positions and correct velocities.
    """
    dt = integrator.timestep
    every = primitives.reciprocal_every  # 1 if the system has no reciprocal space
    primitives.kick(dt, "all" if every == 1 else "direct")
    if every > 1 and step % every == 0:
        primitives.kick(dt * every, "reciprocal")
    friction = getattr(integrator, "friction", None)
    if friction is None:
        primitives.drift(dt)
    else:
        primitives.constrain_velocities()
        primitives.langevin_drift(dt, friction, integrator.temperature)
    primitives.constrain_positions(dt)


def velocity_verlet_nose_hoover_step(primitives, integrator, step: int) -> None:
    """One velocity-Verlet step between two half steps of the Nosé–Hoover chain."""
    dt = integrator.timestep
    primitives.thermostat_half_step(dt)
    primitives.kick(0.5 * dt, "all")
    primitives.drift(dt)
    primitives.constrain_positions(dt)
    primitives.kick(0.5 * dt, "all")
    primitives.constrain_velocities()
    primitives.thermostat_half_step(dt)
