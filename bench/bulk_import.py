"""Bulk import throughput against the DPS emulator held to a quota of Q operations a minute.

A bulk call carries ten enrollments and costs one operation, so the ceiling is 10 x Q rows a
minute. The script starts the emulators (``python -m emulators serve``) and one or more Celery
workers (``--pool=solo``) as subprocesses on a PostgreSQL database of its own (created and
dropped: ``bench_bulk``) and Redis database 13, imports N generated rows per worker count, and
prints rows applied per minute as a fraction of 10 x Q, and how many rows failed. Beside it, a
plain loop sends one PUT per row (honouring 429 Retry-After) for ``--loop-seconds``.

Run: ``.venv/bin/python bench/bulk_import.py [--rows 100000] [--quota 1000] [--workers 1 2]
[--lanes 4] [--latency-ms 0]``
(needs PostgreSQL and Redis on 127.0.0.1).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

DB_NAME = "bench_bulk"
PG = "postgres://postgres@127.0.0.1:5432"
REDIS_URL = "redis://127.0.0.1:6379/13"
INSTANCE = "dps-fleet-prod"
KEY = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWY="


def psql(sql: str) -> None:
    import psycopg

    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        conn.execute(sql)


def write_csv(path: Path, prefix: str, rows: int) -> None:
    with path.open("w", newline="") as out:
        out.write("operation,registrationId,attestationType,symmetricKeyPrimary,twinTags\r\n")
        for i in range(rows):
            out.write(f'create,{prefix}-{i:07d},symmetricKey,{KEY},"{{""n"":{i}}}"\r\n')


def start_workers(count: int, env: dict[str, str], log: Path) -> list[subprocess.Popen[bytes]]:
    procs = []
    for n in range(count):
        procs.append(
            subprocess.Popen(
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
                    "-n",
                    f"bench{n}@%h",
                ],
                cwd=ROOT,
                env=env,
                stdout=log.open("ab"),
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
    return procs


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def wait_state(job: Any, states: tuple[str, ...], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job.refresh_from_db()
        if job.state in states:
            return
        if job.state == "failed":
            raise SystemExit(f"job {job.pk} failed: {job.error}")
        time.sleep(0.5)
    raise SystemExit(f"job {job.pk} is still {job.state} after {timeout:.0f} s")


def run_import(
    args: Any, workers: int, env: dict[str, str], tmp: Path, ctx: dict[str, Any]
) -> dict[str, Any]:
    from django.core.files.uploadedfile import SimpleUploadedFile
    from kombu import Connection

    from enrollments import tasks
    from enrollments.bulk import jobs

    prefix = f"w{workers}-{int(time.time())}"
    source = tmp / f"{prefix}.csv"
    write_csv(source, prefix, args.rows)
    log = tmp / f"workers-{workers}.log"
    procs = start_workers(workers, env, log)
    try:
        with source.open("rb") as handle:
            upload = SimpleUploadedFile("bench.csv", handle.read())
        prepared = time.monotonic()
        job = jobs.job_create(
            owner=ctx["user"],
            instance=ctx["instance"],
            kind="import",
            capabilities=["enrollments.read", "enrollments.write"],
            options={"default_operation": "create"},
            upload=upload,
            source_name=source.name,
        )
        wait_state(job, ("awaiting_confirmation",), 1800)
        prepared = time.monotonic() - prepared
        # Let the emulator's one-minute window forget the preview's queries.
        time.sleep(61)
        started = time.monotonic()
        jobs.job_confirm(
            job=job, actor=ctx["user"], capabilities=["enrollments.read", "enrollments.write"]
        )
        with Connection(REDIS_URL) as conn:
            for _ in range(workers - 1):  # one more execute task per extra worker
                tasks.bulk_job_execute_task.apply_async((job.pk,), connection=conn)
        wait_state(job, ("completed", "completed_with_errors"), 7200)
        elapsed = time.monotonic() - started
    finally:
        stop(procs)
    job.refresh_from_db()
    per_minute = job.count_done / elapsed * 60
    return {
        "workers": workers,
        "prepare_seconds": prepared,
        "rows": job.count_done,
        "failed": job.count_failed + job.count_conflict + job.count_skipped,
        "seconds": elapsed,
        "per_minute": per_minute,
        "fraction": per_minute / (10 * args.quota),
    }


def run_loop(args: Any, endpoints: dict[str, Any]) -> dict[str, Any]:
    from enrollments.dps.auth import parse_connection_string
    from enrollments.dps.client import DpsClient
    from enrollments.dps.exceptions import DpsThrottled
    from enrollments.dps.types import AttestationMechanism, IndividualEnrollment

    entry = next(d for d in endpoints["dps"] if d["name"] == INSTANCE)
    cs = parse_connection_string(entry["connection_string"])
    client = DpsClient(cs.host, cs.token_provider(), ca_bundle=endpoints["ca_cert"], max_retries=0)
    time.sleep(61)  # a fresh quota window
    prefix = f"loop-{int(time.time())}"
    done = throttled = 0
    started = time.monotonic()
    while time.monotonic() - started < args.loop_seconds:
        item = IndividualEnrollment(
            registration_id=f"{prefix}-{done:07d}",
            attestation=AttestationMechanism.for_symmetric_key(KEY, KEY),
        )
        try:
            client.enrollment_put(item)
        except DpsThrottled as exc:
            throttled += 1
            time.sleep(exc.retry_after or 1)
            continue
        done += 1
    elapsed = time.monotonic() - started
    return {
        "rows": done,
        "seconds": elapsed,
        "per_minute": done / elapsed * 60,
        "throttled": throttled,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--quota", type=int, default=1000, help="operations per minute (Q)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--loop-seconds", type=float, default=90)
    parser.add_argument(
        "--lanes", type=int, default=4, help="bulk calls in flight per job (BULK_CALLS_IN_FLIGHT)"
    )
    parser.add_argument(
        "--latency-ms", type=int, default=0, help="emulated DPS latency per call, as Azure adds"
    )
    args = parser.parse_args(argv)

    from emulator_dps import start_server

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        state = tmp / "state"
        state.mkdir()
        emulators, endpoints = start_server(state)
        psql(f"DROP DATABASE IF EXISTS {DB_NAME}")
        psql(f"CREATE DATABASE {DB_NAME}")
        dps = {d["name"]: d["connection_string"] for d in endpoints["dps"]}
        dps["_ca"] = endpoints["ca_cert"]
        env = {
            **{
                k: v
                for k, v in os.environ.items()
                if not k.startswith(("DATABASE_", "REDIS_", "CELERY_", "BULK_", "DPS_OPS"))
            },
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "DATABASE_URL": f"{PG}/{DB_NAME}",
            "REDIS_URL": REDIS_URL,
            "CELERY_BROKER_URL": REDIS_URL,
            "BULK_ACCESS_BACKEND": "tests.integration.enrollments.bulk_support.EmulatorAccess",
            "BULK_TEST_DPS": json.dumps(dps),
            "BULK_DIR": str(tmp / "bulk"),
            "DPS_OPS_PER_MINUTE_OVERRIDES": f"{INSTANCE}={args.quota}",
            "BULK_CALLS_IN_FLIGHT": str(args.lanes),
            "PYTHONPATH": str(ROOT),
        }
        os.environ.update(env)
        import django

        django.setup()
        import redis
        import requests
        from django.contrib.auth import get_user_model
        from django.core.management import call_command

        from instances.models import DpsInstance

        redis.Redis.from_url(REDIS_URL).flushdb()
        call_command("migrate", verbosity=0)
        entry = next(d for d in endpoints["dps"] if d["name"] == INSTANCE)
        control = requests.Session()
        control.trust_env = False
        control.put(
            f"https://{entry['host']}/_emulator/config",
            json={
                "quota": {"enabled": True, "operations_per_minute": args.quota},
                "latency": {"fixed_ms": args.latency_ms, "jitter_ms": 0},
            },
            verify=endpoints["ca_cert"],
            timeout=5,
        ).raise_for_status()
        ctx = {
            "user": get_user_model().objects.create_user("bench@example.com"),
            "instance": DpsInstance.objects.create(
                name=INSTANCE, host=entry["host"], resource_id=entry["resource_id"]
            ),
        }
        try:
            print(
                f"quota Q = {args.quota} ops/min, ceiling 10 x Q = {10 * args.quota:,} rows/min; "
                f"{args.lanes} call(s) in flight per job; DPS latency {args.latency_ms} ms"
            )
            for workers in args.workers:
                r = run_import(args, workers, env, tmp, ctx)
                print(
                    f"  bulk import, {r['workers']} worker(s): {r['rows']:,} rows in "
                    f"{r['seconds']:.0f} s = {r['per_minute']:,.0f} rows/min = "
                    f"{r['fraction']:.1%} of 10 x Q; rows not done: {r['failed']} "
                    f"(validation and preview before it: {r['prepare_seconds']:.0f} s)",
                    flush=True,
                )
            loop = run_loop(args, endpoints)
            print(
                f"  one PUT per row   : {loop['rows']:,} rows in {loop['seconds']:.0f} s = "
                f"{loop['per_minute']:,.0f} rows/min = {loop['per_minute'] / (10 * args.quota):.1%} "
                f"of 10 x Q ({loop['throttled']} answers were 429)"
            )
            throttled = (
                control.get(
                    f"https://{entry['host']}/_emulator/stats",
                    verify=endpoints["ca_cert"],
                    timeout=5,
                )
                .json()
                .get("throttled")
            )
            print(f"  429s the emulator sent in all: {throttled}")
        finally:
            from django.db import connections

            connections.close_all()
            psql(f"DROP DATABASE IF EXISTS {DB_NAME}")
            redis.Redis.from_url(REDIS_URL).flushdb()
            emulators.terminate()
            try:
                emulators.wait(20)
            except subprocess.TimeoutExpired:
                emulators.kill()
                emulators.wait(10)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
