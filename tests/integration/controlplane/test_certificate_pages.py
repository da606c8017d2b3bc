"""The Certificates page through the emulators: the whole flow, bad input, the role matrix.

Every persona signs in through the Entra emulator; capabilities come from the ARM emulator's
role assignments (``actions`` for the control plane) and each ARM call carries the user's token.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from audit.models import AuditAction, AuditEvent, AuditOutcome
from authn.arm import ArmClient, ArmUnavailable
from controlplane.selectors import (
    expiring_ca_certificates,
    linked_hubs,
    verified_ca_certificates,
)
from enrollments.dps.auth import parse_connection_string
from enrollments.dps.client import DpsClient
from enrollments.dps.types import AttestationMechanism, EnrollmentGroup
from instances.models import DpsInstance
from tests.integration.controlplane.conftest import BASE, INSTANCE, unique
from tests.support import certs

pytestmark = pytest.mark.django_db
CERTS = f"{BASE}/certificates/"


def upload(client: Client, name: str, data: bytes, *, verified: bool = False) -> Any:
    form: dict[str, Any] = {"name": name, "file": SimpleUploadedFile("ca.pem", data)}
    if verified:
        form["verified"] = "on"
    return client.post(f"{CERTS}upload/", form)


def row_etag(client: Client, name: str) -> str:
    from controlplane.selectors import certificate_get

    user = get_user_model().objects.get(pk=client.session["_auth_user_id"])
    return certificate_get(user, DpsInstance.objects.get(name=INSTANCE), name).etag


def events(name: str, action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(target_id=name, action=action).order_by("id"))


def user_of(client: Client) -> Any:
    return get_user_model().objects.get(pk=client.session["_auth_user_id"])


def dps_owner(endpoints: dict[str, Any]) -> DpsClient:
    entry = next(d for d in endpoints["dps"] if d["name"] == INSTANCE)
    cs = parse_connection_string(entry["connection_string"])
    return DpsClient(cs.host, cs.token_provider(), ca_bundle=endpoints["ca_cert"], timeout=10)


def test_whole_flow_upload_code_sign_verify_delete(
    persona: Callable[[str], Client], endpoints: dict[str, Any]
) -> None:
    carl = persona("carl")
    ca, name = certs.ca("Portal Flow Root CA"), unique("flow")
    r = upload(carl, name, certs.pem(ca.cert).encode())
    assert r.status_code == 302, r.content[:800]
    page = carl.get(CERTS).content.decode()
    assert f'data-testid="certificate-row-{name}"' in page
    assert f'data-testid="unverified-{name}"' in page
    assert "CN=Portal Flow Root CA" in page

    r = carl.post(f"{CERTS}{name}/code/", {"etag": row_etag(carl, name)})
    assert r.status_code == 302
    page = carl.get(CERTS).content.decode()
    code = carl.session[f"controlplane:code:{INSTANCE}:{name}"]
    assert len(code) >= 16
    assert f'data-testid="verification-code-{name}">{code}<' in page
    assert f'-subj "/CN={code}"' in page

    proof = certs.verification(ca, code)
    r = carl.post(
        f"{CERTS}{name}/verify/",
        {
            "etag": row_etag(carl, name),
            "file": SimpleUploadedFile("v.pem", certs.pem(proof.cert).encode()),
        },
    )
    assert r.status_code == 302
    page = carl.get(CERTS).content.decode()
    assert f'data-testid="verified-{name}"' in page
    assert f"Certificate {name} is verified." in page

    choices = verified_ca_certificates(user_of(carl), DpsInstance.objects.get(name=INSTANCE))
    assert name in [c.name for c in choices.items]

    # An X.509 group referencing the verified CA, created through the DPS service API.
    gid = unique("cagroup")
    dps_owner(endpoints).group_put(
        EnrollmentGroup(
            enrollment_group_id=gid,
            attestation=AttestationMechanism.for_x509_ca_references(name),
        )
    )
    group_page = carl.get(f"{BASE}/groups/{gid}/")
    assert group_page.status_code == 200
    assert name in group_page.content.decode()

    r = carl.post(f"{CERTS}{name}/delete/", {"etag": row_etag(carl, name)})
    assert r.status_code == 302
    assert f"certificate-row-{name}" not in carl.get(CERTS).content.decode()
    for action in ("certificate_upload", "certificate_code", "certificate_verify"):
        (event,) = events(name, action)
        assert event.outcome == AuditOutcome.SUCCESS
        assert event.dps_instance == INSTANCE
        assert event.actor_upn.startswith("carl.certadmin")
    (deleted,) = events(name, "certificate_delete")
    assert deleted.outcome == AuditOutcome.SUCCESS
    assert "BEGIN CERTIFICATE" not in str(events(name, "certificate_upload")[0].after)


def test_cer_upload_verified_on_upload(persona: Callable[[str], Client]) -> None:
    carl = persona("carl")
    ca, name = certs.ca("CER Root CA"), unique("cer")
    r = carl.post(
        f"{CERTS}upload/",
        {"name": name, "file": SimpleUploadedFile("ca.cer", certs.der(ca.cert)), "verified": "on"},
    )
    assert r.status_code == 302
    assert f'data-testid="verified-{name}"' in carl.get(CERTS).content.decode()


@pytest.mark.parametrize(
    ("label", "make", "message"),
    [
        ("leaf", lambda: certs.certificate("device-001"), "is not a CA certificate"),
        ("expired", lambda: certs.ca("Old CA", expired=True), "expired on"),
        ("garbage", None, "not an X.509 certificate"),
    ],
)
def test_bad_uploads_refused_with_a_message(
    persona: Callable[[str], Client], label: str, make: Any, message: str
) -> None:
    carl = persona("carl")
    name = unique(label)
    data = certs.pem(make().cert).encode() if make else b"-----BEGIN CERTIFICATE-----\nnope\n"
    r = upload(carl, name, data)
    assert r.status_code == 400
    assert message in r.content.decode()
    assert f"certificate-row-{name}" not in carl.get(CERTS).content.decode()
    (event,) = events(name, "certificate_upload")
    assert event.outcome == AuditOutcome.FAILED


@pytest.mark.parametrize("wrong", ["code", "key"])
def test_wrong_proof_refused_nothing_changed(persona: Callable[[str], Client], wrong: str) -> None:
    carl = persona("carl")
    ca, name = certs.ca("Proof CA"), unique("proof")
    assert upload(carl, name, certs.pem(ca.cert).encode()).status_code == 302
    carl.post(f"{CERTS}{name}/code/", {"etag": row_etag(carl, name)})
    code = carl.session[f"controlplane:code:{INSTANCE}:{name}"]
    proof = (
        certs.verification(ca, "F" * 48)
        if wrong == "code"
        else certs.verification(certs.ca("Impostor CA"), code)
    )
    etag = row_etag(carl, name)
    r = carl.post(
        f"{CERTS}{name}/verify/",
        {"etag": etag, "file": SimpleUploadedFile("v.pem", certs.pem(proof.cert).encode())},
        follow=True,
    )
    page = r.content.decode()
    assert f"Certificate {name} was not verified." in page
    expected = "not the verification code" if wrong == "code" else "not signed by the private key"
    assert expected in page
    assert f'data-testid="unverified-{name}"' in page
    assert row_etag(carl, name) == etag
    (event,) = events(name, "certificate_verify")
    assert event.outcome == AuditOutcome.FAILED


def test_stale_etag_on_delete_changes_nothing(persona: Callable[[str], Client]) -> None:
    carl = persona("carl")
    name = unique("stale")
    assert upload(carl, name, certs.pem(certs.ca("Stale CA").cert).encode()).status_code == 302
    stale = row_etag(carl, name)
    carl.post(f"{CERTS}{name}/code/", {"etag": stale})  # changes the ETag
    r = carl.post(f"{CERTS}{name}/delete/", {"etag": stale}, follow=True)
    page = r.content.decode()
    assert f"Certificate {name} was not deleted." in page
    assert "changed by someone else" in page
    assert f'data-testid="certificate-row-{name}"' in page
    (event,) = events(name, "certificate_delete")
    assert event.outcome == AuditOutcome.FAILED
    assert event.dps_status == 412


ACTIONS = [
    ("upload", "post", "upload/", {"name": "x"}),
    ("code", "post", "x/code/", {"etag": "*"}),
    ("verify", "post", "x/verify/", {"etag": "*"}),
    ("delete", "post", "x/delete/", {"etag": "*"}),
]


def test_data_plane_only_user_sees_nothing_and_is_refused(
    persona: Callable[[str], Client],
) -> None:
    dana = persona("dana")
    before = AuditEvent.objects.filter(action=AuditAction.DENIED).count()
    r = dana.get(CERTS)
    assert r.status_code == 403
    assert "certificates/read" in r.content.decode()
    for _label, method, path, data in ACTIONS:
        assert getattr(dana, method)(f"{CERTS}{path}", data).status_code == 403
    assert dana.get(f"{BASE}/hubs/").status_code == 403
    denied = AuditEvent.objects.filter(action=AuditAction.DENIED).order_by("id")[before:]
    assert len(denied) == 6
    assert {e.outcome for e in denied} == {AuditOutcome.DENIED}
    assert all(e.actor_upn.startswith("dana.") for e in denied)
    choices = verified_ca_certificates(user_of(dana), DpsInstance.objects.get(name=INSTANCE))
    assert not choices.available
    assert "certificates/read" in choices.reason


def test_certificate_reader_sees_the_list_only(persona: Callable[[str], Client]) -> None:
    carl, cora = persona("carl"), persona("cora")
    name = unique("ro")
    assert upload(carl, name, certs.pem(certs.ca("Read Only CA").cert).encode()).status_code == 302
    r = cora.get(CERTS)
    assert r.status_code == 200
    page = r.content.decode()
    assert f'data-testid="certificate-row-{name}"' in page
    for hidden in ("upload-form", f"delete-{name}", f"generate-code-{name}", "tab-hubs"):
        assert f'data-testid="{hidden}"' not in page
    before = AuditEvent.objects.filter(action=AuditAction.DENIED).count()
    for _label, method, path, data in ACTIONS:
        path = path.replace("x", name, 1) if path.startswith("x") else path
        assert getattr(cora, method)(f"{CERTS}{path}", data).status_code == 403
    assert AuditEvent.objects.filter(action=AuditAction.DENIED).count() == before + 4
    assert f'data-testid="certificate-row-{name}"' in carl.get(CERTS).content.decode()
    hubs = linked_hubs(user_of(cora), DpsInstance.objects.get(name=INSTANCE))
    assert not hubs.available
    assert "provisioningServices/read" in hubs.reason


def test_linked_hubs_page_and_selector(persona: Callable[[str], Client]) -> None:
    carl = persona("carl")
    r = carl.get(f"{BASE}/hubs/")
    assert r.status_code == 200
    page = r.content.decode()
    assert 'data-testid="hub-row-hub-fleet-weu.azure-devices.net"' in page
    assert 'data-testid="hub-row-hub-fleet-neu.azure-devices.net"' in page
    assert "SharedAccessKey" not in page
    assert "HostName=" not in page
    assert carl.post(f"{BASE}/hubs/").status_code == 302
    hubs = linked_hubs(user_of(carl), DpsInstance.objects.get(name=INSTANCE))
    weu = next(h for h in hubs.items if h.name == "hub-fleet-weu.azure-devices.net")
    assert (weu.location, weu.allocation_weight, weu.apply_allocation_policy) == (
        "westeurope",
        2,
        True,
    )
    assert not hasattr(weu, "connection_string")


def verified_through_portal(carl: Client, ca: certs.Issued, name: str) -> None:
    """Upload ``ca`` as ``name``, generate the code, sign it with the CA's key and verify."""
    assert upload(carl, name, certs.pem(ca.cert).encode()).status_code == 302
    carl.post(f"{CERTS}{name}/code/", {"etag": row_etag(carl, name)})
    code = carl.session[f"controlplane:code:{INSTANCE}:{name}"]
    proof = certs.pem(certs.verification(ca, code).cert).encode()
    r = carl.post(
        f"{CERTS}{name}/verify/",
        {"etag": row_etag(carl, name), "file": SimpleUploadedFile("v.pem", proof)},
    )
    assert r.status_code == 302


