"""How bencao's threads wait between parallel loops: passively, unless the user says otherwise.

Numba's OpenMP threading layer (GNU libgomp) lets an idle thread spin for a while before it
sleeps, so that the next parallel loop starts a few microseconds sooner.  On a machine where
something else runs -- another replica of an ensemble, a desktop, a neighbour's job -- the
spinning steals the cycles the busy core's thread needs, and every loop waits for its slowest
thread: DHFR on 2 cores with one busy background process fell from 14.7 to 4.2 ns/day (OpenMM's
CPU platform, in the same conditions, from 6.5 to 3.8).  With passive waiting it ran at 8.7 ns/day,
about what the remaining share of the cores allows; on a quiet machine the cost is within the
noise of the benchmark (see the README's Speed section).

libgomp reads ``OMP_WAIT_POLICY`` once, when it is loaded (Numba loads it at the first parallel
loop), so this module sets it before bencao compiles anything.  Nothing changes if the user has
set ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT``, or if OpenMP was loaded earlier by another
library.  Results do not depend on it: the kernels' sums do not depend on which thread did the
work.
"""

from __future__ import annotations

import os

#: The OpenMP variables that, when set by the user, leave the choice to them.
USER_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
#: True once :func:`wait_passively` has set the policy (so that programs bencao starts, such as
#: GROMACS in ``bencao bench``, can be given the environment the user had).
SET_BY_BENCAO = False


def wait_passively() -> bool:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` unless the user chose a policy; return True if set."""
    global SET_BY_BENCAO
    if any(name in os.environ for name in USER_VARIABLES):
        return False
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    SET_BY_BENCAO = True
    return True


def user_environment() -> dict:
    """``os.environ`` as the user had it: without the policy bencao set for its own threads."""
    environment = dict(os.environ)
    if SET_BY_BENCAO:
        environment.pop("OMP_WAIT_POLICY", None)
    return environment
