"""The part of a backend that does not depend on its hardware: input checks, checkpoint state,
force groups and the description of a blow-up."""

from __future__ import annotations

import numpy as np

from bencao.backends.common.evaluation import check_parts
from bencao.constants import FORCE_CLAMP
from bencao.errors import BlowUpError
from bencao.profiling import phase


def compute_share(term, parts: str, arguments: tuple, energy: bool = True):
    """Add one compiled term's share of the force group ``parts`` to the backend's accumulator
    and return its energy (kJ/mol), or None if the term has no share in that group.

    Parameters
    ----------
    term : compiled term
        A backend's kernel object: ``compute`` (everything), and, for a term with a
        reciprocal-space part, ``compute_direct`` and ``reciprocal.compute``.
    parts : {"all", "direct", "reciprocal"}
        The force group (see ``bencao.backends.common.evaluation.PARTS``).
    arguments : tuple
        What the backend's terms take: (positions, box, fixed-point forces) on the CPU,
        (device state, box) on CUDA.
    energy : bool
        If False, terms that can skip their energy (``energy_optional``) do, and return NaN.
    """
    options = {} if energy or not getattr(term, "energy_optional", False) else {"energy": False}
    reciprocal = getattr(term, "reciprocal", None)
    if parts == "all":
        return term.compute(*arguments, **options)
    if parts == "direct":
        compute = term.compute if reciprocal is None else term.compute_direct
        return compute(*arguments, **options)
    if parts == "reciprocal":
        if reciprocal is None:
            return None
        skip = not energy and getattr(reciprocal, "energy_optional", False)
        with phase("reciprocal space"):
            return reciprocal.compute(*arguments, **({"energy": False} if skip else {}))
    check_parts(parts)
    return None


class Backend:
    """Base of the CPU and CUDA backends: a System compiled for one kind of hardware.

    A subclass sets ``system``, ``n_particles`` and ``terms`` (its compiled kernels, each with
    ``name`` and optionally ``reciprocal``, ``get_state`` and ``set_state``) and implements
    ``compute(positions, box, parts, energy) -> Evaluation``, ``term_forces(term, positions,
    box)`` (one term alone, as fixed-point forces and its energy, for the blow-up diagnosis) and
    ``dynamics(...)`` (the step primitives, :class:`bencao.backends.common.dynamics.Dynamics`).
    """

    #: Registry key of the backend ("cpu", "cuda").
    kind = "backend"

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
        state (the positions and box of the build, and of the last prune where the list has an
        inner list), as {"term<i>.reference": array, "term<i>.box": array, ...}."""
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
                prefix = f"term{index}."
                own = {key[len(prefix):]: value for key, value in state.items()
                       if key.startswith(prefix)}
                term.set_state({"reference": None, "box": None, **own})

    # -- global parameters ------------------------------------------------------------------

    @property
    def parameters(self) -> dict[str, float]:
        """Current value of every global parameter of the system's forces."""
        values: dict[str, float] = {}
        for term in self.terms:
            values.update(getattr(term, "global_parameters", {}))
        return values

    def get_parameter(self, name: str) -> float:
        """Current value of global parameter ``name`` (ValueError naming the known ones)."""
        values = self.parameters
        if name not in values:
            raise ValueError(self._unknown_parameter(name))
        return values[name]

    def set_parameter(self, name: str, value: float) -> None:
        """Set global parameter ``name`` in every force that has it (as OpenMM's
        ``Context.setParameter``); later evaluations use the new value.

        Raises
        ------
        ValueError
            If no force has a global parameter of that name, or the value is not finite.
        """
        value = float(value)
        if not np.isfinite(value):
            raise ValueError(f"global parameter {name!r}: the value {value} is not finite")
        holders = [t for t in self.terms if name in getattr(t, "global_parameters", {})]
        if not holders:
            raise ValueError(self._unknown_parameter(name))
        for term in holders:
            term.set_parameter(name, value)

    def _unknown_parameter(self, name: str) -> str:
        known = ", ".join(sorted(self.parameters)) or "none"
        return f"no force of this system has a global parameter {name!r} (it has: {known})"

    def parameter_derivatives(self, arguments: tuple) -> dict[str, float]:
        """dU/dp summed over the terms that asked for it, for each such global parameter p;
        ``arguments`` as the terms' ``compute`` takes them (on the CPU the force array is
        scratch space)."""
        derivatives: dict[str, float] = {}
        for term in self.terms:
            if getattr(term, "derivative_names", ()):
                for name, value in term.parameter_derivatives(*arguments).items():
                    derivatives[name] = derivatives.get(name, 0.0) + value
        return derivatives

    @property
    def has_reciprocal(self) -> bool:
        """True if some term has a reciprocal-space (Ewald/PME) part, the slow group of MTS."""
        return any(getattr(term, "reciprocal", None) is not None for term in self.terms)

    # -- blow-ups ---------------------------------------------------------------------------

    def check_blow_up(self, forces, terms, positions, box, energy: bool = True,
                      largest: float | None = None) -> None:
        """Raise :class:`BlowUpError` if the energy is not finite or a force is too large.

        A NaN or huge force is clamped on its way into fixed point, so the force test catches
        a blow-up whether or not the energy was computed (``energy`` False skips the energy test).
        ``largest``: the largest force component's magnitude, kJ/mol/nm, if the caller has it.
        """
        total = float(sum(terms.values()))
        if largest is None:
            largest = np.max(np.abs(forces), initial=0.0)
        if (energy and not np.isfinite(total)) or largest >= 0.5 * FORCE_CLAMP:
            message, worst, culprit = self.diagnose(positions, box, forces, terms)
            raise BlowUpError(message, worst, culprit)

    def diagnose(self, positions, box, forces, terms):
        """Describe a blow-up: the particles with the largest forces and the term behind them.

        A term whose energy is not finite is the culprit; otherwise each term is computed alone
        and the one with the largest force on the worst particles is.

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
            try:
                fixed, energy = self.term_forces(term, positions, box)
            except Exception:  # noqa: BLE001 (a kernel failing here is itself the culprit)
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
