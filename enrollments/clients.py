"""Build the DPS client that acts as a signed-in user on one DPS instance."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import requests
from django.conf import settings

from enrollments.dps.auth import bearer
from enrollments.dps.client import DpsClient, build_session
from enrollments.dps.exceptions import DpsHostRefused
from enrollments.dps.types import DpsApi

# One Session per thread: its connection pool keeps TLS connections to DPS open between
# requests (a new handshake per page would cost more than the DPS call itself).
_local = threading.local()


def _session() -> requests.Session:
    session = getattr(_local, "session", None)
    if session is None:
        session = build_session(settings.HTTP_TIMEOUT_SECONDS)
        _local.session = session
    return session


# The broker hands out tokens with more than five minutes left; a client (one request) keeps
# its token for at most this long before asking the broker again.
_CLIENT_TOKEN_SECONDS = 60.0


def _user_token(user: Any, *, clock: Callable[[], float] = time.monotonic) -> Callable[[], str]:
    """Return a callable giving ``user``'s DPS token, asking the broker once per minute at most."""
    from authn.msal_app import DPS_RESOURCE
    from authn.tokens import token_for_user

    held: list[tuple[str, float]] = []

    def token() -> str:
        now = clock()
        if held and now - held[0][1] < _CLIENT_TOKEN_SECONDS:
            return held[0][0]
        value = token_for_user(user, DPS_RESOURCE)
        held[:] = [(value, now)]
        return value

    return token


def instance_host_guard(instance: Any) -> Callable[[str], None]:
    """Return the check a client runs before attaching a token to a call to ``instance``.

    It applies the host rules of :mod:`instances.hosts` to the URL the client is about to use
    (the row as it was read, even if edited in the database since registration) and the
    host ARM last reported for the instance's resource id.
    """
    from instances.hosts import DpsHostError, dps_host_guard

    def guard(base_url: str) -> None:
        try:
            dps_host_guard(base_url, instance.resource_id)
        except DpsHostError as exc:
            raise DpsHostRefused(message=str(exc)) from None

    return guard


def dps_client_for(user: Any, instance: Any, *, max_retries: int = 2) -> DpsApi:
    """Return a client of ``instance`` whose every call carries ``user``'s own DPS token.

    The token comes from the token broker (remembered, silent, then on-behalf-of) at the first
    attempt and is reused by the client's later calls for a minute;
    :class:`~authn.exceptions.ReauthRequired` propagates so the middleware can ask the user
    to sign in again. Retries are few and short: a person is waiting for the page.
    """
    return DpsClient(
        instance.host,
        bearer(_user_token(user)),
        ca_bundle=settings.AZURE_CA_BUNDLE or True,
        timeout=settings.HTTP_TIMEOUT_SECONDS,
        session=_session(),
        max_retries=max_retries,
        max_retry_wait=5.0,
        host_guard=instance_host_guard(instance),
    )
