"""Preparation helpers that work on a bencao System."""

from bencao.prep.hydrogen_mass import repartition_hydrogen_mass

__all__ = ["repartition_hydrogen_mass"]
