"""The DPS host rules: at registration (command, page) and again before a token is attached.

A user's DPS bearer token must only ever travel over https to an Azure DPS service host (or,
in development, to the emulators' own endpoints), and to the host ARM names for the instance's
resource id when ARM tells it.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from authn.models import EntraIdentity
from instances.models import DpsInstance

pytestmark = pytest.mark.django_db

RID = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Devices/provisioningServices/{}"
TOKEN = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJkcHMtdXNlciJ9.secret-user-token"


class Listener:
    """A loopback socket that records every connection and the bytes sent on it."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.received: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(1)
                try:
                    data = conn.recv(65536)
                except OSError:
                    data = b""
                self.received.append(data)
                conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    server = Listener()
    yield server
    server.close()


@pytest.fixture
def user(django_user_model: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A signed-in user whose token broker hands out TOKEN (and counts the requests)."""
    import authn.tokens

    u = django_user_model.objects.create_user("dora")
    EntraIdentity.objects.create(user=u, tenant_id="t", object_id="oid-dora", upn="dora@x.test")
    u.token_requests = []

    def token_for_user(who: Any, resource: str) -> str:
        u.token_requests.append(resource)
        return TOKEN

    monkeypatch.setattr(authn.tokens, "token_for_user", token_for_user)
    return u


def _endpoints(tmp_path: Any, entries: list[dict[str, Any]]) -> str:
    path = tmp_path / "endpoints.json"
    path.write_text(json.dumps({"dps": entries}))
    return str(path)


# -- at registration --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("host", "words"),
    [
        ("http://dps-a.azure-devices-provisioning.net", "https"),
        ("http://127.0.0.1:9450", "https"),
        ("dps-a.evil.example", ".azure-devices-provisioning.net"),
        ("dps-a.azure-devices-provisioning.net.evil.example", ".azure-devices-provisioning.net"),
        ("https://user:pw@dps-a.azure-devices-provisioning.net", "credentials"),
        ("dps-a.azure-devices-provisioning.net/path", "path"),
        ("dps-a.azure-devices-provisioning.net:8443", "443"),
    ],
)
def test_import_refuses_a_bad_host_naming_it_and_the_rule(
    tmp_path: Any, host: str, words: str
) -> None:
    path = _endpoints(tmp_path, [{"name": "dps-a", "host": host, "resource_id": RID.format("a")}])
    with pytest.raises(CommandError) as info:
        call_command("dps_instance_import", "--from-endpoints", path)
    assert words in str(info.value)
    assert host.split("://")[-1].split("@")[-1].split("/")[0].split(":")[0] in str(info.value)
    assert not DpsInstance.objects.exists()


def test_import_accepts_an_azure_host_and_stores_it_bare(tmp_path: Any) -> None:
    host = "https://DPS-A.azure-devices-provisioning.net/"
    path = _endpoints(tmp_path, [{"name": "dps-a", "host": host, "resource_id": RID.format("a")}])
    call_command("dps_instance_import", "--from-endpoints", path)
    assert DpsInstance.objects.get().host == "dps-a.azure-devices-provisioning.net"


def test_emulator_host_is_accepted_only_with_the_endpoints_file(
    tmp_path: Any, settings: Any
) -> None:
    entry = {"name": "dps-a", "host": "127.0.0.1:9450", "resource_id": RID.format("dps-a")}
    path = _endpoints(tmp_path, [entry])
    settings.DPS_EMULATOR_HOSTS = {}
    with pytest.raises(CommandError, match=r"127\.0\.0\.1.*\.azure-devices-provisioning\.net"):
        call_command("dps_instance_import", "--from-endpoints", path)
    assert not DpsInstance.objects.exists()
    # The development endpoints file names this host for another resource: still refused.
    settings.DPS_EMULATOR_HOSTS = {"127.0.0.1:9450": RID.format("dps-b")}
    with pytest.raises(CommandError, match="dps-b"):
        call_command("dps_instance_import", "--from-endpoints", path)
    settings.DPS_EMULATOR_HOSTS = {"127.0.0.1:9450": RID.format("dps-a")}
    call_command("dps_instance_import", "--from-endpoints", path)
    assert DpsInstance.objects.get().host == "127.0.0.1:9450"


@pytest.fixture
def admin(django_user_model: Any) -> Any:
    user = django_user_model.objects.create_user("admin")
    EntraIdentity.objects.create(
        user=user, tenant_id="t", object_id="oid-admin", app_roles=["Portal.Admin"]
    )
    return user


def test_admin_page_refuses_an_http_host_with_a_clear_message(client: Any, admin: Any) -> None:
    client.force_login(admin, backend="authn.backends.EntraBackend")
    response = client.post(
        "/auth/instances/",
        {
            "name": "dps-new",
            "host": "http://dps-new.azure-devices-provisioning.net",
            "resource_id": RID.format("dps-new"),
            "enabled": "on",
        },
    )
    assert response.status_code == 400
    assert b"only over https" in response.content
    assert not DpsInstance.objects.exists()


def test_admin_page_refuses_a_host_arm_does_not_name(
    client: Any, admin: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the admin's ARM token at hand, registration ties the host to the resource id."""
    from instances import hosts

    seen: list[str] = []

    class Arm:
        def provisioning_service_get(self, resource_id: str, token: str) -> dict[str, Any]:
            seen.append(resource_id)
            return {
                "properties": {
                    "serviceOperationsHostName": "dps-new.azure-devices-provisioning.net"
                }
            }

    monkeypatch.setattr(hosts, "ArmClient", Arm)
    monkeypatch.setattr(hosts, "_arm_token", lambda user: "arm-token")
    client.force_login(admin, backend="authn.backends.EntraBackend")
    form = {
        "name": "dps-new",
        "host": "dps-old.azure-devices-provisioning.net",
        "resource_id": RID.format("dps-new"),
        "enabled": "on",
    }
    response = client.post("/auth/instances/", form)
    assert response.status_code == 400
    assert b"dps-new.azure-devices-provisioning.net" in response.content
    assert b"ARM" in response.content
    assert not DpsInstance.objects.exists()
    assert seen == [RID.format("dps-new")]
    form["host"] = "dps-new.azure-devices-provisioning.net"
    assert client.post("/auth/instances/", form).status_code == 302
    assert DpsInstance.objects.get().host == "dps-new.azure-devices-provisioning.net"


# -- before a token is attached -------------------------------------------------------------------
def _client_of(kind: str, user: Any, instance: DpsInstance) -> Any:
    if kind == "page":
        from enrollments.clients import dps_client_for

        return dps_client_for(user, instance)
    from enrollments.bulk.access import PortalAccess

    return PortalAccess().client(owner=user, instance=instance)


@pytest.mark.parametrize("kind", ["page", "bulk"])
@pytest.mark.parametrize("host", ["http://127.0.0.1:{port}", "127.0.0.1:{port}"])
def test_a_row_edited_in_the_database_gets_no_token(
    user: Any, listener: Listener, settings: Any, kind: str, host: str
) -> None:
    """An http:// or unlisted host written straight into the table: no request leaves."""
    from enrollments.dps.exceptions import DpsError

    settings.DPS_EMULATOR_HOSTS = {}
    instance = DpsInstance.objects.create(
        name="dps-a", host=host.format(port=listener.port), resource_id=RID.format("dps-a")
    )
    client = _client_of(kind, user, instance)
    with pytest.raises(DpsError) as info:
        client.enrollment_get("device-1")
    assert listener.received == []
    assert user.token_requests == []
    assert f"127.0.0.1:{listener.port}" in str(info.value)


def test_the_guard_reads_the_instance_as_it_is_when_the_token_is_needed(
    user: Any, listener: Listener, settings: Any
) -> None:
    """A client built for a good row, whose row then turns bad, refuses before the token."""
    from enrollments.clients import dps_client_for
    from enrollments.dps.exceptions import DpsError

    settings.DPS_EMULATOR_HOSTS = {f"127.0.0.1:{listener.port}": RID.format("dps-a")}
    instance = DpsInstance.objects.create(
        name="dps-a", host=f"127.0.0.1:{listener.port}", resource_id=RID.format("dps-a")
    )
    client = dps_client_for(user, instance)
    settings.DPS_EMULATOR_HOSTS = {}
    with pytest.raises(DpsError):
        client.enrollment_get("device-1")
    assert listener.received == []
    assert user.token_requests == []


def test_an_arm_mismatch_refuses_the_instance_and_sends_no_token(
    user: Any, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ARM names another service host for the resource id: no capability, no DPS token."""
    from authn import capabilities as caps_module
    from authn.capabilities import capabilities_resolve
    from enrollments.clients import dps_client_for
    from enrollments.dps.exceptions import DpsError

    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

    class Arm:
        def permissions_for(self, resource_id: str, token: str) -> list[dict[str, Any]]:
            return [{"dataActions": ["Microsoft.Devices/provisioningServices/*"]}]

        def provisioning_service_get(self, resource_id: str, token: str) -> dict[str, Any]:
            return {
                "properties": {"serviceOperationsHostName": "dps-a.azure-devices-provisioning.net"}
            }

    monkeypatch.setattr(caps_module, "ArmClient", Arm)
    instance = DpsInstance.objects.create(
        name="dps-a",
        host="dps-b.azure-devices-provisioning.net",
        resource_id=RID.format("dps-a"),
    )
    result = capabilities_resolve(user, instance)
    assert len(result) == 0
    assert "dps-a.azure-devices-provisioning.net" in result.error
    assert "dps-b.azure-devices-provisioning.net" in result.error
    user.token_requests.clear()
    with pytest.raises(DpsError) as info:
        dps_client_for(user, instance).enrollment_get("device-1")
    assert "ARM" in str(info.value)
    assert user.token_requests == []
