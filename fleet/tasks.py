"""Celery tasks of the fleet index: ids only, one pass per instance at a time.

The beat entry ``fleet-sync-all`` (portal/settings.py: every FLEET_SYNC_INTERVAL_SECONDS, 15 min
by default)
queues a pass of every enabled instance; "Refresh now" and a newly registered instance queue
one directly (fleet/refresh.py). A killed worker's task is redelivered (acks late) and resumes
from the stored page; so does the next beat.
"""

from __future__ import annotations

import logging

from celery import shared_task

log = logging.getLogger(__name__)

_OPTS = {"acks_late": True, "reject_on_worker_lost": True, "ignore_result": True}


@shared_task(name="fleet.sync_instance", **_OPTS)
def fleet_sync_task(instance_id: int) -> None:
    """Run or resume the sync pass of one instance (nothing if another worker holds it)."""
    from fleet.sync import PassBusy, sync_instance

    try:
        sync_instance(instance_id)
    except PassBusy:
        log.info("fleet sync of instance %s is already running", instance_id)


@shared_task(name="fleet.sync_all", ignore_result=True)
def fleet_sync_all_task() -> list[int]:
    """Queue a pass of every enabled instance."""
    from instances.models import DpsInstance

    ids = list(DpsInstance.objects.filter(enabled=True).values_list("id", flat=True))
    for pk in ids:
        fleet_sync_task.delay(pk)
    return ids
