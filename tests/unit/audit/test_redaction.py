"""redact(): no secret survives on its way into an audit row."""

from __future__ import annotations

import pytest

from audit.redaction import OMITTED, REDACTED, is_sensitive_key, redact, redact_text

JWT = "eyJhbGciOiJSUzI1NiJ9.eyJvaWQiOiIxMjMifQ.c2lnbmF0dXJl"


def test_symmetric_key_attestation():
    enrollment = {
        "registrationId": "dev-1",
        "attestation": {
            "type": "symmetricKey",
            "symmetricKey": {"primaryKey": "cHJpbWFyeQ==", "secondaryKey": "c2Vjb25kYXJ5"},
        },
        "etag": "W/1",
    }
    out = redact(enrollment)
    assert out["attestation"]["symmetricKey"] == {"primaryKey": REDACTED, "secondaryKey": REDACTED}
    assert out["registrationId"] == "dev-1"
    assert out["etag"] == "W/1"
    assert enrollment["attestation"]["symmetricKey"]["primaryKey"] == "cHJpbWFyeQ=="  # copy


def test_tpm_material_is_redacted():
    out = redact({"attestation": {"tpm": {"endorsementKey": "AToAAQAL", "storageRootKey": "AQAB"}}})
    assert out["attestation"]["tpm"] == {"endorsementKey": REDACTED, "storageRootKey": REDACTED}


def test_x509_keeps_only_info():
    cert = {"certificate": "MIIB...", "info": {"subjectName": "CN=dev", "sha256Thumbprint": "AB"}}
    out = redact({"x509": {"signingCertificates": {"primary": cert, "secondary": None}}})
    primary = out["x509"]["signingCertificates"]["primary"]
    assert primary == {"certificate": OMITTED, "info": cert["info"]}
    assert out["x509"]["signingCertificates"]["secondary"] is None


@pytest.mark.parametrize(
    "key",
    [
        "password",
        "client_secret",
        "clientSecret",
        "access_token",
        "refresh_token",
        "id_token",
        "token",
        "assertion",
        "client_assertion",
        "sig",
        "key",
        "sharedAccessKey",
        "connectionString",
        "IOTHUB_CONNECTION_STRING",
        "Authorization",
        "continuationToken",
        "x-ms-continuation-token",
    ],
)
def test_sensitive_keys(key):
    assert is_sensitive_key(key)
    assert redact({key: "value"}) == {key: REDACTED}


@pytest.mark.parametrize(
    "key",
    [
        "keyName",
        "registrationId",
        "etag",
        "errorCode",
        "code",
        "status",
        "provisioningStatus",
        "iotHubHostName",
    ],
)
def test_ordinary_keys_are_kept(key):
    assert not is_sensitive_key(key)
    assert redact({key: "v"}) == {key: "v"}


def test_secrets_inside_free_text():
    text = (
        f"Authorization: Bearer {JWT} failed; cs=HostName=x.azure-devices-provisioning.net;"
        "SharedAccessKeyName=owner;SharedAccessKey=c2VjcmV0; "
        "sas=SharedAccessSignature sr=x&sig=abc%3D&se=1 id_token " + JWT
    )
    out = redact_text(text)
    assert JWT not in out
    assert "c2VjcmV0" not in out
    assert "abc%3D" not in out
    assert "SharedAccessKeyName=owner" in out  # names stay, values go
    assert redact([text])[0] == out


def test_nested_lists_and_non_strings():
    data = {"rows": [{"password": 1}, {"n": 2.5, "ok": True, "none": None}], "t": ("a",)}
    assert redact(data) == {
        "rows": [{"password": REDACTED}, {"n": 2.5, "ok": True, "none": None}],
        "t": ["a"],
    }


def test_empty_secret_values_stay_empty():
    """An empty value reveals nothing and shows that no key was set."""
    assert redact({"primaryKey": "", "secondaryKey": None}) == {
        "primaryKey": "",
        "secondaryKey": None,
    }
