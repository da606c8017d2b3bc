"""The fleet index at scale: sync ingest, memory, list-query latency, beside paging DPS.

1. Seeds the DPS emulator's two instances straight into their state files
   (emulators/dps/seeding.py): dps-fleet-lab with the smaller count, dps-fleet-prod with the
   larger (100,000 and 1,000,000 by default), then starts the emulators in a subprocess with
   the quota lifted (bench/emulator_dps.py's ``start_server``).
2. Creates a scratch PostgreSQL database (``bench_fleet``), migrates it, registers both
   instances, and runs one full sync pass of each in a fresh child process (SAS identity, the
   pacing lifted so the portal's own work shows): records, seconds, the seconds spent waiting
   for DPS, operations beside ceil(N / page size), peak RSS of the child. The large instance
   is then synced a second time (nothing changed: the pass a schedule runs every 15 minutes).
3. On the large instance, times each list question N times (rows of page 1 + total + facet
   counts): id prefix, id substring, tag equality, status + attestation, certificates
   expiring within 30 days, sort by last update. Prints p50/p95, the total and the facets.
4. Prints the same question answered the only way DPS allows: page the whole query and
   filter in the client: ceil(N / 1000) operations, and the seconds that takes at the
   instance's quota (``--quota``, 1,000 operations/min by default) and at the sync's share.
5. Times the instance overview's numbers (fleet.overview.overview) and the home page's line
   (fleet.overview.summary) on the large instance: p50/p95 (issue 14; goal p95 < 100 ms).

Run: ``.venv/bin/python bench/fleet.py [--small 100000] [--large 1000000] [--requests 30]
[--quota 1000] [--keep] [--reuse]``. PostgreSQL on 127.0.0.1:5432 (trust auth) is required.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SERVER = "postgres://postgres@127.0.0.1:5432"
DEFAULT_DB = "bench_fleet"
PAGE = 1000


def _setup_django(db_name: str) -> None:
    os.environ["DATABASE_URL"] = f"{SERVER}/{db_name}"
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    os.environ.pop("REDIS_URL", None)  # the pacing is lifted anyway: a local bucket
    import logging

    import django

    django.setup()
    for name in ("enrollments.dps", "fleet", "audit"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _admin_sql(sql: str) -> None:
    import psycopg

    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as conn:
        conn.execute(sql)


def _seed_emulator(state_dir: Path, counts: dict[str, int]) -> None:
    from emulators.common.tenant import load_tenant
    from emulators.dps.seeding import seed_enrollments
    from emulators.dps.store import DpsStore, store_path

    names = [d.name for d in load_tenant(None).dps_instances]
    for name, count in counts.items():
        assert name in names, name
        store = DpsStore(store_path(state_dir, name))
        t0 = time.perf_counter()
        n = seed_enrollments(store, count, prefix="dev")
        store.close()
        print(f"emulator {name}: seeded {n:,} enrollments in {time.perf_counter() - t0:.1f} s")


def _register(endpoints: dict[str, Any]) -> None:
    from instances.models import DpsInstance

    for d in endpoints["dps"]:
        DpsInstance.objects.update_or_create(
            name=d["name"], defaults={"host": d["host"], "resource_id": d["resource_id"]}
        )


# -- the sync, in a child process (its own peak RSS) -------------------------------------------
def sync_child(db_name: str, endpoints_file: str, instance_name: str) -> None:
    _setup_django(db_name)
    from django.conf import settings

    from enrollments.dps.auth import parse_connection_string
    from enrollments.dps.client import DpsClient, build_session
    from enrollments.ratelimit import LocalTokenBucket
    from fleet.sync import Reader, sync_instance
    from instances.models import DpsInstance

    endpoints = json.loads(Path(endpoints_file).read_text())
    entry = next(d for d in endpoints["dps"] if d["name"] == instance_name)
    settings.DPS_EMULATOR_HOSTS = {entry["host"].lower(): entry["resource_id"]}
    settings.FLEET_SYNC_PAGE_SIZE = PAGE
    cs = parse_connection_string(entry["connection_string"])
    client = DpsClient(
        cs.host,
        cs.token_provider(),
        ca_bundle=endpoints["ca_cert"],
        timeout=60,
        session=build_session(),
        max_retries=0,
    )
    waited = [0.0]

    class TimedReader(Reader):
        def call(self, fn: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return super().call(fn)
            finally:
                waited[0] += time.perf_counter() - t0

    instance = DpsInstance.objects.get(name=instance_name)
    backend = _backend_cpu()
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    base_cpu = (
        resource.getrusage(resource.RUSAGE_SELF).ru_utime
        + resource.getrusage(resource.RUSAGE_SELF).ru_stime
    )
    t0 = time.perf_counter()
    result = sync_instance(
        instance.pk,
        reader_factory=lambda **kw: TimedReader(app_client=lambda _i: client, **kw),
        bucket=LocalTokenBucket(100_000_000),
    )
    seconds = time.perf_counter() - t0
    print(
        json.dumps(
            {
                "records": result.records,
                "pages": result.pages,
                "ops": result.ops,
                "seconds": seconds,
                "dps_seconds": waited[0],
                "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                "cpu_seconds": resource.getrusage(resource.RUSAGE_SELF).ru_utime
                + resource.getrusage(resource.RUSAGE_SELF).ru_stime
                - base_cpu,
                "rss_before_kb": base_rss,
                "finished": result.finished,
                "db_cpu_seconds": backend(),
            }
        )
    )


def _backend_cpu() -> Any:
    """Return a function giving the CPU seconds the sync's PostgreSQL backend has used since
    now (None when the server's processes are not readable here, e.g. a remote server)."""
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        (pid,) = cur.fetchone()
    stat = Path(f"/proc/{pid}/stat")

    def used() -> float | None:
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    start = used()
    return lambda: None if start is None else (used() or start) - start


def _run_sync(
    db: str, endpoints_file: Path, name: str, expected: int, label: str = "first pass"
) -> dict[str, Any]:
    done = subprocess.run(
        [
            sys.executable,
            __file__,
            "--sync-child",
            name,
            "--db",
            db,
            "--endpoints",
            str(endpoints_file),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    out: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    portal_seconds = out["seconds"] - out["dps_seconds"]
    floor = math.ceil(expected / PAGE) + 1  # + the (empty) group query
    print(
        f"sync {name} ({label}): {out['records']:,} records in {out['seconds']:.1f} s "
        f"({out['records'] / out['seconds']:,.0f}/s end to end); portal work "
        f"{portal_seconds:.1f} s = {out['records'] / portal_seconds:,.0f} records/s; "
        f"waiting for DPS {out['dps_seconds']:.1f} s = {out['pages'] / out['dps_seconds']:.1f} "
        f"pages/s from the emulator; the sync process's own CPU {out['cpu_seconds']:.1f} s "
        f"= {out['records'] / out['cpu_seconds']:,.0f} records per CPU second (PostgreSQL's "
        f"share is not in it); load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )
    if out.get("db_cpu_seconds"):
        db = out["db_cpu_seconds"]
        print(
            f"  CPU per record: the sync process {out['cpu_seconds'] / out['records'] * 1e6:.1f} "
            f"µs (including decoding DPS's JSON), its PostgreSQL backend "
            f"{db / out['records'] * 1e6:.1f} µs; the two run side by side on a page"
        )
    print(
        f"  operations: {out['ops']:,} (queries {out['pages']:,}, floor ceil(N/{PAGE}) per query "
        f"= {floor:,}; the rest are registration-state GETs); peak RSS "
        f"{out['maxrss_kb'] / 1024:.0f} MB (after setup {out['rss_before_kb'] / 1024:.0f} MB)"
    )
    return out


# -- the list questions ------------------------------------------------------------------------
def _cases() -> list[tuple[str, Any]]:
    from fleet.selectors import RecordQuery

    return [
        ("id prefix 'DEV-00123'", RecordQuery(search="dev-00123")),
        ("id substring '4567'", RecordQuery(search="4567", match="contains")),
        ("tag plant = 3", RecordQuery(tags={"plant": "3"})),
        ("status disabled + x509", RecordQuery(status="disabled", attestation="x509")),
        ("cert expires within 30 days", RecordQuery(expires_within_days=30)),
        ("all, sort by last update", RecordQuery(sort="-updated")),
        # Beyond the list: a short prefix matching a tenth of the fleet, far down the
        # key index (fleet.selectors._rows).
        ("short id prefix 'DEV-09'", RecordQuery(search="dev-09")),
    ]


def measure(instance_name: str, n: int) -> list[tuple[str, Any, int]]:
    from fleet.selectors import record_page
    from instances.models import DpsInstance

    instance = DpsInstance.objects.get(name=instance_name)
    out = []
    print(f"\nlist questions on {instance_name}: page 1 (25 rows) + total + facets, {n} runs each")
    print(f"{'question':<32}{'p50 ms':>9}{'p95 ms':>9}{'total':>11}  facets (status; attestation)")
    for label, q in _cases():
        times = []
        page = None
        for _ in range(n):
            t0 = time.perf_counter()
            page = record_page(instance, "enrollment", q)
            times.append((time.perf_counter() - t0) * 1000)
        assert page is not None
        times.sort()
        p50 = statistics.median(times)
        p95 = times[max(0, math.ceil(0.95 * len(times)) - 1)]
        facets = f"{page.facets['status']}; {page.facets['attestation']}"
        print(f"{label:<32}{p50:>9.1f}{p95:>9.1f}{page.total:>11,}  {facets}")
        out.append((label, p95, page.total))
    return out


def measure_overview(instance_name: str, n: int) -> tuple[float, float]:
    """Time the instance overview's selector and the home page's line; return the p50, p95."""
    from fleet.overview import overview, summary
    from instances.models import DpsInstance

    instance = DpsInstance.objects.get(name=instance_name)
    print(f"\noverview of {instance_name} from the index, {n} runs each")
    print(f"{'question':<32}{'p50 ms':>9}{'p95 ms':>9}")
    result = (0.0, 0.0)
    for label, fn in (("overview (the page's numbers)", overview), ("home page line", summary)):
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            fn(instance)
            times.append((time.perf_counter() - t0) * 1000)
        times.sort()
        p50 = statistics.median(times)
        p95 = times[max(0, math.ceil(0.95 * len(times)) - 1)]
        print(f"{label:<32}{p50:>9.1f}{p95:>9.1f}")
        if fn is overview:
            result = (p50, p95)
    return result


def dps_paging(n: int, quota: int, share: float, measured_pages_per_s: float) -> None:
    ops = math.ceil(n / PAGE)
    print(
        f"\nthe same question by paging DPS (query ignores WHERE; filter in the client), N = {n:,}:"
    )
    print(
        f"  {ops:,} operations per question; at the quota of {quota:,}/min: "
        f"{ops / quota * 60:,.0f} s; at the sync's share ({share:.0%}): "
        f"{ops / (quota * share) * 60:,.0f} s; unthrottled emulator: "
        f"{ops / measured_pages_per_s:,.1f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=100_000)
    parser.add_argument("--large", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--quota", type=int, default=1000)
    parser.add_argument("--db", default=DEFAULT_DB)
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument("--reuse", action="store_true", help="only time the list questions")
    parser.add_argument("--sync-child", help=argparse.SUPPRESS)
    parser.add_argument("--endpoints", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sync_child:
        sync_child(args.db, args.endpoints, args.sync_child)
        return
    large, small = "dps-fleet-prod", "dps-fleet-lab"
    if args.reuse:
        _setup_django(args.db)
        measure(large, args.requests)
        measure_overview(large, args.requests)
        return
    from bench.emulator_dps import start_server

    _admin_sql(f"DROP DATABASE IF EXISTS {args.db} WITH (FORCE)")
    _admin_sql(f"CREATE DATABASE {args.db}")
    proc = None
    try:
        with tempfile.TemporaryDirectory() as tmp:
            state = Path(tmp)
            _seed_emulator(state, {small: args.small, large: args.large})
            proc, endpoints = start_server(state)
            _setup_django(args.db)
            from django.core.management import call_command
            from django.db import connection

            call_command("migrate", verbosity=0)
            _register(endpoints)
            endpoints_file = state / "endpoints.json"
            _run_sync(args.db, endpoints_file, small, args.small)
            big = _run_sync(args.db, endpoints_file, large, args.large)
            # The pass every schedule runs after the first: every record read, none changed.
            _run_sync(args.db, endpoints_file, large, args.large, "next pass, nothing changed")
            with connection.cursor() as cur:
                cur.execute("VACUUM ANALYZE fleet_indexedrecord")
            measure(large, args.requests)
            measure_overview(large, args.requests)
            from django.conf import settings

            dps_paging(
                args.large,
                args.quota,
                float(settings.FLEET_SYNC_SHARE),
                big["pages"] / big["dps_seconds"],
            )
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)
        if not args.keep:
            from django.db import connections

            connections.close_all()
            _admin_sql(f"DROP DATABASE IF EXISTS {args.db} WITH (FORCE)")


if __name__ == "__main__":
    main()
