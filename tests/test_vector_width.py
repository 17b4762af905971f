"""The 512-bit vector setting: made before the first compilation, and never over the user's."""

import os
import subprocess
import sys

import pytest

SCRIPT = (
    "import os, bencao\n"
    "from numba.core.registry import cpu_target\n"
    "print(os.environ.get('NUMBA_CPU_FEATURES', 'unset'))\n"
    "print(cpu_target.target_context.codegen()._tm_features)\n"
)


def _features(**env) -> tuple[str, str]:
    """(NUMBA_CPU_FEATURES after importing bencao, the features Numba's code generator uses)."""
    environment = {k: v for k, v in os.environ.items()
                   if k not in ("NUMBA_CPU_FEATURES", "BENCAO_VECTOR_WIDTH")}
    environment.update(env)
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=environment, capture_output=True,
                         text=True, check=True)
    variable, used = out.stdout.strip().splitlines()[-2:]
    return variable, used


def _host_has_avx512() -> bool:
    from numba.core.codegen import get_host_cpu_features

    return "+avx512f" in get_host_cpu_features().split(",")


@pytest.mark.skipif(not _host_has_avx512(), reason="this CPU has no AVX-512")
def test_avx512_hosts_compile_with_512_bit_vectors():
    variable, used = _features()
    assert variable.endswith(",-prefer-256-bit")
    assert used == variable


def test_the_users_features_are_kept():
    variable, used = _features(NUMBA_CPU_FEATURES="+sse2,+avx,+avx2")
    assert variable == "+sse2,+avx,+avx2"
    assert used == variable


def test_256_bit_on_request():
    variable, used = _features(BENCAO_VECTOR_WIDTH="256")
    assert variable == "unset"
    assert "prefer-256-bit" not in used
