"""Fernet encryption of token caches with rotating keys."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from authn import crypto

OLD, NEW = Fernet.generate_key().decode(), Fernet.generate_key().decode()


def test_round_trip_and_rotation():
    with override_settings(TOKEN_CACHE_KEYS=[OLD]):
        blob = crypto.encrypt("cache")
        assert b"cache" not in blob
    with override_settings(TOKEN_CACHE_KEYS=[NEW, OLD]):
        assert crypto.decrypt(blob) == "cache"  # old key still opens
        assert Fernet(NEW.encode()).decrypt(crypto.encrypt("x")) == b"x"  # newest encrypts
    with override_settings(TOKEN_CACHE_KEYS=[NEW]):
        assert crypto.decrypt(blob) is None  # retired key: treated as no cache


@pytest.mark.parametrize("keys", [[], ["not-a-key"]])
def test_bad_keys_are_configuration_errors_without_echoing_them(keys):
    with override_settings(TOKEN_CACHE_KEYS=keys), pytest.raises(ImproperlyConfigured) as info:
        crypto.encrypt("x")
    assert "not-a-key" not in str(info.value)
