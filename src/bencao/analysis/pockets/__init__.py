"""Pockets along trajectories, in the manner of fpocket and mdpocket (written here on NumPy,
SciPy and Numba): alpha spheres, pockets per frame, pockets tracked over frames, a frequency grid.
"""

from bencao.analysis.pockets.atoms import PocketAtoms, pocket_atoms
from bencao.analysis.pockets.detect import Pocket, find_pockets
from bencao.analysis.pockets.trajectory import analyse_pockets

__all__ = ["Pocket", "PocketAtoms", "analyse_pockets", "find_pockets", "pocket_atoms"]
