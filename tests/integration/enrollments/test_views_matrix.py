"""The view matrix: every enrollment page x {Dana, Reggie, Kim, Nora, anonymous}.

Each persona signs in through the Entra emulator; capabilities come from the ARM emulator's
role assignments and every DPS call carries the persona's OBO token. For each cell: the status
code, the audit event written, and which controls the page renders.
"""

from __future__ import annotations

from typing import Any

import pytest
import requests

from audit.models import AuditAction, AuditEvent, AuditOutcome
from enrollments.dps.auth import parse_connection_string
from enrollments.dps.client import DpsClient
from enrollments.dps.types import AttestationMechanism, EnrollmentGroup, IndividualEnrollment

from .conftest import INSTANCE, unique

pytestmark = pytest.mark.django_db
BASE = f"/dps/{INSTANCE}"

CAPS = {
    "dana": {
        "enrollments.read",
        "enrollments.write",
        "enrollments.delete",
        "enrollmentgroups.read",
        "enrollmentgroups.write",
        "enrollmentgroups.delete",
        "registrations.read",
        "registrations.delete",
        "attestation.reveal",
    },
    "reggie": {"enrollments.read", "enrollmentgroups.read", "registrations.read"},
    "kim": {
        "enrollments.read",
        "enrollmentgroups.read",
        "registrations.read",
        "attestation.reveal",
    },
    "nora": set(),
}
PERSONAS = ["dana", "reggie", "kim", "nora", "anonymous"]


@pytest.fixture(scope="module")
def records(endpoints: dict[str, Any]) -> dict[str, str]:
    """One symmetric-key enrollment, one group and a registration of it, for all cells."""
    entry = next(d for d in endpoints["dps"] if d["name"] == INSTANCE)
    cs = parse_connection_string(entry["connection_string"])
    client = DpsClient(cs.host, cs.token_provider(), ca_bundle=endpoints["ca_cert"])
    rid, gid, dev = unique("mx"), unique("mxg"), unique("mxdev")
    client.enrollment_put(
        IndividualEnrollment(
            registration_id=rid, attestation=AttestationMechanism.for_symmetric_key()
        )
    )
    client.group_put(
        EnrollmentGroup(
            enrollment_group_id=gid, attestation=AttestationMechanism.for_symmetric_key()
        )
    )
    session = requests.Session()
    session.trust_env = False
    response = session.post(
        f"https://{entry['host']}/_emulator/registrations",
        json={"registrationId": dev, "enrollmentGroupId": gid},
        verify=endpoints["ca_cert"],
    )
    assert response.status_code < 300, response.text
    return {"rid": rid, "gid": gid, "dev": dev}


# (name, method, url template, capability, data, status when allowed)
VIEWS = [
    ("enrollment_list", "get", "/enrollments/", "enrollments.read", None, 200),
    ("enrollment_detail", "get", "/enrollments/{rid}/", "enrollments.read", None, 200),
    ("enrollment_create_form", "get", "/enrollments/new/", "enrollments.write", None, 200),
    (
        "enrollment_create_post",
        "post",
        "/enrollments/new/",
        "enrollments.write",
        {"registration_id": "bad id!"},
        400,
    ),
    ("enrollment_edit", "get", "/enrollments/{rid}/edit/", "enrollments.write", None, 200),
    (
        "enrollment_delete_confirm",
        "get",
        "/enrollments/{rid}/delete/",
        "enrollments.delete",
        None,
        200,
    ),
    (
        "enrollment_delete_post",
        "post",
        "/enrollments/{rid}/delete/",
        "enrollments.delete",
        {"etag": "stale"},
        409,
    ),
    (
        "enrollment_status",
        "post",
        "/enrollments/{rid}/status/",
        "enrollments.write",
        {"status": "disabled", "etag": "stale"},
        302,
    ),
    ("enrollment_reveal", "post", "/enrollments/{rid}/reveal/", "attestation.reveal", None, 200),
    ("group_list", "get", "/groups/", "enrollmentgroups.read", None, 200),
    ("group_detail", "get", "/groups/{gid}/", "enrollmentgroups.read", None, 200),
    ("group_create_form", "get", "/groups/new/", "enrollmentgroups.write", None, 200),
    ("group_edit", "get", "/groups/{gid}/edit/", "enrollmentgroups.write", None, 200),
    ("group_delete_confirm", "get", "/groups/{gid}/delete/", "enrollmentgroups.delete", None, 200),
    (
        "group_status",
        "post",
        "/groups/{gid}/status/",
        "enrollmentgroups.write",
        {"status": "disabled", "etag": "stale"},
        302,
    ),
    ("group_reveal", "post", "/groups/{gid}/reveal/", "attestation.reveal", None, 200),
    (
        "group_device_key",
        "post",
        "/groups/{gid}/device-key/",
        "attestation.reveal",
        {"registration_id": "dev-1"},
        200,
    ),
    ("registration_list", "get", "/groups/{gid}/registrations/", "registrations.read", None, 200),
    ("registration_detail", "get", "/registrations/{dev}/", "registrations.read", None, 200),
    (
        "registration_delete_confirm",
        "get",
        "/registrations/{dev}/delete/",
        "registrations.delete",
        None,
        200,
    ),
    (
        "registration_delete_selected",
        "post",
        "/groups/{gid}/registrations/delete/",
        "registrations.delete",
        {},
        302,
    ),
]


