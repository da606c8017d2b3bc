"""Derived device keys of symmetric-key enrollment groups, and generated keys."""

from __future__ import annotations

import base64

import pytest

from enrollments.keys import derive_device_key, generate_symmetric_key


def test_derived_key_matches_the_documented_vector() -> None:
    """The test vector of concepts-symmetric-key-attestation.md (API.md §9)."""
    group_key = (
        "8isrFI1sGsIlvvFSSFRiMfCNzv21fjbE/+ah/lSh3lF8e2YG1Te7w1KpZhJFFXJrqYKi9yegxkqIChbqOS9Egw=="
    )
    assert (
        derive_device_key(group_key, "sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6")
        == "Jsm0lyGpjaVYVP2g3FnmnmG9dI/9qU24wNoykUmermc="
    )


def test_derived_key_depends_on_registration_id() -> None:
    key = generate_symmetric_key()
    assert derive_device_key(key, "a") != derive_device_key(key, "b")


@pytest.mark.parametrize(
    ("key", "registration_id", "message"),
    [
        ("not*base64", "dev", "not valid base64"),
        ("", "dev", "empty"),
        ("c2VjcmV0", "", "registration ID is needed"),
    ],
)
def test_derive_errors_do_not_echo_the_key(key: str, registration_id: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        derive_device_key(key, registration_id)
    if key:
        assert key not in str(info.value)


@pytest.mark.parametrize("size", [16, 32, 64])
def test_generated_keys_have_the_asked_size(size: int) -> None:
    key = generate_symmetric_key(size)
    assert len(base64.b64decode(key)) == size
    assert generate_symmetric_key(size) != key


@pytest.mark.parametrize("size", [8, 65])
def test_generated_key_size_is_bounded(size: int) -> None:
    with pytest.raises(ValueError, match="16 to 64 bytes"):
        generate_symmetric_key(size)
