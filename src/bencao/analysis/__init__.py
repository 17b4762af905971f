"""Analysis of trajectories: pockets along trajectories (``bencao.analysis.pockets``)."""
