"""The subprocess in which the CUDA test files do their device work.

Numba reads ``NUMBA_ENABLE_CUDASIM`` only when it is first imported, and pytest (through bencao's
CPU kernels) has imported Numba long before these tests run.  So each CUDA test file does all its
device work in ONE subprocess: in Numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``) unless a real
GPU is usable, which :func:`real_gpu` asks once in a subprocess without the variable.  The
subprocess imports the test file and calls its ``cuda_results(path)``, which builds the cases,
runs them on the device and saves (:func:`save`) a dict of results, with ``"simulator"`` (whether
it ran in the simulator), to ``path``; :func:`cuda_results` here loads it, and the tests compare
it with the CPU backend or OpenMM evaluated in the pytest process.  One subprocess per file keeps
the files fast; the simulator runs every GPU thread in Python, so the cases are small.

The test files import this module by name (pytest puts their folder on ``sys.path``), and so does
the subprocess, which gets both ``tests/`` and this folder on its path.
"""

from __future__ import annotations

import functools
import os
import pickle
import subprocess
import sys
import textwrap

#: This folder (tests/backends/cuda) and tests/ (reference.py, systems.py)
HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(os.path.dirname(HERE))

#: Seconds a subprocess may take unless its caller says otherwise
TIMEOUT = 600


def environment(simulator: bool) -> dict:
    """This process's environment, with ``NUMBA_ENABLE_CUDASIM=1`` if ``simulator``, without it
    otherwise."""
    env = dict(os.environ)
    env.pop("NUMBA_ENABLE_CUDASIM", None)
    if simulator:
        env["NUMBA_ENABLE_CUDASIM"] = "1"
    return env


def python(code: str, simulator: bool, timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
    """Run ``code`` (dedented) in a new Python with :func:`environment`, capturing its output."""
    # check=False: the callers assert on the return code and show stderr when it fails
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], check=False,
                          env=environment(simulator), capture_output=True, text=True,
                          timeout=timeout)


def record(evaluation):
    """What the tests compare of an Evaluation: (energy, forces, terms, parameter derivatives)."""
    return (evaluation.energy, evaluation.forces, dict(evaluation.terms),
            dict(evaluation.parameter_derivatives))


def bits(value) -> bytes:
    """The bytes of a float64, to compare values bit for bit (NaN included)."""
    import numpy as np

    return np.float64(value).tobytes()


def assert_same_bits(first, second, derivatives: bool = True) -> None:
    """Two :func:`record` s are equal bit for bit: energy, forces, each term's energy and, if
    ``derivatives``, each parameter derivative."""
    energy, forces, terms, first_derivatives = first
    energy2, forces2, terms2, second_derivatives = second
    assert forces.tobytes() == forces2.tobytes()
    assert bits(energy) == bits(energy2)
    assert {k: bits(v) for k, v in terms.items()} == {k: bits(v) for k, v in terms2.items()}
    if derivatives:
        assert ({k: bits(v) for k, v in first_derivatives.items()}
                == {k: bits(v) for k, v in second_derivatives.items()})


def save(results: dict, path) -> None:
    """Pickle a test file's ``results`` to ``path`` (its ``cuda_results``, in the subprocess)."""
    with open(path, "wb") as file:
        pickle.dump(results, file)


@functools.cache
def real_gpu() -> bool:
    """True if a real CUDA GPU is usable here (asked once, in a process without the simulator)."""
    probe = python("from numba import cuda; print(cuda.is_available())", simulator=False)
    return probe.returncode == 0 and probe.stdout.strip().splitlines()[-1:] == ["True"]


def cuda_results(module_name: str, path, timeout: float = TIMEOUT) -> dict:
    """Run ``<module_name>.cuda_results(path)`` in the subprocess, on a real GPU if there is one,
    and return the results it pickled to ``path``."""
    simulator = not real_gpu()
    code = f"""
        import sys
        sys.path[:0] = [{TESTS!r}, {HERE!r}]
        import {module_name}
        {module_name}.cuda_results({str(path)!r})
    """
    out = python(code, simulator=simulator, timeout=timeout)
    assert out.returncode == 0, out.stderr[-4000:]
    with open(path, "rb") as file:
        results = pickle.load(file)
    assert results["simulator"] == simulator
    return results
