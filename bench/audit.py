"""Measure the audit pages and export over a large PostgreSQL audit log.

Creates a scratch database (``bench_audit`` by default) on the local PostgreSQL server,
migrates it, seeds N events (default 1,000,000) with a valid hash chain through COPY,
then drives the audit views in-process with Django's test client as a Portal.Auditor:
the list page unfiltered and with each filter, a deep page, the event page and the chart.
Prints the median and p95 latency of each. Finally it exports every event as CSV in a
child process and prints the child's peak RSS. The database is dropped at the end unless
``--keep`` is given (then ``--reuse`` skips seeding on the next run).

Run: ``.venv/bin/python bench/audit.py [--events 1000000] [--requests 60] [--keep] [--reuse]``.
Goals (issue 7): p95 under 50 ms for list pages, export RSS under 150 MB.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SERVER = os.environ.get("BENCH_PG_SERVER", "postgres://postgres@127.0.0.1:5432")
DEFAULT_DB = "bench_audit"

ACTIONS = [
    ("enrollment_read", 30),
    ("enrollment_update", 18),
    ("enrollment_create", 10),
    ("signin", 10),
    ("denied", 6),
    ("enrollment_delete", 4),
    ("attestation_reveal", 4),
    ("enrollmentgroup_update", 3),
    ("registration_delete", 3),
    ("job_create", 2),
    ("job_finish", 2),
    ("signin_failed", 2),
    ("signout", 3),
    ("export", 1),
    ("instance_update", 1),
    ("reauth", 1),
]
INSTANCES = [
    f"dps-{name}" for name in ("fleet-prod", "fleet-lab", "eu-west", "us-east", "apac", "test")
]
USERS = 200
TARGETS = 50_000


def _setup_django(db_name: str) -> None:
    os.environ["DATABASE_URL"] = f"{SERVER}/{db_name}"
    os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/14")
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()
    import logging

    logging.getLogger("audit").setLevel(logging.WARNING)


def _admin_sql(sql: str) -> None:
    import psycopg

    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as conn:
        conn.execute(sql)


#
# Seeding
#


def _rows(count: int, start: datetime, span: timedelta) -> Iterator[dict[str, Any]]:
    """Yield plausible events in time order (a fixed seed: every run seeds the same log)."""
    rng = random.Random(7)
    names, weights = zip(*ACTIONS, strict=True)
    users = [
        (str(uuid.UUID(int=rng.getrandbits(128))), f"user{u:03d}@contoso.example", f"User {u:03d}")
        for u in range(USERS)
    ]
    step = span / count
    for i in range(count):
        action = rng.choices(names, weights)[0]
        oid, upn, name = users[min(int(rng.paretovariate(1.2)) - 1, USERS - 1)]
        anonymous = action == "signin_failed" and rng.random() < 0.5
        outcome = "success"
        if action == "denied":
            outcome = "denied"
        elif rng.random() < 0.04 or action in ("signin_failed", "reauth"):
            outcome = "failed"
        target_type, target_id, dps = "", "", ""
        before = after = None
        if action.startswith(("enrollment", "attestation", "registration")):
            dps = INSTANCES[rng.randrange(len(INSTANCES))]
            target_type = "enrollment_group" if "group" in action else "enrollment"
            target_id = f"device-{rng.randrange(TARGETS):05d}"
            if action in ("enrollment_update", "enrollmentgroup_update"):
                before = {
                    "registrationId": target_id,
                    "provisioningStatus": "enabled",
                    "attestation": {"type": "symmetricKey"},
                    "etag": f'"{i:x}"',
                }
                after = {**before, "provisioningStatus": "disabled"}
        elif action.startswith("job"):
            dps = INSTANCES[rng.randrange(len(INSTANCES))]
            target_type, target_id = "bulk_job", str(rng.randrange(5000))
        elif action == "denied":
            target_type, target_id = "view", f"/dps/{INSTANCES[0]}/enrollments/new"
        yield {
            "time": start + step * i,
            "actor_oid": "" if anonymous else oid,
            "actor_upn": upn,
            "actor_name": "" if anonymous else name,
            "client_ip": f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}",
            "request_id": uuid.UUID(int=rng.getrandbits(128)).hex,
            "task_id": "",
            "dps_instance": dps,
            "action": action,
            "target_type": target_type,
            "target_id": target_id,
            "outcome": outcome,
            "dps_status": 412 if outcome == "failed" and dps else None,
            "dps_error_code": "412001" if outcome == "failed" and dps else "",
            "tracking_id": "",
            "before": before,
            "after": after,
            "message": "precondition failed" if outcome == "failed" else "",
        }


COLUMNS = (
    "time", "actor_oid", "actor_upn", "actor_name", "client_ip", "request_id", "task_id",
    "dps_instance", "action", "target_type", "target_id", "outcome", "dps_status",
    "dps_error_code", "tracking_id", "before", "after", "message", "prev_hash", "hash", "key_id",
)  # fmt: skip


def seed(count: int) -> None:
    """COPY ``count`` events with a valid chain, then rebuild the indexes and ANALYZE."""
    from django.db import connection

    from audit.chain import GENESIS_HASH, head_mac, payload_hash
    from audit.keys import audit_current_key
    from audit.models import AuditChainHead

    migration = importlib.import_module("audit.migrations.0002_append_only_and_indexes")
    index_names = [*migration.BTREE_INDEXES, "audit_ev_search_trgm"]
    started = time.perf_counter()
    with connection.cursor() as cursor:
        for name in index_names:
            cursor.execute(f"DROP INDEX IF EXISTS {name}")
    now = datetime.now(UTC).replace(microsecond=0)
    prev = GENESIS_HASH
    key_id = audit_current_key()[0]
    copy_sql = f"COPY audit_auditevent ({', '.join(COLUMNS)}) FROM STDIN"
    with connection.cursor() as cursor:
        pg = cursor.cursor
        with pg.copy(copy_sql) as copy:
            for row in _rows(count, now - timedelta(days=365), timedelta(days=365)):
                # The same canonical payload audit.chain.event_payload builds from a row.
                payload = dict(row)
                payload["time"] = row["time"].strftime("%Y-%m-%dT%H:%M:%S.%fZ")
                payload["prev_hash"] = prev
                payload["key_id"] = key_id
                digest = payload_hash(payload, key_id)
                copy.write_row(
                    (
                        *(row[c] if c not in ("before", "after") else None for c in COLUMNS[:15]),
                        None if row["before"] is None else json.dumps(row["before"]),
                        None if row["after"] is None else json.dumps(row["after"]),
                        row["message"],
                        prev,
                        digest,
                        key_id,
                    )
                )
                prev = digest
    AuditChainHead.objects.update_or_create(
        pk=1,
        defaults={
            "last_hash": prev,
            "count": count,
            "key_id": key_id,
            "mac": head_mac(prev, key_id),
        },
    )
    copied = time.perf_counter()
    with connection.schema_editor() as editor:
        migration.forwards(None, editor)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE audit_auditevent")
    print(
        f"seeded {count:,} events: COPY {copied - started:.0f} s, "
        f"indexes + analyze {time.perf_counter() - copied:.0f} s"
    )


#
# Measuring
#


def _auditor() -> Any:
    from django.contrib.auth import get_user_model

    from authn.models import EntraIdentity

    user, _ = get_user_model().objects.get_or_create(username="bench-auditor")
    EntraIdentity.objects.update_or_create(
        user=user,
        defaults={
            "tenant_id": "bench",
            "object_id": "bench-auditor-oid",
            "upn": "bench.auditor@contoso.example",
            "display_name": "Bench Auditor",
            "app_roles": ["Portal.Auditor"],
        },
    )
    return user


def _timed(client: Any, urls: Callable[[], str], n: int) -> tuple[float, float]:
    for _ in range(3):  # warm-up: connections, templates, plan cache
        client.get(urls())
    samples = []
    for _ in range(n):
        url = urls()
        t0 = time.perf_counter()
        response = client.get(url)
        samples.append((time.perf_counter() - t0) * 1000)
        assert response.status_code == 200, (url, response.status_code)
    samples.sort()
    return statistics.median(samples), samples[max(0, int(len(samples) * 0.95) - 1)]


def measure(n: int) -> list[tuple[str, float, float]]:
    from django.test import Client

    from audit.models import AuditEvent

    client = Client()
    client.force_login(_auditor(), backend="authn.backends.EntraBackend")
    rng = random.Random(11)
    bounds = AuditEvent.objects.order_by("id").values_list("id", flat=True)
    first_id, last_id = bounds.first(), bounds.last()
    sample = list(
        AuditEvent.objects.filter(
            id__in=[rng.randrange(first_id, last_id) for _ in range(400)]
        ).values("actor_oid", "actor_upn", "target_type", "target_id", "dps_instance")
    )
    with_target = [s for s in sample if s["target_id"] and s["dps_instance"]]
    oids = [s["actor_oid"] for s in sample if s["actor_oid"]]
    upns = [s["actor_upn"] for s in sample if s["actor_upn"]]
    now = datetime.now(UTC)

    def pick(values: list[Any]) -> Any:
        return values[rng.randrange(len(values))]

    def window() -> str:
        start = now - timedelta(days=rng.randrange(7, 360))
        return f"since={start:%Y-%m-%dT%H:%M}&until={start + timedelta(days=7):%Y-%m-%dT%H:%M}"

    def deep() -> str:
        from audit.selectors import Cursor

        event = AuditEvent.objects.only("time").get(pk=rng.randrange(first_id, last_id))
        return f"/audit/?before={Cursor.of(event).encode()}"

    cases: list[tuple[str, Callable[[], str]]] = [
        ("list, unfiltered", lambda: "/audit/"),
        ("list, actor (object id)", lambda: f"/audit/?actor={pick(oids)}"),
        ("list, actor (UPN)", lambda: f"/audit/?actor={pick(upns)}"),
        ("list, action", lambda: f"/audit/?action={pick([a for a, _ in ACTIONS])}"),
        ("list, DPS instance", lambda: f"/audit/?dps_instance={pick(INSTANCES)}"),
        (
            "list, target",
            lambda: "/audit/?target_type={target_type}&target_id={target_id}".format(
                **pick(with_target)
            ),
        ),
        ("list, outcome", lambda: f"/audit/?outcome={pick(['success', 'denied', 'failed'])}"),
        ("list, time range (7 days)", lambda: f"/audit/?{window()}"),
        ("list, search (rare: a device id)", lambda: f"/audit/?q=device-{rng.randrange(TARGETS):05d}"),
        ("list, search (common: 'precondition')", lambda: "/audit/?q=precondition"),
        ("list, outcome + DPS + 7 days", lambda: f"/audit/?outcome=failed&dps_instance={pick(INSTANCES)}&{window()}"),
        ("list, deep page (keyset cursor)", deep),
        (
            "target history page",
            lambda: "/audit/targets/{dps_instance}/{target_type}/{target_id}/".format(
                **pick(with_target)
            ),
        ),
        ("actor activity page", lambda: f"/audit/actors/{pick(oids)}/"),
        ("event page", lambda: f"/audit/events/{rng.randrange(first_id, last_id)}/"),
        ("chart, last 30 days", lambda: "/audit/chart/"),
    ]  # fmt: skip
    results = []
    for label, urls in cases:
        median, p95 = _timed(client, urls, n)
        results.append((label, median, p95))
        print(f"  {label:<40} median {median:7.1f} ms   p95 {p95:7.1f} ms", flush=True)
    return results


def export_child(db_name: str) -> None:
    """Run in a child process: export every event as CSV to nowhere, print bytes and time."""
    _setup_django(db_name)
    from django.test import Client

    client = Client()
    client.force_login(_auditor(), backend="authn.backends.EntraBackend")
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    response = client.get("/audit/export.csv")
    size = rows = 0
    for chunk in response.streaming_content:
        size += len(chunk)
        rows += 1
    print(
        json.dumps(
            {
                "bytes": size,
                "lines": rows,
                "seconds": time.perf_counter() - t0,
                "rss_before_kb": baseline,
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=60, help="timed requests per case")
    parser.add_argument("--db", default=DEFAULT_DB)
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument("--reuse", action="store_true", help="reuse a kept, seeded database")
    parser.add_argument("--export-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.export_child:
        export_child(args.db)
        return
    if not args.reuse:
        _admin_sql(f"DROP DATABASE IF EXISTS {args.db}")
        _admin_sql(f"CREATE DATABASE {args.db}")
    try:
        _setup_django(args.db)
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        if not args.reuse:
            seed(args.events)
        from audit.models import AuditEvent

        print(f"events in the table: {AuditEvent.objects.count():,}")
        print(f"latency over {args.requests} requests per case (in-process Django test client):")
        measure(args.requests)
        print("exporting every event as CSV in a child process…", flush=True)
        done = subprocess.run(
            [sys.executable, __file__, "--export-child", "--db", args.db],
            check=True,
            capture_output=True,
            text=True,
        )
        stats = json.loads(done.stdout.strip().splitlines()[-1])
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        print(
            f"  export: {stats['lines'] - 1:,} rows, {stats['bytes'] / 1e6:,.0f} MB in "
            f"{stats['seconds']:.0f} s; peak RSS {peak_mb:.0f} MB "
            f"(after Django start-up: {stats['rss_before_kb'] / 1024:.0f} MB)"
        )
        call_command("audit_verify", verbosity=0)
        print("audit_verify: chain intact")
    finally:
        from django.db import connections

        connections.close_all()
        if not args.keep:
            _admin_sql(f"DROP DATABASE IF EXISTS {args.db} WITH (FORCE)")


if __name__ == "__main__":
    main()
