"""Latency of the enrollment pages beside the bare DPS calls they make, against 10,000 enrollments.

Starts the emulators in a subprocess (bench/emulator_dps.py's ``start_server``: temporary state,
quota lifted), seeds 10,000 individual enrollments with bulk calls, signs Dana (Data Contributor)
in through the Entra emulator, then times, N times each:

* the list page (25 per page, ``/dps/<instance>/enrollments/``) beside ``enrollment_query``;
* the detail page beside ``enrollment_get``;
* a create (POST of the form, then the redirect is not followed) beside ``enrollment_put``.

The bare calls use the same ``DpsClient`` and the same OBO token (one connection kept alive),
so the difference is what the portal adds: session and user lookup, capability check (cached),
token broker (decrypting the user's token cache), form validation, template rendering and the
audit row of a create. Pages are driven in-process with Django's test client (no WSGI server).

Run: ``.venv/bin/python bench/pages.py [--n 200] [--enrollments 10000] [--latency-ms 30]``.
Prints median and p95. ``--latency-ms`` makes the emulator hold every DPS call that long
(``PUT /_emulator/config``, after seeding) to show the ratio against DPS latencies of the real
service. Set ``DATABASE_URL`` / ``REDIS_URL`` to measure with PostgreSQL / Redis (SQLite and
the database cache otherwise). ``BENCH_PROFILE=list,detail,create`` prints a cProfile of 50
pages of each instead of timing; ``BENCH_QUERIES=1`` prints each page's SQL.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.emulator_dps import enrollment, sas, session, start_server  # noqa: E402

INSTANCE = "dps-fleet-prod"
DANA = ("dana.contributor@contoso-iot.example", "Dana-Demo-2026!")


def seed(endpoints: dict[str, Any], count: int) -> list[str]:
    """Create ``count`` enrollments with 10-item bulk calls; return their ids."""
    dps = next(d for d in endpoints["dps"] if d["name"] == INSTANCE)
    policy = dict(p.split("=", 1) for p in dps["connection_string"].split(";"))
    auth = {
        "Authorization": sas(dps["host"], policy["SharedAccessKeyName"], policy["SharedAccessKey"])
    }
    http = session(endpoints["ca_cert"])
    ids = [f"bench-{i:05d}-{uuid.uuid4().hex[:6]}" for i in range(count)]
    for start in range(0, count, 10):
        body = {"mode": "create", "enrollments": [enrollment(r) for r in ids[start : start + 10]]}
        r = http.post(
            f"https://{dps['host']}/enrollments",
            params={"api-version": "2021-10-01"},
            json=body,
            headers=auth,
            timeout=30,
        )
        r.raise_for_status()
    return ids


def emulator_latency(endpoints: dict[str, Any], fixed_ms: float) -> None:
    """Make the instance hold every service call ``fixed_ms`` (emulators/dps/controls.py)."""
    dps = next(d for d in endpoints["dps"] if d["name"] == INSTANCE)
    r = session(endpoints["ca_cert"]).put(
        f"https://{dps['host']}/_emulator/config",
        json={"latency": {"fixed_ms": fixed_ms, "jitter_ms": 0}},
        timeout=10,
    )
    r.raise_for_status()


def timed(fn: Callable[[], Any], n: int) -> list[float]:
    fn()  # warm-up: connections, caches, templates
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="timed repetitions per measurement")
    parser.add_argument("--enrollments", type=int, default=10_000)
    parser.add_argument(
        "--latency-ms",
        type=float,
        default=0.0,
        help="fixed latency the emulator adds to every DPS call (real DPS: tens of ms)",
    )
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-pages-"))
    (tmp / "emu").mkdir()
    proc, endpoints = start_server(tmp / "emu")
    try:
        t0 = time.perf_counter()
        ids = seed(endpoints, args.enrollments)
        print(f"seeded {len(ids):,} enrollments in {time.perf_counter() - t0:.1f} s")
        if args.latency_ms:
            emulator_latency(endpoints, args.latency_ms)
            print(f"emulator latency: {args.latency_ms:g} ms added to every DPS call")
        run(endpoints, tmp, ids, args.n)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except Exception:  # noqa: BLE001 - stop it whatever it is doing
            proc.kill()


def run(endpoints: dict[str, Any], tmp: Path, ids: list[str], n: int) -> None:
    os.environ["EMULATOR_ENDPOINTS_FILE"] = str(tmp / "emu" / "endpoints.json")
    os.environ.setdefault("DATABASE_URL", f"sqlite:///{tmp / 'portal.sqlite3'}")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    import django

    django.setup()
    import logging

    logging.disable(logging.WARNING)
    from django.conf import settings
    from django.core.management import call_command

    from tests.conftest import emulator_dps_hosts

    # The test settings run with DEBUG off; allow the emulators' DPS hosts as development does.
    settings.DPS_EMULATOR_HOSTS = emulator_dps_hosts(endpoints)
    from django.test import Client

    # No setup_test_environment(): its instrumented template rendering would be measured too.
    call_command("migrate", verbosity=0, interactive=False)
    call_command("createcachetable", verbosity=0)
    call_command(
        "dps_instance_import",
        "--from-endpoints",
        os.environ["EMULATOR_ENDPOINTS_FILE"],
        stdout=open(os.devnull, "w"),
    )
    import requests

    from authn.models import DpsInstance
    from authn.msal_app import DPS_RESOURCE
    from authn.tokens import token_for_user
    from enrollments.dps.auth import bearer
    from enrollments.dps.client import DpsClient, build_session
    from enrollments.dps.types import AttestationMechanism, IndividualEnrollment
    from tests.integration.authn.conftest import EntraSignin

    client = Client(SERVER_NAME="localhost")
    browser = requests.Session()
    browser.trust_env = False
    browser.verify = endpoints["ca_cert"]
    assert EntraSignin(client, browser)(*DANA).status_code == 302
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.get(entra_identity__upn=DANA[0])
    instance = DpsInstance.objects.get(name=INSTANCE)
    token = token_for_user(user, DPS_RESOURCE)
    bare = DpsClient(
        instance.host,
        bearer(lambda: token),
        ca_bundle=endpoints["ca_cert"],
        session=build_session(),
    )
    base = f"/dps/{INSTANCE}"
    target = ids[len(ids) // 2]

    def page_list() -> None:
        r = client.get(f"{base}/enrollments/", {"size": 25})
        assert r.status_code == 200, r.status_code

    def page_detail() -> None:
        r = client.get(f"{base}/enrollments/{target}/")
        assert r.status_code == 200, r.status_code

    def page_create() -> None:
        r = client.post(
            f"{base}/enrollments/new/",
            {
                "registration_id": f"page-{uuid.uuid4().hex[:12]}",
                "attestation_type": "symmetricKey",
                "key_mode": "generate",
                "provisioning_status": "enabled",
                "twin_tags": json.dumps({"site": "bench"}),
            },
        )
        assert r.status_code == 302, r.status_code

    def dps_create() -> None:
        bare.enrollment_put(
            IndividualEnrollment(
                registration_id=f"bare-{uuid.uuid4().hex[:12]}",
                attestation=AttestationMechanism.for_symmetric_key(),
                provisioning_status="enabled",
                initial_twin=None,
            )
        )

    rows = [
        ("list (25 per page)", page_list, lambda: bare.enrollment_query(page_size=25)),
        ("detail", page_detail, lambda: bare.enrollment_get(target)),
        ("create", page_create, dps_create),
    ]
    if os.environ.get("BENCH_QUERIES"):
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        for name, page_fn, _ in rows:
            with CaptureQueriesContext(connection) as queries:
                page_fn()
            print(f"\n=== {name}: {len(queries)} queries")
            for q in queries:
                print("   ", q["sql"][:150])
        return
    profile = os.environ.get("BENCH_PROFILE")
    if profile:
        import cProfile
        import pstats

        wanted = {"1": "list"}.get(profile, profile)
        for name, page_fn, _ in rows:
            if not name.startswith(tuple(wanted.split(","))):
                continue
            page_fn()
            prof = cProfile.Profile()
            prof.runcall(lambda f=page_fn: [f() for _ in range(50)])
            print(f"\n=== {name}: 50 pages")
            stats = pstats.Stats(prof)
            stats.sort_stats(os.environ.get("BENCH_PROFILE_SORT", "cumulative")).print_stats(45)
        return
    print(f"\n{n} timed runs each; latency in ms (median / p95)")
    print(f"{'':20} {'page':>17} {'bare DPS call':>17} {'ratio (median)':>15}")
    for name, page_fn, dps_fn in rows:
        page_ms, dps_ms = timed(page_fn, n), timed(dps_fn, n)
        pm, dm = statistics.median(page_ms), statistics.median(dps_ms)
        print(
            f"{name:20} {pm:8.1f} / {p95(page_ms):6.1f} {dm:8.1f} / {p95(dps_ms):6.1f}"
            f" {pm / dm:14.2f}x"
        )


if __name__ == "__main__":
    main()
