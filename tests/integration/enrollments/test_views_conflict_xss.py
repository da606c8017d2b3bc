"""Stale ETags through the UI, and hostile text rendered inert."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from audit.models import AuditAction, AuditEvent, AuditOutcome
from enrollments.dps.types import InitialTwin

from .conftest import INSTANCE, unique
from .test_views_roundtrip import _edit_post_data

pytestmark = pytest.mark.django_db
BASE = f"/dps/{INSTANCE}"
HOSTILE = "<script>alert('x')</script>\"'><img src=x onerror=alert(1)>"


def test_two_sessions_edit_the_same_enrollment(
    signed_in: Any, seed: Any, owner_client: Any
) -> None:
    """The second save hits 412: conflict page, nothing overwritten; re-apply works on top."""
    created = seed.enrollment(device_id="original")
    rid = created.registration_id
    dana, ada = signed_in("dana"), signed_in("ada")
    url = f"{BASE}/enrollments/{rid}/edit/"
    dana_form, ada_form = _edit_post_data(dana, url), _edit_post_data(ada, url)

    dana_form["device_id"] = "dana-was-here"
    assert dana.post(url, dana_form).status_code == 302
    saved = owner_client.enrollment_get(rid)

    ada_form["twin_tags"] = json.dumps({"owner": "ada"})
    conflict = ada.post(url, ada_form)
    assert conflict.status_code == 409
    html = conflict.content.decode()
    assert 'data-testid="conflict-page"' in html
    rows = {r["path"]: r for r in conflict.context["rows"]}
    assert rows["deviceId"]["current"] == "dana-was-here"
    assert rows["deviceId"]["mine"] == "original"
    assert rows["deviceId"]["changed"]
    assert rows["initialTwin.tags.owner"]["changed"]
    assert owner_client.enrollment_get(rid).etag == saved.etag  # nothing overwritten
    assert owner_client.enrollment_get(rid).device_id == "dana-was-here"
    failed = AuditEvent.objects.get(
        action=AuditAction.ENROLLMENT_UPDATE, outcome=AuditOutcome.FAILED
    )
    assert failed.dps_status == 412

    # Re-apply: the hidden form carries Ada's values with the current etag.
    fields = re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', html)
    from html import unescape

    data: dict[str, list[str]] = {}
    for name, value in fields:
        data.setdefault(name, []).append(unescape(value))
    assert data["etag"] == [saved.etag]
    again = ada.post(url, {k: v if len(v) > 1 else v[0] for k, v in data.items()})
    assert again.status_code == 302
    final = owner_client.enrollment_get(rid)
    assert final.initial_twin.tags == {"owner": "ada"}
    assert final.device_id == "original"  # Ada's version wins only after she chose to re-apply


def test_stale_delete_asks_again(signed_in: Any, seed: Any, owner_client: Any) -> None:
    """A delete with an outdated etag deletes nothing and shows the current version."""
    created = seed.enrollment()
    rid = created.registration_id
    dana = signed_in("dana")
    old = dana.get(f"{BASE}/enrollments/{rid}/delete/").context["etag"]
    dana.post(f"{BASE}/enrollments/{rid}/status/", {"status": "disabled", "etag": old})
    response = dana.post(f"{BASE}/enrollments/{rid}/delete/", {"etag": old})
    assert response.status_code == 409
    assert b'data-testid="delete-stale"' in response.content
    assert owner_client.enrollment_get(rid).registration_id == rid


def test_hostile_fields_render_inert(signed_in: Any, seed: Any) -> None:
    """Device ids, tags, hub errors and DPS messages with markup are escaped everywhere."""
    rid = unique("xss")
    seed.enrollment(
        rid,
        device_id="dev-'x(1)",
        initial_twin=InitialTwin.of(tags={"note": HOSTILE}, desired={"q": HOSTILE}),
        optional_device_information={"label": HOSTILE},
    )
    dana = signed_in("dana")
    for url in (
        f"{BASE}/enrollments/{rid}/",
        f"{BASE}/enrollments/",
        f"{BASE}/enrollments/{rid}/edit/",
    ):
        html = dana.get(url, {"size": 100}).content.decode()
        assert "<script>alert" not in html, url
        assert "<img src=x" not in html, url
    detail = dana.get(f"{BASE}/enrollments/{rid}/").content.decode()
    assert "&lt;script&gt;alert(" in detail

    # A field error that echoes the input, and a DPS error message that echoes it back.
    bad = dana.post(
        f"{BASE}/enrollments/new/",
        {
            "registration_id": HOSTILE,
            "attestation_type": "symmetricKey",
            "provisioning_status": "enabled",
            "iot_hubs": "<script>x</script>.example.net",
        },
    )
    assert bad.status_code == 400
    assert "<script>" not in bad.content.decode()
    unknown_hub = dana.post(
        f"{BASE}/enrollments/new/",
        {
            "registration_id": unique("xss2"),
            "attestation_type": "symmetricKey",
            "provisioning_status": "enabled",
            "iot_hubs": "evil-hub.example.net",
            "twin_tags": json.dumps({"k": HOSTILE}),
        },
    )
    text = unknown_hub.content.decode()
    assert unknown_hub.status_code == 400
    assert "trackingId" in text
    assert "<script>alert" not in text


def test_hostile_group_id_in_url_is_escaped(signed_in: Any) -> None:
    """An id from the URL that DPS does not know is echoed escaped on the error page."""
    response = signed_in("dana").get(f"{BASE}/groups/%3Cscript%3Ealert(1)%3C%2Fscript%3E/")
    assert response.status_code in (400, 404)
    assert "<script>alert(1)" not in response.content.decode()
