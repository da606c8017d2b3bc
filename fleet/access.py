"""Who a pass reads DPS as, and the raw queries it makes.

A pass reads as the portal's own app identity (client credentials, with the credential the
portal already has) where that identity holds read on the instance; where DPS refuses it
(401/403), the pass runs on behalf of the user who pressed Refresh, with that user's token.
Writes never come through here: they stay on behalf of the signed-in user.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings

from enrollments.clients import dps_client_for, instance_host_guard
from enrollments.dps.auth import bearer
from enrollments.dps.client import DpsClient, build_session
from enrollments.dps.types import QueryPage

APP_IDENTITY = "app"

_tokens: dict[str, tuple[str, float]] = {}
_lock = threading.Lock()


class NoReadIdentity(Exception):
    """Neither the portal's app nor a requesting user may read the instance."""


def _app_token() -> str:
    """Return the portal's own DPS token (client credentials), kept until 5 min before expiry."""
    from authn.msal_app import DPS_RESOURCE, build_app, resource_scope

    with _lock:
        held = _tokens.get(DPS_RESOURCE)
        if held and held[1] > time.time() + 300:
            return held[0]
    result = build_app().acquire_token_for_client(scopes=[resource_scope(DPS_RESOURCE)])
    token = (result or {}).get("access_token")
    if not token:
        raise NoReadIdentity(
            "The portal's app identity got no DPS token: "
            + str((result or {}).get("error") or "no answer")
        )
    with _lock:
        _tokens[DPS_RESOURCE] = (str(token), time.time() + float(result.get("expires_in", 3600)))
    return str(token)


def forget_app_token() -> None:
    """Drop the cached app token (tests; after a credential change)."""
    with _lock:
        _tokens.clear()


def app_client(instance: Any) -> DpsClient:
    """Return a client of ``instance`` that reads as the portal's own app identity."""
    return DpsClient(
        instance.host,
        bearer(_app_token),
        ca_bundle=settings.AZURE_CA_BUNDLE or True,
        timeout=settings.HTTP_TIMEOUT_SECONDS,
        session=build_session(),
        max_retries=0,  # every attempt goes through fleet.pacing.paced_read
        host_guard=instance_host_guard(instance),
    )


def user_client(user: Any, instance: Any) -> Any:
    """Return a client of ``instance`` that reads on behalf of ``user``."""
    return dps_client_for(user, instance, max_retries=0)


def identity_label(user: Any) -> str:
    """Return how SyncState.identity names a user ("user:<upn>")."""
    entra = getattr(user, "entra_identity", None)
    return f"user:{getattr(entra, 'upn', '') or user.get_username()}"


class _Raw:
    """A pass-through "model": query pages stay plain dicts (parsing into typed models would
    cost more than all the rest of a pass's work per record)."""

    @staticmethod
    def from_json(data: Any) -> Any:
        return data


def query_raw(
    client: Any, path: str, *, page_size: int, continuation: str | None
) -> QueryPage[dict[str, Any]]:
    """Return one page of ``path`` (``/enrollments/query`` …) as the JSON DPS sent."""
    body = None if path.startswith("/registrations/") else {"query": "SELECT *"}
    # The client's query machinery (paging headers, errors, retries policy) with raw items.
    page: QueryPage[dict[str, Any]] = client._query(
        path, _Raw, body, page_size=page_size, continuation=continuation
    )
    return page


def registration_raw(client: Any, registration_id: str) -> dict[str, Any]:
    """Return the registration record of an individual enrollment as DPS sent it."""
    model = client.registration_get(registration_id)
    doc: dict[str, Any] = model.to_json()
    return doc


ClientFactory = Callable[[Any, Any], Any]
