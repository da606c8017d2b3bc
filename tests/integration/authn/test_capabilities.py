"""capabilities_resolve, the capability checks on views, the template tag and the home page."""

from __future__ import annotations

from typing import Any

import pytest
from django.http import HttpResponse
from django.template import Context, Template
from django.test import RequestFactory
from django.urls import path
from django.views import View

from audit.models import AuditAction, AuditEvent, AuditOutcome
from authn import capabilities as caps_module
from authn.arm import ArmForbidden, ArmUnavailable
from authn.capabilities import capabilities_invalidate, capabilities_resolve
from authn.decorators import app_role_required, capability_required
from authn.exceptions import ReauthRequired, TokenUnavailable
from authn.mixins import CapabilityRequiredMixin
from authn.models import EntraIdentity
from authn.permissions import Capability
from instances.models import DpsInstance

pytestmark = pytest.mark.django_db

P = "Microsoft.Devices/provisioningServices"
READER = [{"dataActions": [f"{P}/*/read"], "notDataActions": []}]
CONTRIBUTOR = [{"dataActions": [f"{P}/*"], "notDataActions": []}]


class FakeArm:
    """Answers permissions_for from a dict; records calls; can fail."""

    def __init__(self, blocks: dict[str, list[dict[str, Any]]]) -> None:
        self.blocks = blocks
        self.calls: list[tuple[str, str]] = []
        self.fail = False

    def permissions_for(self, resource_id: str, token: str) -> list[dict[str, Any]]:
        self.calls.append((resource_id, token))
        if self.fail:
            raise ArmUnavailable("ARM answered 503.")
        return self.blocks.get(resource_id, [])

    def provisioning_service_get(self, resource_id: str, token: str) -> dict[str, Any]:
        # Data-plane roles only: ARM does not tell these users the resource (nor its host).
        raise ArmForbidden("ARM answered 403 (AuthorizationFailed).", status=403)


def rid(name: str) -> str:
    return f"/subscriptions/s/resourceGroups/rg/providers/Microsoft.Devices/provisioningServices/{name}"


@pytest.fixture
def instances() -> tuple[DpsInstance, DpsInstance]:
    prod = DpsInstance.objects.create(
        name="dps-prod", host="dps-prod.azure-devices-provisioning.net", resource_id=rid("dps-prod")
    )
    lab = DpsInstance.objects.create(
        name="dps-lab", host="dps-lab.azure-devices-provisioning.net", resource_id=rid("dps-lab")
    )
    return prod, lab


@pytest.fixture
def fake_arm(monkeypatch: pytest.MonkeyPatch, instances: Any) -> FakeArm:
    """Replace ARM and the token broker for every caller of capabilities_resolve."""
    prod, lab = instances
    arm = FakeArm({prod.resource_id: READER, lab.resource_id: CONTRIBUTOR})
    monkeypatch.setattr(caps_module, "ArmClient", lambda: arm)
    monkeypatch.setattr(caps_module, "_default_token_provider", lambda user, resource: "arm-token")
    return arm


@pytest.fixture
def user(django_user_model: Any) -> Any:
    u = django_user_model.objects.create_user("u1", first_name="Una")
    EntraIdentity.objects.create(
        user=u, tenant_id="t", object_id="oid-1", upn="una@example.test", display_name="Una User"
    )
    return u


def test_resolve_caches_per_user_and_instance(user: Any, instances: Any, fake_arm: FakeArm) -> None:
    prod, lab = instances
    assert set(capabilities_resolve(user, prod)) == {
        Capability.ENROLLMENTS_READ,
        Capability.ENROLLMENTGROUPS_READ,
        Capability.REGISTRATIONS_READ,
    }
    assert len(capabilities_resolve(user, lab)) == 9
    fresh = type(user).objects.get(pk=user.pk)  # a new request: only the shared cache remains
    capabilities_resolve(fresh, prod)
    capabilities_resolve(fresh, lab)
    assert len(fake_arm.calls) == 2
    assert fake_arm.calls[0] == (prod.resource_id, "arm-token")


