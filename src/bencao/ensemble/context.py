"""What every segment of a run shares, read from the run folder once per worker process: the
System of each state, the topology, the starting state, the reporters' settings."""

from __future__ import annotations

import os

import numpy as np

from bencao.ensemble.segment import START, replica_dir

_CONTEXTS: dict = {}


def replica_context(run_dir, job) -> ReplicaContext:
    """The context of a run folder, kept per process (a worker runs many segments of one run)."""
    start = os.path.join(os.fspath(run_dir), START)
    key = (os.path.abspath(os.fspath(run_dir)), job.text, os.stat(start).st_mtime_ns)
    if key not in _CONTEXTS:
        _CONTEXTS.clear()
        _CONTEXTS[key] = ReplicaContext(run_dir, job)
    return _CONTEXTS[key]


class ReplicaContext:
    """The run's inputs as one segment needs them.

    Parameters
    ----------
    run_dir : str
        The run folder: ``topology.pdb`` and ``start.npz`` written by the driver.
    job : bencao.jobs.Job
        The job (its system folder, last stage and ensemble).
    """

    def __init__(self, run_dir, job):
        import mdtraj
        from openmm import app

        from bencao.dynamics.molecules import find_molecules
        from bencao.io.files import load_state
        from bencao.prep.restraints import restrained_atoms, with_position_restraints
        from bencao.system import System

        self.run_dir = os.fspath(run_dir)
        self.job = job
        self.stage = job.stages[-1]
        self.start = load_state(os.path.join(self.run_dir, START))
        system = System.load(os.path.join(job.system_dir, "system.npz"))
        pdb = app.PDBFile(os.path.join(self.run_dir, "topology.pdb"))
        self.openmm_topology = pdb.topology
        if self.start["box"] is not None:
            self.openmm_topology.setPeriodicBoxVectors(self.start["box"])
        self.topology = mdtraj.Topology.from_openmm(pdb.topology)
        if self.stage.restraints != "none":
            atoms = restrained_atoms(self.topology, self.stage.restraints)
            system = with_position_restraints(system, atoms, self.start["positions"],
                                              self.stage.restraint_k)
        self.system = system
        self.molecules = find_molecules(system)
        self._solute = None
        self._systems: dict[int, object] = {}

    def state_system(self, state: int):
        """The System of a state: the run's own, or its REST2-scaled version."""
        if state not in self._systems:
            ensemble = self.job.ensemble
            system = self.system
            if ensemble.exchange == "rest2":
                from bencao.ensemble.rest2 import scale_solute, solute_atoms

                if self._solute is None:
                    self._solute = solute_atoms(self.topology, ensemble.solute)
                system = scale_solute(system, self._solute, ensemble.scales[state])
            self._systems[state] = system
        return self._systems[state]

    def simulation(self, state: int, seed: int):
        """A fresh Simulation of a state at the starting positions (the caller restores the
        replica's checkpoint into it)."""
        from bencao.jobs.runner import stage_barostat, stage_integrator
        from bencao.simulation import Simulation

        temperature = self.job.ensemble.temperatures[state]
        return Simulation(self.state_system(state), stage_integrator(self.stage, temperature),
                          self.start["positions"], self.start["box"],
                          velocities=self.start["velocities"], seed=seed,
                          barostat=stage_barostat(self.stage, temperature),
                          backend=self.job.backend)

    def potential_energy(self, state: int, positions, box) -> float:
        """Potential energy of a configuration under a state's Hamiltonian, kJ/mol (a backend of
        its own each time, so the value depends on nothing but its inputs)."""
        from bencao.evaluate import make_backend

        backend = make_backend(self.state_system(state), self.job.backend)
        return float(backend.compute(np.asarray(positions), box).energy)

    def reporters(self, replica: int, append: bool) -> list:
        """The replica's log and trajectory writers, positioned at the stage's reporting steps."""
        from bencao.reporters import StateDataReporter, TrajectoryReporter

        folder = replica_dir(self.run_dir, replica)
        os.makedirs(folder, exist_ok=True)
        first = self.start["step"]
        log = StateDataReporter(os.path.join(folder, "log.csv"), self.stage.steps,
                                lambda step: step - first, append=append)
        trajectory = TrajectoryReporter(
            os.path.join(folder, f"trajectory.{self.job.trajectory_format}"),
            self.openmm_topology, self.molecules, append=append)
        log.begin_stage(self.stage, first, self.stage.report_every)
        trajectory.begin_stage(self.stage, first, self.stage.trajectory_every)
        return [log, trajectory]

    def blow_up_error(self, task, simulation, exc):
        """The usual blow-up diagnosis, naming the replica and its state."""
        from bencao.jobs.runner import describe_atoms

        particles = getattr(exc, "particles", [])
        where = describe_atoms(self.topology, particles[:4]) if particles else "unknown atoms"
        return self.failure_error(
            task, simulation, f"blew up: largest forces on {where}; term responsible: "
            f"{getattr(exc, 'term', None) or 'unknown'} (overlapping atoms, a bad starting "
            "structure or too long a time step)")

    def failure_error(self, task, simulation, what):
        """A replica's dynamics failed: one line naming the replica, its state and the step."""
        from bencao.jobs.runner import SimulationError

        temperature = self.job.ensemble.temperatures[task.state]
        return SimulationError(
            f"replica {task.replica} (state {task.state}, {temperature:.1f} K) failed in segment "
            f"{task.segment} at step {simulation.step_count}: {str(what).rstrip('.')}; the ensemble stops here, and "
            f"--resume reruns the segment from its input checkpoint in "
            f"{replica_dir(self.run_dir, task.replica)}")
