"""bencao: a molecular-dynamics engine for biomolecules (Anton's ideas, in Python and Numba)."""

# before anything compiles: Numba fixes its target features at the first compilation, and
# OpenMP reads its spin count when Numba first loads it
from bencao.thread_waiting import wait_briefly
from bencao.vector_width import prefer_512_bit_vectors

prefer_512_bit_vectors()
wait_briefly()

from bencao.dynamics import (
    LangevinMiddleIntegrator,
    MonteCarloBarostat,
    NoseHooverIntegrator,
    VerletIntegrator,
)
from bencao.evaluate import evaluate, make_backend
from bencao.simulation import Simulation
from bencao.state import State
from bencao.system import System

__version__ = "0.1.0"

__all__ = [
    "LangevinMiddleIntegrator",
    "MonteCarloBarostat",
    "NoseHooverIntegrator",
    "Simulation",
    "State",
    "System",
    "VerletIntegrator",
    "__version__",
    "evaluate",
    "make_backend",
]
