"""Signal receivers of the enrollments app."""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)


def resume_jobs_on_signin(sender: Any, request: Any = None, user: Any = None, **_: Any) -> None:
    """Resume the user's bulk jobs paused for sign-in once the user has signed in again.

    Connected to ``user_logged_in`` so authn needs no knowledge of bulk jobs. A failure here
    must not fail the sign-in: the periodic sweep resumes the jobs as well.
    """
    if user is None:
        return
    from enrollments.bulk.jobs import jobs_resume_for_user

    try:
        resumed = jobs_resume_for_user(user)
    except Exception:  # the sign-in must succeed whatever happens here
        log.exception("resuming bulk jobs after sign-in failed")
        return
    if resumed:
        log.info("resumed %d bulk job(s) after sign-in", resumed)


def token_cache_holders_of_jobs(sender: Any, **_: Any) -> list[int]:
    """Name the owners of jobs that will still call DPS as them (their caches must stay)."""
    from django.db.models import Q

    from enrollments.models import BulkJob, JobState, PauseReason

    working = Q(state__in=(JobState.QUEUED, JobState.VALIDATING, JobState.RUNNING))
    waiting = Q(state=JobState.PAUSED, pause_reason=PauseReason.SERVICE_UNAVAILABLE)
    return list(BulkJob.objects.filter(working | waiting).values_list("owner_id", flat=True))
