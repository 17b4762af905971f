"""Replica exchange samples the right ensembles (long: ``pytest -m validation``).

Alanine dipeptide in vacuum (amber14, H-bond constraints, Langevin 5/ps, 2 fs) on a local Dask
cluster of 2 workers x 1 thread:

* temperature exchange, 4 replicas over 300-400 K: the 300 K state's potential energies match
  a plain 300 K Langevin run (two-sample Kolmogorov-Smirnov on decorrelated samples, and the
  means within 4 standard errors), and each neighbour pair's observed acceptance matches the one
  predicted from the two states' energy distributions;
* REST2 with the central ALA residue as solute (solute temperatures 300-600 K): exchanges are
  accepted, and the unscaled state's phi/psi basin populations match plain 300 K MD within
  4 combined standard errors (block averages).

Why vacuum: with 4 replicas over 300-400 K, the solvated dipeptide (749 waters) has neighbour
acceptance ~1e-5 (the energy gap between neighbours, ~1100 kJ/mol, is six of its standard
deviations); only a system this small has the overlap that makes the test informative.

Lengths per replica: ``BENCAO_REMD_VALIDATION_PS`` (default 400 ps; plain run as long) and
``BENCAO_REST2_VALIDATION_PS`` (default 500 ps; plain run four times as long).
"""

import csv
import math
import os

import mdtraj
import numpy as np
import pytest
from scipy import stats
from systems import write_vacuum_dipeptide

from bencao.constants import BOLTZMANN
from bencao.ensemble import EnsembleRunner
from bencao.jobs import load_job
from bencao.jobs.runner import JobRunner

pytestmark = pytest.mark.validation

REMD_PS = float(os.environ.get("BENCAO_REMD_VALIDATION_PS", "400"))
REST2_PS = float(os.environ.get("BENCAO_REST2_VALIDATION_PS", "500"))

JOB = """\
system = "system"
output = "{output}"
seed = {seed}
timestep = "2 fs"
friction = 5.0
temperature = 300
report_interval = "0.1 ps"
trajectory_interval = "{trajectory}"

[[stage]]
kind = "minimize"

[[stage]]
kind = "nvt"
length = "{length} ps"
"""


def _run(folder, name, length, ensemble="", seed=1, trajectory="1 ps", workers=2):
    path = folder / f"{name}.toml"
    path.write_text(JOB.format(output=name, seed=seed, length=length, trajectory=trajectory)
                    + ensemble)
    job = load_job(path)
    if job.ensemble is None:
        assert JobRunner(job, write_report=False).run().completed
    else:
        assert EnsembleRunner(job, workers=workers, write_report=False).run().completed
    return folder / name


def _column(path, name, skip_fraction=0.1):
    with open(path, encoding="utf-8") as handle:
        values = np.array([float(row[name]) for row in csv.DictReader(handle)])
    return values[int(len(values) * skip_fraction):]


