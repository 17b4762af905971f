"""Force terms: parameter tables (struct of arrays) for each kind of interaction.

Every term is a frozen dataclass of NumPy arrays and plain scalars; no OpenMM objects.  The
``name`` class attribute is the key of the term in ``evaluate(...).terms`` (the OpenMM force class
it came from, so users can compare with OpenMM force groups).
"""

from bencao.forces.bonded import (
    CMAPTorsions,
    HarmonicAngles,
    HarmonicBonds,
    HarmonicImpropers,
    LJPairs,
    PeriodicTorsions,
    PositionRestraints,
)
from bencao.forces.custom import (
    CustomAngles,
    CustomBonds,
    CustomCentroidBonds,
    CustomCompoundBonds,
    CustomExternal,
    CustomPairs,
    CustomTorsions,
)
from bencao.forces.custom_gb import GBSAOBC, CustomGB
from bencao.forces.nonbonded import Nonbonded, TabulatedPairs
from bencao.forces.registry import TERM_TYPES
from bencao.forces.virtual_sites import VirtualSites

__all__ = [
    "TERM_TYPES",
    "CMAPTorsions",
    "CustomAngles",
    "CustomBonds",
    "CustomCentroidBonds",
    "CustomCompoundBonds",
    "CustomExternal",
    "CustomGB",
    "GBSAOBC",
    "CustomPairs",
    "CustomTorsions",
    "HarmonicAngles",
    "HarmonicBonds",
    "HarmonicImpropers",
    "LJPairs",
    "Nonbonded",
    "PeriodicTorsions",
    "PositionRestraints",
    "TabulatedPairs",
    "VirtualSites",
]
