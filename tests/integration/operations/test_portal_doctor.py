"""``manage.py portal_doctor`` against the emulators: all good, then each failure provoked once."""

from __future__ import annotations

import re
import socket
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from portal import doctor
from tests.integration.authn.conftest import (  # noqa: F401 - fixtures re-exported
    EntraSignin,
    _isolated_caches,
    browser,
    dps_instances,
    entra_signin,
    portal_client,
)

pytestmark = pytest.mark.django_db

DANA = ("dana.contributor@contoso-iot.example", "Dana-Demo-2026!")


def _run(*args: str) -> tuple[int, str]:
    out = StringIO()
    try:
        call_command("portal_doctor", *args, stdout=out)
    except CommandError as exc:
        return exc.returncode, out.getvalue() + str(exc)
    return 0, out.getvalue()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def deployment(azure_settings: Any, dps_instances: Any) -> Any:  # noqa: F811
    return azure_settings


def _fails(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("FAIL")]


def test_a_healthy_deployment_passes_with_the_app_read_warning(deployment: Any) -> None:
    code, text = _run()
    assert code == 0, text
    assert "OK   entra: discovery document" in text
    assert "OK   credential:" in text
    assert "OK   instance dps-fleet-prod: the portal's app identity may read" in text
    # The emulated tenant gives the app read on dps-fleet-prod only.
    assert "WARN instance dps-fleet-lab: the portal's app identity may not read" in text
    assert "Device Provisioning Service Data Reader" in text
    assert "OK   clock:" in text


def test_obo_for_dps_and_arm_with_a_signed_in_user(
    deployment: Any,
    entra_signin: EntraSignin,  # noqa: F811
) -> None:
    assert entra_signin(*DANA).status_code == 302
    code, text = _run("--user", DANA[0])
    assert code == 0, text
    assert f"OK   obo: a DPS token on behalf of {DANA[0]}" in text
    assert f"OK   obo: a ARM token on behalf of {DANA[0]}" in text


def test_a_user_who_never_signed_in(deployment: Any) -> None:
    code, text = _run("--user", "nobody@contoso-iot.example")
    assert code == 1
    assert "FAIL obo: No user nobody@contoso-iot.example has signed in" in text


def test_a_missing_setting(deployment: Any) -> None:
    deployment.ENTRA_CLIENT_ID = None
    code, text = _run()
    assert code == 1
    assert _fails(text) == ["FAIL settings: ENTRA_CLIENT_ID is not set."]
    assert "fix: Set ENTRA_CLIENT_ID" in text


def test_entra_unreachable(deployment: Any) -> None:
    deployment.ENTRA_AUTHORITY = f"https://127.0.0.1:{_closed_port()}/tenant"
    code, text = _run()
    assert code == 1
    assert "FAIL entra: Entra ID discovery at https://127.0.0.1:" in text
    assert "credential:" not in text  # not asked without discovery


def test_a_wrong_client_secret(deployment: Any) -> None:
    deployment.ENTRA_CLIENT_SECRET = "not-the-secret"
    code, text = _run()
    assert code == 1
    assert "FAIL credential: Entra ID refused the portal's own credential" in text
    assert "not-the-secret" not in text


def test_a_host_the_rules_refuse(deployment: Any) -> None:
    from instances.models import DpsInstance

    DpsInstance.objects.filter(name="dps-fleet-lab").update(host="dps.evil.example")
    code, text = _run()
    assert code == 1
    assert "FAIL instance dps-fleet-lab: The DPS host dps.evil.example is not under" in text


def test_an_untrusted_tls_certificate(deployment: Any) -> None:
    deployment.AZURE_CA_BUNDLE = None  # the emulators' CA is not a public one
    code, text = _run()
    assert code == 1
    assert "The TLS certificate of" in text


def test_an_unreachable_instance(deployment: Any) -> None:
    from instances.models import DpsInstance

    port = _closed_port()
    host = f"127.0.0.1:{port}"
    deployment.DPS_EMULATOR_HOSTS = {**deployment.DPS_EMULATOR_HOSTS, host: "/rid/unreachable"}
    DpsInstance.objects.create(name="dps-gone", host=host, resource_id="/rid/unreachable")
    code, text = _run()
    assert code == 1
    assert f"FAIL instance dps-gone: {host} could not be reached" in text


def test_clock_skew(deployment: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    real = doctor.now
    monkeypatch.setattr(doctor, "now", lambda: real() + timedelta(minutes=5))
    code, text = _run()
    assert code == 1
    # The Date header has whole seconds, and a loaded machine adds the request's time: 300-309 s.
    assert re.search(r"FAIL clock: this host's clock is 30\d s ahead of Entra ID\.", text), text
    assert "fix: Synchronise the clock" in text
