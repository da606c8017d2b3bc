"""Measure the DPS emulator's throughput: single GETs, single PUTs and 10-item bulk calls.

Starts ``python -m emulators serve`` in a subprocess (state in a temporary directory, quota
lifted through ``dps-controls.json``), creates enrollments, then drives the first DPS instance
with 1, 4 and 16 concurrent clients: threads with keep-alive ``http.client`` connections, spread
over client processes separate from the server so the server's figures are not bent by the clients'
GIL. Prints requests per second per operation and concurrency.

Run: ``.venv/bin/python bench/emulator_dps.py [--duration 3] [--concurrency 1 4 16]``.
Targets (issue 3): at least 1,000 GETs/s and 200 bulk calls/s on a 2-core machine.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import http.client
import json
import multiprocessing as mp
import os
import platform
import random
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
API = {"api-version": "2021-10-01"}
SEED_ENROLLMENTS = 200


def sas(host: str, policy: str, key_b64: str, ttl: int = 3600) -> str:
    """Return a service SAS for the instance host (API.md §2.1)."""
    se = str(int(time.time()) + ttl)
    to_sign = urllib.parse.quote_plus(host.lower()) + "\n" + se
    sig = base64.b64encode(
        hmac.new(base64.b64decode(key_b64), to_sign.encode(), hashlib.sha256).digest()
    ).decode()
    return "SharedAccessSignature " + urllib.parse.urlencode(
        {"sr": host.lower(), "sig": sig, "se": se, "skn": policy}
    )


def session(ca: str) -> requests.Session:
    s = requests.Session()
    s.trust_env = False
    s.verify = ca
    return s


def enrollment(registration_id: str) -> dict[str, Any]:
    return {
        "registrationId": registration_id,
        "attestation": {"type": "symmetricKey", "symmetricKey": {}},
        "provisioningStatus": "enabled",
        "initialTwin": {"tags": {"site": "bench"}, "properties": {"desired": {"interval": 30}}},
    }


# -- the server ---------------------------------------------------------------------------------
def start_server(
    state_dir: Path, profile: str | None = None
) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    (state_dir / "dps-controls.json").write_text(json.dumps({"quota": {"enabled": False}}))
    env = {**os.environ, "EMULATOR_LOG_LEVEL": "warning", "PYTHONPATH": str(ROOT)}
    prefix = ["-m", "cProfile", "-o", profile] if profile else []
    # Its log goes to a file: a pipe nobody reads would stall the emulator once full.
    log_path = state_dir / "emulators.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            [sys.executable, *prefix, "-m", "emulators", "serve", "--state-dir", str(state_dir)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log_file,
        )
    endpoints_file = state_dir / "endpoints.json"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(
                f"the emulators exited: {log_path.read_text(errors='replace')[-4000:]}"
            )
        if endpoints_file.is_file():
            endpoints = json.loads(endpoints_file.read_text())
            dps = endpoints["dps"][0]
            try:
                r = session(endpoints["ca_cert"]).get(
                    f"https://{dps['host']}/_emulator/stats", timeout=2
                )
                if r.status_code == 200:
                    return proc, endpoints
            except requests.RequestException:
                pass
        time.sleep(0.2)
    proc.kill()
    raise SystemExit("the emulators did not start within 60 s")


# -- client workers -----------------------------------------------------------------------------------
def _client_thread(
    op: str,
    base: str,
    auth: dict[str, str],
    ca: str,
    tag: str,
    start_at: float,
    stop_at: float,
    out: list[tuple[int, int, list[float]]],
) -> None:
    """Loop one keep-alive connection until ``stop_at``.

    ``http.client`` rather than ``requests``: it costs the client a fraction of the CPU per
    call, and on a 2-core machine the clients share the CPU with the server being measured.
    """
    host, port = urllib.parse.urlsplit(base).hostname, urllib.parse.urlsplit(base).port
    tls = ssl.create_default_context(cafile=ca)
    conn = http.client.HTTPSConnection(host or "127.0.0.1", port, context=tls, timeout=30)
    query = "?" + urllib.parse.urlencode(API)
    json_headers = {**auth, "Content-Type": "application/json"}
    rng = random.Random(tag)
    ok = errors = 0
    latencies: list[float] = []
    n = 0
    while time.time() < start_at:
        time.sleep(0.001)
    while time.time() < stop_at:
        t0 = time.perf_counter()
        n += 1
        if op == "get":
            rid = f"seed-{rng.randrange(SEED_ENROLLMENTS)}"
            conn.request("GET", f"/enrollments/{rid}{query}", headers=auth)
        elif op == "put":
            rid = f"seed-{rng.randrange(SEED_ENROLLMENTS)}"
            body = json.dumps(enrollment(rid))
            conn.request(
                "PUT", f"/enrollments/{rid}{query}", body, {**json_headers, "If-Match": "*"}
            )
        else:
            items = [enrollment(f"bulk-{tag}-{n}-{i}") for i in range(10)]
            body = json.dumps({"mode": "create", "enrollments": items})
            conn.request("POST", f"/enrollments{query}", body, json_headers)
        response = conn.getresponse()
        payload = response.read()
        good = response.status == 200
        if good and op == "bulk":
            good = json.loads(payload).get("isSuccessful") is True
        latencies.append(time.perf_counter() - t0)
        if good:
            ok += 1
        else:
            errors += 1
    conn.close()
    out.append((ok, errors, latencies))


def _client_process(
    op: str,
    base: str,
    auth: dict[str, str],
    ca: str,
    threads: int,
    name: str,
    start_at: float,
    stop_at: float,
    queue: Any,
) -> None:
    out: list[tuple[int, int, list[float]]] = []
    workers = [
        threading.Thread(
            target=_client_thread,
            args=(op, base, auth, ca, f"{name}-{i}", start_at, stop_at, out),
        )
        for i in range(threads)
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    ok = sum(o for o, _, _ in out)
    errors = sum(e for _, e, _ in out)
    latencies = [x for _, _, lat in out for x in lat]
    queue.put((ok, errors, latencies))


def cpu_seconds(pid: int) -> float:
    """Return the user+system CPU time a process has used so far (Linux), else 0."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(
    op: str,
    concurrency: int,
    duration: float,
    base: str,
    auth: dict[str, str],
    ca: str,
    server_pid: int,
) -> dict[str, Any]:
    """Run ``concurrency`` clients for ``duration`` seconds; return throughput and latency."""
    processes = min(concurrency, 2)
    per = [
        concurrency // processes + (1 if i < concurrency % processes else 0)
        for i in range(processes)
    ]
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    start_at = time.time() + 1.0  # let every client process and thread get ready
    stop_at = start_at + duration
    procs = [
        ctx.Process(
            target=_client_process,
            args=(op, base, auth, ca, n, f"{op}{concurrency}p{i}", start_at, stop_at, queue),
        )
        for i, n in enumerate(per)
    ]
    for p in procs:
        p.start()
    time.sleep(max(0.0, start_at - time.time()))
    cpu_before = cpu_seconds(server_pid)
    results = [queue.get() for _ in procs]
    server_cpu = (cpu_seconds(server_pid) - cpu_before) / duration
    for p in procs:
        p.join()
    ok = sum(r[0] for r in results)
    errors = sum(r[1] for r in results)
    latencies = sorted(x for r in results for x in r[2])
    return {
        "op": op,
        "concurrency": concurrency,
        "rps": ok / duration,
        "errors": errors,
        "p50_ms": statistics.median(latencies) * 1000 if latencies else 0.0,
        "p95_ms": latencies[int(len(latencies) * 0.95)] * 1000 if latencies else 0.0,
        "server_cpu": server_cpu,
    }


