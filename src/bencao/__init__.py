"""bencao: a molecular-dynamics engine for biomolecules (Anton's ideas, in Python and Numba)."""

from bencao.evaluate import evaluate, make_backend
from bencao.system import System

__version__ = "0.1.0"

__all__ = ["System", "evaluate", "make_backend", "__version__"]
