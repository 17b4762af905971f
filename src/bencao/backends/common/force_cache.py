"""Forces at the current positions, kept until the positions change, with the MTS force groups.

A step needs forces only; a report needs energies too; a Monte Carlo volume move needs the
energy before and after.  :class:`ForceCache` evaluates each force group at most once per
configuration and keeps the forces the dynamics used even when an energy is asked for later (the
kernel that skips energies may round differently from the one that computes them), so a
trajectory does not depend on how often energies are reported.
"""

from __future__ import annotations

import math

import numpy as np

from bencao.backends.common.evaluation import Evaluation


class ForceCache:
    """Evaluations of a backend at one configuration, split as multiple time stepping needs.

    Parameters
    ----------
    backend : bencao.backends.common.backend.Backend
        What computes energies and forces.
    every : int
        Reciprocal space every this many steps (impulse MTS); 1 puts all forces in one group.

    Attributes
    ----------
    fast : Evaluation or None
        All forces (``every`` 1) or all but reciprocal space, at the current positions; its
        energy is NaN until :meth:`fast_with_energy` fills it in.
    slow : Evaluation or None
        Reciprocal-space forces and energy at the current positions (MTS only).
    """

    def __init__(self, backend, every: int = 1):
        self.backend = backend
        self.every = int(every)
        self.fast = None
        self.slow = None

    def invalidate(self) -> None:
        """Forget the evaluations (the positions or the box changed)."""
        self.fast = None
        self.slow = None

    def group(self, parts: str, positions, box) -> Evaluation:
        """The forces of one MTS group at ``positions``, evaluated once per configuration.

        ``parts`` "all" or "direct" is the fast group (all forces when ``every`` is 1, all but
        reciprocal space otherwise; forces only, its energy NaN); "reciprocal" the slow group
        (with its energy).
        """
        if parts == "reciprocal":
            if self.slow is None:
                self.slow = self.backend.compute(positions, box, parts="reciprocal")
            return self.slow
        if self.fast is None:
            fast_parts = "all" if self.every == 1 else "direct"
            self.fast = self.backend.compute(positions, box, parts=fast_parts, energy=False)
        return self.fast

    def fast_with_energy(self, positions, box) -> Evaluation:
        """The fast evaluation with its energy filled in (its forces unchanged)."""
        fast = self.group("all", positions, box)
        if math.isnan(fast.energy):
            parts = "all" if self.every == 1 else "direct"
            with_energy = self.backend.compute(positions, box, parts=parts)
            fast = Evaluation(energy=with_energy.energy, forces=fast.forces, terms=with_energy.terms)
            self.fast = fast
        return fast

    def full(self, positions, box) -> Evaluation:
        """Energy and total forces at ``positions`` (all parts)."""
        fast = self.fast_with_energy(positions, box)
        if self.every == 1:
            return fast
        if self.slow is None:
            self.slow = self.backend.compute(positions, box, parts="reciprocal")
        return fast.plus(self.slow)

    # -- checkpoints ------------------------------------------------------------------------

    def get_state(self) -> tuple[dict, dict]:
        """The cached evaluations as ({"fast.forces": array, ...}, {"fast": {energy, terms}}).

        They are kept in a checkpoint, not recomputed on restart: they were evaluated with the
        neighbour list of their time, whose box images a restarted list may not share.
        """
        arrays, values = {}, {}
        for name in ("fast", "slow"):
            evaluation = getattr(self, name)
            if evaluation is not None:
                arrays[f"{name}.forces"] = evaluation.forces.copy()
                values[name] = {"energy": evaluation.energy, "terms": dict(evaluation.terms)}
        return arrays, values

    def set_state(self, arrays: dict, values: dict) -> None:
        """Restore what :meth:`get_state` returned."""
        self.invalidate()
        for name, cached in values.items():
            setattr(self, name, Evaluation(energy=float(cached["energy"]),
                                           forces=np.array(arrays[f"{name}.forces"]),
                                           terms=dict(cached["terms"])))
