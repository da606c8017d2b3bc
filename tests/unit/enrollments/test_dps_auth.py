"""SAS tokens (API.md §2.1), their cache, bearer adaptation and connection strings."""

from __future__ import annotations

import base64
import hashlib
import hmac
import urllib.parse

import pytest

from enrollments.dps.auth import (
    authorization_value,
    bearer,
    parse_connection_string,
    sas_token,
    sas_token_provider,
)

KEY = base64.b64encode(b"policy-key-bytes-for-the-unit-tests").decode()


def _fields(token: str) -> dict[str, str]:
    assert token.startswith("SharedAccessSignature ")
    return dict(urllib.parse.parse_qsl(token.removeprefix("SharedAccessSignature ")))


def test_sas_token_matches_the_documented_algorithm() -> None:
    """sig = base64(HMAC-SHA256(base64decode(key), urlencode(sr) + "\\n" + se)), sr lower case."""
    token = sas_token(
        "https://My-DPS.azure-devices-provisioning.net/",
        "provisioningserviceowner",
        KEY,
        1700000000,
    )
    fields = _fields(token)
    assert fields["sr"] == "my-dps.azure-devices-provisioning.net"
    assert fields["se"] == "1700000000"
    assert fields["skn"] == "provisioningserviceowner"
    expected = base64.b64encode(
        hmac.new(
            base64.b64decode(KEY),
            b"my-dps.azure-devices-provisioning.net\n1700000000",
            hashlib.sha256,
        ).digest()
    ).decode()
    assert fields["sig"] == expected
    # The signature is URL-encoded in the header value ('+', '/' and '=' escaped).
    assert urllib.parse.quote_plus(expected) in token


def test_sas_token_for_a_host_with_port_signs_the_encoded_resource() -> None:
    fields = _fields(sas_token("127.0.0.1:8443", "p", KEY, 10))
    assert fields["sr"] == "127.0.0.1:8443"
    expected = hmac.new(base64.b64decode(KEY), b"127.0.0.1%3A8443\n10", hashlib.sha256).digest()
    assert fields["sig"] == base64.b64encode(expected).decode()


def test_provider_caches_until_near_expiry() -> None:
    now = [1_000_000.0]
    provide = sas_token_provider("h.example", "p", KEY, ttl=3600, clock=lambda: now[0])
    first = provide()
    assert _fields(first)["se"] == str(1_000_000 + 3600)
    now[0] += 3000  # 600 s left: still cached
    assert provide() == first
    now[0] += 301  # under 5 minutes left: renewed
    second = provide()
    assert second != first
    assert _fields(second)["se"] == str(1_000_000 + 3301 + 3600)


def test_provider_refuses_a_bad_key_without_echoing_it() -> None:
    with pytest.raises(ValueError, match="not valid base64") as info:
        sas_token_provider("h", "p", "not base64 !!", ttl=3600)
    assert "not base64 !!" not in str(info.value)
    with pytest.raises(ValueError, match="ttl"):
        sas_token_provider("h", "p", KEY, ttl=60)


def test_bearer_adapter_and_authorization_value() -> None:
    assert bearer(lambda: "abc")() == "Bearer abc"
    assert authorization_value("abc") == "Bearer abc"
    assert authorization_value("Bearer abc") == "Bearer abc"
    assert authorization_value("SharedAccessSignature sr=x") == "SharedAccessSignature sr=x"


def test_connection_string() -> None:
    cs = parse_connection_string(
        f"HostName=127.0.0.1:9001;SharedAccessKeyName=provisioningserviceowner;SharedAccessKey={KEY}"
    )
    assert (cs.host, cs.policy_name, cs.key) == ("127.0.0.1:9001", "provisioningserviceowner", KEY)
    assert KEY not in repr(cs)
    assert _fields(cs.token_provider()())["skn"] == "provisioningserviceowner"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("HostName=h;SharedAccessKeyName=p", "lacks SharedAccessKey"),
        ("garbage", "not a list of Name=value pairs"),
        ("", "lacks HostName, SharedAccessKeyName, SharedAccessKey"),
    ],
)
def test_connection_string_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_connection_string(text)
