"""Device SAS tokens and derived group keys (reference/dps-service/API.md §2.1, §9)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import urllib.parse

from emulators.dps.sas import (
    derive_device_key,
    expired,
    generate_sas,
    parse_sas,
    resource_matches,
    signature_valid,
)

GROUP_KEY = (
    "8isrFI1sGsIlvvFSSFRiMfCNzv21fjbE/+ah/lSh3lF8e2YG1Te7w1KpZhJFFXJrqYKi9yegxkqIChbqOS9Egw=="
)
DEVICE_KEY = "Jsm0lyGpjaVYVP2g3FnmnmG9dI/9qU24wNoykUmermc="
RESOURCE = "0ne00A1B2C3/registrations/sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6"


def test_derived_device_key_matches_the_documented_test_vector():
    assert derive_device_key(GROUP_KEY, "sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6") == DEVICE_KEY


def test_generated_token_verifies_with_its_key_only():
    token = parse_sas(generate_sas(RESOURCE, DEVICE_KEY, now=1_000))
    assert token is not None
    assert token.key_name == "registration"
    assert resource_matches(token, RESOURCE.upper())
    assert signature_valid(token, ["bm90IHRoZSBrZXk=", DEVICE_KEY])
    assert not signature_valid(token, [GROUP_KEY])
    assert expired(token, now=1_000 + 3601)
    assert not expired(token, now=1_000 + 3600)


def test_a_token_signed_over_the_raw_resource_is_accepted():
    """The Node SDK signs the unencoded sr; the emulator accepts both spellings."""
    se = "4102444800"
    sig = base64.b64encode(
        hmac.new(
            base64.b64decode(DEVICE_KEY), f"{RESOURCE}\n{se}".encode(), hashlib.sha256
        ).digest()
    ).decode()
    header = (
        f"SharedAccessSignature sr={urllib.parse.quote(RESOURCE, safe='')}"
        f"&skn=registration&se={se}&sig={urllib.parse.quote(sig, safe='')}"
    )
    token = parse_sas(header)
    assert token is not None
    assert signature_valid(token, [DEVICE_KEY])


def test_a_token_for_another_registration_does_not_match():
    token = parse_sas(generate_sas(RESOURCE + "x", DEVICE_KEY))
    assert token is not None
    assert not resource_matches(token, RESOURCE)


def test_malformed_headers_are_not_tokens():
    for header in (
        None,
        "",
        "Bearer abc",
        "SharedAccessSignature sr=a&se=1",
        "SharedAccessSignature sr=a&sig=b&se=soon",
    ):
        assert parse_sas(header) is None


def test_a_signature_that_is_not_base64_never_verifies():
    token = parse_sas("SharedAccessSignature sr=a&sig=%%%&se=4102444800")
    assert token is not None
    assert not signature_valid(token, [DEVICE_KEY])