def register_x509(
    endpoints: dict[str, Any], device: certs.Issued, tmp_path: Path
) -> requests.Response:
    """Register like a device over HTTPS: its certificate in the TLS handshake, no SAS."""
    entry = next(d for d in endpoints["dps"] if d["name"] == INSTANCE)
    cert_file, key_file = tmp_path / "device.pem", tmp_path / "device.key"
    cert_file.write_text(certs.pem(device.cert))
    key_file.write_text(certs.key_pem(device.key))
    rid = device.cert.subject.rfc4514_string().removeprefix("CN=")
    session = requests.Session()
    session.trust_env = False
    base = f"https://{entry['host']}/{entry['id_scope']}/registrations/{rid}"
    kw: dict[str, Any] = {
        "cert": (str(cert_file), str(key_file)),
        "verify": endpoints["ca_cert"],
        "timeout": 10,
    }
    r = session.put(f"{base}/register?api-version=2021-06-01", json={"registrationId": rid}, **kw)
    if r.status_code != 202:
        return r
    operation = r.json()["operationId"]
    return session.get(f"{base}/operations/{operation}?api-version=2021-06-01", **kw)


def test_device_of_a_verified_ca_registers_in_the_group(
    persona: Callable[[str], Client], endpoints: dict[str, Any], tmp_path: Path
) -> None:
    carl = persona("carl")
    ca, name, gid = certs.ca("Fleet Device CA"), unique("devca"), unique("x509grp")
    verified_through_portal(carl, ca, name)
    dps_owner(endpoints).group_put(
        EnrollmentGroup(
            enrollment_group_id=gid,
            attestation=AttestationMechanism.for_x509_ca_references(name),
        )
    )
    rid = unique("device")
    r = register_x509(endpoints, certs.certificate(rid, issuer=ca), tmp_path)
    assert r.status_code == 200, r.text
    state = r.json()["registrationState"]
    assert state["status"] == "assigned"
    assert state["assignedHub"].endswith(".azure-devices.net")
    page = carl.get(f"{BASE}/groups/{gid}/registrations/").content.decode()
    assert rid in page


