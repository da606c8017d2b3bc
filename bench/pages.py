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

Run: ``.venv/bin/python bench/pages.py [--n 200] [--enrollments 10000] [--latency-ms 30] [--index]``.
``--index`` runs a fleet index pass first: the list then answers from the index (search,
filters, sort, total, facets), and three list questions only the index answers are timed too.
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
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

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


class DpsWait:
    """Time the DPS requests the portal sends, inside the page that sends them.

    Wraps ``requests.Session.send`` in this process: every request to the DPS host adds its
    duration (TLS write, the emulator's work, reading the answer) to ``ms``. Requests to
    other hosts (Entra ID, ARM) are not DPS calls: they count in ``other``, so a page that
    refreshed a token or read ARM shows it, and their time stays in the portal's own.
    """

    def __init__(self, dps_host: str) -> None:
        import requests

        # The instance's host may carry a port (the emulator's); a URL's hostname does not.
        self.dps_host = (urlsplit(f"https://{dps_host}").hostname or "").lower()
        self.ms = 0.0
        self.calls = 0
        self.other = 0
        self._send = requests.Session.send
        wait = self

        def send(session: Any, request: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return wait._send(session, request, **kwargs)
            finally:
                if (urlsplit(request.url).hostname or "").lower() == wait.dps_host:
                    wait.ms += (time.perf_counter() - t0) * 1000
                    wait.calls += 1
                else:
                    wait.other += 1

        requests.Session.send = send  # type: ignore[assignment,method-assign]

    def reset(self) -> None:
        self.ms, self.calls, self.other = 0.0, 0, 0


@dataclass
class Timing:
    """Per run: the page's wall time, the DPS time measured inside it and the CPU time (ms).

    CPU time is this process's alone (the emulator runs in another): a check on the wall-clock
    figures that other load on the machine hardly moves.
    """

    page: list[float] = field(default_factory=list)
    dps: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    calls: int = 0
    other: int = 0

    @property
    def own(self) -> list[float]:
        return [p - d for p, d in zip(self.page, self.dps, strict=True)]


def timed(fn: Callable[[], Any], n: int, wait: DpsWait) -> Timing:
    """Run ``fn`` once to warm up (connections, caches, templates), then ``n`` timed times."""
    fn()
    out = Timing()
    for _ in range(n):
        wait.reset()
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        out.page.append((time.perf_counter() - t0) * 1000)
        out.cpu.append((time.process_time() - c0) * 1000)
        out.dps.append(wait.ms)
        out.calls += wait.calls
        out.other += wait.other
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
    parser.add_argument(
        "--index",
        action="store_true",
        help="run a fleet index pass first, so the list answers from the index (else DPS pages)",
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
        run(endpoints, tmp, ids, args.n, index=args.index)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except Exception:  # noqa: BLE001 - stop it whatever it is doing
            proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)


def django_setup(endpoints: dict[str, Any], tmp: Path) -> None:
    """Configure Django on the test settings, migrate, and register the emulators' instances."""
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
    # No setup_test_environment(): its instrumented template rendering would be measured too.
    call_command("migrate", verbosity=0, interactive=False)
    call_command("createcachetable", verbosity=0)
    with open(os.devnull, "w") as devnull:
        call_command(
            "dps_instance_import",
            "--from-endpoints",
            os.environ["EMULATOR_ENDPOINTS_FILE"],
            stdout=devnull,
        )


Row = tuple[str, Callable[[], None], Callable[[], Any]]


def pages(endpoints: dict[str, Any], target: str, index_stem: str = "") -> tuple[list[Row], str]:
    """Sign Dana in; return (name, page, bare DPS call) rows and the instance's DPS host.

    With ``index_stem`` (the instance indexed), add list questions only the index answers.
    """
    import requests
    from django.contrib.auth import get_user_model
    from django.test import Client
    from django.urls import reverse

    from authn.msal_app import DPS_RESOURCE
    from authn.tokens import token_for_user
    from enrollments.dps.auth import bearer
    from enrollments.dps.client import DpsClient, build_session
    from enrollments.dps.types import AttestationMechanism, IndividualEnrollment
    from instances.models import DpsInstance
    from tests.integration.authn.conftest import EntraSignin

    client = Client(SERVER_NAME="localhost")
    browser = requests.Session()
    browser.trust_env = False
    browser.verify = endpoints["ca_cert"]
    assert EntraSignin(client, browser)(*DANA).status_code == 302
    user = get_user_model().objects.get(entra_identity__upn=DANA[0])
    instance = DpsInstance.objects.get(name=INSTANCE)
    token = token_for_user(user, DPS_RESOURCE)
    bare = DpsClient(
        instance.host,
        bearer(lambda: token),
        ca_bundle=endpoints["ca_cert"],
        session=build_session(),
    )
    kw = {"instance": INSTANCE}
    list_url = reverse("enrollments:enrollment_list", kwargs=kw)
    detail_url = reverse("enrollments:enrollment_detail", kwargs={**kw, "key": target})
    create_url = reverse("enrollments:enrollment_create", kwargs=kw)

    def page_list() -> None:
        r = client.get(list_url, {"size": 25})
        assert r.status_code == 200, r.status_code

    def page_detail() -> None:
        r = client.get(detail_url)
        assert r.status_code == 200, r.status_code

    def page_create() -> None:
        r = client.post(
            create_url,
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

    def asked(query: dict[str, str]) -> Callable[[], None]:
        def page_question() -> None:
            r = client.get(list_url, query)
            assert r.status_code == 200, r.status_code

        return page_question

    def dps_page() -> Any:
        return bare.enrollment_query(page_size=25)

    questions: list[Row] = [
        ("list, id prefix", asked({"q": index_stem}), dps_page),
        ("list, substring", asked({"q": "0123", "match": "contains"}), dps_page),
        ("list, status+sort", asked({"status": "enabled", "sort": "-updated"}), dps_page),
    ]
    rows: list[Row] = [
        ("list (25 per page)", page_list, dps_page),
        *(questions if index_stem else []),
        ("detail", page_detail, lambda: bare.enrollment_get(target)),
        ("create", page_create, dps_create),
    ]
    return rows, instance.host


def print_queries(rows: list[Row]) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    for name, page_fn, _ in rows:
        with CaptureQueriesContext(connection) as queries:
            page_fn()
        print(f"\n=== {name}: {len(queries)} queries")
        for q in queries:
            print("   ", q["sql"][:150])


def print_work(rows: list[Row], wait: DpsWait, pages: int = 20) -> None:
    """Print what a page costs in countable units: SQL statements, Redis commands, Python calls.

    Unlike latencies these do not move with other load on the machine, so two versions of the
    portal can be compared on a busy one.
    """
    import cProfile
    import pstats

    import redis
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    sent = [0]
    execute = redis.Redis.execute_command

    def counting(self: Any, *args: Any, **options: Any) -> Any:
        sent[0] += 1
        return execute(self, *args, **options)

    redis.Redis.execute_command = counting  # type: ignore[method-assign]
    print(f"\nwork per page (mean of {pages}; countable, so independent of machine load)")
    print(f"{'':20} {'SQL':>5} {'Redis':>6} {'DPS':>4} {'other HTTP':>10} {'Python calls':>13}")
    try:
        for name, page_fn, _ in rows:
            page_fn()
            sent[0] = 0
            wait.reset()
            prof = cProfile.Profile()
            with CaptureQueriesContext(connection) as queries:
                prof.enable()
                for _ in range(pages):
                    page_fn()
                prof.disable()
            calls = pstats.Stats(prof).total_calls  # type: ignore[attr-defined]
            print(
                f"{name:20} {len(queries) / pages:5.1f} {sent[0] / pages:6.1f}"
                f" {wait.calls / pages:4.1f} {wait.other / pages:10.1f} {calls / pages:13,.0f}"
            )
    finally:
        redis.Redis.execute_command = execute  # type: ignore[method-assign]


def print_profile(rows: list[Row], wanted: str) -> None:
    import cProfile
    import pstats

    wanted = {"1": "list"}.get(wanted, wanted)
    lines = int(os.environ.get("BENCH_PROFILE_LINES", "45"))
    for name, page_fn, _ in rows:
        if not name.startswith(tuple(wanted.split(","))):
            continue
        page_fn()
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(50):
            page_fn()
        prof.disable()
        print(f"\n=== {name}: 50 pages")
        stats = pstats.Stats(prof)
        stats.sort_stats(os.environ.get("BENCH_PROFILE_SORT", "cumulative")).print_stats(lines)


def cell(values: list[float]) -> str:
    return f"{statistics.median(values):6.1f} / {p95(values):6.1f}"


def print_times(rows: list[Row], n: int, wait: DpsWait) -> None:
    """Print page, DPS-in-page, own and bare-call latencies (median / p95) per page."""
    print(f"\n{n} timed runs each; latency in ms (median / p95)")
    print(
        f"{'':20} {'page':>15} {'DPS in page':>15} {'portal own':>15}"
        f" {'portal CPU':>15} {'bare DPS call':>15} {'calls/page':>10}"
    )
    for name, page_fn, dps_fn in rows:
        page = timed(page_fn, n, wait)
        bare = timed(dps_fn, n, wait)

        calls = f"{page.calls / n:g}" + (f" +{page.other / n:g}" if page.other else "")
        print(
            f"{name:20} {cell(page.page)} {cell(page.dps)} {cell(page.own)}"
            f" {cell(page.cpu)} {cell(bare.page)} {calls:>10}"
        )
    print(
        "\nportal own = page minus the DPS requests timed inside it (requests.Session.send to the"
        "\nDPS host); portal CPU = this process's CPU time per page (includes the client side of"
        "\nthe DPS request); calls/page: DPS requests per page (+ requests to other hosts, if any)."
    )


def index_pass() -> None:
    """Fill the fleet index of the instance (one unpaced pass): the list then answers from it."""
    from enrollments.ratelimit import LocalTokenBucket
    from fleet.sync import sync_instance
    from instances.models import DpsInstance

    t0 = time.perf_counter()
    instance = DpsInstance.objects.get(name=INSTANCE)
    result = sync_instance(instance.pk, bucket=LocalTokenBucket(10_000_000))
    print(f"index pass: {result} in {time.perf_counter() - t0:.1f} s")


def run(endpoints: dict[str, Any], tmp: Path, ids: list[str], n: int, index: bool = False) -> None:
    django_setup(endpoints, tmp)
    if index:
        index_pass()
    rows, dps_host = pages(endpoints, ids[len(ids) // 2], index_stem=ids[0][:10] if index else "")
    if os.environ.get("BENCH_QUERIES"):
        print_queries(rows)
    elif os.environ.get("BENCH_PROFILE"):
        print_profile(rows, os.environ["BENCH_PROFILE"])
    else:
        wait = DpsWait(dps_host)
        print_times(rows, n, wait)
        print_work(rows, wait)


if __name__ == "__main__":
    main()
