"""Let LLVM vectorise Numba kernels with 512-bit registers on AVX-512 CPUs.

LLVM's tuning for Intel server CPUs since Skylake-SP prefers 256-bit vectors ("prefer-256-bit"),
so Numba's kernels run 8 floats wide even where the CPU has 16-wide AVX-512 units.  The pair
kernel is arithmetic-bound and ~20% faster 16 wide (DHFR: 13.6 vs 16.3 ms per evaluation on 2
cores).  Numba takes its target features from ``NUMBA_CPU_FEATURES`` when it creates its code
generator, at the first compilation in the process; this module sets that variable to the host's
own features with the 256-bit preference turned off, before bencao compiles anything.

Nothing changes on a CPU without AVX-512, where the user has set ``NUMBA_CPU_FEATURES`` already,
or with ``BENCAO_VECTOR_WIDTH=256``.  If some other code compiled with Numba before bencao was
imported, the code generator exists already and keeps 256-bit vectors: slower, not different in
kind.  Numba's on-disk cache is keyed by the target features, so cached kernels of one setting
are never loaded under the other.

Results stay deterministic (the same on any thread count and run to run); they may differ in the
last bits from a 256-bit build of the same kernels, as between any two CPUs.
"""

from __future__ import annotations

import os

#: Environment variable that selects the vector width: "512" (default where available) or "256".
WIDTH_VARIABLE = "BENCAO_VECTOR_WIDTH"


def prefer_512_bit_vectors() -> bool:
    """Set ``NUMBA_CPU_FEATURES`` for 512-bit vectors if the CPU has AVX-512 and nothing says
    otherwise; return True if it did."""
    if "NUMBA_CPU_FEATURES" in os.environ or os.environ.get(WIDTH_VARIABLE, "512") == "256":
        return False
    from numba.core import config
    from numba.core.codegen import get_host_cpu_features

    features = get_host_cpu_features()
    if "+avx512f" not in features.split(","):
        return False
    os.environ["NUMBA_CPU_FEATURES"] = features + ",-prefer-256-bit"
    config.reload_config()
    return True
