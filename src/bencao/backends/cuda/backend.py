"""The CUDA backend: a System compiled into Numba-CUDA kernels, the CPU backend's interface.

Positions go to the device once per evaluation, every term adds into one device fixed-point
force accumulator, and the forces come back once.  Input checks, the result type and blow-up
errors are the CPU backend's own, so both backends behave the same to their callers.
"""

from __future__ import annotations

import numpy as np

from bencao.backends.cpu.backend import PARTS, BlowUpError, CpuBackend, Evaluation
from bencao.backends.cpu.fixed_point import forces_from_fixed
from bencao.backends.cuda.device import require_cuda
from bencao.constants import FORCE_CLAMP
from bencao.forces import (
    CMAPTorsions,
    HarmonicAngles,
    HarmonicBonds,
    HarmonicImpropers,
    LJPairs,
    Nonbonded,
    PeriodicTorsions,
    PositionRestraints,
    TabulatedPairs,
)
from bencao.profiling import phase


def _make_term(term, system):
    """The CUDA counterpart of one force term of ``system``; TypeError if there is none yet."""
    from bencao.backends.cuda import bonded

    if isinstance(term, HarmonicBonds):
        return bonded.CudaHarmonicBonds(term)
    if isinstance(term, HarmonicAngles):
        return bonded.CudaHarmonicAngles(term)
    if isinstance(term, PeriodicTorsions):
        return bonded.CudaPeriodicTorsions(term)
    if isinstance(term, HarmonicImpropers):
        return bonded.CudaHarmonicImpropers(term)
    if isinstance(term, LJPairs):
        return bonded.CudaLJPairs(term)
    if isinstance(term, PositionRestraints):
        return bonded.CudaPositionRestraints(term)
    if isinstance(term, CMAPTorsions):
        return bonded.CudaCMAPTorsions(term)
    if isinstance(term, TabulatedPairs):
        # Imported here, as the Nonbonded kernels below: only systems with such a term need it.
        from bencao.backends.cuda.tabulated import CudaTabulatedPairs

        return CudaTabulatedPairs(term, system.box)
    if isinstance(term, Nonbonded):
        try:
            # Imported here: the pair kernels are large and only systems with pairs need them.
            from bencao.backends.cuda.nonbonded import CudaNonbonded
        except ImportError as error:
            raise TypeError(
                f"{type(term).__name__} ({term.name}) is not yet on the CUDA backend "
                f"(bencao.backends.cuda.nonbonded could not be imported: {error}); "
                "use backend='cpu'"
            ) from error
        return CudaNonbonded(term, system.box)
    raise TypeError(f"the CUDA backend has no kernel for {type(term).__name__}")


def _compute_part(term, parts, state, box, energy=True):
    """Add one term's share of ``parts`` to ``state.forces``; its energy, or None if it has none.

    The CUDA counterpart of the CPU backend's ``_compute_part``: with ``energy`` False, terms that
    can skip their energy (``energy_optional``) do, and return NaN.
    """
    reciprocal = getattr(term, "reciprocal", None)
    options = {} if energy or not getattr(term, "energy_optional", False) else {"energy": False}
    if parts == "all":
        return term.compute(state, box, **options)
    if parts == "direct":
        if reciprocal is None:
            return term.compute(state, box, **options)
        return term.compute_direct(state, box, **options)
    if parts == "reciprocal":
        if reciprocal is None:
            return None
        with phase("reciprocal space"):
            return reciprocal.compute(state, box, energy)
    raise ValueError(f"parts must be one of {PARTS}, got {parts!r}")


