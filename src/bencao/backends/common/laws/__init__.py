"""Every bonded interaction law, written once for the CPU and CUDA backends.

- :mod:`.registry`: which law computes which listed term record (``register_listed_law``,
  ``for_each_listed_law``), the table both backends build their listed-term kernels from;
- :mod:`.listed`: the laws of the listed terms (bonds, LJ pairs, angles, torsions, impropers),
  each registered there;
- :mod:`.geometry`: angles and torsions from positions, and forces from dE/dtheta;
- :mod:`.restraints`: position restraints (through the periodic minimum image);
- :mod:`.cmap`: CMAP patch tables (host) and the bicubic patch.

Importing this package registers the listed laws.
"""

from bencao.backends.common.laws import listed  # noqa: F401 - registers the listed laws
from bencao.backends.common.laws.registry import (
    ListedLaw,
    for_each_listed_law,
    listed_law,
    register_listed_law,
)

__all__ = ["ListedLaw", "for_each_listed_law", "listed_law", "register_listed_law"]
