"""Sessions in the cache with the database behind them (cached_db, the engine with Redis)."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

pytestmark = pytest.mark.django_db

DANA = ("dana.contributor@contoso-iot.example", "Dana-Demo-2026!")
CACHED_DB = "django.contrib.sessions.backends.cached_db"


@pytest.fixture
def cached_sessions(settings: Any) -> None:
    settings.SESSION_ENGINE = CACHED_DB


def _copy(client: Client) -> Client:
    other = Client(SERVER_NAME="localhost")
    other.cookies = client.cookies
    return other


def _signed_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


def test_redis_means_cached_sessions(settings: Any) -> None:
    engine = settings.SESSION_ENGINE
    assert engine == (CACHED_DB if settings.REDIS_URL else "django.contrib.sessions.backends.db")


def test_a_signed_in_page_reads_no_session_row(cached_sessions: None, entra_signin: Any) -> None:
    entra_signin(*DANA)
    with CaptureQueriesContext(connection) as queries:
        response = entra_signin.client.get("/")
    assert response.status_code == 200
    assert 'data-testid="signout"' in response.content.decode()
    assert not [q for q in queries if "django_session" in q["sql"]]


def test_signout_ends_the_session_everywhere_it_is_kept(
    cached_sessions: None, entra_signin: Any
) -> None:
    """A copy of the cookie is worthless after sign-out: the cache entry went with the row."""
    from django.contrib.sessions.models import Session

    entra_signin(*DANA)
    stolen = _copy(entra_signin.client)
    assert _signed_in(stolen)
    assert entra_signin.client.post("/auth/logout/").status_code == 302
    assert not _signed_in(stolen)
    assert 'data-testid="signin"' in stolen.get("/").content.decode()
    assert not Session.objects.exists()


def test_a_lost_cache_keeps_the_user_signed_in(cached_sessions: None, entra_signin: Any) -> None:
    """A Redis restart empties the cache; the session is read back from the database."""
    from django.core.cache import cache

    entra_signin(*DANA)
    cache.clear()
    assert 'data-testid="signout"' in entra_signin.client.get("/").content.decode()