class CudaBackend:
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
    does in ``compute``; ``virtual_sites`` places them on host arrays for ``Simulation``.
    """

    def __init__(self, system):
        require_cuda()
        from bencao.backends.cuda.state import CudaState

        self.system = system
        self.n_particles = system.n_particles
        self.terms = [_make_term(term, system) for term in system.terms]
        self.state = CudaState.allocate(self.n_particles, n_systems=1)
        has_sites = len(system.virtual_sites) > 0
        #: Host-side placement, the CPU backend's attribute: ``Simulation`` places the sites on
        #: its host positions between steps through ``virtual_sites.place``; None without sites
        self.virtual_sites = None
        #: The same sites on the device, placed and distributed inside ``compute``
        self.device_virtual_sites = None
        if has_sites:
            from bencao.backends.cpu.virtual_sites import CpuVirtualSites
            from bencao.backends.cuda.virtual_sites import CudaVirtualSites

            self.virtual_sites = CpuVirtualSites(system.virtual_sites)
            self.device_virtual_sites = CudaVirtualSites(system.virtual_sites)

    # The same validation as the CPU backend (shapes, finite positions, reduced box), so both
    # backends accept and refuse exactly the same inputs; and the same checkpoint state (each
    # term's own, "term<i>.<key>") and MTS grouping, which only ask the terms.
    check_inputs = CpuBackend.check_inputs
    get_state = CpuBackend.get_state
    set_state = CpuBackend.set_state
    has_reciprocal = CpuBackend.has_reciprocal

    def compute(self, positions, box=None, parts: str = "all", energy: bool = True) -> Evaluation:
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

        Returns
        -------
        Evaluation
            Energy (kJ/mol), forces ((N, 3) float64, kJ/mol/nm) and per-term energies (kJ/mol).

        Raises
        ------
        BlowUpError
            If the energy is not finite or a force is too large to represent.
        """
        if parts not in PARTS:
            raise ValueError(f"parts must be one of {PARTS}, got {parts!r}")
        with phase("force bookkeeping"):
            positions, box = self.check_inputs(positions, box)
            self.state.upload(positions, box)
        # As the CPU backend: the site rows of the input are recomputed from the parents.
        self.place_virtual_sites()
        terms = self.accumulate(box, parts, energy)
        with phase("force bookkeeping"):
            forces = forces_from_fixed(self.state.download_forces())
        sites = self.device_virtual_sites
        if sites is not None:
            # Parents hold the sites' forces; the sites keep reporting the force that acts on
            # them, as on the CPU and in OpenMM's getForces (integrators skip massless particles).
            with phase("virtual sites"):
                sites.restore_site_forces(forces)
        total = float(sum(terms.values()))
        # As on the CPU: a NaN or huge force is clamped on its way into fixed point, so the force
        # test catches a blow-up whether or not the energy was computed.
        if (energy and not np.isfinite(total)) or \
                np.max(np.abs(forces), initial=0.0) >= 0.5 * FORCE_CLAMP:
            message, worst, culprit = self.diagnose(forces, terms, box)
            raise BlowUpError(message, worst, culprit)
        return Evaluation(energy=total, forces=forces, terms=terms)

    def diagnose(self, forces, terms, box):
        """Describe a blow-up: the particles with the largest forces and the term behind them.

        Uses the per-term energies of the failed evaluation (a non-finite one names the culprit)
        and otherwise re-runs each term alone, on the positions still on the device, to see
        whose forces on the worst particles are largest.

        Parameters
        ----------
        forces : (N, 3) float64 array
            The forces of the failed evaluation, kJ/mol/nm.
        terms : dict[str, float]
            Its per-term energies, kJ/mol.
        box : (3, 3) float64 array or None
            Its box, nm.

        Returns
        -------
        tuple
            (message, the five particles with the largest forces, the responsible term's name).
        """
        magnitude = np.linalg.norm(np.nan_to_num(forces, nan=np.inf), axis=1)
        worst = np.argsort(-magnitude, kind="stable")[:5]
        culprit = next((name for name, value in terms.items() if not np.isfinite(value)), None)
        if culprit is None:
            largest = -1.0
            for term in self.terms:
                self.state.zero_forces()
                term.compute(self.state, box)
                own = np.abs(self.state.download_forces()[worst]).max() if len(worst) else 0
                if own > largest:
                    largest = own
                    culprit = term.name
        listing = ", ".join(f"particle {i} (|F| = {magnitude[i]:.3g} kJ/mol/nm)" for i in worst)
        energies = ", ".join(f"{k} = {v:.6g}" for k, v in terms.items())
        message = (
            f"the forces blew up (overlapping or exploded atoms): largest on {listing}; "
            f"the term responsible is {culprit}; energies (kJ/mol): {energies}"
        )
        return message, worst, culprit

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
                term_energy = _compute_part(term, parts, self.state, box, energy)
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

    def device_dynamics(self, integrator, masses, seed, cm_every=0, every=1, chain=None):
        """A :class:`~bencao.backends.cuda.dynamics.DeviceDynamics` stepping this system on the
        device (see there for the parameters)."""
        from bencao.backends.cuda.dynamics import DeviceDynamics

        return DeviceDynamics(self, integrator, masses, seed, cm_every=cm_every, every=every,
                              chain=chain)
