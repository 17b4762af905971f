"""How bencao's threads wait between parallel loops: a short spin, then asleep, unless the
user says otherwise.

Numba's OpenMP threading layer (GNU libgomp) lets an idle thread spin for a while before it
sleeps, so that the next parallel loop starts a few microseconds sooner.  libgomp's own spin
is long (``GOMP_SPINCOUNT`` 300,000, milliseconds), and on a machine where something else runs
-- another replica of an ensemble, a desktop, a neighbour's job -- the spinning steals the
cycles the busy core's thread needs, and every loop waits for its slowest thread: DHFR on 2
cores with one busy background process fell from 14.7 to 4.2 ns/day (OpenMM's CPU platform, in
the same conditions, from 6.5 to 3.8).

Sleeping at once (``OMP_WAIT_POLICY=PASSIVE``, bencao's earlier choice) avoids that, but a
sleeping thread takes ~20 us to wake on a VM, and a loop whose threads both sleep (the worker
before it, the caller at its end) cost 45 us against 1.3 us with spinning threads (2-core AMD
Zen 5 VM); a DHFR step has some 27 loops.  So bencao sets ``GOMP_SPINCOUNT`` to
``SPIN_COUNT``, a spin of about 10-20 us: the thread that waits at a loop's end, and the one
waiting for a loop that follows within that time, never sleep.  Measured on that VM (DHFR, 2
threads): 0.45 ms/step faster than passive waiting quiet (four alternated pairs of 400 steps:
0.06-0.56 ms), and as fast with a busy process beside it (17.4 and 17.5 ms/step, passive 17.8
and 16.8).  Spin counts of 1,000-10,000 gained as much quiet but lost up to 35% loaded.

libgomp reads these variables once, when it is loaded (Numba loads it at the first parallel
loop), so this module sets them before bencao compiles anything.  Nothing changes if the user
has set ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT``, or if OpenMP was loaded earlier by another
library.  Results do not depend on it: the kernels' sums do not depend on which thread did the
work.
"""

from __future__ import annotations

import os

#: The OpenMP variables that, when set by the user, leave the choice to them.
USER_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
#: libgomp's spin before a waiting thread sleeps, in its own units (``pause`` instructions:
#: about 10-20 us here; 300 was under 10 us and woke the threads as often as passive waiting).
SPIN_COUNT = 600
#: True once :func:`wait_briefly` has set the spin (so that programs bencao starts, such as
#: GROMACS in ``bencao bench``, can be given the environment the user had).
SET_BY_BENCAO = False


def wait_briefly() -> bool:
    """Set ``GOMP_SPINCOUNT`` to ``SPIN_COUNT`` unless the user chose a wait policy or a spin
    count; return True if set."""
    global SET_BY_BENCAO
    if any(name in os.environ for name in USER_VARIABLES):
        return False
    os.environ["GOMP_SPINCOUNT"] = str(SPIN_COUNT)
    SET_BY_BENCAO = True
    return True


def user_environment() -> dict:
    """``os.environ`` as the user had it: without the spin bencao set for its own threads."""
    environment = dict(os.environ)
    if SET_BY_BENCAO:
        environment.pop("GOMP_SPINCOUNT", None)
    return environment
