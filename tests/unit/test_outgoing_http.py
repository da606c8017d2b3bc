"""portal.outgoing_http: every outgoing session has a role, a timeout and a retry policy."""

from __future__ import annotations

import random
from typing import Any

import pytest
import requests

from portal.outgoing_http import OutgoingSession, backoff


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []

    def record(self: requests.Session, method: str, url: str, **kwargs: Any) -> Any:
        calls.append(kwargs)
        return requests.Response()

    monkeypatch.setattr(requests.Session, "request", record)
    return calls


def test_a_request_without_a_timeout_gets_the_sessions(sent: list[dict[str, Any]]) -> None:
    session = OutgoingSession("entra", 7.0)
    session.get("https://login.example/x")
    session.get("https://login.example/x", timeout=None)  # as a library may pass it
    session.get("https://login.example/x", timeout=(1.0, 2.0))
    assert [c["timeout"] for c in sent] == [7.0, 7.0, (1.0, 2.0)]


def test_session_ignores_environment_and_names_its_role() -> None:
    session = OutgoingSession("arm", 5.0, verify="/ca.pem", headers={"Accept": "application/json"})
    assert session.trust_env is False
    assert session.verify == "/ca.pem"
    assert session.headers["User-Agent"].endswith("(arm)")
    assert session.headers["Accept"] == "application/json"


@pytest.mark.parametrize("max_retries", [0, 2])
def test_retry_policy_is_explicit_and_never_repeats_a_sent_request(max_retries: int) -> None:
    session = OutgoingSession("dps", 5.0, max_retries=max_retries)
    for prefix in ("https://", "http://"):
        retry = session.get_adapter(f"{prefix}dps.example/").max_retries  # type: ignore[attr-defined]
        assert (retry.total, retry.connect) == (max_retries, max_retries)
        assert retry.read is False
        assert retry.status == 0


def test_backoff_honours_retry_after_with_at_most_a_second_of_jitter() -> None:
    rng = random.Random(1)
    for retry_after in (0.0, 2.0, 30.0):
        wait = backoff(3, retry_after, rng=rng)
        assert retry_after <= wait <= retry_after + 1.0


@pytest.mark.parametrize(
    ("attempt", "cap", "ceiling"), [(0, 30.0, 0.5), (3, 30.0, 4.0), (9, 8.0, 8.0)]
)
def test_backoff_is_exponential_with_equal_jitter(attempt: int, cap: float, ceiling: float) -> None:
    rng = random.Random(2)
    waits = [backoff(attempt, cap=cap, rng=rng) for _ in range(50)]
    assert all(ceiling / 2 <= w <= ceiling for w in waits)


def test_dps_client_and_bulk_calls_share_the_one_backoff() -> None:
    from enrollments.bulk import calls
    from enrollments.dps import client

    assert calls.backoff is backoff
    assert client.backoff is backoff
