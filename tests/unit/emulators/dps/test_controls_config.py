"""The quota limiter and the controls configuration (no sockets)."""

from __future__ import annotations

import json

import pytest

from emulators.common.tenant import load_tenant
from emulators.dps.controls import (
    CONFIG_ENV,
    CONFIG_FILE,
    ConfigError,
    ControlsConfig,
    SlidingWindowLimiter,
    load_startup_config,
)

INSTANCE = load_tenant().dps_instances[0]


def test_limiter_allows_the_limit_then_says_when_a_slot_frees():
    limiter = SlidingWindowLimiter(3)
    assert [limiter.acquire(now=100.2) for _ in range(2)] == [None, None]
    assert limiter.acquire(now=130.0) is None
    # Oldest events are from second 100, which leaves the window at 160.
    assert limiter.acquire(now=130.5) == 30
    assert limiter.acquire(now=159.9) == 1
    assert limiter.acquire(now=160.0) is None
    assert limiter.in_window(now=160.0) == 2


def test_limiter_without_limit_never_throttles_and_reset_clears_the_window():
    assert all(SlidingWindowLimiter(None).acquire(now=1.0) is None for _ in range(5000))
    limiter = SlidingWindowLimiter(1)
    assert limiter.acquire(now=5.0) is None
    assert limiter.acquire(now=5.0) is not None
    limiter.reset()
    assert limiter.acquire(now=5.0) is None


def test_limit_zero_throttles_everything():
    assert SlidingWindowLimiter(0).acquire(now=1.0) == 60


def test_default_quota_is_a_thousand_per_unit():
    config = ControlsConfig(INSTANCE)
    assert config.operations_per_minute == 1000 * INSTANCE.units
    assert config.registrations_per_minute == 1000
    assert config.quota_enabled


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"quota": {"operations_per_minute": -1}}, "operations_per_minute"),
        ({"quota": {"enabled": "yes"}}, "enabled"),
        ({"faults": {"rules": [{"kind": "418", "probability": 1}]}}, "kind"),
        ({"faults": {"rules": [{"kind": "503", "probability": 1.5}]}}, "probability"),
        ({"faults": {"seed": "x"}}, "seed"),
        ({"latency": {"fixed_ms": "slow"}}, "fixed_ms"),
        ({"latency": {"methods": 3}}, "methods"),
        ({"bogus": {}}, "bogus"),
        ([], "JSON object"),
    ],
)
def test_bad_configuration_is_refused_naming_the_field_and_changes_nothing(raw, field):
    config = ControlsConfig(INSTANCE)
    before = config.as_dict()
    with pytest.raises(ConfigError, match=field):
        config.apply(raw)
    assert config.as_dict() == before


def test_a_partial_update_keeps_the_other_sections():
    config = ControlsConfig(INSTANCE)
    config.apply({"latency": {"fixed_ms": 5}})
    config.apply({"quota": {"operations_per_minute": 7}})
    assert config.as_dict()["latency"]["fixed_ms"] == 5
    assert config.as_dict()["quota"]["operations_per_minute"] == 7


def test_startup_config_layers_file_then_environment_per_instance(tmp_path, monkeypatch):
    (tmp_path / CONFIG_FILE).write_text(
        json.dumps(
            {
                "quota": {"operations_per_minute": 50},
                "instances": {INSTANCE.name.upper(): {"latency": {"fixed_ms": 20}}},
            }
        )
    )
    monkeypatch.setenv(
        CONFIG_ENV,
        json.dumps(
            {
                "faults": {"seed": 3, "rules": [{"kind": "drop", "probability": 0.1}]},
                "instances": {"some-other-dps": {"quota": {"enabled": False}}},
            }
        ),
    )
    config = load_startup_config(tmp_path, INSTANCE).as_dict()
    assert config["quota"] == {
        "enabled": True,
        "operations_per_minute": 50,
        "registrations_per_minute": 1000,
    }
    assert config["latency"]["fixed_ms"] == 20
    assert config["faults"]["seed"] == 3
    assert config["faults"]["rules"][0]["kind"] == "drop"


def test_startup_config_reads_a_file_named_by_the_environment(tmp_path, monkeypatch):
    path = tmp_path / "elsewhere.json"
    path.write_text(json.dumps({"quota": {"enabled": False}}))
    monkeypatch.setenv(CONFIG_ENV, str(path))
    assert load_startup_config(tmp_path, INSTANCE).quota_enabled is False


def test_startup_config_that_is_not_json_fails_loudly(tmp_path, monkeypatch):
    monkeypatch.delenv(CONFIG_ENV, raising=False)
    (tmp_path / CONFIG_FILE).write_text("{nope")
    with pytest.raises(ConfigError, match=CONFIG_FILE):
        load_startup_config(tmp_path, INSTANCE)
