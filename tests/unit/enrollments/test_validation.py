"""Good and bad inputs of every enrollment field validator, with the exact messages."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from django.core.exceptions import ValidationError

from enrollments import validation as v
from enrollments.dps.types import CustomAllocationDefinition, ReprovisionPolicy
from tests.support import certs

# (validator, input, expected output) for good inputs
GOOD: list[tuple[Callable[..., Any], Any, Any]] = [
    (
        v.validate_registration_id,
        "sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6",
        "sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6",
    ),
    (v.validate_registration_id, " dev_1.a:b ", "dev_1.a:b"),
    (v.validate_registration_id, "a", "a"),
    (v.validate_registration_id, "trailing-", "trailing-"),
    (v.validate_registration_id, "x" * 128, "x" * 128),
    (v.validate_group_id, "x509_enroll_grp_ead0363a", "x509_enroll_grp_ead0363a"),
    (v.validate_device_id, "dev(1)@site$a'b", "dev(1)@site$a'b"),
    (v.validate_device_id, "  ", None),
    (v.parse_twin_json, "", None),
    (
        v.parse_twin_json,
        '{"site": {"floor": 3}, "list": [1, {"a": 2}]}',
        {"site": {"floor": 3}, "list": [1, {"a": 2}]},
    ),
    (
        v.validate_endorsement_key,
        base64.b64encode(bytes(range(64))).decode(),
        base64.b64encode(bytes(range(64))).decode(),
    ),
    (v.validate_storage_root_key, "", None),
    (v.validate_symmetric_key, "", None),
    (
        v.validate_symmetric_key,
        base64.b64encode(b"k" * 16).decode(),
        base64.b64encode(b"k" * 16).decode(),
    ),
    (
        v.validate_symmetric_key,
        base64.b64encode(b"k" * 64).decode(),
        base64.b64encode(b"k" * 64).decode(),
    ),
    (
        v.validate_iot_hub_host_name,
        "Hub-Fleet-WEU.azure-devices.net",
        "hub-fleet-weu.azure-devices.net",
    ),
    (
        v.validate_webhook_url,
        "https://fn.azurewebsites.net/api/alloc?code=abc",
        "https://fn.azurewebsites.net/api/alloc?code=abc",
    ),
    (v.validate_api_version, "2019-03-31", "2019-03-31"),
    (v.validate_api_version, "2018-09-01-preview", "2018-09-01-preview"),
    (v.validate_api_version, "2021-10-01", "2021-10-01"),
    (
        v.validate_reprovision_policy,
        "reprovision_and_reset",
        ReprovisionPolicy(update_hub_assignment=True, migrate_device_data=False),
    ),
    (
        v.validate_reprovision_policy,
        "never",
        ReprovisionPolicy(update_hub_assignment=False, migrate_device_data=False),
    ),
    (v.validate_reprovision_policy, "", None),
    (v.validate_iot_edge, "Yes", True),
    (v.validate_iot_edge, "", False),
    (v.validate_iot_edge, True, True),
    (v.validate_provisioning_status, "Disabled", "disabled"),
    (v.validate_provisioning_status, "", "enabled"),
    (v.validate_attestation_type, "symmetrickey", "symmetricKey"),
    (v.validate_attestation_type, "TPM", "tpm"),
    (v.validate_service_api_version, "2021-10-01", "2021-10-01"),
    (v.validate_ca_reference, " my-root-ca ", "my-root-ca"),
]

# (validator, input, exact message)
BAD: list[tuple[Callable[..., Any], Any, str]] = [
    (v.validate_registration_id, "", "Enter a registration ID."),
    (v.validate_registration_id, None, "Enter a registration ID."),
    (
        v.validate_registration_id,
        "x" * 129,
        "A registration ID has at most 128 characters (this one has 129).",
    ),
    (
        v.validate_registration_id,
        "dev 1/a",
        "A registration ID may contain only letters, digits and - . _ : (not ' ' '/').",
    ),
    (
        v.validate_registration_id,
        "dévice",
        "A registration ID may contain only letters, digits and - . _ : (not 'é').",
    ),
    (v.validate_registration_id, "-dev", "A registration ID must start with a letter or a digit."),
    (v.validate_registration_id, "dev.", "A registration ID must end with a letter, a digit or -."),
    (v.validate_registration_id, "dev:", "A registration ID must end with a letter, a digit or -."),
    (v.validate_group_id, "", "Enter an enrollment group ID."),
    (
        v.validate_group_id,
        "grp#1",
        "An enrollment group ID may contain only letters, digits and - . _ : (not '#').",
    ),
    (v.validate_device_id, "d" * 129, "A device ID has at most 128 characters (this one has 129)."),
    (
        v.validate_device_id,
        "dev/1 x",
        "A device ID may contain only letters, digits and - . % _ * ? ! ( ) , : = @ $ ' (not ' ' '/').",
    ),
    (
        v.parse_twin_json,
        "{bad",
        "Tags: not valid JSON (Expecting property name enclosed in double quotes at line 1, column 2).",
    ),
    (v.parse_twin_json, "[1, 2]", 'Tags must be a JSON object such as {"building": "43"}.'),
    (
        v.parse_twin_json,
        '{"a.b": 1}',
        "Tags: the key 'a.b' may not contain '.', '$', spaces or control characters.",
    ),
    (
        v.parse_twin_json,
        '{"$version": 1}',
        "Tags: the key '$version' may not contain '.', '$', spaces or control characters.",
    ),
    (
        v.parse_twin_json,
        '{"a": {"b c": 1}}',
        "Tags: the key 'b c' may not contain '.', '$', spaces or control characters.",
    ),
    (v.parse_twin_json, '{"": 1}', "Tags: a key is empty."),
    (
        v.parse_twin_json,
        '{"a":' * 11 + "1" + "}" * 11,
        "Tags nest deeper than 10 levels (at a.a.a.a.a.a.a.a.a.a).",
    ),
    (
        v.parse_twin_json,
        '{"a": "' + "x" * 33000 + '"}',
        "Tags are 33008 bytes; the limit is 32768 bytes.",
    ),
    (v.validate_endorsement_key, "", "Enter the endorsement key."),
    (
        v.validate_endorsement_key,
        "not*base64",
        "The endorsement key must be base64 (letters, digits, + and /, with = padding).",
    ),
    (
        v.validate_endorsement_key,
        "AAAA",
        "The endorsement key is 3 bytes: too short for a TPM public key.",
    ),
    (
        v.validate_storage_root_key,
        "@@",
        "The storage root key must be base64 (letters, digits, + and /, with = padding).",
    ),
    (v.validate_symmetric_key, "abc", "The primary key must be base64."),
    (
        v.validate_symmetric_key,
        base64.b64encode(b"k" * 15).decode(),
        "The primary key must decode to 16 to 64 bytes (this one is 15 bytes).",
    ),
    (
        v.validate_symmetric_key,
        base64.b64encode(b"k" * 65).decode(),
        "The primary key must decode to 16 to 64 bytes (this one is 65 bytes).",
    ),
    (v.validate_iot_hub_host_name, "", "Enter an IoT hub host name."),
    (
        v.validate_iot_hub_host_name,
        "https://hub.azure-devices.net",
        "Enter the host name only, without https:// or a path (e.g. myhub.azure-devices.net).",
    ),
    (
        v.validate_iot_hub_host_name,
        "hub",
        "'hub' is not an IoT hub host name such as myhub.azure-devices.net.",
    ),
    (
        v.validate_iot_hub_host_name,
        "hub_1.azure-devices.net",
        "'hub_1.azure-devices.net' is not an IoT hub host name such as myhub.azure-devices.net.",
    ),
    (
        v.validate_iot_hub_host_name,
        "-hub.azure-devices.net",
        "'-hub.azure-devices.net' is not an IoT hub host name such as myhub.azure-devices.net.",
    ),
    (v.validate_webhook_url, "", "A custom allocation policy needs a webhook URL."),
    (v.validate_webhook_url, "http://fn.example/api", "The webhook URL must start with https://."),
    (v.validate_webhook_url, "ftp://fn.example/api", "The webhook URL must start with https://."),
    (v.validate_webhook_url, "https:///path", "The webhook URL has no host name."),
    (
        v.validate_webhook_url,
        "https://user:pw@fn.example/",
        "Put no user name or password in the webhook URL; use a function key in the query.",
    ),
    (v.validate_webhook_url, "https://fn.example:99999/", "The webhook URL is not a valid URL."),
    (v.validate_webhook_url, "https://fn.example/a b", "The webhook URL may not contain spaces."),
    (
        v.validate_api_version,
        "v1",
        "The API version looks like 2021-10-01 (optionally ending in -preview).",
    ),
    (v.validate_api_version, "2021-13-01", "2021-13-01 is not a real date."),
    (v.validate_api_version, "2018-08-31", "The API version must be 2018-09-01-preview or later."),
    (v.validate_api_version, "2017-11-15", "The API version must be 2018-09-01-preview or later."),
    (
        v.validate_reprovision_policy,
        "sometimes",
        "Choose what happens when a device provisions again: reprovision_and_migrate, reprovision_and_reset or never.",
    ),
    (v.validate_iot_edge, "maybe", "IoT Edge must be true or false."),
    (v.validate_provisioning_status, "on", "Provisioning status must be enabled or disabled."),
    (v.validate_attestation_type, "none", "Choose an attestation: tpm, x509 or symmetricKey."),
    (
        v.validate_service_api_version,
        "2018-09-01-preview",
        "Only DPS service API version 2021-10-01 is supported.",
    ),
    (v.validate_ca_reference, "", "Enter the name of a CA certificate uploaded to DPS."),
]


def _message(error: ValidationError) -> str:
    (message,) = error.messages
    return message


def _case_id(value: Any) -> str:
    # A function's name, not its repr: the address differs between xdist workers.
    return getattr(value, "__name__", None) or repr(value)[:40]


@pytest.mark.parametrize(("validator", "value", "expected"), GOOD, ids=_case_id)
def test_good_input(validator: Callable[..., Any], value: Any, expected: Any) -> None:
    assert validator(value) == expected


@pytest.mark.parametrize(("validator", "value", "message"), BAD, ids=_case_id)
def test_bad_input_message(validator: Callable[..., Any], value: Any, message: str) -> None:
    with pytest.raises(ValidationError) as info:
        validator(value)
    assert _message(info.value) == message


def test_symmetric_key_message_never_repeats_the_key() -> None:
    key = base64.b64encode(b"s" * 70).decode()
    with pytest.raises(ValidationError) as info:
        v.validate_symmetric_key(key, "The secondary key")
    assert key not in _message(info.value)
    assert _message(info.value).startswith("The secondary key must decode")


def test_group_attestation_refuses_tpm() -> None:
    with pytest.raises(ValidationError) as info:
        v.validate_attestation_type("tpm", group=True)
    assert (
        _message(info.value)
        == "Enrollment groups support X.509 and symmetric key attestation, not TPM."
    )
    assert v.validate_attestation_type("x509", group=True) == "x509"


def test_twin_label_names_the_field() -> None:
    with pytest.raises(ValidationError) as info:
        v.parse_twin_json("1", "Desired properties")
    assert (
        _message(info.value)
        == 'Desired properties must be a JSON object such as {"building": "43"}.'
    )


#
# IoT hubs and allocation
#


def test_iot_hubs_list() -> None:
    linked = ["hub-a.azure-devices.net", "hub-b.azure-devices.net"]
    assert (
        v.validate_iot_hubs(
            ["HUB-A.azure-devices.net", "", "hub-b.azure-devices.net"], linked=linked
        )
        == linked
    )
    with pytest.raises(ValidationError) as info:
        v.validate_iot_hubs(["hub-a.azure-devices.net", "hub-a.azure-devices.net"])
    assert _message(info.value) == "hub-a.azure-devices.net is listed twice."
    with pytest.raises(ValidationError) as info:
        v.validate_iot_hubs(["hub-c.azure-devices.net"], linked=linked)
    assert _message(info.value) == (
        "hub-c.azure-devices.net is not linked to this DPS instance "
        "(linked: hub-a.azure-devices.net, hub-b.azure-devices.net)."
    )


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"policy": ""}, (None, None)),
        ({"policy": "hashed"}, ("hashed", None)),
        ({"policy": "GEOLATENCY"}, ("geoLatency", None)),
        ({"policy": "static", "iot_hubs": ["h.azure-devices.net"]}, ("static", None)),
        (
            {
                "policy": "custom",
                "webhook_url": "https://f.example/api",
                "api_version": "2019-03-31",
            },
            (
                "custom",
                CustomAllocationDefinition(
                    webhook_url="https://f.example/api", api_version="2019-03-31"
                ),
            ),
        ),
    ],
)
def test_allocation_good(kwargs: dict[str, Any], expected: Any) -> None:
    policy = kwargs.pop("policy")
    assert v.validate_allocation(policy, **kwargs) == expected


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"policy": "random"},
            "Choose an allocation policy: hashed, geoLatency, static or custom.",
        ),
        (
            {"policy": "static", "iot_hubs": []},
            "A static allocation policy needs exactly one IoT hub (0 selected).",
        ),
        (
            {"policy": "static", "iot_hubs": ["a", "b"]},
            "A static allocation policy needs exactly one IoT hub (2 selected).",
        ),
        ({"policy": "custom"}, "A custom allocation policy needs a webhook URL."),
        (
            {
                "policy": "custom",
                "webhook_url": "http://f.example/api",
                "api_version": "2019-03-31",
            },
            "The webhook URL must start with https://.",
        ),
        (
            {"policy": "custom", "webhook_url": "https://f.example/api"},
            "A custom allocation policy needs the API version of its webhook (e.g. 2021-10-01).",
        ),
        (
            {"policy": "hashed", "webhook_url": "https://f.example/api"},
            "A webhook URL is used only with the custom allocation policy.",
        ),
        (
            {"policy": "", "webhook_url": "https://f.example/api"},
            "A webhook URL is used only with the custom allocation policy.",
        ),
    ],
)
def test_allocation_bad(kwargs: dict[str, Any], message: str) -> None:
    policy = kwargs.pop("policy")
    with pytest.raises(ValidationError) as info:
        v.validate_allocation(policy, **kwargs)
    assert _message(info.value) == message


#
# Certificates
#

NOW = datetime(2025, 6, 1, tzinfo=UTC)


def _certificate(
    cn: str = "device-001",
    *,
    not_before: datetime = NOW - timedelta(days=1),
    not_after: datetime = NOW + timedelta(days=365),
    issuer_cn: str | None = None,
    ca: bool = False,
) -> x509.Certificate:
    return certs.certificate(
        certs.name(cn, organization="Fleet Ops", country="NL"),
        issuer=certs.ca(issuer_cn) if issuer_cn else None,
        ca=ca,
        not_before=not_before,
        not_after=not_after,
        serial=0x1A2B3C4D5E,
    ).cert


@pytest.mark.parametrize("form", ["pem", "base64-der", "base64-der-wrapped", "pem-bytes"])
def test_certificate_parsing(form: str) -> None:
    """PEM and base64 DER give subject, issuer, thumbprints, serial and validity."""
    cert = _certificate(issuer_cn="Fleet Root CA")
    der = certs.der(cert)
    text: str | bytes = {
        "pem": certs.pem(cert),
        "base64-der": certs.der_b64(cert),
        "base64-der-wrapped": "\n".join(
            certs.der_b64(cert)[i : i + 64] for i in range(0, len(certs.der_b64(cert)), 64)
        ),
        "pem-bytes": certs.pem(cert).encode(),
    }[form]
    info = v.validate_certificate(text, now=NOW)
    assert info.subject == "CN=device-001, O=Fleet Ops, C=NL"
    assert info.issuer == "CN=Fleet Root CA"
    assert info.common_name == "device-001"
    assert info.sha1_thumbprint == hashlib.sha1(der).hexdigest().upper()
    assert info.sha256_thumbprint == hashlib.sha256(der).hexdigest().upper()
    assert info.serial_number == "1A2B3C4D5E"
    assert info.version == 3
    assert info.is_ca is False
    assert info.not_before == NOW - timedelta(days=1)
    assert info.not_after == NOW + timedelta(days=365)
    assert info.pem() == certs.pem(cert)


def test_ca_certificate_is_recognised() -> None:
    assert v.parse_certificate(certs.pem(_certificate("root", ca=True))).is_ca is True


def test_expired_certificate() -> None:
    cert = _certificate(
        not_before=datetime(2019, 1, 1, tzinfo=UTC),
        not_after=datetime(2020, 1, 1, 12, 30, tzinfo=UTC),
    )
    # Parsing alone still works: the detail page shows it.
    info = v.parse_certificate(certs.pem(cert))
    assert info.is_expired(NOW)
    with pytest.raises(ValidationError) as error:
        v.validate_certificate(certs.pem(cert), now=NOW)
    assert _message(error.value) == "The certificate expired on 2020-01-01 12:30 UTC."


def test_not_yet_valid_certificate() -> None:
    cert = _certificate(
        not_before=datetime(2030, 1, 1, tzinfo=UTC), not_after=datetime(2031, 1, 1, tzinfo=UTC)
    )
    with pytest.raises(ValidationError) as error:
        v.validate_certificate(certs.pem(cert), now=NOW)
    assert _message(error.value) == "The certificate is not valid before 2030-01-01 00:00 UTC."


def test_private_key_is_refused_without_echo() -> None:
    pem = certs.key_pem(certs.ec_key())
    with pytest.raises(ValidationError) as error:
        v.parse_certificate(pem)
    assert (
        _message(error.value)
        == "This is a private key. Paste the certificate only, and keep the key secret."
    )


def test_chain_is_refused() -> None:
    with pytest.raises(ValidationError) as error:
        v.parse_certificate(certs.pem(_certificate("a")) + certs.pem(_certificate("b")))
    assert _message(error.value) == "Paste one certificate, not a chain of 2."


@pytest.mark.parametrize(
    "text",
    [
        "hello world",
        base64.b64encode(b"definitely not DER").decode(),
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----",
        "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----",
    ],
    ids=["text", "base64-garbage", "pem-garbage", "pem-not-base64"],
)
def test_garbage_is_not_a_certificate(text: str) -> None:
    with pytest.raises(ValidationError) as error:
        v.parse_certificate(text)
    assert _message(error.value) == "This is not an X.509 certificate in PEM or base64 (DER) form."


def test_empty_certificate() -> None:
    with pytest.raises(ValidationError) as error:
        v.parse_certificate("  ")
    assert _message(error.value) == "Paste a certificate (PEM or base64)."
