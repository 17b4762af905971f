"""How many threads a per-particle phase of a step runs on.

A parallel region can cost a wake-up of the other threads: Numba's OpenMP threads sleep after
a short spin between regions (:mod:`bencao.thread_waiting`), and waking one took ~20-40 us on
a 2-core VM.
A step has some twenty regions besides the pair kernel (integration, constraints, PME,
bonded terms, exceptions), and for a small system each does less work than that: alanine
dipeptide in water (2,269 atoms) ran 1.6 ms/step on one thread and 1.9 on two.  So those
phases use one thread per ``PARTICLES_PER_THREAD`` particles, at most as many as the caller
has, and the integrators' streaming kernels one per ``PARTICLES_PER_STREAMING_THREAD``; the
pair kernel and the neighbour search, whose work is per pair, keep them all.
Results do not change: every kernel is bit-identical on any number of threads.
"""

from __future__ import annotations

from contextlib import contextmanager

import numba

#: Fewest particles per thread in the per-particle phases.  DHFR (23,558 atoms) keeps 2
#: threads; alanine dipeptide in water and a 3,000-atom water box run these phases on one.
PARTICLES_PER_THREAD = 4096
#: Fewest particles per thread in the streaming kernels (a few operations per number read:
#: kick, drift, Langevin drift, constraint velocities; the pair kernel's coordinates, cluster
#: bounds and force reduction), which a wake-up outweighs far longer.  Measured (2 threads,
#: AMD Zen 5), 1 vs 2 threads: kick 22 vs 45 us at 23,558 particles, 91 vs 94 at 100,000;
#: Langevin drift 55 vs 67 us at 23,558, 115 vs 101 at 50,000; DHFR's force reduction 134 vs
#: 245 us, cluster bounds 17 vs 59 us, coordinates 73 vs 91 us.
PARTICLES_PER_STREAMING_THREAD = 32768


@contextmanager
def per_particle(n_particles: int, per_thread: int = PARTICLES_PER_THREAD):
    """Run the enclosed kernels on at most one thread per ``per_thread`` particles (and at
    least one), then restore the calling thread's count."""
    current = numba.get_num_threads()
    wanted = max(1, min(current, n_particles // per_thread))
    if wanted == current:
        yield
        return
    numba.set_num_threads(wanted)
    try:
        yield
    finally:
        numba.set_num_threads(current)


def streaming(n_particles: int):
    """:func:`per_particle` for the streaming kernels (``PARTICLES_PER_STREAMING_THREAD``)."""
    return per_particle(n_particles, PARTICLES_PER_STREAMING_THREAD)
