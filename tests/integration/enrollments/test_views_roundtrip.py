"""Round trips through the pages for every attestation and every field.

create → detail shows it → edit one field → every other field (keys included) unchanged →
delete, signed in as Dana (Data Contributor) through the emulators.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client

from enrollments.dps.exceptions import DpsNotFound
from enrollments.keys import generate_symmetric_key
from enrollments.validation import parse_certificate
from tests.support.certs import self_signed_pem

from .conftest import ENDORSEMENT_KEY, INSTANCE, unique

pytestmark = pytest.mark.django_db
BASE = f"/dps/{INSTANCE}"
HUB = "hub-fleet-weu.azure-devices.net"
VOLATILE = {"etag", "lastUpdatedDateTimeUtc", "registrationState"}


def _common(allocation: str) -> dict[str, str]:
    data = {
        "iot_hubs": HUB,
        "allocation_policy": allocation,
        "reprovision_policy": "reset",
        "twin_tags": json.dumps({"site": "ams", "floor": 3}),
        "twin_desired": json.dumps({"interval": 30, "mode": {"eco": True}}),
        "iot_edge": "on",
        "provisioning_status": "disabled",
    }
    if allocation == "custom":
        data.update(
            webhook_url="https://alloc.example.net/api/pick?code=abc",
            webhook_api_version="2021-10-01",
        )
    return data


def _attestation(case: str, key: str, group: bool) -> tuple[dict[str, str], dict[str, Any]]:
    """Return form fields for the attestation case and what to check afterwards."""
    if case == "tpm":
        return {
            "attestation_type": "tpm",
            "tpm_endorsement_key": ENDORSEMENT_KEY,
            "tpm_storage_root_key": ENDORSEMENT_KEY,
        }, {}
    if case == "x509-certs":
        pem1, pem2 = self_signed_pem(key, ca=group), self_signed_pem(key + "-2", ca=group)
        return (
            {
                "attestation_type": "x509",
                "x509_kind": "certificates",
                "x509_primary": pem1,
                "x509_secondary": pem2,
            },
            {"pems": (pem1, pem2), "thumbprint": parse_certificate(pem1).sha1_thumbprint},
        )
    if case == "x509-ca":
        return {
            "attestation_type": "x509",
            "x509_kind": "ca_references",
            "ca_primary": "fleet-root-ca",
            "ca_secondary": "fleet-root-ca-2",
        }, {}
    if case == "sym-given":
        k1, k2 = generate_symmetric_key(), generate_symmetric_key(32)
        return {
            "attestation_type": "symmetricKey",
            "key_mode": "given",
            "primary_key": k1,
            "secondary_key": k2,
        }, {"keys": (k1, k2)}
    return {"attestation_type": "symmetricKey", "key_mode": "generate"}, {}


def _edit_post_data(client: Client, url: str) -> dict[str, str]:
    """Return what the edit form would post unchanged (checkboxes only when ticked)."""
    form = client.get(url).context["form"]
    data: dict[str, str] = {}
    for name, bound in form.initial.items():
        if isinstance(bound, bool):
            if bound:
                data[name] = "on"
        elif bound is not None:
            data[name] = str(bound)
    return data


def _stable(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k not in VOLATILE}


INDIVIDUAL_CASES = [
    ("tpm", "hashed"),
    ("x509-certs", "custom"),
    ("x509-ca", "geoLatency"),
    ("sym-given", "static"),
    ("sym-generated", "custom"),
]


@pytest.mark.parametrize(("case", "allocation"), INDIVIDUAL_CASES)
def test_individual_enrollment_round_trip(
    signed_in: Any, owner_client: Any, case: str, allocation: str
) -> None:
    """Every field survives create → detail → edit of one field → delete."""
    dana = signed_in("dana")
    rid = unique(f"rt-{case}")
    att, expect = _attestation(case, rid, group=False)
    data = {
        "registration_id": rid,
        "device_id": f"dev-{rid}",
        "optional_device_information": json.dumps({"model": "X1", "firmware": "1.2"}),
        **att,
        **_common(allocation),
    }
    created = dana.post(f"{BASE}/enrollments/new/", data)
    assert created.status_code == 302, created.context and created.context["form"].errors
    detail = dana.get(f"{BASE}/enrollments/{rid}/")
    html = detail.content.decode()
    model = detail.context["model"]
    assert model.device_id == f"dev-{rid}"
    assert model.iot_hubs == [HUB]
    assert HUB in html
    assert model.allocation_policy == allocation
    assert model.reprovision_policy.update_hub_assignment is True
    assert model.reprovision_policy.migrate_device_data is False
    assert model.initial_twin.tags == {"site": "ams", "floor": 3}
    assert "&quot;site&quot;" in html
    assert model.initial_twin.desired == {"interval": 30, "mode": {"eco": True}}
    assert model.capabilities.iot_edge is True
    assert model.provisioning_status == "disabled"
    assert model.optional_device_information == {"model": "X1", "firmware": "1.2"}
    assert detail.context["state"].status == "unassigned"
    if allocation == "custom":
        assert "https://alloc.example.net/api/pick?code=abc" in html
    if "thumbprint" in expect:
        assert expect["thumbprint"] in html  # parsed certificate shown
    if case.startswith("sym") or case == "tpm":
        assert 'data-testid="masked-key"' in html
    before = owner_client.enrollment_get(rid)
    secrets_before = owner_client.enrollment_attestation_mechanism(rid).to_json()
    if "keys" in expect:
        sym = secrets_before["symmetricKey"]
        assert (sym["primaryKey"], sym["secondaryKey"]) == expect["keys"]

    edit_url = f"{BASE}/enrollments/{rid}/edit/"
    post = _edit_post_data(dana, edit_url)
    post["device_id"] = "renamed-device"
    if "pems" in expect:
        post.update(x509_primary=expect["pems"][0], x509_secondary=expect["pems"][1])
        post.pop("attestation_keep", None)
        post.setdefault("x509_kind", "certificates")
    saved = dana.post(edit_url, post)
    assert saved.status_code == 302, saved.context and saved.context["form"].errors
    after = owner_client.enrollment_get(rid)
    assert after.device_id == "renamed-device"
    expected = _stable(before.to_json())
    expected["deviceId"] = "renamed-device"
    assert _stable(after.to_json()) == expected
    assert owner_client.enrollment_attestation_mechanism(rid).to_json() == secrets_before

    confirm = dana.get(f"{BASE}/enrollments/{rid}/delete/")
    gone = dana.post(f"{BASE}/enrollments/{rid}/delete/", {"etag": confirm.context["etag"]})
    assert gone.status_code == 302
    with pytest.raises(DpsNotFound):
        owner_client.enrollment_get(rid)


GROUP_CASES = [
    ("x509-certs", "hashed"),
    ("x509-ca", "custom"),
    ("sym-given", "geoLatency"),
    ("sym-generated", "static"),
]


@pytest.mark.parametrize(("case", "allocation"), GROUP_CASES)
def test_enrollment_group_round_trip(
    signed_in: Any, owner_client: Any, case: str, allocation: str
) -> None:
    """Every group field survives create → detail → edit of one field → delete."""
    dana = signed_in("dana")
    gid = unique(f"grt-{case}")
    att, expect = _attestation(case, gid, group=True)
    created = dana.post(
        f"{BASE}/groups/new/", {"enrollment_group_id": gid, **att, **_common(allocation)}
    )
    assert created.status_code == 302, created.context and created.context["form"].errors
    detail = dana.get(f"{BASE}/groups/{gid}/")
    model = detail.context["model"]
    assert model.iot_hubs == [HUB]
    assert model.allocation_policy == allocation
    assert model.initial_twin.tags == {"site": "ams", "floor": 3}
    assert model.capabilities.iot_edge is True
    assert model.provisioning_status == "disabled"
    if "thumbprint" in expect:
        assert expect["thumbprint"] in detail.content.decode()
    before = owner_client.group_get(gid)
    secrets_before = owner_client.group_attestation_mechanism(gid).to_json()

    edit_url = f"{BASE}/groups/{gid}/edit/"
    post = _edit_post_data(dana, edit_url)
    post["twin_tags"] = json.dumps({"site": "rtm"})
    if "pems" in expect:
        post.update(x509_primary=expect["pems"][0], x509_secondary=expect["pems"][1])
        post.pop("attestation_keep", None)
    saved = dana.post(edit_url, post)
    assert saved.status_code == 302, saved.context and saved.context["form"].errors
    after = owner_client.group_get(gid)
    expected = _stable(before.to_json())
    expected["initialTwin"]["tags"] = {"site": "rtm"}
    assert _stable(after.to_json()) == expected
    assert owner_client.group_attestation_mechanism(gid).to_json() == secrets_before

    confirm = dana.get(f"{BASE}/groups/{gid}/delete/")
    assert (
        dana.post(f"{BASE}/groups/{gid}/delete/", {"etag": confirm.context["etag"]}).status_code
        == 302
    )
    with pytest.raises(DpsNotFound):
        owner_client.group_get(gid)


def test_x509_edit_without_certificate_is_refused_before_sending(
    signed_in: Any, owner_client: Any
) -> None:
    """DPS never returns certificates: an edit that keeps them asks for them again."""
    dana = signed_in("dana")
    rid = unique("x509-keep")
    att, _ = _attestation("x509-certs", rid, group=False)
    dana.post(
        f"{BASE}/enrollments/new/",
        {"registration_id": rid, **att, "provisioning_status": "enabled"},
    )
    edit_url = f"{BASE}/enrollments/{rid}/edit/"
    page = dana.get(edit_url)
    assert b'data-testid="certificate-note"' in page.content
    post = _edit_post_data(dana, edit_url)
    post["attestation_keep"] = "on"
    before = owner_client.enrollment_get(rid).etag
    response = dana.post(edit_url, post)
    assert response.status_code == 400
    assert "paste the current certificate" in response.context["form"].errors["x509_primary"][0]
    assert owner_client.enrollment_get(rid).etag == before