def test_invalidate_drops_one_instance(user: Any, instances: Any, fake_arm: FakeArm) -> None:
    """A DPS 403 calls capabilities_invalidate: the next check asks ARM again."""
    prod, lab = instances
    capabilities_resolve(user, prod)
    capabilities_resolve(user, lab)
    fake_arm.blocks[prod.resource_id] = []  # the role was removed
    capabilities_invalidate(user, prod)
    assert len(capabilities_resolve(user, prod)) == 0
    assert len(capabilities_resolve(user, lab)) == 9
    assert len(fake_arm.calls) == 3


def test_arm_failure_fails_closed_and_is_not_cached(
    user: Any, instances: Any, fake_arm: FakeArm
) -> None:
    prod, _ = instances
    fake_arm.fail = True
    result = capabilities_resolve(user, prod)
    assert len(result) == 0
    assert result.error
    assert "enrollments.read" not in result
    fake_arm.fail = False
    assert "enrollments.read" in capabilities_resolve(type(user).objects.get(pk=user.pk), prod)


def test_token_unavailable_fails_closed(user: Any, instances: Any, monkeypatch: Any) -> None:
    prod, _ = instances

    def broken(user: Any, resource: str) -> str:
        raise TokenUnavailable("Entra down")

    result = capabilities_resolve(user, prod, token_provider=broken, arm=FakeArm({}))
    assert (len(result), bool(result.error)) == (0, True)


def test_reauth_required_propagates(user: Any, instances: Any) -> None:
    prod, _ = instances

    def expired(user: Any, resource: str) -> str:
        raise ReauthRequired("invalid_grant")

    with pytest.raises(ReauthRequired):
        capabilities_resolve(user, prod, token_provider=expired, arm=FakeArm({}))


def test_inactive_or_anonymous_users_have_nothing(
    user: Any, instances: Any, fake_arm: FakeArm
) -> None:
    from django.contrib.auth.models import AnonymousUser

    prod, _ = instances
    assert len(capabilities_resolve(AnonymousUser(), prod)) == 0
    user.is_active = False
    assert len(capabilities_resolve(user, prod)) == 0
    assert fake_arm.calls == []


def test_has_perm_and_template_tag(user: Any, instances: Any, fake_arm: FakeArm) -> None:
    prod, lab = instances
    assert user.has_perm("enrollments.read", prod)
    assert not user.has_perm("enrollments.write", prod)
    assert user.has_perm("enrollments.write", lab)
    assert not user.has_perm("enrollments.write")  # no instance, no capability
    request = RequestFactory().get("/")
    request.user = user
    tpl = Template(
        '{% load authn %}{% can "enrollments.write" prod as w %}{% can "enrollments.write" lab as l %}'
        "{{ w }}/{{ l }}"
    )
    assert tpl.render(Context({"request": request, "prod": prod, "lab": lab})) == "False/True"


# -- views guarded by capability_required ------------------------------------------------------
@capability_required("enrollments.write")
def _write_view(request: Any, instance: str) -> HttpResponse:
    return HttpResponse(f"wrote on {request.dps_instance.name}")


@app_role_required("Portal.Admin")
def _admin_view(request: Any) -> HttpResponse:
    return HttpResponse("admin")


class _DeleteView(CapabilityRequiredMixin, View):
    required_capability = "enrollments.delete"

    def get(self, request: Any, instance: str) -> HttpResponse:
        return HttpResponse("deleted")


urlpatterns = [
    path("t/<str:instance>/delete", _DeleteView.as_view()),
    path("t/<str:instance>/write", _write_view),
    path("t/admin", _admin_view),
    *__import__("portal.urls", fromlist=["urlpatterns"]).urlpatterns,
]


