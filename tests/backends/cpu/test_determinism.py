"""Fixed-point accumulation: bit-identical forces on 1 and 2 threads, run after run."""

import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import hashlib, sys
    import numpy as np
    sys.path.insert(0, {tests!r})
    from openmm import app, unit
    import bencao
    from systems import solvated_trpcage
    topology, positions, box, ff = solvated_trpcage(("amber14-all.xml", "amber14/tip3p.xml"),
                                                    shape="dodecahedron", ions=False)
    system = ff.createSystem(topology, nonbondedMethod=app.PME, nonbondedCutoff=1.0 * unit.nanometer)
    backend = bencao.make_backend(bencao.System.from_openmm(system))
    for _ in range(2):  # twice: the second call reuses the neighbour list and PME state
        result = backend.compute(positions, box)
    digest = hashlib.sha256(result.forces.tobytes() + np.float64(result.energy).tobytes())
    print(digest.hexdigest())
    """
)


def _run(threads: int) -> str:
    env = dict(os.environ, NUMBA_NUM_THREADS=str(threads))
    script = SCRIPT.format(tests=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                         check=True)
    return out.stdout.strip().splitlines()[-1]


def test_forces_bit_identical_on_one_and_two_threads():
    one = _run(1)
    two = _run(2)
    assert one == two
    assert _run(2) == two  # and run after run
