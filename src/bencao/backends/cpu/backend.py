"""The CPU backend: compiles a System into Numba kernels and evaluates energies and forces."""

from __future__ import annotations

import importlib
from contextlib import nullcontext

import numpy as np
from numba import njit

from bencao.backends.common.backend import Backend, compute_share
from bencao.backends.common.evaluation import PARTS, Evaluation, check_parts
from bencao.constants import FORCE_SCALE
from bencao.backends.common.registry import kernel_for
from bencao.backends.cpu.nonbonded import DEFAULT_BUFFER
from bencao.backends.cpu.threads import per_particle
from bencao.errors import BlowUpError
from bencao.profiling import phase

__all__ = ["PARTS", "BlowUpError", "CpuBackend", "Evaluation"]

#: Modules whose term classes register themselves for the CPU (``register_kernel("cpu", ...)``).
KERNEL_MODULES = ("bonded", "periodic_torsions", "cmap", "custom", "custom_gb", "custom_pairs",
                  "nonbonded")


@njit(cache=True)
def forces_and_largest(fixed):
    """The (N, 3) int64 fixed-point accumulator as float64 forces, kJ/mol/nm (as
    ``fixed_point.forces_from_fixed`` converts), and the largest component's magnitude, in one
    pass: NumPy's conversion, scaling and blow-up test took three, 0.1 ms of a DHFR step."""
    forces = np.empty(fixed.shape)
    scale = 1.0 / FORCE_SCALE
    largest = 0.0
    for i in range(fixed.shape[0]):
        for d in range(fixed.shape[1]):
            value = np.float64(fixed[i, d]) * scale
            forces[i, d] = value
            largest = max(largest, abs(value))
    return forces, largest


class CpuBackend(Backend):
    """A System compiled for the CPU; keeps neighbour lists and PME grids between calls.

    Parameters
    ----------
    system : bencao.System
        The system to evaluate.
    buffer : float
        Verlet buffer of the neighbour lists, nm.
    """

    kind = "cpu"

    def __init__(self, system, buffer: float = DEFAULT_BUFFER):
        from bencao.backends.cpu.virtual_sites import CpuVirtualSites

        for module in KERNEL_MODULES:
            importlib.import_module(f"bencao.backends.cpu.{module}")
        self.system = system
        self.n_particles = system.n_particles
        self.terms = [kernel_for("cpu", term, system, buffer=buffer) for term in system.terms]
        self.virtual_sites = CpuVirtualSites(system.virtual_sites) if len(system.virtual_sites) else None
        self._forces = np.zeros((self.n_particles, 3), np.int64)

    def compute(self, positions, box=None, parts: str = "all", energy: bool = True,
                parameter_derivatives: bool = False) -> Evaluation:
        """Energy and forces.

        Parameters
        ----------
        positions : (N, 3) array
            Positions of all particles, nm (virtual-site rows are recomputed from parents).
        box : (3, 3) array or None
            Box vectors as rows, nm; defaults to the system's box.
        parts : {"all", "direct", "reciprocal"}
            Which forces: everything, everything but reciprocal space (the fast group of
            multiple time stepping), or only reciprocal space with the Ewald self energy (the
            slow group).
        energy : bool
            If False, terms that can skip their energy do (the pair kernel runs faster); the
            Evaluation's energy is then NaN.  Dynamics needs only forces.
        parameter_derivatives : bool
            Also fill ``Evaluation.parameter_derivatives`` (dU/dp of the global parameters the
            forces ask derivatives of; they belong to the "direct" group).

        Returns
        -------
        Evaluation

        Raises
        ------
        BlowUpError
            If the energy is not finite or a force is too large to represent.
        """
        check_parts(parts)
        with phase("force bookkeeping"):
            positions, box = self.check_inputs(positions, box)
        if self.virtual_sites is not None:
            with phase("virtual sites"):
                self.virtual_sites.place(positions)
        fixed = self._forces
        fixed[:] = 0
        terms: dict[str, float] = {}
        for term in self.terms:
            threads = (per_particle(self.n_particles) if term.work_per_particle
                       else nullcontext())
            with phase(term.profile_phase), threads:
                term_energy = compute_share(term, parts, (positions, box, fixed), energy)
            if term_energy is not None:
                terms[term.name] = terms.get(term.name, 0.0) + float(term_energy)
        with phase("force bookkeeping"):
            forces, largest = forces_and_largest(fixed)
        if self.virtual_sites is not None:
            # Parents receive the sites' forces; the sites keep reporting the force that acts on
            # them, as OpenMM's getForces does (integrators skip massless particles).
            with phase("virtual sites"):
                sites = self.system.virtual_sites.site
                site_forces = forces[sites]
                forces = self.virtual_sites.distribute(positions, forces)
                forces[sites] = site_forces
            largest = None  # the parents' forces changed
        self.check_blow_up(forces, terms, positions, box, energy, largest)
        derivatives = {}
        if parameter_derivatives and parts != "reciprocal":
            derivatives = self.parameter_derivatives((positions, box, np.zeros_like(fixed)))
        return Evaluation(energy=float(sum(terms.values())), forces=forces, terms=terms,
                          parameter_derivatives=derivatives)

    def term_forces(self, term, positions, box):
        """One term alone at ``positions``: (fixed-point forces, energy in kJ/mol)."""
        fixed = np.zeros_like(self._forces)
        return fixed, term.compute(positions, box, fixed)

    def dynamics(self, integrator, masses, positions, box, seed=None, rng=None, cm_every=0,
                 every=1, chain=None):
        """The step primitives of this system on the host, a
        :class:`~bencao.backends.cpu.dynamics.CpuDynamics` holding ``positions`` (nm, constrained
        in place) and ``box`` (nm); Langevin noise is drawn from ``rng``."""
        from bencao.backends.cpu.dynamics import CpuDynamics

        return CpuDynamics(self, integrator, masses, rng, positions, box, cm_every=cm_every,
                           every=every, chain=chain)