@pytest.mark.parametrize("persona", PERSONAS)
@pytest.mark.parametrize(
    ("name", "method", "url", "cap", "data", "ok"), VIEWS, ids=[v[0] for v in VIEWS]
)
def test_view_matrix(
    signed_in: Any,
    records: dict[str, str],
    persona: str,
    name: str,
    method: str,
    url: str,
    cap: str,
    data: Any,
    ok: int,
) -> None:
    """Anonymous → sign-in; missing capability → 403 + denied event; else the view answers."""
    client = signed_in(persona)
    path = BASE + url.format(**records)
    # Audit rows are append-only (a PostgreSQL trigger refuses DELETE): look only at new ones.
    last = AuditEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0
    response = getattr(client, method)(path, data or {})
    new = AuditEvent.objects.filter(id__gt=last)
    if persona == "anonymous":
        assert response.status_code == 302
        assert response["Location"].startswith("/auth/login/")
        assert not new.exists()
        return
    if cap not in CAPS[persona]:
        assert response.status_code == 403, response.content[:300]
        assert b'data-testid="forbidden"' in response.content
        event = new.get()
        assert (event.action, event.outcome) == (AuditAction.DENIED, AuditOutcome.DENIED)
        assert event.target_id == path
        assert event.dps_instance == INSTANCE
        assert cap in event.message
        return
    assert response.status_code == ok, response.content[:500]
    assert not new.filter(action=AuditAction.DENIED).exists()
    if cap == "attestation.reveal":
        event = new.get(action=AuditAction.ATTESTATION_REVEAL)
        assert event.outcome == AuditOutcome.SUCCESS
        assert event.actor.username


CONTROLS = {
    # page: {testid: capability that makes it appear}
    "/enrollments/": {"create-button": "enrollments.write"},
    "/enrollments/{rid}/": {
        "edit-button": "enrollments.write",
        "delete-button": "enrollments.delete",
        "reveal-button": "attestation.reveal",
        "toggle-{rid}": "enrollments.write",
    },
    "/groups/": {"create-button": "enrollmentgroups.write"},
    "/groups/{gid}/": {
        "edit-button": "enrollmentgroups.write",
        "delete-button": "enrollmentgroups.delete",
        "reveal-button": "attestation.reveal",
        "device-key-card": "attestation.reveal",
        "registrations-link": "registrations.read",
        "toggle-{gid}": "enrollmentgroups.write",
    },
    "/groups/{gid}/registrations/": {
        "delete-selected": "registrations.delete",
        "select-{dev}": "registrations.delete",
    },
    "/registrations/{dev}/": {"delete-button": "registrations.delete"},
}


@pytest.mark.parametrize("persona", ["dana", "reggie", "kim"])
@pytest.mark.parametrize("page", list(CONTROLS))
def test_controls_render_only_with_the_capability(
    signed_in: Any, records: dict[str, str], persona: str, page: str
) -> None:
    """A control is on the page exactly when the persona's role allows its action."""
    client = signed_in(persona)
    response = client.get(BASE + page.format(**records), {"size": 100})
    assert response.status_code == 200
    html = response.content.decode()
    for testid, cap in CONTROLS[page].items():
        present = f'data-testid="{testid.format(**records)}"' in html
        assert present is (cap in CAPS[persona]), (testid, persona)