@pytest.mark.urls(__name__)
def test_capability_required_allows_denies_and_audits(
    client: Any, user: Any, instances: Any, fake_arm: FakeArm
) -> None:
    client.force_login(user, backend="authn.backends.EntraBackend")
    assert client.get("/t/dps-lab/write").content == b"wrote on dps-lab"
    denied = client.get("/t/dps-prod/write")
    assert denied.status_code == 403
    assert b'data-testid="forbidden-required">enrollments.write<' in denied.content
    event = AuditEvent.objects.get(action=AuditAction.DENIED)
    assert (event.outcome, event.dps_instance, event.actor_upn) == (
        AuditOutcome.DENIED,
        "dps-prod",
        "una@example.test",
    )
    assert "enrollments.write" in event.message
    assert client.get("/t/unknown/write").status_code == 404


@pytest.mark.urls(__name__)
def test_anonymous_is_sent_to_sign_in(client: Any, instances: Any) -> None:
    response = client.get("/t/dps-lab/write")
    assert response.status_code == 302
    assert response["Location"] == "/auth/login/?next=/t/dps-lab/write"


@pytest.mark.urls(__name__)
def test_disabled_instance_is_not_found(
    client: Any, user: Any, instances: Any, fake_arm: FakeArm
) -> None:
    DpsInstance.objects.filter(name="dps-lab").update(enabled=False)
    client.force_login(user, backend="authn.backends.EntraBackend")
    assert client.get("/t/dps-lab/write").status_code == 404


@pytest.mark.urls(__name__)
def test_app_role_required(client: Any, user: Any) -> None:
    client.force_login(user, backend="authn.backends.EntraBackend")
    assert client.get("/t/admin").status_code == 403
    assert AuditEvent.objects.filter(action=AuditAction.DENIED).count() == 1
    EntraIdentity.objects.filter(user=user).update(app_roles=["Portal.Admin"])
    assert client.get("/t/admin").content == b"admin"


# -- home page and refresh --------------------------------------------------------------------
def test_home_lists_capabilities_and_banner_on_failure(
    client: Any, user: Any, instances: Any, fake_arm: FakeArm
) -> None:
    client.force_login(user, backend="authn.backends.EntraBackend")
    html = client.get("/").content.decode()
    assert 'data-testid="instance-dps-prod"' in html
    assert (
        "You can read enrollments, enrollment groups and registration records. You cannot change or delete them, or see keys."
        in html
    )
    assert 'data-testid="permissions-banner"' not in html
    from django.core.cache import cache

    cache.clear()
    fake_arm.fail = True
    html = client.get("/").content.decode()
    assert 'data-testid="permissions-banner"' in html
    assert 'data-testid="capability-' not in html  # fail closed: nothing offered


def test_refresh_my_permissions(client: Any, user: Any, instances: Any, fake_arm: FakeArm) -> None:
    client.force_login(user, backend="authn.backends.EntraBackend")
    client.get("/")
    assert len(fake_arm.calls) == 2
    fake_arm.blocks[instances[0].resource_id] = CONTRIBUTOR
    response = client.post("/auth/permissions/refresh/", {"next": "/?x=1"})
    assert response["Location"] == "/?x=1"
    html = client.get("/").content.decode()
    assert len(fake_arm.calls) == 4
    assert html.count('data-testid="capability-enrollments-write"') == 2
    assert (
        client.post("/auth/permissions/refresh/", {"next": "https://evil.example"})["Location"]
        == "/"
    )


@pytest.mark.urls(__name__)
def test_capability_required_mixin(
    client: Any, user: Any, instances: Any, fake_arm: FakeArm
) -> None:
    client.force_login(user, backend="authn.backends.EntraBackend")
    assert client.get("/t/dps-lab/delete").content == b"deleted"
    assert client.get("/t/dps-prod/delete").status_code == 403
    assert (
        AuditEvent.objects.filter(action=AuditAction.DENIED, dps_instance="dps-prod").count() == 1
    )
