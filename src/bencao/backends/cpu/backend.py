"""The CPU backend: compiles a System into Numba kernels and evaluates energies and forces."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bencao.backends.cpu.fixed_point import forces_from_fixed
from bencao.backends.cpu.nonbonded import DEFAULT_BUFFER
from bencao.constants import FORCE_CLAMP
from bencao.errors import BlowUpError
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


@dataclass
class Evaluation:
    """Energy and forces of one configuration.

    Attributes
    ----------
    energy : float
        Total potential energy, kJ/mol.
    forces : (N, 3) float64 array
        Forces, kJ/mol/nm.  A virtual site's force is moved onto its parents; the site's own row
        still shows the force acting on it, as OpenMM reports it.
    terms : dict[str, float]
        Energy of each kind of term (keyed by the OpenMM force class), kJ/mol.
    """

    energy: float
    forces: np.ndarray
    terms: dict


def _make_term(term, system, buffer):
    from bencao.backends.cpu import bonded, cmap, nonbonded

    if isinstance(term, HarmonicBonds):
        return bonded.CpuHarmonicBonds(term)
    if isinstance(term, HarmonicAngles):
        return bonded.CpuHarmonicAngles(term)
    if isinstance(term, PeriodicTorsions):
        return bonded.CpuPeriodicTorsions(term)
    if isinstance(term, HarmonicImpropers):
        return bonded.CpuHarmonicImpropers(term)
    if isinstance(term, LJPairs):
        return bonded.CpuLJPairs(term)
    if isinstance(term, PositionRestraints):
        return bonded.CpuPositionRestraints(term)
    if isinstance(term, CMAPTorsions):
        return cmap.CpuCMAPTorsions(term)
    if isinstance(term, Nonbonded):
        return nonbonded.CpuNonbonded(term, system.box, buffer=buffer)
    if isinstance(term, TabulatedPairs):
        return nonbonded.CpuTabulatedPairs(term, buffer=buffer)
    raise TypeError(f"the CPU backend has no kernel for {type(term).__name__}")


PARTS = ("all", "direct", "reciprocal")


def _compute_part(term, parts, positions, box, fixed, energy=True):
    """Add one term's share of ``parts`` to ``fixed``; its energy, or None if it has no share.

    With ``energy`` False, terms that can skip their energy (``energy_optional``) do, and return
    NaN.
    """
    reciprocal = getattr(term, "reciprocal", None)
    options = {} if energy or not getattr(term, "energy_optional", False) else {"energy": False}
    if parts == "all":
        return term.compute(positions, box, fixed, **options)
    if parts == "direct":
        return term.compute_direct(positions, box, fixed, **options) if reciprocal is not None else \
            term.compute(positions, box, fixed, **options)
    if parts == "reciprocal":
        if reciprocal is None:
            return None
        with phase("reciprocal space"):
            return reciprocal.compute(positions, box, fixed)
    raise ValueError(f"parts must be one of {PARTS}, got {parts!r}")


class CpuBackend:
    """A System compiled for the CPU; keeps neighbour lists and PME grids between calls.

    Parameters
    ----------
    system : bencao.System
        The system to evaluate.
    buffer : float
        Verlet buffer of the neighbour lists, nm.
    """

    def __init__(self, system, buffer: float = DEFAULT_BUFFER):
        from bencao.backends.cpu.virtual_sites import CpuVirtualSites

        self.system = system
        self.n_particles = system.n_particles
        self.terms = [_make_term(term, system, buffer) for term in system.terms]
        self.virtual_sites = CpuVirtualSites(system.virtual_sites) if len(system.virtual_sites) else None
        self._forces = np.zeros((self.n_particles, 3), np.int64)

    def check_inputs(self, positions, box):
        """Validate and normalise positions (N, 3) and box (3, 3); return float64 copies."""
        positions = np.array(positions, dtype=np.float64)
        if positions.shape != (self.n_particles, 3):
            raise ValueError(
                f"positions have shape {positions.shape}; the system has {self.n_particles} "
                "particles, so (N, 3) in nm is expected"
            )
        if not np.all(np.isfinite(positions)):
            bad = np.flatnonzero(~np.all(np.isfinite(positions), axis=1))
            raise ValueError(f"positions of particles {bad[:10].tolist()} are not finite")
        if box is None:
            box = self.system.box
        if self.system.periodic:
            if box is None:
                raise ValueError("this system is periodic: a (3, 3) box in nm is required")
            box = np.array(box, dtype=np.float64)
            if box.shape != (3, 3):
                raise ValueError(f"box has shape {box.shape}; (3, 3) box vectors as rows (nm) expected")
            reduced = (
                box[0, 1] == 0 and box[0, 2] == 0 and box[1, 2] == 0
                and box[0, 0] > 0 and box[1, 1] > 0 and box[2, 2] > 0
                and abs(box[1, 0]) <= 0.5 * box[0, 0] + 1e-12
                and abs(box[2, 0]) <= 0.5 * box[0, 0] + 1e-12
                and abs(box[2, 1]) <= 0.5 * box[1, 1] + 1e-12
            )
            if not reduced:
                raise ValueError(
                    "box vectors must be in OpenMM's reduced form: a=(ax,0,0), b=(bx,by,0), "
                    "c=(cx,cy,cz) with ax,by,cz > 0, |bx|,|cx| <= ax/2, |cy| <= by/2"
                )
        else:
            box = None
        return positions, box

    def get_state(self) -> dict:
        """What a checkpoint needs for a bit-identical restart: each pair term's neighbour-list
        build (positions and box), as {"term<i>.reference": array, "term<i>.box": array}."""
        state = {}
        for index, term in enumerate(self.terms):
            if hasattr(term, "get_state"):
                for key, value in term.get_state().items():
                    if value is not None:
                        state[f"term{index}.{key}"] = np.asarray(value)
        return state

    def set_state(self, state: dict) -> None:
        """Restore what ``get_state`` returned (rebuilds the neighbour lists as they were)."""
        for index, term in enumerate(self.terms):
            if hasattr(term, "set_state"):
                term.set_state({key: state.get(f"term{index}.{key}") for key in ("reference", "box")})

    @property
    def has_reciprocal(self) -> bool:
        """True if some term has a reciprocal-space (Ewald/PME) part, the slow group of MTS."""
        return any(getattr(term, "reciprocal", None) is not None for term in self.terms)

    def compute(self, positions, box=None, parts: str = "all", energy: bool = True) -> Evaluation:
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

        Returns
        -------
        Evaluation

        Raises
        ------
        BlowUpError
            If the energy is not finite or a force is too large to represent.
        """
        with phase("force bookkeeping"):
            positions, box = self.check_inputs(positions, box)
        if self.virtual_sites is not None:
            with phase("virtual sites"):
                self.virtual_sites.place(positions)
        fixed = self._forces
        fixed[:] = 0
        terms: dict[str, float] = {}
        for term in self.terms:
            with phase(term.profile_phase):
                term_energy = _compute_part(term, parts, positions, box, fixed, energy)
            if term_energy is not None:
                terms[term.name] = terms.get(term.name, 0.0) + float(term_energy)
        with phase("force bookkeeping"):
            forces = forces_from_fixed(fixed)
        if self.virtual_sites is not None:
            # Parents receive the sites' forces; the sites keep reporting the force that acts on
            # them, as OpenMM's getForces does (integrators skip massless particles).
            with phase("virtual sites"):
                sites = self.system.virtual_sites.site
                site_forces = forces[sites]
                forces = self.virtual_sites.distribute(positions, forces)
                forces[sites] = site_forces
        total = float(sum(terms.values()))
        # A NaN or huge force is clamped on its way into fixed point, so the force test catches
        # a blow-up whether or not the energy was computed.
        if (energy and not np.isfinite(total)) or \
                np.max(np.abs(forces), initial=0.0) >= 0.5 * FORCE_CLAMP:
            message, worst, culprit = self.diagnose(positions, box, forces, terms)
            raise BlowUpError(message, worst, culprit)
        return Evaluation(energy=total, forces=forces, terms=terms)

    def diagnose(self, positions, box, forces, terms):
        """Describe a blow-up: the particles with the largest forces and the term behind them.

        Returns
        -------
        tuple
            (message, the five particles with the largest forces, the responsible term's name).
        """
        magnitude = np.linalg.norm(np.nan_to_num(forces, nan=np.inf), axis=1)
        worst = np.argsort(-magnitude, kind="stable")[:5]
        culprit = None
        largest = -1.0
        for term in self.terms:
            fixed = np.zeros_like(self._forces)
            try:
                energy = term.compute(positions, box, fixed)
            except Exception:  # a kernel failing here is itself the culprit
                culprit = term.name
                break
            own = np.abs(fixed[worst]).max() if len(worst) else 0
            if not np.isfinite(energy) or own > largest:
                largest = np.inf if not np.isfinite(energy) else own
                culprit = term.name
        listing = ", ".join(f"particle {i} (|F| = {magnitude[i]:.3g} kJ/mol/nm)" for i in worst)
        energies = ", ".join(f"{k} = {v:.6g}" for k, v in terms.items())
        message = (
            f"the forces blew up (overlapping or exploded atoms): largest on {listing}; "
            f"the term responsible is {culprit}; energies (kJ/mol): {energies}"
        )
        return message, worst, culprit
