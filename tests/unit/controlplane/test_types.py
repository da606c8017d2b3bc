"""Parsing ARM's certificate and hub JSON into what the pages show."""

from __future__ import annotations

import datetime as dt

from controlplane.types import CaCertificate, Choices, LinkedHub


def test_certificate_from_arm_reads_rfc7231_dates() -> None:
    cert = CaCertificate.from_arm(
        {
            "name": "root",
            "etag": "AAAAAAAAAAE=",
            "properties": {
                "subject": "CN=Root",
                "thumbprint": "AB" * 20,
                "expiry": "Thu, 03 Dec 2026 07:00:00 GMT",
                "isVerified": True,
                "created": "2026-11-01T10:00:00Z",
                "updated": "bogus",
            },
        }
    )
    assert cert.expiry == dt.datetime(2026, 12, 3, 7, 0, tzinfo=dt.UTC)
    assert cert.created == dt.datetime(2026, 11, 1, 10, 0, tzinfo=dt.UTC)
    assert cert.updated is None
    assert cert.is_verified
    assert cert.expires_within(30, now=dt.datetime(2026, 11, 20, tzinfo=dt.UTC))
    assert not cert.expires_within(5, now=dt.datetime(2026, 11, 20, tzinfo=dt.UTC))
    assert cert.as_audit()["thumbprint"] == "AB" * 20


def test_certificate_from_sparse_arm_answer() -> None:
    cert = CaCertificate.from_arm({"name": "x", "properties": None})
    assert (cert.subject, cert.expiry, cert.is_verified) == ("", None, False)


def test_hub_keeps_no_connection_string() -> None:
    hub = LinkedHub.from_arm(
        {
            "name": "hub.azure-devices.net",
            "location": "westeurope",
            "connectionString": "HostName=hub;SharedAccessKey=secret",
            "allocationWeight": 3,
            "applyAllocationPolicy": False,
        }
    )
    assert hub == LinkedHub("hub.azure-devices.net", "westeurope", 3, False)
    assert "secret" not in repr(hub)


def test_choices_available_unless_a_reason() -> None:
    assert Choices([1]).available
    assert not Choices(reason="no role").available
