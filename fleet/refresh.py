"""Ask for a pass: "Refresh now" by a user who may read the instance, or a new instance."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.db import transaction

from fleet.models import SyncState

log = logging.getLogger(__name__)


def refresh_request(instance: Any, user: Any = None) -> None:
    """Queue a pass of ``instance``; ``user`` is who it runs as if the app may not read.

    The caller checks that ``user`` may read the instance (the view's permission check).
    """
    from fleet.tasks import fleet_sync_task

    state, _ = SyncState.objects.get_or_create(instance=instance)
    if user is not None:
        SyncState.objects.filter(pk=state.pk).update(requested_by=user)
    transaction.on_commit(lambda: fleet_sync_task.delay(instance.pk))


def instance_registered(sender: Any, instance: Any, created: bool = False, **_: Any) -> None:
    """post_save of DpsInstance: a newly registered instance gets its first pass at once."""
    if created and getattr(instance, "enabled", True) and settings.FLEET_SYNC_ON_REGISTER:
        try:
            refresh_request(instance)
        except Exception:  # never block the registration on the broker
            log.exception("could not queue the first fleet pass of %s", instance)
