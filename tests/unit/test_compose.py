"""docker-compose.yml describes the production-like stack and is valid compose."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _compose_command() -> list[str] | None:
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def _config(*extra: str) -> subprocess.CompletedProcess[str]:
    command = _compose_command()
    if command is None:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed (make system-deps)")
    env = {
        **os.environ,
        "DJANGO_SECRET_KEY": "x" * 50,
        "TOKEN_CACHE_KEYS": "k",
        "AUDIT_HMAC_KEYS": "k1:a",
    }
    return subprocess.run(
        [*command, "-f", str(ROOT / "docker-compose.yml"), "config", *extra],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )


def test_compose_file_is_accepted_by_compose():
    result = _config()
    assert result.returncode == 0, result.stderr


def test_compose_stack_has_every_process_type():
    result = _config("--services")
    assert result.returncode == 0, result.stderr
    names = set(result.stdout.split())
    assert {"web", "worker", "beat", "postgres", "redis"} <= names


def test_compose_refuses_to_start_without_a_secret_key():
    command = _compose_command()
    if command is None:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed (make system-deps)")
    env = {
        k: v for k, v in os.environ.items() if k not in ("DJANGO_SECRET_KEY", "TOKEN_CACHE_KEYS")
    }
    result = subprocess.run(
        [*command, "-f", str(ROOT / "docker-compose.yml"), "config"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY" in result.stderr