def test_device_of_an_unverified_or_foreign_ca_is_refused(
    persona: Callable[[str], Client], endpoints: dict[str, Any], tmp_path: Path
) -> None:
    carl = persona("carl")
    ca, name, gid = certs.ca("Unverified Device CA"), unique("uvca"), unique("x509grp")
    assert (
        upload(carl, name, certs.pem(ca.cert).encode()).status_code == 302
    )  # uploaded, not verified
    dps_owner(endpoints).group_put(
        EnrollmentGroup(
            enrollment_group_id=gid,
            attestation=AttestationMechanism.for_x509_ca_references(name),
        )
    )
    # TLS refuses a certificate whose issuer is not a verified CA (DPS itself would answer 401).
    with pytest.raises(requests.exceptions.ConnectionError):  # TLS 1.3: reset after the handshake
        register_x509(endpoints, certs.certificate(unique("device"), issuer=ca), tmp_path)
    # A device certificate whose CN is not the registration id is refused by the device API.
    trusted, trusted_name = certs.ca("Trusted Device CA"), unique("tca")
    verified_through_portal(carl, trusted, trusted_name)
    device = certs.certificate(unique("device"), issuer=trusted)
    entry = next(d for d in endpoints["dps"] if d["name"] == INSTANCE)
    (tmp_path / "d.pem").write_text(certs.pem(device.cert))
    (tmp_path / "d.key").write_text(certs.key_pem(device.key))
    session = requests.Session()
    session.trust_env = False
    r = session.put(
        f"https://{entry['host']}/{entry['id_scope']}/registrations/someone-else/register"
        "?api-version=2021-06-01",
        json={"registrationId": "someone-else"},
        cert=(str(tmp_path / "d.pem"), str(tmp_path / "d.key")),
        verify=endpoints["ca_cert"],
        timeout=10,
    )
    assert r.status_code == 401


