"""A bulk job's state machine: the transition table, and the races it settles."""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.utils import timezone

from authn.exceptions import ReauthRequired
from enrollments import tasks
from enrollments.bulk import workflow
from enrollments.bulk.store import FIELDS, NewRow
from enrollments.models import FINAL_STATES, BulkJob, BulkRow, JobKind, JobState
from instances.models import DpsInstance
from portal.celery import app


def _job(name: str, state: str, kind: str = JobKind.IMPORT) -> BulkJob:
    owner = get_user_model().objects.create_user(f"{name}@example.com")
    instance = DpsInstance.objects.create(name=name, host="127.0.0.1:1", resource_id=f"/{name}")
    return BulkJob.objects.create(kind=kind, owner=owner, instance=instance, state=state)


def test_every_state_has_its_moves_and_a_final_state_none() -> None:
    assert set(workflow.TRANSITIONS) == set(JobState.values)
    for moves in workflow.TRANSITIONS.values():
        assert moves <= set(JobState.values)
    for state in FINAL_STATES:
        assert workflow.TRANSITIONS[state] == frozenset()


@pytest.mark.django_db
def test_a_move_the_table_lacks_is_refused_before_the_database_is_asked() -> None:
    job = _job("wf-refused", JobState.COMPLETED)
    with pytest.raises(workflow.InvalidTransition, match="from completed to running"):
        workflow.transition(job.pk, (JobState.COMPLETED,), JobState.RUNNING)
    job.refresh_from_db()
    assert job.state == JobState.COMPLETED


@pytest.mark.django_db
def test_a_move_happens_only_from_the_states_given() -> None:
    job = _job("wf-moves", JobState.AWAITING_CONFIRMATION)
    assert not workflow.transition(job.pk, (JobState.RUNNING,), JobState.PAUSED)
    confirmed = timezone.now()
    assert workflow.transition(
        job.pk, (JobState.AWAITING_CONFIRMATION,), JobState.RUNNING, confirmed_at=confirmed
    )
    job.refresh_from_db()
    assert (job.state, job.confirmed_at) == (JobState.RUNNING, confirmed)
    assert job.heartbeat_at is not None


@pytest.mark.django_db
def test_a_job_cancelled_while_its_owner_must_sign_in_ends_cancelled_not_paused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The pause no longer overwrites a cancel that came while the worker asked for a token."""
    job = _job("wf-cancel-pause", JobState.QUEUED)

    class CancelledMeanwhile:
        def capabilities(self, *, owner: Any, instance: Any) -> frozenset[str]:
            BulkJob.objects.filter(pk=job.pk).update(state=JobState.CANCELLING)
            raise ReauthRequired("invalid_grant")

    monkeypatch.setattr(workflow, "access", CancelledMeanwhile)
    workflow.job_prepare(job.pk)
    job.refresh_from_db()
    assert job.state == JobState.CANCELLED
    assert job.pause_reason == ""


@pytest.mark.django_db
def test_an_export_cancelled_before_it_starts_running_ends_cancelled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A worker holding a stale copy of the job (validating) does not set a cancelled job running."""
    job = _job("wf-cancel-start", JobState.CANCELLING, kind=JobKind.EXPORT)
    queued: list[tuple[str, int]] = []
    monkeypatch.setattr(workflow, "enqueue", lambda name, job_id: queued.append((name, job_id)))
    job.state = JobState.VALIDATING  # what the worker read before the owner cancelled
    workflow._start_running(job)
    job.refresh_from_db()
    assert job.state == JobState.CANCELLED
    assert queued == []


def test_every_periodic_task_is_in_the_settings_schedule() -> None:
    """Importing the tasks adds no periodic task of its own: the beat runs what settings list."""
    assert tasks.bulk_jobs_sweep_task.name == "enrollments.bulk_jobs_sweep"
    assert dict(app.conf.beat_schedule) == settings.CELERY_BEAT_SCHEDULE
    scheduled = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert {"enrollments.bulk_jobs_sweep", "enrollments.bulk_files_expire"} <= scheduled


def test_a_new_row_names_the_row_table_columns_in_order() -> None:
    columns = [f.column for f in BulkRow._meta.concrete_fields]
    assert set(FIELDS) <= set(columns)
    row = NewRow(1, 2, "Dev-1", "dev-1", "create", "{}")
    assert (row.plan, row.status, row.attempts, row.lease) == ("pending", "pending", 0, "")
    assert isinstance(row, tuple)  # as COPY and executemany take it
    assert len(row) == len(FIELDS)
