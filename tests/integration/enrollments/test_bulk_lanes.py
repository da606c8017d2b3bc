"""A job keeps several bulk calls in flight (threads of its task), each row still applied once.

Threads need their own database connections that see the test's rows, so these tests commit
(``transaction=True``) and run on PostgreSQL only; SQLite runs one lane.
"""

from __future__ import annotations

import threading
import uuid

import pytest
import requests
from django.db import connection

from enrollments.bulk import jobs, runner, workflow
from enrollments.models import BulkRow, JobState
from tests.integration.enrollments.test_bulk_jobs import KEY, _csv, _exists, _import, bulk_env

pytestmark = pytest.mark.django_db(transaction=True)
__all__ = ["bulk_env"]  # the fixture, shared with the in-process job tests


@pytest.fixture
def lanes_env(bulk_env, settings, monkeypatch):
    if connection.vendor != "postgresql":
        pytest.skip("lanes run on PostgreSQL only (DATABASE_URL is not PostgreSQL)")
    settings.BULK_CALLS_IN_FLIGHT = 4
    # 60 ms per DPS call: a chunk spends most of its time waiting on DPS, as against Azure.
    requests.put(
        f"https://{bulk_env['base']}/_emulator/config",
        json={"latency": {"fixed_ms": 60, "jitter_ms": 0, "methods": ["POST"]}},
        verify=bulk_env["ca"],
        timeout=5,
    ).raise_for_status()
    in_flight = {"now": 0, "max": 0, "threads": set()}
    lock = threading.Lock()
    original = runner.run_chunk

    def counting(*args, **kwargs):
        with lock:
            in_flight["now"] += 1
            in_flight["max"] = max(in_flight["max"], in_flight["now"])
            in_flight["threads"].add(threading.get_ident())
        try:
            return original(*args, **kwargs)
        finally:
            with lock:
                in_flight["now"] -= 1

    monkeypatch.setattr(runner, "run_chunk", counting)
    yield {**bulk_env, "in_flight": in_flight}
    requests.put(
        f"https://{bulk_env['base']}/_emulator/config",
        json={"latency": {"fixed_ms": 0, "jitter_ms": 0}},
        verify=bulk_env["ca"],
        timeout=5,
    ).raise_for_status()


def test_chunks_go_out_side_by_side_and_every_row_once(lanes_env):
    env, client = lanes_env, lanes_env["client"]
    p = f"l{uuid.uuid4().hex[:6]}"
    job = _import(env, _csv([f"create,{p}-{i},symmetricKey,{KEY},enabled," for i in range(400)]))
    assert job.state == JobState.COMPLETED, job.error
    assert (job.count_done, job.count_failed, job.count_conflict) == (400, 0, 0)
    assert env["in_flight"]["max"] >= 2
    assert len(env["in_flight"]["threads"]) >= 2
    attempts = set(BulkRow.objects.filter(job=job).values_list("attempts", flat=True))
    assert attempts == {1}
    assert all(_exists(client, f"{p}-{i}") for i in range(0, 400, 23))


def test_an_expired_signin_in_one_lane_pauses_every_lane_and_resume_finishes_once(lanes_env):
    env, client = lanes_env, lanes_env["client"]
    p = f"m{uuid.uuid4().hex[:6]}"
    job = _import(
        env,
        _csv([f"create,{p}-{i},symmetricKey,{KEY},enabled," for i in range(300)]),
        confirm=False,
    )
    jobs.job_confirm(
        job=job, actor=env["user"], capabilities=["enrollments.read", "enrollments.write"]
    )
    calls = {"n": 0}
    original = runner.run_chunk  # the counting wrapper

    def expire_after_some(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 8:
            env["flag"].write_text("expired")  # the owner's sign-in ends mid-run
        return original(*args, **kwargs)

    runner.run_chunk = expire_after_some
    try:
        workflow.job_execute(job.pk)
    finally:
        runner.run_chunk = original
    job.refresh_from_db()
    assert (job.state, job.pause_reason) == (JobState.PAUSED, "needs_signin")
    assert 0 < job.count_done < 300
    leased = BulkRow.objects.filter(job=job).exclude(lease="").count()
    assert leased == 0, "every lane gave its rows back"
    env["flag"].unlink()
    assert workflow.job_resume(job.pk)
    workflow.job_execute(job.pk)
    job.refresh_from_db()
    assert job.state == JobState.COMPLETED, job.error
    assert (job.count_done, job.count_failed, job.count_conflict) == (300, 0, 0)
    assert all(_exists(client, f"{p}-{i}") for i in range(0, 300, 19))
