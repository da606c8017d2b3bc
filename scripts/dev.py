"""Run the whole portal on one machine: emulators, Celery worker and the web server.

``make run`` calls this after installing. It uses SQLite unless DATABASE_URL is set, and
Redis when REDIS_URL is set or a Redis answers on 127.0.0.1:6379 (kombu's filesystem
transport otherwise). Ctrl-C stops everything it started.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VAR = ROOT / "var"
STATE = VAR / "emulators"
PY = sys.executable
WEB_PORT = int(os.environ.get("PORT", "8000"))


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("DJANGO_DEBUG", "true")
    env.setdefault("PORTAL_USE_TLS", "false")
    env["EMULATOR_ENDPOINTS_FILE"] = str(STATE / "endpoints.json")
    key_file = VAR / "token-cache-key"
    if not key_file.exists():
        from base64 import urlsafe_b64encode

        VAR.mkdir(parents=True, exist_ok=True)
        key_file.write_text(urlsafe_b64encode(secrets.token_bytes(32)).decode())
        key_file.chmod(0o600)
    env.setdefault("TOKEN_CACHE_KEYS", key_file.read_text().strip())
    if env.get("DEMO_FLEET", "true").lower() not in ("0", "false", "no"):
        # The demo fleet runs the first pass once seeded; a pass queued at registration would
        # index a half-seeded fleet and contend with it for the database.
        env.setdefault("FLEET_SYNC_ON_REGISTER", "false")
    if not env.get("REDIS_URL") and _reachable("127.0.0.1", 6379):
        env["REDIS_URL"] = "redis://127.0.0.1:6379/0"
    if not env.get("REDIS_URL"):
        print("warning: no Redis reachable; Celery uses the filesystem transport", flush=True)
    return env


def _wait_for(path: Path, proc: subprocess.Popen[bytes], since: float, seconds: float = 30) -> None:
    """Wait until ``proc`` has (re)written ``path`` after ``since`` (an older file is stale)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("the emulators exited during start-up (see above)")
        if path.exists() and path.stat().st_mtime >= since:
            return
        time.sleep(0.2)
    raise SystemExit(f"the emulators did not write {path} within {seconds:.0f} s")


def _demo_fleet(manage: list[str], env: dict[str, str]) -> subprocess.Popen[bytes] | None:
    """Seed (once) and index the demo fleet behind the running server; DEMO_FLEET=false skips."""
    if env.get("DEMO_FLEET", "true").lower() in ("0", "false", "no"):
        return None
    command = [*manage, "demo_fleet", "--status-file", str(VAR / "demo-fleet.json")]
    return subprocess.Popen(command, cwd=ROOT, env=env)


def _banner(demo: bool) -> None:
    endpoints = json.loads((STATE / "endpoints.json").read_text())
    print("\n" + "=" * 72)
    print(f"  DPS Enrollment Portal: http://localhost:{WEB_PORT}/")
    print("  Demo users (emulated Entra ID sign-in):")
    for user in endpoints["users"]:
        roles = ", ".join(f"{k}: {v}" for k, v in user["dps_roles"].items()) or "no DPS role"
        extra = f" [{', '.join(user['app_roles'])}]" if user["app_roles"] else ""
        print(f"    {user['username']:<40} {user['password']:<20} {roles}{extra}")
    if demo:
        print("  Demo fleet: seeding and indexing in the background on first start")
        print(f"    (lines 'demo fleet: ...' below; last step in {VAR / 'demo-fleet.json'})")
    print("  Ctrl-C stops everything.")
    print("=" * 72 + "\n", flush=True)


def main() -> int:
    env = _env()
    children: list[subprocess.Popen[bytes]] = []
    # Processes that may end by themselves (the demo fleet) without stopping the others.
    helpers: list[subprocess.Popen[bytes]] = []

    def stop(*_: object) -> None:
        for child in reversed(children + helpers):
            if child.poll() is None:
                child.terminate()
        for child in children:
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()

    signal.signal(signal.SIGTERM, lambda *a: (stop(), sys.exit(0)))
    try:
        started = time.time() - 1
        emu = subprocess.Popen(
            [
                PY,
                "-m",
                "emulators",
                "serve",
                "--state-dir",
                str(STATE),
                "--entra-port",
                "9443",
                "--arm-port",
                "9444",
                "--dps-port",
                "9450",
            ],
            cwd=ROOT,
            env=env,
        )
        children.append(emu)
        _wait_for(STATE / "endpoints.json", emu, started)
        manage = [PY, "manage.py"]
        subprocess.run([*manage, "migrate", "--no-input", "-v", "0"], cwd=ROOT, env=env, check=True)
        subprocess.run([*manage, "createcachetable"], cwd=ROOT, env=env, check=True)
        subprocess.run(
            [*manage, "dps_instance_import", "--from-endpoints", env["EMULATOR_ENDPOINTS_FILE"]],
            cwd=ROOT,
            env=env,
            check=False,
        )
        children.append(
            subprocess.Popen(
                [
                    PY,
                    "-m",
                    "celery",
                    "-A",
                    "portal",
                    "worker",
                    "-l",
                    "INFO",
                    "-c",
                    "2",
                    # Embedded beat: one process on one machine runs the periodic sweeps too.
                    "-B",
                    "--schedule",
                    str(VAR / "celerybeat-schedule"),
                ],
                cwd=ROOT,
                env=env,
            )
        )
        children.append(
            subprocess.Popen(
                [*manage, "runserver", f"127.0.0.1:{WEB_PORT}", "--noreload"], cwd=ROOT, env=env
            )
        )
        demo = _demo_fleet(manage, env)
        if demo is not None:
            helpers.append(demo)
        _banner(demo is not None)
        while all(c.poll() is None for c in children):
            time.sleep(0.5)
        print("a process exited; stopping the others", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        stop()


if __name__ == "__main__":
    sys.exit(main())
