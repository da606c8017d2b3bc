"""A full scenario against the emulators: every kind of action writes its event, no secret leaks.

The scenario signs real demo users in through the Entra ID emulator, makes DPS calls with
their own tokens, reveals keys, toggles an instance, exports, is refused, is asked to sign
in again and signs out. Afterwards every event it wrote (and the JSON Lines export of them)
is scanned for each password, key and token the scenario used.
"""

from __future__ import annotations

import json
import uuid
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from django.core.cache import cache
from django.core.management import call_command

from audit.models import AuditAction, AuditEvent, AuditOutcome
from tests.integration.authn.conftest import EntraSignin

pytestmark = pytest.mark.django_db

DANA = ("dana.contributor@contoso-iot.example", "Dana-Demo-2026!")
ADA = ("ada.admin@contoso-iot.example", "Ada-Demo-2026!")
WRONG_PASSWORD = "Not-Danas-Password-7781!"
INSTANCE = "dps-fleet-prod"
# Keys chosen by the test (base64 of 32 bytes), so the scan knows exactly what to look for.
PRIMARY = "UHJpbWFyeUtleUZvckF1ZGl0U2NhblRlc3QwMDAwMDE="
SECONDARY = "U2Vjb25kYXJ5S2V5Rm9yQXVkaXRTY2FuVGVzdDAwMDI="
GROUP_PRIMARY = "R3JvdXBQcmltYXJ5S2V5Rm9yQXVkaXRTY2FuVGVzdDM="
GROUP_SECONDARY = "R3JvdXBTZWNvbmRhcnlLZXlGb3JBdWRpdFNjYW5UZXN0"


def _token_cache_secrets(user: Any) -> set[str]:
    """Every access, refresh and ID token in the user's (decrypted) MSAL caches."""
    from authn.tokens import token_caches_load

    caches = token_caches_load(user)
    found: set[str] = set()
    for cache_obj in (caches.signin, caches.obo):
        data = json.loads(cache_obj.serialize() or "{}")
        for section in ("AccessToken", "RefreshToken", "IdToken"):
            for entry in (data.get(section) or {}).values():
                if entry.get("secret"):
                    found.add(entry["secret"])
    return found


def _new_client(entra_signin: EntraSignin) -> EntraSignin:
    import requests
    from django.test import Client

    session = requests.Session()
    session.trust_env = False
    session.verify = entra_signin.browser.verify
    return EntraSignin(Client(SERVER_NAME="localhost"), session)


def _everything_stored() -> str:
    rows = AuditEvent.objects.order_by("id").values()
    return "\n".join(json.dumps(row, default=str, ensure_ascii=False) for row in rows)


