"""The run report: ``build_report(run_dir)`` writes one self-contained HTML page about a run.

The page shows a summary table, plots of the log (energies, temperature, density) and of the
trajectory (backbone RMSD, radius of gyration, computed with MDTraj), and a 3-D movie of the
protein drawn with the vendored 3Dmol.js.  A protein–ligand complex also gets the ligand in the
movie and a ligand section: RMSD, centroid displacement and protein contacts
(:mod:`bencao.report.ligand`).  It works offline: nothing is fetched from a network.
"""

from bencao.report.analysis import analyse_trajectory, load_trajectory
from bencao.report.html import build_report
from bencao.report.runlog import read_log

__all__ = ["analyse_trajectory", "build_report", "load_trajectory", "read_log"]
