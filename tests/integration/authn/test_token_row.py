"""The token broker's read of the encrypted cache row: one statement, the row as stored."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from authn import crypto
from authn.models import UserTokenCache
from authn.tokens import _row_of

pytestmark = pytest.mark.django_db


def test_reads_the_stored_ciphertext_and_version(django_user_model: Any) -> None:
    user = django_user_model.objects.create_user("t")
    other = django_user_model.objects.create_user("o")
    blob = crypto.encrypt('{"v": 1}')
    UserTokenCache.objects.create(user=user, blob=blob, version=2**62)
    UserTokenCache.objects.create(user=other, blob=crypto.encrypt("{}"), version=7)
    with CaptureQueriesContext(connection) as queries:
        row = _row_of(user.pk)
    assert row == (blob, 2**62)
    assert isinstance(row[0], bytes)
    assert len(queries) == 1


def test_no_row_is_none(django_user_model: Any) -> None:
    assert _row_of(django_user_model.objects.create_user("n").pk) is None
