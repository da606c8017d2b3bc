"""Bulk jobs through a real Celery worker (a subprocess) on real Redis and PostgreSQL.

The worker shares the test database (transactional tests, so it sees committed rows), takes
its messages from Redis database 14 and reaches the DPS emulator with SAS through
``bulk_support.EmulatorAccess``. The test plays Celery beat: while it waits it runs the same
sweep the beat schedule runs every 30 seconds in production, which re-queues a job whose
worker went silent.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection

from enrollments.bulk import jobs, workflow
from enrollments.models import BulkJob, BulkRow, JobKind, JobState, RowPlan, RowStatus
from instances.models import DpsInstance
from tests.integration.enrollments.bulk_support import EmulatorAccess

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

# The worker's broker: a Redis database of its own, one per xdist worker (gw0 → 14, gw1 → 13, ...),
# so two test processes never take each other's tasks; TEST_WORKER_REDIS_URL overrides it.
_XDIST_INDEX = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
REDIS_URL = os.environ.get("TEST_WORKER_REDIS_URL") or f"redis://127.0.0.1:6379/{14 - _XDIST_INDEX}"
INSTANCE = "dps-fleet-prod"
KEY = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWY="
ROOT = Path(__file__).resolve().parents[3]
HEADER = "operation,registrationId,attestationType,symmetricKeyPrimary,provisioningStatus,twinTags"


def _redis_up() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 6379), 1).close()
    except OSError:
        return False
    return True


@pytest.fixture
def requires_services() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (DATABASE_URL): the worker process shares the test database")
    if not _redis_up():
        pytest.skip("needs Redis on 127.0.0.1:6379 for the Celery broker and the rate limiter")


class Worker:
    """A ``celery worker`` subprocess with the test database, Redis and the emulator."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = env
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        out = self.log.open("ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "portal",
                "worker",
                "--pool=solo",
                "--without-gossip",
                "--without-mingle",
                "--loglevel=WARNING",
            ],
            cwd=ROOT,
            env=self.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def kill(self) -> None:
        """SIGKILL: no chance to release leases, acknowledge messages or write anything."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
            self.proc = None


@pytest.fixture
def worker_env(
    requires_services: None,
    endpoints: dict[str, Any],
    tmp_path: Path,
    settings: Any,
    monkeypatch: Any,
) -> Iterator[dict[str, Any]]:
    """Everything a test needs: the job owner, the instance, a worker factory, the emulator."""
    import redis
    from kombu import Connection

    from enrollments import tasks

    broker = redis.Redis.from_url(REDIS_URL)
    broker.flushdb()
    dps = {d["name"]: d["connection_string"] for d in endpoints["dps"]}
    dps["_ca"] = endpoints["ca_cert"]
    entry = next(d for d in endpoints["dps"] if d["name"] == INSTANCE)
    db = connection.settings_dict
    env = {
        **{
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("DJANGO_", "DATABASE_", "REDIS_", "CELERY_", "BULK_"))
        },
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": f"postgres://{db['USER'] or 'postgres'}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
        "REDIS_URL": REDIS_URL,
        "CELERY_BROKER_URL": REDIS_URL,
        "BULK_ACCESS_BACKEND": "tests.integration.enrollments.bulk_support.EmulatorAccess",
        "BULK_TEST_DPS": json.dumps(dps),
        "BULK_DIR": str(tmp_path / "bulk"),
        "DPS_OPS_PER_MINUTE_OVERRIDES": f"{INSTANCE}=3000",
        "BULK_STALE_SECONDS": "6",
        "BULK_LEASE_SECONDS": "12",
        "BULK_CALLS_IN_FLIGHT": "4",  # the production default: chunks in flight side by side
        "PYTHONPATH": str(ROOT),
    }
    settings.BULK_DIR = tmp_path / "bulk"
    settings.BULK_STALE_SECONDS = 6
    settings.BULK_ACCESS_BACKEND = env["BULK_ACCESS_BACKEND"]
    monkeypatch.setenv("BULK_TEST_DPS", env["BULK_TEST_DPS"])

    def publish(task_name: str, job_id: int) -> None:
        # The test process's own broker setting may differ: publish to the worker's Redis.
        task = getattr(tasks, task_name)

        def send() -> None:
            with Connection(REDIS_URL) as conn:
                task.apply_async((job_id,), connection=conn)

        from django.db import transaction

        transaction.on_commit(send)

    monkeypatch.setattr(workflow, "enqueue", publish)
    instance = DpsInstance.objects.create(
        name=INSTANCE, host=entry["host"], resource_id=entry["resource_id"]
    )
    user = get_user_model().objects.create_user(f"op-{uuid.uuid4().hex[:6]}@example.com")
    base = f"https://{entry['host']}"
    control = requests.Session()
    control.trust_env = False
    control.verify = endpoints["ca_cert"]

    def configure(body: dict[str, Any]) -> None:
        control.put(f"{base}/_emulator/config", json=body, timeout=5).raise_for_status()

    configure({"quota": {"enabled": False}, "faults": {"rules": []}})
    workers: list[Worker] = []

    def new_worker() -> Worker:
        worker = Worker(env, tmp_path / "worker.log")
        worker.start()
        workers.append(worker)
        return worker

    yield {
        "user": user,
        "instance": instance,
        "client": EmulatorAccess().client(owner=user, instance=instance),
        "worker": new_worker,
        "configure": configure,
        "stats": lambda: control.get(f"{base}/_emulator/stats", timeout=5).json(),
        "log": tmp_path / "worker.log",
    }
    for worker in workers:
        worker.stop()
    # Leave the session's shared instance as tests/conftest.py made it: no quota, no faults,
    # and none of the thousands of enrollments written here (list pages of later tests).
    configure({"quota": {"enabled": False}, "faults": {"rules": []}})
    control.post(f"{base}/_emulator/reset", timeout=30).raise_for_status()
    broker.flushdb()


def _upload(lines: list[str]) -> SimpleUploadedFile:
    return SimpleUploadedFile("in.csv", ("\r\n".join([HEADER, *lines]) + "\r\n").encode())


def _wait(
    job: BulkJob,
    states: tuple[str, ...],
    log: Path,
    *,
    timeout: float = 90,
    until: Callable[[BulkJob], bool] | None = None,
    sweep: bool = False,
) -> BulkJob:
    deadline = time.monotonic() + timeout
    next_sweep = time.monotonic() + 2
    while time.monotonic() < deadline:
        if sweep and time.monotonic() >= next_sweep:
            workflow.jobs_sweep()
            next_sweep = time.monotonic() + 2
        job.refresh_from_db()
        if job.state in states and (until is None or until(job)):
            return job
        if job.state == JobState.FAILED:
            break
        time.sleep(0.3)
    tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
    pytest.fail(f"job {job.pk} is {job.state} ({job.error}); wanted {states}\nworker log:\n{tail}")


def _import(env: dict[str, Any], lines: list[str]) -> BulkJob:
    return jobs.job_create(
        owner=env["user"],
        instance=env["instance"],
        kind=JobKind.IMPORT,
        capabilities=["enrollments.read", "enrollments.write", "attestation.reveal"],
        options={"default_operation": "upsert"},
        upload=_upload(lines),
        source_name="in.csv",
    )


def _confirm(env: dict[str, Any], job: BulkJob) -> None:
    jobs.job_confirm(
        job=job,
        actor=env["user"],
        # Files with delete rows need the delete capability too (issue 11).
        capabilities=["enrollments.read", "enrollments.write", "enrollments.delete"],
    )


def _dps_state(client: Any, prefix: str) -> dict[str, tuple[str, dict[str, Any]]]:
    state: dict[str, tuple[str, dict[str, Any]]] = {}
    continuation = None
    while True:
        page = client.enrollment_query(page_size=1000, continuation=continuation)
        for e in page.items:
            if e.registration_id.startswith(prefix):
                tags = (e.initial_twin.tags if e.initial_twin else None) or {}
                state[e.registration_id] = (e.provisioning_status or "enabled", tags)
        continuation = page.continuation_token
        if not continuation:
            return state


def _all_rows_once(job: BulkJob) -> None:
    """Every planned row is done, none failed, conflicted or was skipped."""
    planned = BulkRow.objects.filter(
        job=job, plan__in=(RowPlan.CREATE, RowPlan.UPDATE, RowPlan.DELETE)
    )
    outcomes = set(planned.values_list("status", flat=True))
    assert outcomes == {RowStatus.DONE}, outcomes
    assert job.count_done == planned.count() == job.progress_done
    assert job.count_failed == job.count_conflict == job.count_skipped == 0


def test_worker_runs_an_import_of_thousands_of_rows(worker_env: dict[str, Any]) -> None:
    """3,000 rows: validated, previewed, confirmed and applied by the worker."""
    env = worker_env
    env["worker"]()
    p = f"w{uuid.uuid4().hex[:6]}"
    n = 3000
    job = _import(env, [f"create,{p}-{i},symmetricKey,{KEY},enabled,{{}}" for i in range(n)])
    job = _wait(job, (JobState.AWAITING_CONFIRMATION,), env["log"])
    assert (job.count_create, job.count_invalid) == (n, 0)
    _confirm(env, job)
    job = _wait(job, (JobState.COMPLETED, JobState.COMPLETED_WITH_ERRORS), env["log"])
    assert job.state == JobState.COMPLETED
    _all_rows_once(job)
    state = _dps_state(env["client"], p)
    assert len(state) == n
    assert all(status == "enabled" for status, _ in state.values())


def test_worker_killed_mid_run_then_restarted_applies_every_row_once(
    worker_env: dict[str, Any],
) -> None:
    """SIGKILL during the run; a new worker (and the sweep) finish it exactly.

    Updates go with the preview's etag, so an update applied twice would come back as a
    conflict, and a create applied twice as a failure: all rows done proves each applied once.
    """
    env = worker_env
    worker = env["worker"]()
    p = f"k{uuid.uuid4().hex[:6]}"
    n = 2000
    seed = _import(env, [f"create,{p}-{i},symmetricKey,{KEY},enabled,{{}}" for i in range(n)])
    seed = _wait(seed, (JobState.AWAITING_CONFIRMATION,), env["log"])
    _confirm(env, seed)
    _wait(seed, (JobState.COMPLETED,), env["log"])

    lines, expected = [], {}
    for i in range(n):
        rid = f"{p}-{i}"
        if i % 3 == 0:
            lines.append(f'update,{rid},symmetricKey,{KEY},disabled,"{{""n"":{i}}}"')
            expected[rid] = ("disabled", {"n": i})
        elif i % 3 == 1:
            lines.append(f"delete,{rid},,,,")
        else:
            lines.append(f"upsert,{rid},symmetricKey,{KEY},enabled,{{}}")  # unchanged
            expected[rid] = ("enabled", {})
    for i in range(n // 2):
        rid = f"{p}-new-{i}"
        lines.append(f'create,{rid},symmetricKey,,enabled,"{{""new"":true}}"')
        expected[rid] = ("enabled", {"new": True})
    job = _import(env, lines)
    job = _wait(job, (JobState.AWAITING_CONFIRMATION,), env["log"])
    assert job.count_unchanged == len(range(2, n, 3))
    writes_before = env["stats"]()
    _confirm(env, job)
    _wait(job, (JobState.RUNNING,), env["log"], until=lambda j: j.progress_done >= 300)
    worker.kill()
    job.refresh_from_db()
    assert job.state == JobState.RUNNING
    killed_at = job.progress_done
    assert 0 < killed_at < job.progress_total

    env["worker"]()
    job = _wait(
        job,
        (JobState.COMPLETED, JobState.COMPLETED_WITH_ERRORS),
        env["log"],
        timeout=100,
        sweep=True,
    )
    assert job.state == JobState.COMPLETED
    _all_rows_once(job)
    assert _dps_state(env["client"], p) == expected
    # Bulk calls of ten (keys given, so no key reads): about progress_total / 10 calls, plus
    # a GET per row that was in flight at the kill; a second pass would double it.
    writes = env["stats"]()["service_operations"] - writes_before["service_operations"]
    assert writes < job.progress_total / 10 * 1.5, writes


def test_worker_finishes_exactly_through_503_500_and_timeouts(
    worker_env: dict[str, Any],
) -> None:
    """Injected 503/500/timeouts on the bulk calls: rows in doubt are checked, none twice."""
    env = worker_env
    env["worker"]()
    p = f"z{uuid.uuid4().hex[:6]}"
    n = 400
    job = _import(env, [f"create,{p}-{i},symmetricKey,{KEY},enabled,{{}}" for i in range(n)])
    job = _wait(job, (JobState.AWAITING_CONFIRMATION,), env["log"])
    env["configure"](
        {
            "faults": {
                "seed": 11,
                "rules": [
                    {"kind": "503", "probability": 0.1, "retry_after": 1, "methods": ["POST"]},
                    {"kind": "500", "probability": 0.05, "methods": ["POST"]},
                    {"kind": "timeout", "probability": 0.03, "seconds": 4, "methods": ["POST"]},
                ],
            },
        }
    )
    _confirm(env, job)
    job = _wait(job, (JobState.COMPLETED, JobState.COMPLETED_WITH_ERRORS), env["log"], timeout=100)
    env["configure"]({"faults": {"rules": []}})
    assert job.state == JobState.COMPLETED
    _all_rows_once(job)
    assert BulkRow.objects.filter(job=job, attempts__gt=1).exists()  # faults did strike
    assert len(_dps_state(env["client"], p)) == n


def test_worker_finishes_exactly_through_429(worker_env: dict[str, Any]) -> None:
    """The emulator allows 20 calls a minute while the portal paces for 3,000: 429s with
    Retry-After are waited out and no row fails for throttling."""
    env = worker_env
    env["worker"]()
    p = f"q{uuid.uuid4().hex[:6]}"
    n = 300  # 30 bulk calls: a third of them wait for the emulator's minute to move on
    job = _import(env, [f"create,{p}-{i},symmetricKey,{KEY},enabled,{{}}" for i in range(n)])
    job = _wait(job, (JobState.AWAITING_CONFIRMATION,), env["log"])
    throttled_before = env["stats"]().get("throttled", 0)
    env["configure"]({"quota": {"enabled": True, "operations_per_minute": 20}})
    _confirm(env, job)
    job = _wait(job, (JobState.COMPLETED, JobState.COMPLETED_WITH_ERRORS), env["log"], timeout=110)
    env["configure"]({"quota": {"enabled": False}})
    assert job.state == JobState.COMPLETED
    _all_rows_once(job)
    assert env["stats"]().get("throttled", 0) > throttled_before  # the quota did bite
    assert len(_dps_state(env["client"], p)) == n