def seed(base: str, auth: dict[str, str], ca: str) -> None:
    http = session(ca)
    for i in range(0, SEED_ENROLLMENTS, 10):
        body = {
            "mode": "create",
            "enrollments": [enrollment(f"seed-{j}") for j in range(i, i + 10)],
        }
        r = http.post(f"{base}/enrollments", params=API, headers=auth, json=body, timeout=30)
        r.raise_for_status()
        if not r.json().get("isSuccessful"):
            raise SystemExit(f"seeding failed: {r.text[:300]}")


def machine() -> str:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} CPUs ({model or platform.processor()}), {platform.system()} {platform.release()}, Python {platform.python_version()}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=float, default=3.0, help="seconds per measurement")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    p.add_argument(
        "--ops", nargs="+", default=["get", "put", "bulk"], choices=["get", "put", "bulk"]
    )
    p.add_argument(
        "--profile",
        metavar="FILE",
        help="run the server under cProfile and write its stats to FILE (slows it down)",
    )
    args = p.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench-dps-") as tmp:
        proc, endpoints = start_server(Path(tmp), args.profile)
        try:
            dps = endpoints["dps"][0]
            parts = dict(x.split("=", 1) for x in dps["connection_string"].split(";"))
            auth = {
                "Authorization": sas(
                    dps["host"], parts["SharedAccessKeyName"], parts["SharedAccessKey"]
                )
            }
            base, ca = f"https://{dps['host']}", endpoints["ca_cert"]
            seed(base, auth, ca)
            print(f"DPS emulator benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
            print(f"machine: {machine()}")
            print(f"{args.duration:g} s per run; clients in separate processes from the server\n")
            print(
                f"{'operation':<14}{'clients':>8}{'req/s':>10}{'p50 ms':>9}{'p95 ms':>9}{'errors':>8}"
            )
            names = {"get": "GET", "put": "PUT", "bulk": "bulk (10)"}
            for op in args.ops:
                for c in args.concurrency:
                    r = measure(op, c, args.duration, base, auth, ca, proc.pid)
                    print(
                        f"{names[op]:<14}{c:>8}{r['rps']:>10.0f}{r['p50_ms']:>9.1f}"
                        f"{r['p95_ms']:>9.1f}{r['errors']:>8}{r['server_cpu']:>11.0%}",
                        flush=True,
                    )
        finally:
            # SIGINT: the CLI exits normally on it, so cProfile gets to write its file.
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
