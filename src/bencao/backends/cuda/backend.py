"""The CUDA backend: a System compiled into Numba-CUDA kernels, behind the common contract.

Positions go to the device once per evaluation, every term adds into one device fixed-point
force accumulator, and the forces come back once.  Input checks, the result type, checkpoint
state and blow-up errors come from ``backends.common.backend.Backend``, as the CPU backend's
do, so both backends behave the same to their callers.
"""

from __future__ import annotations

from bencao.backends.common.backend import Backend, compute_share
from bencao.backends.common.evaluation import Evaluation, check_parts
from bencao.backends.common.fixed_point import forces_from_fixed
from bencao.backends.common.registry import kernel_for
from bencao.backends.cuda.device import require_cuda
from bencao.profiling import phase

#: Modules whose term classes register themselves for CUDA (``register_kernel("cuda", ...)``).
#: The pair modules are large but compile lazily, at a kernel's first launch.
KERNEL_MODULES = ("bonded", "custom", "custom_gb", "custom_pairs", "tabulated", "nonbonded")


class CudaBackend(Backend):
    """A System compiled for an NVIDIA GPU (or Numba's CUDA simulator).

    Parameters
    ----------
    system : bencao.System
        The system to evaluate.

    Raises
    ------
    RuntimeError
        If there is neither a CUDA GPU nor the simulator.
    TypeError
        If the system has a term the CUDA backend cannot compute yet.
    ValueError
        If its virtual sites are malformed (unknown kind, too few parents, circular).

    Notes
    -----
    Virtual sites (every kind the CPU backend has) are placed on the device after the positions
    are uploaded and their forces moved onto their parents after every term, as the CPU backend
    does in ``compute``; ``virtual_sites`` places them on host arrays, as the CPU backend's.
    """

    kind = "cuda"

    def __init__(self, system):
        require_cuda()
        import importlib

        from bencao.backends.cuda.state import CudaState

        for module in KERNEL_MODULES:
            importlib.import_module(f"bencao.backends.cuda.{module}")
        self.system = system
        self.n_particles = system.n_particles
        self.terms = [kernel_for("cuda", term, system) for term in system.terms]
        self.state = CudaState.allocate(self.n_particles, n_systems=1)
        has_sites = len(system.virtual_sites) > 0
        #: Host-side placement (the shared tables' ``place``), the CPU backend's attribute, for
        #: callers holding host positions; None without sites
        self.virtual_sites = None
        #: The same sites on the device, placed and distributed inside ``compute``
        self.device_virtual_sites = None
        if has_sites:
            from bencao.backends.common.virtual_site_tables import VirtualSiteTables
            from bencao.backends.cuda.virtual_sites import CudaVirtualSites

            self.virtual_sites = VirtualSiteTables(system.virtual_sites)
            self.device_virtual_sites = CudaVirtualSites(system.virtual_sites)

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
            Everything, everything but reciprocal space, or only reciprocal space (as on the CPU).
        energy : bool
            If False, terms that can skip their energy do; the total may then be NaN.
        parameter_derivatives : bool
            Also fill ``Evaluation.parameter_derivatives`` (as on the CPU).

        Returns
        -------
        Evaluation
            Energy (kJ/mol), forces ((N, 3) float64, kJ/mol/nm) and per-term energies (kJ/mol).

        Raises
        ------
        BlowUpError
            If the energy is not finite or a force is too large to represent.
        """
        check_parts(parts)
        with phase("force bookkeeping"):
            positions, box = self.check_inputs(positions, box)
            self.state.upload(positions, box)
        # As the CPU backend: the site rows of the input are recomputed from the parents.
        self.place_virtual_sites()
        terms = self.accumulate(box, parts, energy)
        derivatives = {}
        if parameter_derivatives and parts != "reciprocal":
            # The derivative laws add zero forces: the accumulator keeps the forces above.
            derivatives = self.parameter_derivatives((self.state, box))
        with phase("force bookkeeping"):
            forces = forces_from_fixed(self.state.download_forces())
        sites = self.device_virtual_sites
        if sites is not None:
            # Parents hold the sites' forces; the sites keep reporting the force that acts on
            # them, as on the CPU and in OpenMM's getForces (integrators skip massless particles).
            with phase("virtual sites"):
                sites.restore_site_forces(forces)
        self.check_blow_up(forces, terms, positions, box, energy)
        return Evaluation(energy=float(sum(terms.values())), forces=forces, terms=terms,
                          parameter_derivatives=derivatives)

    def term_forces(self, term, positions, box):
        """One term alone, at the positions on the device: (fixed-point forces, energy kJ/mol)."""
        self.state.zero_forces()
        energy = term.compute(self.state, box)
        return self.state.download_forces(), energy

    # -- the device-resident step (bencao.backends.cuda.dynamics) --------------------------------

    def accumulate(self, box, parts: str = "all", energy: bool = False) -> dict[str, float]:
        """Forces of ``parts`` at the positions already on the device, left in ``state.forces``.

        Nothing is copied to or from the host (beyond what the terms themselves need, such as
        the neighbour list's displacement check), which is what lets a step stay on the GPU.

        Parameters
        ----------
        box : (3, 3) float64 array or None
            Box vectors as rows, nm (host copy of what is on the device).
        parts : {"all", "direct", "reciprocal"}
            As in :meth:`compute`.
        energy : bool
            Sum the energies too (a transfer per term); NaN for terms that skipped theirs.

        Returns
        -------
        dict[str, float]
            Energy of each term, kJ/mol.
        """
        with phase("force bookkeeping"):
            self.state.zero_forces()
        terms: dict[str, float] = {}
        for term in self.terms:
            with phase(term.profile_phase):
                term_energy = compute_share(term, parts, (self.state, box), energy)
            if term_energy is not None:
                terms[term.name] = terms.get(term.name, 0.0) + float(term_energy)
        if self.device_virtual_sites is not None:
            # Sites are massless: their forces must reach the parents before the kick.
            with phase("virtual sites"):
                self.device_virtual_sites.distribute(self.state)
        return terms

    def place_virtual_sites(self) -> None:
        """Put the virtual sites where their parents (on the device) say; nothing without sites."""
        if self.device_virtual_sites is not None:
            with phase("virtual sites"):
                self.device_virtual_sites.place(self.state)

    @staticmethod
    def synchronize() -> None:
        """Wait until every kernel launched so far has finished (for profiles and timings)."""
        from numba import cuda

        cuda.synchronize()

    def dynamics(self, integrator, masses, positions, box, seed=None, rng=None, cm_every=0,
                 every=1, chain=None):
        """The step primitives of this system on the device, a
        :class:`~bencao.backends.cuda.dynamics.CudaDynamics` holding ``positions`` (nm) and
        ``box`` (nm).  Its per-particle random streams get their own seed derived from ``seed``
        without drawing from ``rng`` (the host stream of barostat moves and initial velocities,
        which is then the same on every backend)."""
        import numpy as np

        from bencao.backends.cuda.dynamics import CudaDynamics

        device_seed = int(np.random.SeedSequence(seed).generate_state(1, np.uint64)[0])
        return CudaDynamics(self, integrator, masses, device_seed, positions, box,
                            cm_every=cm_every, every=every, chain=chain)