def _inefficiency(x) -> float:
    """Statistical inefficiency g = 1 + 2 sum of the autocorrelation up to its first zero."""
    x = np.asarray(x) - np.mean(x)
    n = len(x)
    acf = np.correlate(x, x, "full")[n - 1:] / (np.var(x) * np.arange(n, 0, -1))
    g = 1.0
    for lag in range(1, n // 2):
        if acf[lag] <= 0:
            break
        g += 2 * acf[lag] * (1 - lag / n)
    return max(g, 1.0)


def _decorrelated(x):
    return np.asarray(x)[:: int(math.ceil(_inefficiency(x)))]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("remd-validation")
    write_vacuum_dipeptide(folder / "system")
    return folder


def test_temperature_exchange_samples_the_300_k_ensemble(folder):
    remd = _run(folder, "remd", REMD_PS, ensemble='[ensemble]\nexchange = "temperature"\n'
                'replicas = 4\ntemperature_range = [300, 400]\nexchange_interval = "0.2 ps"\n')
    plain = _run(folder, "plain", REMD_PS, seed=2)
    ladder = load_job(folder / "remd.toml").ensemble.temperatures

    ground = _column(remd / "states" / "state00.csv", "potential_kj_mol")
    reference = _column(plain / "log.csv", "potential_kj_mol")
    a, b = _decorrelated(ground), _decorrelated(reference)
    result = stats.ks_2samp(a, b)
    error = math.hypot(np.std(ground) * math.sqrt(_inefficiency(ground) / len(ground)),
                       np.std(reference) * math.sqrt(_inefficiency(reference) / len(reference)))
    print(f"\n300 K state: mean U {ground.mean():.2f} vs plain {reference.mean():.2f} kJ/mol "
          f"(combined standard error {error:.2f}); KS p = {result.pvalue:.3f} on {len(a)} and "
          f"{len(b)} decorrelated samples")
    assert result.pvalue > 0.01
    assert abs(ground.mean() - reference.mean()) < 4 * error

    # Observed neighbour acceptance against the overlap of the two states' distributions
    with open(remd / "exchanges.csv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    rng = np.random.default_rng(0)
    for k in range(3):
        observed = np.array([int(r["accepted"]) for r in rows if int(r["state_i"]) == k])
        low = _column(remd / "states" / f"state{k:02d}.csv", "potential_kj_mol")
        high = _column(remd / "states" / f"state{k + 1:02d}.csv", "potential_kj_mol")
        beta = 1 / (BOLTZMANN * np.array(ladder[k:k + 2]))
        draws = (beta[0] - beta[1]) * (rng.choice(high, 200000) - rng.choice(low, 200000))
        predicted = np.mean(np.minimum(1.0, np.exp(-draws)))
        print(f"states {k}-{k + 1}: acceptance {observed.mean():.3f} observed in {len(observed)} "
              f"attempts, {predicted:.3f} predicted from the energy distributions")
        # standard error ~0.02 for ~400 attempts, inflated by correlation between rounds
        assert abs(observed.mean() - predicted) < 0.1


def _basins(run_folder, trajectory):
    """Fractions of frames in the alpha (-120 < psi < 30, phi < 0), beta/C7eq (phi < 0, other
    psi) and phi > 0 (C7ax, alpha-L) basins, and their standard errors from 20 blocks."""
    traj = mdtraj.load(str(run_folder / trajectory), top=str(run_folder / "topology.pdb"))
    phi = np.degrees(mdtraj.compute_phi(traj)[1][:, 0])
    psi = np.degrees(mdtraj.compute_psi(traj)[1][:, 0])
    start = len(phi) // 10
    phi, psi = phi[start:], psi[start:]
    alpha = (phi < 0) & (psi > -120) & (psi < 30)
    basins = np.stack([alpha, (phi < 0) & ~alpha, phi >= 0]).astype(float)
    blocks = np.array_split(basins, 20, axis=1)
    means = np.array([block.mean(axis=1) for block in blocks])
    return basins.mean(axis=1), means.std(axis=0, ddof=1) / math.sqrt(len(blocks))


def test_rest2_ground_state_keeps_the_300_k_populations(folder):
    rest2 = _run(folder, "rest2", REST2_PS, trajectory="0.2 ps", seed=3, ensemble=(
        '[ensemble]\nexchange = "rest2"\nsolute = "resname ALA"\n'
        'solute_temperatures = [300, 380, 480, 600]\nexchange_interval = "0.2 ps"\n'))
    plain = _run(folder, "plain-long", 4 * REST2_PS, trajectory="0.2 ps", seed=4)
    with open(rest2 / "exchanges.csv", encoding="utf-8") as handle:
        accepted = np.array([int(row["accepted"]) for row in csv.DictReader(handle)])
    populations, errors = _basins(rest2, "states/state00.xtc")
    expected, expected_errors = _basins(plain, "trajectory.xtc")
    print(f"\nREST2: {accepted.mean():.2f} of {len(accepted)} exchanges accepted")
    for name, p, e, q, f in zip(("alpha", "beta/C7eq", "phi>0"), populations, errors, expected,
                                expected_errors):
        print(f"{name}: REST2 {p:.3f} ± {e:.3f}, plain MD {q:.3f} ± {f:.3f}")
    assert 0.05 < accepted.mean() < 0.98
    combined = np.hypot(errors, expected_errors)
    # a floor of 0.01 for basins so rarely visited that 20 blocks see no spread
    assert np.all(np.abs(populations - expected) < 4 * np.maximum(combined, 0.01))
