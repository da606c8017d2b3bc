"""The DPS instance registry: the import command and the Portal.Admin page, both audited."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from audit.models import AuditAction, AuditEvent
from authn.models import EntraIdentity
from instances.models import DpsInstance

pytestmark = pytest.mark.django_db

RID = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Devices/provisioningServices/{}"


def _endpoints(tmp_path: Any, entries: list[dict[str, Any]]) -> str:
    path = tmp_path / "endpoints.json"
    path.write_text(json.dumps({"dps": entries}))
    return str(path)


def test_import_is_idempotent_and_audited(tmp_path: Any, settings: Any) -> None:
    settings.DPS_EMULATOR_HOSTS = {
        f"127.0.0.1:{port}": RID.format(name)
        for port, name in ((9450, "dps-a"), (9451, "dps-b"), (9999, "dps-a"))
    }
    entries = [
        {"name": "dps-a", "host": "127.0.0.1:9450", "resource_id": RID.format("dps-a")},
        {"name": "dps-b", "host": "127.0.0.1:9451", "resource_id": RID.format("dps-b")},
    ]
    path = _endpoints(tmp_path, entries)
    call_command("dps_instance_import", "--from-endpoints", path)
    call_command("dps_instance_import", "--from-endpoints", path)
    assert list(DpsInstance.objects.values_list("name", "host")) == [
        ("dps-a", "127.0.0.1:9450"),
        ("dps-b", "127.0.0.1:9451"),
    ]
    assert AuditEvent.objects.filter(action=AuditAction.INSTANCE_CREATE).count() == 2
    entries[0]["host"] = "127.0.0.1:9999"  # the emulators restarted on another port
    call_command("dps_instance_import", "--from-endpoints", _endpoints(tmp_path, entries))
    update = AuditEvent.objects.get(action=AuditAction.INSTANCE_UPDATE)
    assert (update.before["host"], update.after["host"]) == ("127.0.0.1:9450", "127.0.0.1:9999")


@pytest.mark.parametrize(
    "content",
    [
        "not json",
        json.dumps({"dps": "x"}),
        json.dumps({"dps": [{"name": "dps-a"}]}),
        json.dumps({"dps": [{"name": "dps-a", "host": "h", "resource_id": "/not/a/dps"}]}),
    ],
)
def test_import_rejects_bad_files(tmp_path: Any, content: str) -> None:
    path = tmp_path / "endpoints.json"
    path.write_text(content)
    with pytest.raises(CommandError):
        call_command("dps_instance_import", "--from-endpoints", str(path))
    assert not DpsInstance.objects.exists()


@pytest.fixture
def admin(django_user_model: Any) -> Any:
    user = django_user_model.objects.create_user("admin")
    EntraIdentity.objects.create(
        user=user,
        tenant_id="t",
        object_id="oid-admin",
        upn="ada@example.test",
        display_name="Ada",
        app_roles=["Portal.Admin"],
    )
    return user


def test_admin_registers_and_disables_an_instance(client: Any, admin: Any) -> None:
    client.force_login(admin, backend="authn.backends.EntraBackend")
    response = client.post(
        "/auth/instances/",
        {
            "name": "dps-new",
            "host": "dps-new.azure-devices-provisioning.net",
            "resource_id": RID.format("dps-new"),
            "enabled": "on",
        },
    )
    assert response.status_code == 302
    created = AuditEvent.objects.get(action=AuditAction.INSTANCE_CREATE)
    assert (created.actor_upn, created.target_id) == ("ada@example.test", "dps-new")
    client.post("/auth/instances/dps-new/toggle/")
    assert DpsInstance.objects.get(name="dps-new").enabled is False
    changed = AuditEvent.objects.get(action=AuditAction.INSTANCE_UPDATE)
    assert (changed.before["enabled"], changed.after["enabled"]) == (True, False)


def test_invalid_resource_id_is_refused(client: Any, admin: Any) -> None:
    client.force_login(admin, backend="authn.backends.EntraBackend")
    response = client.post(
        "/auth/instances/", {"name": "dps-x", "host": "h", "resource_id": "/bad"}
    )
    assert response.status_code == 400
    assert not DpsInstance.objects.exists()


def test_non_admin_is_denied_and_audited(client: Any, django_user_model: Any) -> None:
    user = django_user_model.objects.create_user("op")
    EntraIdentity.objects.create(
        user=user, tenant_id="t", object_id="oid-op", app_roles=["Portal.Auditor"]
    )
    client.force_login(user, backend="authn.backends.EntraBackend")
    assert client.get("/auth/instances/").status_code == 403
    assert client.post("/auth/instances/", {"name": "dps-x"}).status_code == 403
    assert not DpsInstance.objects.exists()
    assert AuditEvent.objects.filter(action=AuditAction.DENIED).count() == 2


def test_anonymous_is_sent_to_sign_in(client: Any) -> None:
    response = client.get("/auth/instances/")
    assert response["Location"].startswith("/auth/login/?next=")
