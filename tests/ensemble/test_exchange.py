"""Exchange decisions: the Metropolis criterion on reduced energies, checked by hand and by
frequency, the neighbour pairs of each round, and determinism by (seed, round)."""

import math

import numpy as np
import pytest

from bencao.constants import BAR, BOLTZMANN
from bencao.ensemble.exchange import attempt_exchanges, cross_states
from bencao.jobs.stages import Ensemble


def _ensemble(exchange="temperature", temperatures=(300.0, 330.0), solute=None):
    solute_temperatures = None
    if exchange == "rest2":
        solute_temperatures = tuple(300.0 / s for s in solute)
    return Ensemble(len(temperatures), exchange, tuple(temperatures), "ligand" if solute else None,
                    solute_temperatures, 100)


def test_temperature_swap_probability_by_hand():
    ensemble = _ensemble()
    energies = [{"potential": -1000.0, "volume": None, "cross": {}},
                {"potential": -990.0, "volume": None, "cross": {}}]
    _, (attempt,) = attempt_exchanges(ensemble, [0, 1], energies, 0, 1.0, seed=1)
    beta0, beta1 = 1 / (BOLTZMANN * 300), 1 / (BOLTZMANN * 330)
    expected = math.exp(-(beta0 - beta1) * (-990.0 - -1000.0))
    assert attempt.probability == pytest.approx(expected, rel=1e-12)
    assert (attempt.replica_i, attempt.replica_j, attempt.state_i, attempt.state_j) == (0, 1, 0, 1)


def test_the_hot_replica_lower_in_energy_always_swaps_down():
    energies = [{"potential": -900.0, "cross": {}}, {"potential": -1000.0, "cross": {}}]
    assignment, (attempt,) = attempt_exchanges(_ensemble(), [0, 1], energies, 0, 1.0, seed=3)
    assert attempt.probability == 1.0 and attempt.accepted and assignment == [1, 0]


def test_npt_adds_p_v_to_the_reduced_energy():
    energies = [{"potential": -1000.0, "volume": 30.0, "cross": {}},
                {"potential": -1000.0, "volume": 31.0, "cross": {}}]
    _, (attempt,) = attempt_exchanges(_ensemble(), [0, 1], energies, 0, 1.0, seed=1, pressure=1.0)
    beta0, beta1 = 1 / (BOLTZMANN * 300), 1 / (BOLTZMANN * 330)
    assert attempt.delta == pytest.approx((beta0 - beta1) * BAR * 1.0, rel=1e-9)


def test_rest2_evaluates_each_configuration_under_the_neighbour_hamiltonian():
    ensemble = _ensemble("rest2", (300.0, 300.0), solute=(1.0, 0.8))
    assert cross_states(ensemble, 0) == (1,) and cross_states(ensemble, 1) == (0,)
    energies = [{"potential": -500.0, "cross": {"1": -480.0}},     # x_i: U_0, U_1
                {"potential": -470.0, "cross": {"0": -490.0}}]     # x_j: U_1, U_0
    _, (attempt,) = attempt_exchanges(ensemble, [0, 1], energies, 0, 1.0, seed=1)
    kt = BOLTZMANN * 300
    assert attempt.delta == pytest.approx((-490.0 + -480.0 - -500.0 - -470.0) / kt, rel=1e-12)


def test_rounds_alternate_even_and_odd_neighbour_pairs():
    ensemble = _ensemble(temperatures=(300.0, 310.0, 320.0, 330.0, 340.0))
    energies = [{"potential": 0.0, "cross": {}}] * 5
    _, even = attempt_exchanges(ensemble, list(range(5)), energies, 0, 1.0, seed=1)
    _, odd = attempt_exchanges(ensemble, list(range(5)), energies, 1, 1.0, seed=1)
    assert [(a.state_i, a.state_j) for a in even] == [(0, 1), (2, 3)]
    assert [(a.state_i, a.state_j) for a in odd] == [(1, 2), (3, 4)]
    assert all(a.accepted for a in even + odd)   # equal energies: always accepted


def test_acceptance_frequency_is_the_metropolis_probability():
    """4000 attempts at p = 0.3: the observed fraction has a standard error of 0.0072, so a
    5-sigma band (0.036) cannot be missed by chance, and a wrong criterion (p or 1 - p, or the
    square root of p) lands far outside it."""
    ensemble = _ensemble()
    gap = -math.log(0.3) / (1 / (BOLTZMANN * 300) - 1 / (BOLTZMANN * 330))
    energies = [{"potential": 0.0, "cross": {}}, {"potential": gap, "cross": {}}]
    accepted = [attempt_exchanges(ensemble, [0, 1], energies, 2 * r, 1.0, seed=11)[1][0].accepted
                for r in range(4000)]
    assert abs(np.mean(accepted) - 0.3) < 5 * math.sqrt(0.3 * 0.7 / 4000)


def test_decisions_depend_only_on_seed_and_round():
    ensemble = _ensemble()
    gap = -math.log(0.5) / (1 / (BOLTZMANN * 300) - 1 / (BOLTZMANN * 330))
    energies = [{"potential": 0.0, "cross": {}}, {"potential": gap, "cross": {}}]
    first = [attempt_exchanges(ensemble, [0, 1], energies, r, 1.0, seed=5)[1] for r in range(0, 40, 2)]
    again = [attempt_exchanges(ensemble, [0, 1], energies, r, 1.0, seed=5)[1] for r in range(0, 40, 2)]
    other = [attempt_exchanges(ensemble, [0, 1], energies, r, 1.0, seed=6)[1] for r in range(0, 40, 2)]
    assert first == again and first != other
