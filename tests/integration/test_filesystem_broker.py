"""Without Redis, Celery falls back to kombu's filesystem transport and still runs tasks."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def _env(var_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "CELERY_BROKER_URL")}
    env.update(
        DJANGO_SETTINGS_MODULE="portal.settings",
        DJANGO_DEBUG="true",
        PORTAL_VAR_DIR=str(var_dir),
        DATABASE_URL=f"sqlite:///{var_dir / 'db.sqlite3'}",
    )
    return env


def test_settings_without_redis_choose_filesystem_broker_and_database_cache(tmp_path):
    code = (
        "import django; django.setup(); from django.conf import settings as s;"
        "print(s.CELERY_BROKER_URL, s.CACHES['default']['BACKEND'])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.split() == [
        "filesystem://",
        "django.core.cache.backends.db.DatabaseCache",
    ]
    assert "REDIS_URL is not set" in out.stderr
    assert (tmp_path / "celery-broker" / "control").is_dir()


def test_a_task_sent_over_the_filesystem_broker_is_run_by_a_worker(tmp_path):
    env = _env(tmp_path)
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--no-input", "-v", "0"],
        cwd=ROOT,
        env=env,
        check=True,
    )
    send = "from portal.celery import app; print(app.send_task('enrollments.bulk_jobs_sweep').id)"
    task_id = subprocess.run(
        [sys.executable, "-c", send], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert list((tmp_path / "celery-broker" / "out").iterdir()), "the message was not queued"
    log = tmp_path / "worker.log"
    with log.open("w") as fh:
        worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "portal",
                "worker",
                "--pool",
                "solo",
                "-l",
                "INFO",
            ],
            cwd=ROOT,
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if f"{task_id}] succeeded" in log.read_text():
                break
            time.sleep(0.5)
    finally:
        worker.terminate()
        worker.wait(20)
    assert f"Task enrollments.bulk_jobs_sweep[{task_id}] succeeded" in log.read_text()
