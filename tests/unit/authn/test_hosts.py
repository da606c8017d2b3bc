"""instances.hosts: the rules of a DPS service host; the settings and checks that shape them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from enrollments.dps.client import DpsClient
from enrollments.dps.exceptions import DpsHostRefused
from instances.hosts import DpsHostError, dps_host_arm_match, dps_host_validate

ROOT = Path(__file__).resolve().parents[3]
RID = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Devices/provisioningServices/{}"


@pytest.fixture(autouse=True)
def _production_rules(settings: Any) -> None:
    settings.DPS_HOST_SUFFIX = [".azure-devices-provisioning.net"]
    settings.DPS_EMULATOR_HOSTS = {}


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("dps-a.azure-devices-provisioning.net", "dps-a.azure-devices-provisioning.net"),
        ("  DPS-A.Azure-Devices-Provisioning.net ", "dps-a.azure-devices-provisioning.net"),
        ("https://dps-a.azure-devices-provisioning.net/", "dps-a.azure-devices-provisioning.net"),
        ("dps-a.azure-devices-provisioning.net:443", "dps-a.azure-devices-provisioning.net"),
    ],
)
def test_azure_hosts_are_accepted_and_stored_bare(given: str, stored: str) -> None:
    assert dps_host_validate(given) == stored


@pytest.mark.parametrize(
    ("given", "rule"),
    [
        ("", "empty"),
        ("http://dps-a.azure-devices-provisioning.net", "https"),
        ("ftp://dps-a.azure-devices-provisioning.net", "https"),
        ("dps-a.example.com", "suffix"),
        ("azure-devices-provisioning.net", "suffix"),
        (".azure-devices-provisioning.net", "hostname"),
        ("dps-a.azure-devices-provisioning.net.evil.example", "suffix"),
        ("evilazure-devices-provisioning.net", "suffix"),
        ("dps-a.azure-devices-provisioning.net:8443", "port"),
        ("dps-a.azure-devices-provisioning.net:99999", "port"),
        ("https://u:p@dps-a.azure-devices-provisioning.net", "credentials"),
        ("dps-a.azure-devices-provisioning.net/x", "path"),
        ("dps-a.azure-devices-provisioning.net?x=1", "path"),
        ("dps_a.azure-devices-provisioning.net", "hostname"),
        ("127.0.0.1:9450", "suffix"),
        ("localhost:9450", "suffix"),
    ],
)
def test_bad_hosts_are_refused_by_name(given: str, rule: str) -> None:
    with pytest.raises(DpsHostError) as info:
        dps_host_validate(given)
    assert info.value.rule == rule
    assert str(info.value)


def test_suffixes_come_from_the_setting(settings: Any) -> None:
    settings.DPS_HOST_SUFFIX = ["azure-devices-provisioning.net", ".azure-devices-provisioning.us"]
    assert dps_host_validate("dps-g.azure-devices-provisioning.us") == (
        "dps-g.azure-devices-provisioning.us"
    )
    settings.DPS_HOST_SUFFIX = ".azure-devices-provisioning.cn"
    with pytest.raises(DpsHostError, match=r"not under \.azure-devices-provisioning\.cn"):
        dps_host_validate("dps-a.azure-devices-provisioning.net")


def test_emulator_hosts_only_with_the_development_setting(settings: Any) -> None:
    with pytest.raises(DpsHostError):
        dps_host_validate("127.0.0.1:9450", resource_id=RID.format("a"))
    settings.DPS_EMULATOR_HOSTS = {"127.0.0.1:9450": RID.format("a")}
    assert dps_host_validate("https://127.0.0.1:9450", resource_id=RID.format("a")) == (
        "127.0.0.1:9450"
    )
    with pytest.raises(DpsHostError) as info:
        dps_host_validate("127.0.0.1:9450", resource_id=RID.format("b"))
    assert info.value.rule == "emulator-resource"
    with pytest.raises(DpsHostError, match="https"):
        dps_host_validate("http://127.0.0.1:9450", resource_id=RID.format("a"))
    with pytest.raises(DpsHostError):  # another port of the same machine is not listed
        dps_host_validate("127.0.0.1:9451", resource_id=RID.format("a"))


def test_arm_match_names_both_hosts() -> None:
    dps_host_arm_match(
        "dps-a.azure-devices-provisioning.net", "/r", ["dps-a.azure-devices-provisioning.net"]
    )
    with pytest.raises(DpsHostError) as info:
        dps_host_arm_match(
            "dps-b.azure-devices-provisioning.net", "/r", ["dps-a.azure-devices-provisioning.net"]
        )
    assert info.value.rule == "arm"
    assert "dps-a.azure-devices-provisioning.net" in str(info.value)
    assert "dps-b.azure-devices-provisioning.net" in str(info.value)


def test_the_client_never_sends_credentials_over_http() -> None:
    """Whatever the caller: no token is even asked for when the base URL is plain http."""
    asked: list[int] = []

    def provider() -> str:
        asked.append(1)
        return "Bearer t"

    client = DpsClient("http://127.0.0.1:9", provider, max_retries=0)
    with pytest.raises(DpsHostRefused, match="https"):
        client.enrollment_get("x")
    assert asked == []


def test_the_host_guard_runs_before_the_token_is_asked_for() -> None:
    asked: list[int] = []
    guarded: list[str] = []

    def guard(base_url: str) -> None:
        guarded.append(base_url)
        raise DpsHostRefused(message="no")

    client = DpsClient(
        "dps-a.azure-devices-provisioning.net", lambda: asked.append(1) or "t", host_guard=guard
    )
    with pytest.raises(DpsHostRefused):
        client.group_get("g")
    assert guarded == ["https://dps-a.azure-devices-provisioning.net"]
    assert asked == []


# -- settings and system checks ----------------------------------------------------------------------
_PROBE = "import django, json; django.setup(); from django.conf import settings; print(json.dumps(settings.DPS_EMULATOR_HOSTS))"


@pytest.mark.parametrize(("debug", "expected"), [("true", True), ("false", False)])
def test_the_endpoints_file_widens_the_hosts_only_in_debug(
    tmp_path: Path, debug: str, expected: bool
) -> None:
    endpoints = tmp_path / "endpoints.json"
    endpoints.write_text(
        json.dumps(
            {
                "authority": "https://127.0.0.1:9443/t",
                "ca_cert": str(tmp_path / "ca.pem"),
                "dps": [{"name": "a", "host": "127.0.0.1:9450", "resource_id": RID.format("a")}],
            }
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DPS_", "EMULATOR_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="portal.settings",
        DJANGO_SECRET_KEY="x" * 50,
        DJANGO_DEBUG=debug,
        EMULATOR_ENDPOINTS_FILE=str(endpoints),
    )
    out = subprocess.run(
        [sys.executable, "-c", _PROBE],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    hosts = json.loads(out.stdout.strip().splitlines()[-1])
    assert hosts == ({"127.0.0.1:9450": RID.format("a")} if expected else {})


def test_checks_refuse_wider_dps_hosts_without_debug(settings: Any) -> None:
    from portal.checks import check_dps_hosts

    settings.DEBUG = False
    assert check_dps_hosts() == []
    settings.DPS_HOST_SUFFIX = [".azure-devices-provisioning.net", ".example.com"]
    settings.DPS_EMULATOR_HOSTS = {"127.0.0.1:9450": RID.format("a")}
    ids = sorted(e.id for e in check_dps_hosts())
    assert ids == ["portal.E004", "portal.E005"]
    settings.DEBUG = True
    assert check_dps_hosts() == []
