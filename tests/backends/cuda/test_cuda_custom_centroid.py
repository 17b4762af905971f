"""CustomCentroidBondForce on the CUDA backend (Numba's simulator without a GPU) against the CPU
backend: the same generated law at the same centroids, so the same forces.  The CUDA work runs
in one subprocess (see ``cuda_harness``)."""

from __future__ import annotations

import sys
from pathlib import Path

import cuda_harness
import numpy as np
import pytest

import bencao
from bencao.backends.cpu.backend import CpuBackend

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cpu"))
from test_custom_centroid import centroid_system
from test_custom_compound import periodic_compound_system
from test_custom_terms import periodic_custom_system

CASES = [(False, 0.4), (True, -1.3)]


def cuda_results(path):
    """Evaluate the cases (not periodic and periodic) on the CUDA backend; pickle to ``path``."""
    from bencao.backends.cuda import using_simulator
    from bencao.backends.cuda.backend import CudaBackend

    results = {"simulator": using_simulator()}
    for periodic, lam in CASES:
        system, positions, box = centroid_system(periodic=periodic)
        backend = CudaBackend(bencao.System.from_openmm(system))
        results["terms"] = [type(t).__name__ for t in backend.terms]
        backend.set_parameter("lam", lam)
        evaluation = backend.compute(positions, box, parameter_derivatives=True)
        results[periodic] = (evaluation.energy, evaluation.forces,
                             evaluation.parameter_derivatives)
    system, positions, box = periodic_compound_system()
    backend = CudaBackend(bencao.System.from_openmm(system))
    evaluation = backend.compute(positions, box)
    results["compound"] = ([type(t).__name__ for t in backend.terms], evaluation.energy,
                           evaluation.forces)
    system, positions, box = periodic_custom_system()
    backend = CudaBackend(bencao.System.from_openmm(system))
    evaluation = backend.compute(positions, box, parameter_derivatives=True)
    results["listed"] = ([type(t).__name__ for t in backend.terms], evaluation.energy,
                         evaluation.forces, evaluation.parameter_derivatives)
    cuda_harness.save(results, path)


@pytest.fixture(scope="module")
def cuda_run(tmp_path_factory):
    return cuda_harness.cuda_results("test_cuda_custom_centroid",
                                     tmp_path_factory.mktemp("cuda") / "results.pkl")


@pytest.mark.parametrize("periodic,lam", CASES)
def test_cuda_centroid_bonds_equal_the_cpu(cuda_run, periodic, lam):
    assert cuda_run["terms"] == ["CudaCustomCentroidBonds"]
    system, positions, box = centroid_system(periodic=periodic)
    cpu = CpuBackend(bencao.System.from_openmm(system))
    cpu.set_parameter("lam", lam)
    expected = cpu.compute(positions, box, parameter_derivatives=True)
    energy, forces, derivatives = cuda_run[periodic]
    if cuda_run["simulator"]:
        # The same float64 centroids and law per bond and integer fixed-point sums.
        np.testing.assert_array_equal(forces, expected.forces)
    else:
        # A GPU's libm (acos, atan2) may round an ulp differently.
        np.testing.assert_allclose(forces, expected.forces, rtol=1e-12, atol=1e-8)
    # Two bonds summed with fsum on CUDA and left to right on the CPU: an ulp.
    assert energy == pytest.approx(expected.energy, rel=1e-14)
    assert derivatives["lam"] == pytest.approx(expected.parameter_derivatives["lam"], rel=1e-14)


def test_cuda_periodic_compound_bonds_equal_the_cpu(cuda_run):
    """A periodic CustomCompoundBondForce runs as one-particle centroids on CUDA too."""
    terms, energy, forces = cuda_run["compound"]
    assert terms == ["CudaCustomCentroidBonds"]
    system, positions, box = periodic_compound_system()
    expected = CpuBackend(bencao.System.from_openmm(system)).compute(positions, box)
    if cuda_run["simulator"]:
        np.testing.assert_array_equal(forces, expected.forces)  # as above
    else:
        np.testing.assert_allclose(forces, expected.forces, rtol=1e-12, atol=1e-8)
    assert energy == pytest.approx(expected.energy, rel=1e-14)  # fsum against left to right


def test_cuda_periodic_bonds_angles_and_torsions_equal_the_cpu(cuda_run):
    """Periodic custom bonds, angles and torsions run as one-particle centroids on CUDA too."""
    terms, energy, forces, derivatives = cuda_run["listed"]
    assert terms == ["CudaCustomCentroidBonds"] * 3 + ["CudaCustomListedTerm"]
    system, positions, box = periodic_custom_system()
    expected = CpuBackend(bencao.System.from_openmm(system)).compute(
        positions, box, parameter_derivatives=True)
    if cuda_run["simulator"]:
        np.testing.assert_array_equal(forces, expected.forces)  # as above
    else:
        np.testing.assert_allclose(forces, expected.forces, rtol=1e-12, atol=1e-8)
    # tens of items summed with fsum on CUDA and left to right on the CPU
    assert energy == pytest.approx(expected.energy, rel=1e-13)
    for name in ("lam", "soft"):
        assert derivatives[name] == pytest.approx(expected.parameter_derivatives[name],
                                                  rel=1e-13)
