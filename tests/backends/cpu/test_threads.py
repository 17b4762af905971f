"""Per-particle phases run on one thread per PARTICLES_PER_THREAD particles, at most the
caller's count, and give the caller its count back."""

import numba
import pytest

from bencao.backends.cpu.threads import (
    PARTICLES_PER_STREAMING_THREAD,
    PARTICLES_PER_THREAD,
    per_particle,
    streaming,
)


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs two threads")
def test_small_systems_run_per_particle_phases_on_fewer_threads():
    numba.set_num_threads(2)
    try:
        with per_particle(PARTICLES_PER_THREAD - 1):
            assert numba.get_num_threads() == 1  # fewer particles than one thread's share
        assert numba.get_num_threads() == 2
        with per_particle(2 * PARTICLES_PER_THREAD):
            assert numba.get_num_threads() == 2
        with per_particle(100 * PARTICLES_PER_THREAD):
            assert numba.get_num_threads() == 2  # never more than the caller has
        with pytest.raises(RuntimeError), per_particle(10):
            raise RuntimeError("a kernel failed")
        assert numba.get_num_threads() == 2  # restored after an error too
    finally:
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs two threads")
def test_streaming_kernels_take_their_own_share():
    numba.set_num_threads(2)
    try:
        with streaming(PARTICLES_PER_STREAMING_THREAD - 1):
            assert numba.get_num_threads() == 1
        with streaming(2 * PARTICLES_PER_STREAMING_THREAD):
            assert numba.get_num_threads() == 2
    finally:
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