def test_scenario_writes_each_kind_of_event_and_no_secret(
    entra_signin: EntraSignin,
    entra_control: Any,
    dps_instances: Any,
    settings: Any,
    endpoints: dict[str, Any],
) -> None:
    from authn.msal_app import ARM_RESOURCE, DPS_RESOURCE
    from authn.tokens import token_for_user
    from enrollments import services
    from enrollments.clients import dps_client_for
    from enrollments.dps.types import (
        AttestationMechanism,
        EnrollmentGroup,
        IndividualEnrollment,
    )
    from instances.models import DpsInstance

    secrets: set[str] = {DANA[1], ADA[1], WRONG_PASSWORD, settings.ENTRA_CLIENT_SECRET}
    secrets |= {PRIMARY, SECONDARY, GROUP_PRIMARY, GROUP_SECONDARY}
    for dps in endpoints["dps"]:
        cs = dict(p.split("=", 1) for p in dps["connection_string"].split(";") if "=" in p)
        secrets.add(cs["SharedAccessKey"])
    instance = DpsInstance.objects.get(name=INSTANCE)

    # 1. A failed sign-in, then Dana signs in (short access tokens: refreshes happen).
    entra_control.lifetimes(access_token=60)
    failed = _new_client(entra_signin)
    auth_uri = failed.start()
    assert failed.submit_credentials(auth_uri, DANA[0], WRONG_PASSWORD).status_code == 200
    # The user gives up: Entra sends error=access_denied back to the portal.
    state = parse_qs(urlsplit(auth_uri).query)["state"][0]
    query = urlencode({"error": "access_denied", "error_description": "gave up", "state": state})
    assert failed.client.get(f"/auth/callback?{query}").status_code == 400
    assert entra_signin(*DANA).status_code == 302
    secrets.add(entra_signin.client.cookies["sessionid"].value)
    dana = AuditEvent.objects.get(action=AuditAction.SIGNIN).actor

    # 2. Enrollment and group writes, reveals and a derived device key, with Dana's tokens.
    client = dps_client_for(dana, instance)
    rid, gid = f"audit-scan-{uuid.uuid4().hex[:8]}", f"audit-grp-{uuid.uuid4().hex[:8]}"
    created = services.enrollment_create(
        actor=dana,
        instance=instance,
        client=client,
        enrollment=IndividualEnrollment(
            registration_id=rid,
            attestation=AttestationMechanism.for_symmetric_key(PRIMARY, SECONDARY),
        ),
    )
    services.attestation_reveal(
        actor=dana, instance=instance, client=client, target_type="enrollment", target_id=rid
    )
    current = client.enrollment_get(rid)
    services.enrollment_delete(
        actor=dana,
        instance=instance,
        client=client,
        registration_id=rid,
        etag=current.etag,
        before=created,
    )
    group = services.group_create(
        actor=dana,
        instance=instance,
        client=client,
        group=EnrollmentGroup(
            enrollment_group_id=gid,
            attestation=AttestationMechanism.for_symmetric_key(GROUP_PRIMARY, GROUP_SECONDARY),
        ),
    )
    keys = services.device_key_compute(
        actor=dana, instance=instance, client=client, group_id=gid, registration_id="dev-77"
    )
    secrets |= {k for k in (keys.primary, keys.secondary) if k}
    services.group_delete(
        actor=dana,
        instance=instance,
        client=client,
        group_id=gid,
        etag=client.group_get(gid).etag,
        before=group,
    )
    secrets.add(token_for_user(dana, DPS_RESOURCE))
    secrets.add(token_for_user(dana, ARM_RESOURCE))

    # 3. Refused: Dana on the audit log.
    assert entra_signin.client.get("/audit/").status_code == 403

    # 4. Ada: toggles an instance, exports the log, signs out.
    ada_flow = _new_client(entra_signin)
    assert ada_flow(*ADA).status_code == 302
    secrets.add(ada_flow.client.cookies["sessionid"].value)
    assert ada_flow.client.post(f"/auth/instances/{INSTANCE}/toggle/").status_code == 302
    assert ada_flow.client.post(f"/auth/instances/{INSTANCE}/toggle/").status_code == 302
    export = ada_flow.client.get("/audit/export/jsonl/")
    exported = b"".join(export.streaming_content).decode()
    ada = AuditEvent.objects.filter(action=AuditAction.SIGNIN).latest("id").actor
    secrets |= _token_cache_secrets(ada)
    assert ada_flow.client.post("/auth/logout/").status_code == 302

    # 5. Dana's refresh token expires: the next page asks her to sign in again.
    secrets |= _token_cache_secrets(dana)
    assert entra_control.expire_refresh_tokens(DANA[0]) >= 1
    cache.clear()
    assert entra_signin.client.get(f"/?instance={INSTANCE}").status_code == 401

    kinds = set(AuditEvent.objects.values_list("action", "outcome"))
    expected = {
        (AuditAction.SIGNIN_FAILED, AuditOutcome.FAILED),
        (AuditAction.SIGNIN, AuditOutcome.SUCCESS),
        (AuditAction.ENROLLMENT_CREATE, AuditOutcome.SUCCESS),
        (AuditAction.ATTESTATION_REVEAL, AuditOutcome.SUCCESS),
        (AuditAction.ENROLLMENT_DELETE, AuditOutcome.SUCCESS),
        (AuditAction.ENROLLMENTGROUP_CREATE, AuditOutcome.SUCCESS),
        (AuditAction.ENROLLMENTGROUP_DELETE, AuditOutcome.SUCCESS),
        (AuditAction.DENIED, AuditOutcome.DENIED),
        (AuditAction.INSTANCE_CREATE, AuditOutcome.SUCCESS),
        (AuditAction.INSTANCE_UPDATE, AuditOutcome.SUCCESS),
        (AuditAction.EXPORT, AuditOutcome.SUCCESS),
        (AuditAction.SIGNOUT, AuditOutcome.SUCCESS),
        (AuditAction.REAUTH, AuditOutcome.FAILED),
    }
    assert expected <= kinds, expected - kinds

    # Targets and instances are where the pages look for them.
    create = AuditEvent.objects.get(action=AuditAction.ENROLLMENT_CREATE)
    assert (create.dps_instance, create.target_type, create.target_id, create.actor_upn) == (
        INSTANCE,
        "enrollment",
        rid,
        DANA[0],
    )
    assert create.after["registrationId"] == rid
    assert (
        AuditEvent.objects.filter(
            action=AuditAction.INSTANCE_UPDATE, target_id=INSTANCE, actor_upn=ADA[0]
        ).count()
        == 2
    )
    reveals = AuditEvent.objects.filter(action=AuditAction.ATTESTATION_REVEAL)
    assert {e.target_id for e in reveals} >= {rid, gid}

    # The scan: no secret in any stored field, nor in the export.
    secrets = {s for s in secrets if s and len(s) >= 8}
    assert len(secrets) >= 12
    stored = _everything_stored()
    leaked = [s[:6] + "…" for s in secrets if s in stored or s in exported]
    assert leaked == []
    call_command("audit_verify")
