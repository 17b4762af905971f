"""Exchange decisions between segments: Metropolis on reduced energies, neighbours on the ladder.

Round r attempts swaps between the states (k, k+1) with k even on even rounds and odd on odd
rounds, so every neighbour pair is tried every other round and no replica takes part in two
swaps at once.  For replicas i in state k and j in state l, with reduced potentials
u_k(x) = (U_k(x) + p V(x)) / (k_B T_k),

    Delta = [u_k(x_j) + u_l(x_i)] - [u_k(x_i) + u_l(x_j)],   P(accept) = min(1, exp(-Delta)),

which keeps every state's Boltzmann distribution (Sugita and Okamoto 1999; for REST2 each
configuration is evaluated under its neighbour's Hamiltonian).  The uniform number of each
attempt comes from a stream seeded by (seed, round), so a resumed run decides exactly as an
undisturbed one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from bencao.constants import BAR, BOLTZMANN

#: Columns of ``exchanges.csv``.
COLUMNS = ("round", "time_ps", "state_i", "state_j", "replica_i", "replica_j",
           "potential_i_kj_mol", "potential_j_kj_mol", "delta_reduced", "probability", "accepted")


@dataclass(frozen=True)
class Attempt:
    """One attempted swap: replica_i was in state_i, replica_j in state_j = state_i + 1."""

    round: int
    time_ps: float
    state_i: int
    state_j: int
    replica_i: int
    replica_j: int
    potential_i: float
    potential_j: float
    delta: float
    probability: float
    accepted: bool

    def csv_row(self) -> str:
        return ",".join([str(self.round), f"{self.time_ps:.6f}", str(self.state_i), str(self.state_j),
                         str(self.replica_i), str(self.replica_j), f"{self.potential_i:.6f}",
                         f"{self.potential_j:.6f}", f"{self.delta:.6g}", f"{self.probability:.6f}",
                         "1" if self.accepted else "0"])


def cross_states(ensemble, state: int) -> tuple[int, ...]:
    """The states whose energy a replica in ``state`` must report for the next decision (REST2
    neighbours; temperature exchange needs only the replica's own energy)."""
    if ensemble.exchange != "rest2":
        return ()
    return tuple(k for k in (state - 1, state + 1) if 0 <= k < ensemble.replicas)


def round_uniforms(seed: int, round_index: int, count: int) -> np.ndarray:
    """The uniform numbers of one round's attempts (a stream of their own per round)."""
    return np.random.default_rng([int(seed), 0x5EED, int(round_index)]).random(count)


def attempt_exchanges(ensemble, assignment, energies, round_index: int, time_ps: float,
                      seed: int, pressure: float | None = None):
    """Decide one round of swaps.

    Parameters
    ----------
    ensemble : bencao.jobs.stages.Ensemble
    assignment : sequence of int
        The state of each replica during the segment just finished.
    energies : list of dict
        Per replica, what ``run_segment`` returned (potential kJ/mol, volume nm^3, cross).
    round_index : int
    time_ps : float
        Simulated time at the end of the segment, ps.
    seed : int
        The run's seed.
    pressure : float or None
        Barostat pressure, bar, for the p V term of NPT replicas (None at constant volume).

    Returns
    -------
    (list of int, list of Attempt)
        The state of each replica for the next segment, and the attempts made.
    """
    assignment = list(assignment)
    if ensemble.exchange == "none":
        return assignment, []
    replica_in = {state: replica for replica, state in enumerate(assignment)}
    pairs = [(k, k + 1) for k in range(round_index % 2, ensemble.replicas - 1, 2)]
    uniforms = round_uniforms(seed, round_index, len(pairs))
    attempts = []
    for (k, l), uniform in zip(pairs, uniforms):
        i, j = replica_in[k], replica_in[l]
        delta = (_reduced(ensemble, energies[j], k, l, pressure)
                 + _reduced(ensemble, energies[i], l, k, pressure)
                 - _reduced(ensemble, energies[i], k, k, pressure)
                 - _reduced(ensemble, energies[j], l, l, pressure))
        probability = 1.0 if delta <= 0 else math.exp(-delta)
        if not math.isfinite(delta):
            probability = 0.0
        accepted = bool(uniform < probability)
        if accepted:
            assignment[i], assignment[j] = l, k
        attempts.append(Attempt(round_index, time_ps, k, l, i, j, energies[i]["potential"],
                                energies[j]["potential"], delta, probability, accepted))
    return assignment, attempts


def _reduced(ensemble, energy: dict, state: int, own_state: int, pressure) -> float:
    """u_state(x) of a configuration that ran in ``own_state``."""
    if state == own_state or ensemble.exchange == "temperature":
        potential = energy["potential"]
    else:
        potential = energy["cross"][str(state)]
    if pressure is not None and energy.get("volume") is not None:
        potential += pressure * BAR * energy["volume"]
    return potential / (BOLTZMANN * ensemble.temperatures[state])
