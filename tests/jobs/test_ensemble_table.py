"""The [ensemble] table: ladders, REST2 settings, segment lengths, one-line errors naming the key."""

import pytest

from bencao.errors import JobFileError
from bencao.jobs import job_from_text

STAGES = """
[[stage]]
kind = "minimize"

[[stage]]
kind = "nvt"
length = "{length}"
"""


def ensemble(folder, table, length="10 ps", top=""):
    text = f'system = "system"\n{top}' + STAGES.format(length=length) + "\n[ensemble]\n" + table
    return job_from_text(text, folder, "remd.toml").ensemble


def error(folder, table, **options) -> str:
    with pytest.raises(JobFileError) as raised:
        ensemble(folder, table, **options)
    message = str(raised.value)
    assert "\n" not in message and message.startswith("remd.toml: [ensemble]: ")
    return message


def test_temperature_range_is_a_geometric_ladder(folder):
    result = ensemble(folder, 'exchange = "temperature"\nreplicas = 4\ntemperature_range = [300, 400]')
    assert result.replicas == 4 and result.exchange == "temperature"
    ratios = [b / a for a, b in zip(result.temperatures, result.temperatures[1:])]
    assert result.temperatures[0] == 300 and result.temperatures[-1] == 400
    assert ratios == pytest.approx([(4 / 3) ** (1 / 3)] * 3, rel=1e-12)
    assert result.segment_steps == 500                      # the default 1 ps at 2 fs
    assert result.scales == (1.0, 1.0, 1.0, 1.0)


def test_explicit_temperatures_and_interval(folder):
    result = ensemble(folder, 'exchange = "temperature"\ntemperatures = [300, 320, 345]\n'
                              'exchange_interval = "200 steps"')
    assert result.replicas == 3 and result.temperatures == (300.0, 320.0, 345.0)
    assert result.segment_steps == 200


def test_rest2_scales_are_t0_over_solute_temperatures(folder):
    result = ensemble(folder, 'exchange = "rest2"\nsolute = "ligand"\n'
                              'solute_temperatures = [300, 400, 600]', top="temperature = 300\n")
    assert result.temperatures == (300.0, 300.0, 300.0)
    assert result.scales == pytest.approx((1.0, 0.75, 0.5))
    assert result.solute == "ligand"


def test_independent_replicas_run_at_the_stage_temperature(folder):
    result = ensemble(folder, "replicas = 3", top="temperature = 310\n")
    assert result.exchange == "none" and result.temperatures == (310.0,) * 3


@pytest.mark.parametrize("table, expected", [
    ('replicas = 4\nexchange = "temperature"', "needs 'temperatures' or 'temperature_range'"),
    ('exchange = "temperature"\ntemperatures = [300, 290]', "'temperatures' must increase"),
    ('exchange = "temperature"\ntemperature_range = [300, 400]', "needs 'replicas'"),
    ('exchange = "temperature"\nreplicas = 3\ntemperatures = [300, 350]', "lists 2 temperatures"),
    ('exchange = "rest2"\nsolute_temperatures = [300, 400]', "needs 'solute'"),
    ('exchange = "rest2"\nsolute = "ligand"\nsolute_temperatures = [310, 400]',
     "first solute temperature must be the stage's temperature 300 K"),
    ('exchange = "temperature"\ntemperatures = [300]', "at least 2 replicas"),
    ('exchange = "swap"\nreplicas = 2', "'exchange' must be one of"),
    ('replicas = 2\nexchange_intervall = "1 ps"', "unknown key 'exchange_intervall' (did you mean"),
    ('replicas = 2\nexchange_interval = "3 ps"', "not a whole number of exchange intervals"),
    ('replicas = 2\nsolute = "ligand"', "'solute' applies only to exchange = 'rest2'"),
])
def test_errors_name_the_key(folder, table, expected):
    assert expected in error(folder, table)


def test_the_last_stage_must_be_thermostatted_dynamics_for_exchange(folder):
    text = ('system = "system"\n[[stage]]\nkind = "nve"\nlength = "1 ps"\n'
            '[ensemble]\nexchange = "temperature"\ntemperatures = [300, 310]\n')
    with pytest.raises(JobFileError, match="needs a thermostat"):
        job_from_text(text, folder, "remd.toml")
    text = 'system = "system"\n[[stage]]\nkind = "minimize"\n[ensemble]\nreplicas = 2\n'
    with pytest.raises(JobFileError, match="must be dynamics"):
        job_from_text(text, folder, "remd.toml")
