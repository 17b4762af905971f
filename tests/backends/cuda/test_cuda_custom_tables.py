"""Tabulated functions on the CUDA backend (Numba's simulator without a GPU) against the CPU
backend: the generated laws hold the same tables as constant arrays.  The CUDA work runs in one
subprocess (see ``cuda_harness``)."""

from __future__ import annotations

import sys
from pathlib import Path

import cuda_harness
import numpy as np
import pytest

import bencao
from bencao.backends.cpu.backend import CpuBackend

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cpu"))
from test_custom_tables import compound_with_tables, pairs_with_tables

SYSTEMS = {"compound": compound_with_tables, "pairs": pairs_with_tables}


def cuda_results(path):
    """Evaluate both systems on the CUDA backend; pickle to ``path``."""
    from bencao.backends.cuda import using_simulator
    from bencao.backends.cuda.backend import CudaBackend

    results = {"simulator": using_simulator()}
    for name, build in SYSTEMS.items():
        system, positions = build()
        ours = bencao.System.from_openmm(system)
        backend = CudaBackend(ours)
        box = None if ours.box is None else np.asarray(ours.box)
        evaluation = backend.compute(positions, box)
        results[name] = ([type(t).__name__ for t in backend.terms], evaluation.energy,
                         evaluation.forces)
    cuda_harness.save(results, path)


@pytest.fixture(scope="module")
def cuda_run(tmp_path_factory):
    return cuda_harness.cuda_results("test_cuda_custom_tables",
                                     tmp_path_factory.mktemp("cuda") / "results.pkl")


@pytest.mark.parametrize("name", list(SYSTEMS))
def test_cuda_tables_equal_the_cpu(cuda_run, name):
    terms, energy, forces = cuda_run[name]
    assert terms == [{"compound": "CudaCustomCompoundBonds", "pairs": "CudaCustomPairs"}[name]]
    system, positions = SYSTEMS[name]()
    ours = bencao.System.from_openmm(system)
    box = None if ours.box is None else np.asarray(ours.box)
    expected = CpuBackend(ours).compute(positions, box)
    if name == "pairs":
        # With a cutoff the backends split pairs differently between float64 partial sums and
        # fixed point (see test_cuda_custom_pairs): each component within 2 (k + 1) + 1 units
        # of 2^-32, k the particle's partners, at most all the other particles.
        np.testing.assert_allclose(forces, expected.forces, rtol=0,
                                   atol=(2 * len(positions) + 1) * 2.0**-32)
    elif cuda_run["simulator"]:
        # the same float64 law per bond, integer fixed-point sums
        np.testing.assert_array_equal(forces, expected.forces)
    else:
        # a GPU's libm (acos, atan2) may round an ulp differently
        np.testing.assert_allclose(forces, expected.forces, rtol=1e-12, atol=1e-8)
    # energies summed in other orders (fsum on CUDA): an ulp per term
    assert energy == pytest.approx(expected.energy, rel=1e-12)
