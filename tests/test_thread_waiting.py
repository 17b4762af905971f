"""bencao's threads wait passively unless the user chose a policy; benchmarks can add load."""

import json
import os
import subprocess
import sys

import pytest


def _environment_after_import(**variables):
    """OMP_WAIT_POLICY in a fresh interpreter after ``import bencao``, and what
    ``user_environment`` gives programs bencao starts."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env.update(variables)
    code = ("import json, os, bencao; from bencao.thread_waiting import user_environment; "
            "print(json.dumps([os.environ.get('OMP_WAIT_POLICY'), "
            "user_environment().get('OMP_WAIT_POLICY')]))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("variables, ours, theirs", [
    ({}, "PASSIVE", None),  # bencao's choice, not passed on to other programs
    ({"OMP_WAIT_POLICY": "ACTIVE"}, "ACTIVE", "ACTIVE"),  # the user's, kept everywhere
    ({"GOMP_SPINCOUNT": "100000"}, None, None),  # a spin count the user tuned: left alone
])
def test_wait_policy_is_passive_unless_the_user_chose(variables, ours, theirs):
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
