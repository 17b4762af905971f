"""How many threads a per-particle phase of a step runs on.

A parallel region costs a wake-up of the other threads: Numba's OpenMP threads wait passively
between regions (:mod:`bencao.thread_waiting`), and waking one took ~40 us on a 2-core VM.
A step has some twenty regions besides the pair kernel (integration, constraints, PME,
bonded terms, exceptions), and for a small system each does less work than that: alanine
dipeptide in water (2,269 atoms) ran 1.6 ms/step on one thread and 1.9 on two.  So those
phases use one thread per ``PARTICLES_PER_THREAD`` particles, at most as many as the caller
has; the pair kernel and the neighbour search, whose work is per pair, keep them all.
Results do not change: every kernel is bit-identical on any number of threads.
"""

from __future__ import annotations

from contextlib import contextmanager

import numba

#: Fewest particles per thread in the per-particle phases.  DHFR (23,558 atoms) keeps 2
#: threads; alanine dipeptide in water and a 3,000-atom water box run these phases on one.
PARTICLES_PER_THREAD = 4096


@contextmanager
def per_particle(n_particles: int):
    """Run the enclosed kernels on at most one thread per ``PARTICLES_PER_THREAD`` particles
    (and at least one), then restore the calling thread's count."""
    current = numba.get_num_threads()
    wanted = max(1, min(current, n_particles // PARTICLES_PER_THREAD))
    if wanted == current:
        yield
        return
    numba.set_num_threads(wanted)
    try:
        yield
    finally:
        numba.set_num_threads(current)
