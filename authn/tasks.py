"""Celery tasks of authn: the periodic purge of token caches nobody can use any more."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from importlib import import_module
from typing import Any

from celery import shared_task
from django.conf import settings
from django.contrib.auth import SESSION_KEY
from django.utils import timezone

log = logging.getLogger(__name__)


def _live_session_user_ids() -> set[int] | None:
    """Return the ids of users with an unexpired session; None if sessions cannot be listed.

    Only database-backed session engines can be listed; with any other engine nothing is
    purged (a cache deleted under a live session would sign its user out).
    """
    store = import_module(settings.SESSION_ENGINE).SessionStore
    get_model = getattr(store, "get_model_class", None)
    if get_model is None:
        return None
    ids: set[int] = set()
    live = get_model().objects.filter(expire_date__gt=timezone.now())
    for data in live.values_list("session_data", flat=True).iterator():
        user_id = store().decode(data).get(SESSION_KEY)
        if user_id is not None and str(user_id).isdigit():
            ids.add(int(user_id))
    return ids


def token_caches_purge_expired() -> int:
    """Delete the token caches of users without a live session (or another holder); count them."""
    from authn.signals import token_cache_holders
    from authn.tokens import token_caches_purge

    started = timezone.now()
    keep = _live_session_user_ids()
    if keep is None:
        log.warning(
            "token caches not purged: sessions of %s cannot be listed", settings.SESSION_ENGINE
        )
        return 0
    for _receiver, held in token_cache_holders.send(sender=None):
        keep.update(_ids(held))
    purged = token_caches_purge(keep_user_ids=keep, written_before=started)
    if purged:
        log.info("purged %d token cache(s) of users without a live session", purged)
    return purged


def _ids(values: Any) -> Iterable[int]:
    return (int(v) for v in values or ())


# Celery ships no type hints: its decorators are untyped.
@shared_task(name="authn.token_caches_purge", ignore_result=True)  # type: ignore[untyped-decorator]
def token_caches_purge_task() -> int:
    """Delete the token caches of users whose sessions all expired (beat, hourly)."""
    return token_caches_purge_expired()