def test_expiring_ca_certificates_are_flagged_and_listed(
    persona: Callable[[str], Client],
) -> None:
    carl = persona("carl")
    soon, later = unique("soon"), unique("later")
    assert (
        upload(carl, soon, certs.pem(certs.ca("Soon CA", days=10).cert).encode()).status_code == 302
    )
    assert (
        upload(carl, later, certs.pem(certs.ca("Later CA", days=400).cert).encode()).status_code
        == 302
    )
    page = carl.get(CERTS).content.decode()
    assert f'data-testid="expiring-{soon}"' in page
    assert f'data-testid="expiring-{later}"' not in page
    names = [
        c.name
        for c in expiring_ca_certificates(user_of(carl), DpsInstance.objects.get(name=INSTANCE))
    ]
    assert soon in names
    assert later not in names


def test_upload_under_a_taken_name_says_so(persona: Callable[[str], Client]) -> None:
    carl = persona("carl")
    name = unique("taken")
    assert upload(carl, name, certs.pem(certs.ca("First CA").cert).encode()).status_code == 302
    r = upload(carl, name, certs.pem(certs.ca("Second CA").cert).encode())
    assert r.status_code == 400
    assert f"A certificate named {name} already exists" in r.content.decode()
    assert "CN=First CA" in carl.get(CERTS).content.decode()


def test_arm_outage_is_said_on_the_page(
    persona: Callable[[str], Client], monkeypatch: pytest.MonkeyPatch
) -> None:
    carl = persona("carl")
    carl.get(CERTS)  # capabilities resolved while ARM answers

    def unreachable(*_args: Any, **_kw: Any) -> Any:
        raise ArmUnavailable("ARM could not be reached (ConnectTimeout).", status=None)

    monkeypatch.setattr(ArmClient, "certificates_list", unreachable)
    r = carl.get(CERTS)
    assert r.status_code == 200
    assert 'data-testid="certificates-error"' in r.content.decode()
    assert "could not be reached" in r.content.decode()
    choices = verified_ca_certificates(user_of(carl), DpsInstance.objects.get(name=INSTANCE))
    assert not choices.available
    assert "could not be reached" in choices.reason
