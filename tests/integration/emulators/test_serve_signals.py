"""``python -m emulators serve`` stops on SIGTERM and SIGINT even with clients still connected."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[3]


def _serve(state: Path) -> tuple[subprocess.Popen[bytes], dict]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "emulators", "serve", "--state-dir", str(state)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    endpoints = state / "endpoints.json"
    deadline = time.monotonic() + 60
    while not endpoints.is_file():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the emulators did not start: {proc.stderr.read().decode()[-2000:]}")
        time.sleep(0.1)
    return proc, json.loads(endpoints.read_text())


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serve_exits_promptly_with_idle_keep_alive_connections(tmp_path: Path, sig: int) -> None:
    # Before, each uvicorn server took the signal for itself and only one of the four
    # stopped; the others served their clients' keep-alive connections on, forever.
    proc, endpoints = _serve(tmp_path)
    try:
        session = requests.Session()
        session.trust_env = False
        session.verify = endpoints["ca_cert"]
        urls = [
            f"https://{endpoints['dps'][0]['host']}/_emulator/stats",
            f"https://{endpoints['dps'][1]['host']}/_emulator/stats",
            f"{endpoints['authority'].rstrip('/')}/v2.0/.well-known/openid-configuration",
        ]
        for url in urls:  # one idle keep-alive connection to each server
            assert session.get(url, timeout=10).status_code == 200
        started = time.monotonic()
        proc.send_signal(sig)
        code = proc.wait(10)
        took = time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert code == 0, proc.stderr.read().decode()[-2000:]
    assert took < 5, f"serve took {took:.1f} s to stop"
