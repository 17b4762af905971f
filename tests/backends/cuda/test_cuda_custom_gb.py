"""CustomGBForce on the CUDA backend (Numba's simulator without a GPU) against the CPU backend
and OpenMM's Reference: the CPU's pass bodies and laws on the device give the same forces.

The CUDA work runs in one subprocess (see ``cuda_harness``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import cuda_harness
import numpy as np
import pytest

import bencao
from bencao.backends.cpu.backend import CpuBackend

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cpu"))
from test_custom_gb import _toy, toy_with_derivative

#: Nonbonded methods of the toy force: NoCutoff and CutoffPeriodic (the minimum image).
METHODS = (0, 2)
BOX = np.diag([2.1] * 3)


def _box(method):
    return BOX if method == 2 else None


def cuda_results(path):
    """Evaluate the toy force on the CUDA backend for each method; pickle to ``path``."""
    from bencao.backends.cuda import using_simulator
    from bencao.backends.cuda.backend import CudaBackend

    results = {"simulator": using_simulator()}
    for method in METHODS:
        system, positions = _toy(method)
        backend = CudaBackend(bencao.System.from_openmm(system))
        first = backend.compute(positions, _box(method))
        again = backend.compute(positions, _box(method))
        backend.set_parameter("scale", -0.4)
        changed = backend.compute(positions, _box(method))
        results[method] = {
            "terms": [type(t).__name__ for t in backend.terms],
            "first": (first.energy, first.forces), "again": (again.energy, again.forces),
            "changed": (changed.energy, changed.forces)}
        system, positions = toy_with_derivative(method)
        backend = CudaBackend(bencao.System.from_openmm(system))
        evaluation = backend.compute(positions, _box(method), parameter_derivatives=True)
        results[method]["derivatives"] = (evaluation.forces, evaluation.parameter_derivatives)
    cuda_harness.save(results, path)


@pytest.fixture(scope="module")
def cuda_run(tmp_path_factory):
    path = tmp_path_factory.mktemp("cuda") / "results.pkl"
    return cuda_harness.cuda_results("test_cuda_custom_gb", path)


@pytest.mark.parametrize("method", METHODS)
def test_cuda_custom_gb_equals_the_cpu(cuda_run, method):
    results = cuda_run[method]
    assert results["terms"] == ["CudaCustomGB"]
    system, positions = _toy(method)
    cpu = CpuBackend(bencao.System.from_openmm(system))
    for key, scale in (("first", None), ("changed", -0.4)):
        if scale is not None:
            cpu.set_parameter("scale", scale)
        expected = cpu.compute(positions, _box(method))
        energy, forces = results[key]
        if cuda_run["simulator"]:
            # The same float64 operations in the same order, each particle's force converted
            # once: the forces are the CPU's bits.
            np.testing.assert_array_equal(forces, expected.forces)
        else:
            # A GPU's libm (exp, log) may round an ulp differently.
            np.testing.assert_allclose(forces, expected.forces, rtol=1e-12, atol=1e-8)
        # CUDA sums the per-particle energies with fsum, the CPU left to right: an ulp or two.
        assert energy == pytest.approx(expected.energy, rel=1e-14)


@pytest.mark.parametrize("method", METHODS)
def test_cuda_custom_gb_reruns_bit_identically(cuda_run, method):
    first, again = cuda_run[method]["first"], cuda_run[method]["again"]
    assert first[0] == again[0]
    np.testing.assert_array_equal(first[1], again[1])


@pytest.mark.parametrize("method", METHODS)
def test_cuda_parameter_derivative_equals_the_cpu(cuda_run, method):
    """dE/dscale through the values on CUDA: the CPU's derivative pass on the device."""
    forces, derivatives = cuda_run[method]["derivatives"]
    system, positions = toy_with_derivative(method)
    expected = CpuBackend(bencao.System.from_openmm(system)).compute(
        positions, _box(method), parameter_derivatives=True)
    # per-particle sums in the same order; totals summed exactly (CUDA) and by np.sum (CPU)
    assert derivatives["scale"] == pytest.approx(expected.parameter_derivatives["scale"],
                                                 rel=1e-13)
    # the derivative pass leaves the forces alone
    np.testing.assert_allclose(forces, expected.forces, rtol=1e-12, atol=1e-8)
