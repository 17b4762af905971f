"""bencao's threads spin briefly, then sleep, unless the user chose a policy; benchmarks can add
load."""

import json
import os
import subprocess
import sys

import pytest


def _environment_after_import(**variables):
    """(OMP_WAIT_POLICY, GOMP_SPINCOUNT) in a fresh interpreter after ``import bencao``, and
    the same in what ``user_environment`` gives programs bencao starts."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env.update(variables)
    code = ("import json, os, bencao; from bencao.thread_waiting import user_environment; "
            "names = ('OMP_WAIT_POLICY', 'GOMP_SPINCOUNT'); "
            "print(json.dumps([[os.environ.get(n) for n in names], "
            "[user_environment().get(n) for n in names]]))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("variables, ours, theirs", [
    # bencao's short spin, not passed on to other programs
    ({}, [None, "600"], [None, None]),
    # the user's choices, kept everywhere
    ({"OMP_WAIT_POLICY": "PASSIVE"}, ["PASSIVE", None], ["PASSIVE", None]),
    ({"GOMP_SPINCOUNT": "100000"}, [None, "100000"], [None, "100000"]),
])
def test_threads_spin_briefly_unless_the_user_chose(variables, ours, theirs):
    assert _environment_after_import(**variables) == [ours, theirs]


def test_background_load_runs_and_stops_its_processes():
    import multiprocessing

    from bencao.bench.load import background_load

    with background_load(2):
        busy = [p for p in multiprocessing.active_children() if p.is_alive()]
        assert len(busy) == 2
    assert not any(p.is_alive() for p in busy)
    with pytest.raises(ValueError, match="--background-load"):
        with background_load(-1):
            pass
