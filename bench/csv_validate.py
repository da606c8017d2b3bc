"""Validation speed and memory: ingest of a generated CSV beside a bare csv.DictReader pass.

Usage: DATABASE_URL=... .venv/bin/python bench/csv_validate.py [--helpers N] [--daemon] [rows ...]
(default 100000 rows; helper processes as the ingest chooses: one per core, at most 4).
``--daemon`` runs the ingest in a daemonic child process, as a Celery prefork pool runs a task
(multiprocessing refuses children to such a process; the ingest's helpers must start anyway).
Prints rows/s of both passes, their ratio and the peak RSS of this process and of its helpers. On PostgreSQL the bench
creates and drops a database of its own (``bench_csv``) on the server DATABASE_URL names, so it
never migrates the database the URL points at (the CI's ``test``).
"""

from __future__ import annotations

import csv
import multiprocessing
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

import django

KEY = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxMjM0NTY3ODkrLw=="


def generate(path: Path, rows: int) -> None:
    with path.open("w", newline="") as out:
        out.write(
            "operation,registrationId,deviceId,attestationType,symmetricKeyPrimary,"
            "symmetricKeySecondary,iotHubs,provisioningStatus,iotEdge,twinTags\r\n"
        )
        for i in range(rows):
            out.write(
                f"upsert,device-{i:08d},dev-{i},symmetricKey,{KEY},{KEY},"
                f'hub-a.azure-devices.net,enabled,false,"{{""n"":{i}}}"\r\n'
            )


BENCH_DB = "bench_csv"


def _own_database() -> str | None:
    """Point DATABASE_URL at a fresh ``bench_csv`` database on the same server; return the
    server URL to drop it afterwards (None on SQLite)."""
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith("postgres"):
        return None
    import psycopg

    server = url.rsplit("/", 1)[0]
    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {BENCH_DB}")
        conn.execute(f"CREATE DATABASE {BENCH_DB}")
    os.environ["DATABASE_URL"] = f"{server}/{BENCH_DB}"
    return server


def _drop_database(server: str | None) -> None:
    if server is None:
        return
    import psycopg
    from django.db import connections

    connections.close_all()
    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {BENCH_DB}")


def main() -> None:
    server = _own_database()
    try:
        _run()
    finally:
        _drop_database(server)


def _run() -> None:
    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from enrollments.bulk.ingest import default_helpers
    from enrollments.models import BulkJob, BulkRow
    from instances.models import DpsInstance

    call_command("migrate", verbosity=0)
    user, _ = get_user_model().objects.get_or_create(username="bench")
    inst, _ = DpsInstance.objects.get_or_create(
        name="bench-dps",
        defaults={
            "host": "127.0.0.1:1",
            "resource_id": "/subscriptions/s/resourceGroups/r/providers/Microsoft.Devices/provisioningServices/bench-dps",
        },
    )
    args = sys.argv[1:]
    helpers = None
    if args[:1] == ["--helpers"]:
        helpers, args = int(args[1]), args[2:]
    daemon = "--daemon" in args
    args = [a for a in args if a != "--daemon"]
    sizes = [int(a) for a in args] or [100_000]
    for rows in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "bench.csv"
            generate(path, rows)
            t0 = time.perf_counter()
            with path.open(newline="") as f:
                bare = sum(1 for _ in csv.DictReader(f))
            t_bare = time.perf_counter() - t0
            job = BulkJob.objects.create(kind="import", owner=user, instance=inst)
            if daemon:
                n_rows, invalid, t_ingest = _in_daemon(job.pk, path, rows, helpers)
            else:
                n_rows, invalid, t_ingest = _timed_ingest(job.pk, path, rows, helpers)
            stored = BulkRow.objects.filter(job=job).count()
            BulkRow.objects.filter(job=job).delete()
            job.delete()
            peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            helper_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
            print(
                f"rows={rows:,} size={path.stat().st_size / 1e6:.0f} MB "
                f"db={django.db.connection.vendor} helpers={helpers or default_helpers()}"
                f"{' (ingest in a daemonic process)' if daemon else ''}"
            )
            print(f"  bare DictReader: {bare / t_bare:,.0f} rows/s")
            print(
                f"  validate+store : {n_rows / t_ingest:,.0f} rows/s (stored {stored:,}, invalid {invalid})"
            )
            print(f"  ratio          : 1/{t_ingest / t_bare:.1f} of the bare pass")
            print(
                f"  peak RSS       : {peak_mb:.0f} MB (largest child process: {helper_mb:.0f} MB)"
            )


def _timed_ingest(
    job_id: int, path: Path, rows: int, helpers: int | None
) -> tuple[int, int, float]:
    from enrollments.bulk.ingest import ingest_file
    from enrollments.models import BulkJob

    job = BulkJob.objects.get(pk=job_id)
    t0 = time.perf_counter()
    result = ingest_file(job, path, max_rows=rows + 1, helpers=helpers)
    return result.rows, result.invalid, time.perf_counter() - t0


def _daemon_main(queue: Any, *args: Any) -> None:
    from django.db import connections

    try:
        queue.put(_timed_ingest(*args))
    finally:
        connections.close_all()


def _in_daemon(job_id: int, path: Path, rows: int, helpers: int | None) -> tuple[int, int, float]:
    """Run the ingest in a daemonic forked child, as a Celery prefork pool runs tasks."""
    from django.db import connections

    connections.close_all()  # the child opens its own connection
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(
        target=_daemon_main, args=(queue, job_id, path, rows, helpers), daemon=True
    )
    child.start()
    result = queue.get()
    child.join()
    return result


if __name__ == "__main__":
    main()
