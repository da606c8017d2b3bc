"""A Redis restart in the middle of an import, with a real worker (issue 11, faults).

The test starts its own ``redis-server`` on a free port (never the machine's shared one),
without persistence, so the restart loses everything Redis held: queued and unacknowledged
task messages and the rate limiter's state. The worker of test_bulk_worker.py runs against
it; the test plays Celery beat (the sweep re-queues a job whose worker went silent).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

import tests.integration.enrollments.test_bulk_worker as bw
from enrollments.models import BulkRow, JobState

from .test_bulk_worker import (  # noqa: F401 - worker_env is a fixture
    KEY,
    _all_rows_once,
    _confirm,
    _dps_state,
    _import,
    _wait,
    worker_env,
)

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """A private ``redis-server`` without persistence, restartable on the same port."""

    def __init__(self, port: int, workdir: Path) -> None:
        self.port = port
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=(self.workdir / "redis.log").open("ab"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server did not listen on port {self.port}")

    def kill(self) -> None:
        """SIGKILL: the server goes away at once, with everything it held."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
            self.proc = None


@pytest.fixture
def redis_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        print("SKIP reason: redis-server is not installed (apt-get install redis-server)")
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    workdir = tmp_path / "redis"
    workdir.mkdir()
    server = RedisServer(_free_port(), workdir)
    server.start()
    # The worker fixture reads its Redis URL from the module: point it at this server.
    monkeypatch.setattr(bw, "REDIS_URL", server.url)
    yield server
    server.stop()


@pytest.fixture
def requires_services(redis_server: RedisServer) -> None:
    """Override test_bulk_worker's check: PostgreSQL, and this test's own Redis."""
    if connection.vendor != "postgresql":
        print("SKIP reason: needs PostgreSQL (DATABASE_URL)")
        pytest.skip("needs PostgreSQL (DATABASE_URL): the worker process shares the test database")


def test_redis_restart_mid_import_finishes_with_every_row_applied_once(
    worker_env: dict[str, Any],  # noqa: F811
    redis_server: RedisServer,
) -> None:
    """Kill Redis while the worker applies rows, start it again: the job still ends exactly."""
    env = worker_env
    env["worker"]()
    p = f"rr{uuid.uuid4().hex[:6]}"
    n = 900
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
    for i in range(n):
        rid = f"{p}-new-{i}"
        lines.append(f'create,{rid},symmetricKey,,enabled,"{{""new"":true}}"')
        expected[rid] = ("enabled", {"new": True})
    job = _import(env, lines)
    job = _wait(job, (JobState.AWAITING_CONFIRMATION,), env["log"])
    writes_before = env["stats"]()
    _confirm(env, job)
    _wait(job, (JobState.RUNNING,), env["log"], until=lambda j: j.progress_done >= 100)
    redis_server.kill()
    job.refresh_from_db()
    assert job.state == JobState.RUNNING
    assert job.progress_done < job.progress_total, "the job ended before Redis went away"
    time.sleep(2)  # the worker meets a Redis that is not there
    redis_server.start()

    # No sweep (the beat's stand-in): the message of the running task died with Redis, so the
    # worker's own task must carry the job through the outage, not a re-queue minutes later.
    job = _wait(job, (JobState.COMPLETED, JobState.COMPLETED_WITH_ERRORS), env["log"], timeout=90)
    assert job.state == JobState.COMPLETED, job.error
    _all_rows_once(job)
    assert _dps_state(env["client"], p) == expected
    # Updates carry the preview's etag and creates fail on a second try, so "all done" means
    # each row took effect once; the call count shows no second pass over the file either.
    writes = env["stats"]()["service_operations"] - writes_before["service_operations"]
    assert writes < job.progress_total / 10 * 1.5, writes
    assert not BulkRow.objects.filter(job=job, attempts__gt=2).exists()
    log = env["log"].read_text(errors="replace")
    assert "raised unexpected" not in log, log[-3000:]
    # The worker took up the broker again: a new job is picked up from the restarted Redis.
    after = _import(env, [f"create,{p}-after,symmetricKey,{KEY},enabled,{{}}"])
    _wait(after, (JobState.AWAITING_CONFIRMATION,), env["log"], timeout=60)
