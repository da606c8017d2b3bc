"""Error mapping, safe retries, Retry-After, timeouts and secret-free logs of DpsClient."""

from __future__ import annotations

import logging
import pickle
import random

import pytest
import requests
import responses
from urllib3.exceptions import MaxRetryError, NewConnectionError

from enrollments.dps.client import DpsClient
from enrollments.dps.exceptions import (
    DpsBadRequest,
    DpsConflict,
    DpsError,
    DpsForbidden,
    DpsNotFound,
    DpsPreconditionFailed,
    DpsQuotaExceeded,
    DpsThrottled,
    DpsUnauthorized,
    DpsUnavailable,
    error_for_status,
    item_error_text,
    parse_error_body,
    parse_retry_after,
    redact,
)
from enrollments.dps.types import AttestationMechanism, IndividualEnrollment

from .conftest import BASE, HOST, TOKEN, Sleeps

ETAG = "ImV0YWctMSI="
TRACKING = "7f0c3b1e-2f9a-4d7e-9d7e-6a1b2c3d4e5f"


def _error(code: int, message: str = "it failed") -> dict[str, object]:
    return {
        "errorCode": code,
        "trackingId": TRACKING,
        "message": message,
        "timestampUtc": "2024-01-01T00:00:00.0000000Z",
    }


def _enrollment() -> IndividualEnrollment:
    return IndividualEnrollment(
        registration_id="dev-1", attestation=AttestationMechanism.for_symmetric_key()
    )


#
# Status → exception
#


@pytest.mark.parametrize(
    ("status", "code", "exc"),
    [
        (400, 400004, DpsBadRequest),
        (401, 401002, DpsUnauthorized),
        (403, 403001, DpsForbidden),
        (403, 403002, DpsQuotaExceeded),
        (404, 404201, DpsNotFound),
        (405, 405001, DpsBadRequest),
        (409, 409201, DpsConflict),
        (412, 412002, DpsPreconditionFailed),
        (415, 415001, DpsBadRequest),
        (429, 429001, DpsThrottled),
        (500, 500001, DpsUnavailable),
        (503, 503001, DpsUnavailable),
        (418, 418001, DpsError),
    ],
)
def test_status_maps_to_exception_with_code_and_tracking_id(
    dps: DpsClient, mocked: responses.RequestsMock, status: int, code: int, exc: type[DpsError]
) -> None:
    """Each error status raises its exception carrying DPS's errorCode, trackingId and message."""
    mocked.get(f"{BASE}/enrollments/dev-1", json=_error(code), status=status)
    with pytest.raises(exc) as info:
        DpsClient(HOST, lambda: TOKEN, max_retries=0).enrollment_get("dev-1")
    error = info.value
    assert type(error) is exc
    assert error.status == status
    assert error.error_code == code
    assert error.tracking_id == TRACKING
    assert error.message == "it failed"
    assert error.timestamp_utc == "2024-01-01T00:00:00.0000000Z"
    assert error.path == "/enrollments/dev-1"
    assert TRACKING in str(error)
    assert str(code) in str(error)
    assert str(error).startswith(exc.user_message)


def test_count_limit_is_not_a_permission_error() -> None:
    """403002 (body or header) is the instance's count limit; other 403s stay RBAC denials."""
    by_body = error_for_status(403, body='{"errorCode": 403002, "message": "The limit..."}')
    by_header = error_for_status(403, headers={"x-ms-error-code": "403002"})
    for error in (by_body, by_header):
        assert type(error) is DpsQuotaExceeded
        assert not isinstance(error, DpsForbidden)
        assert "count limit" in str(error)
    assert type(error_for_status(403, body='{"errorCode": 403001}')) is DpsForbidden
    assert type(error_for_status(403)) is DpsForbidden
    assert pickle.loads(pickle.dumps(by_body)).error_code == 403002


def test_item_error_text_explains_a_count_limit_only() -> None:
    text = item_error_text(403002, "The limit of 3 individual enrollments is reached.")
    assert text.startswith(DpsQuotaExceeded.user_message)
    assert text.endswith("DPS said: The limit of 3 individual enrollments is reached.")
    assert item_error_text("403002", "") == DpsQuotaExceeded.user_message
    assert item_error_text(409201, "Enrollment already exists.") == "Enrollment already exists."


def test_header_error_code_used_when_body_lacks_it(
    dps: DpsClient, mocked: responses.RequestsMock
) -> None:
    mocked.get(f"{BASE}/enrollments/x", body="", status=404, headers={"x-ms-error-code": "404201"})
    with pytest.raises(DpsNotFound) as info:
        dps.enrollment_get("x")
    assert info.value.error_code == 404201
    assert info.value.tracking_id is None


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (None, {}),
        (b"", {}),
        ("not json at all", {"message": "not json at all"}),
        (
            "<html><head><style>p{}</style></head><body><h1>502 Bad Gateway</h1>"
            "<script>x()</script></body></html>",
            {"message": "502 Bad Gateway"},
        ),
        ("[1, 2]", {"message": "[1, 2]"}),
        (
            '{"ErrorCode": "404201", "TrackingId": "t-1", "Message": "gone"}',
            {"error_code": 404201, "tracking_id": "t-1", "message": "gone"},
        ),
        (
            '{"error": {"code": "InvalidToken", "message": "bad"}}',
            {"error_code": "InvalidToken", "message": "bad"},
        ),
        (
            '{"Message": "{\\"errorCode\\":401002,\\"trackingId\\":\\"t-2\\",\\"message\\":\\"expired\\"}"}',
            {"error_code": 401002, "tracking_id": "t-2", "message": "expired"},
        ),
        (
            '{"errorCode": 400004, "info": {"field": "registrationId"}}',
            {"error_code": 400004, "info": {"field": "registrationId"}},
        ),
    ],
    ids=[
        "none",
        "empty",
        "text",
        "html",
        "array",
        "capitalised",
        "arm-envelope",
        "iothub-nested",
        "info",
    ],
)
def test_parse_error_body_is_robust(body: bytes | str | None, expected: dict[str, object]) -> None:
    """Non-JSON, HTML, empty and differently-shaped bodies all yield what can be read."""
    assert parse_error_body(body) == expected


def test_retry_after_parsing() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past


def test_throttled_carries_retry_after() -> None:
    error = error_for_status(429, body=b"", headers={"Retry-After": "12"})
    assert isinstance(error, DpsThrottled)
    assert error.retry_after == 12.0


def test_errors_survive_pickling() -> None:
    """Celery pickles exceptions; the attributes come back intact."""
    error = error_for_status(412, body=b'{"errorCode": 412002, "trackingId": "t"}')
    clone = pickle.loads(pickle.dumps(error))
    assert type(clone) is DpsPreconditionFailed
    assert (clone.status, clone.error_code, clone.tracking_id) == (412, 412002, "t")
    assert str(clone) == str(error)


#
# Retries
#


def test_get_retries_5xx_with_backoff_then_succeeds(
    dps: DpsClient, mocked: responses.RequestsMock, sleeps: Sleeps
) -> None:
    mocked.get(f"{BASE}/enrollments/x", json=_error(500001), status=500)
    mocked.get(f"{BASE}/enrollments/x", status=502, body="<html>Bad gateway</html>")
    mocked.get(
        f"{BASE}/enrollments/x",
        json={
            "registrationId": "x",
            "attestation": {"type": "tpm", "tpm": {"endorsementKey": "k"}},
        },
    )
    assert dps.enrollment_get("x").registration_id == "x"
    assert len(mocked.calls) == 3
    # Exponential with jitter: attempt n waits within [base*2^n/2, base*2^n].
    assert len(sleeps) == 2
    assert 0.25 <= sleeps[0] <= 0.5
    assert 0.5 <= sleeps[1] <= 1.0


def test_retries_stop_after_max_retries(
    dps: DpsClient, mocked: responses.RequestsMock, sleeps: Sleeps
) -> None:
    mocked.get(f"{BASE}/enrollments/x", json=_error(503001), status=503)
    with pytest.raises(DpsUnavailable):
        dps.enrollment_get("x")
    assert len(mocked.calls) == 4  # 1 + max_retries (3)
    assert len(sleeps) == 3


def test_retry_after_is_honoured_with_jitter(
    dps: DpsClient, mocked: responses.RequestsMock, sleeps: Sleeps
) -> None:
    """A 429 with Retry-After waits at least that long, plus a little jitter."""
    mocked.get(
        f"{BASE}/enrollments/x", json=_error(429001), status=429, headers={"Retry-After": "3"}
    )
    mocked.get(
        f"{BASE}/enrollments/x", json=_error(503001), status=503, headers={"Retry-After": "2"}
    )
    mocked.get(
        f"{BASE}/enrollments/x", json={"registrationId": "x", "attestation": {"type": "none"}}
    )
    dps.enrollment_get("x")
    assert len(sleeps) == 2
    assert 3.0 <= sleeps[0] <= 3.4
    assert 2.0 <= sleeps[1] <= 2.3


def test_retry_after_beyond_the_cap_raises_at_once(
    dps: DpsClient, mocked: responses.RequestsMock, sleeps: Sleeps
) -> None:
    """A wait longer than max_retry_wait is left to the caller (a task's countdown)."""
    mocked.get(
        f"{BASE}/enrollments/x", json=_error(429001), status=429, headers={"Retry-After": "60"}
    )
    with pytest.raises(DpsThrottled) as info:
        dps.enrollment_get("x")
    assert info.value.retry_after == 60.0
    assert sleeps == []
    assert len(mocked.calls) == 1


def test_429_is_retried_even_for_unsafe_writes(
    dps: DpsClient, mocked: responses.RequestsMock, sleeps: Sleeps
) -> None:
    """DPS did not act on a throttled request, so even a create or a bulk call is repeated."""
    mocked.put(
        f"{BASE}/enrollments/dev-1", json=_error(429001), status=429, headers={"Retry-After": "1"}
    )
    mocked.put(f"{BASE}/enrollments/dev-1", json=_enrollment().to_json())
    mocked.post(f"{BASE}/enrollments", json=_error(429001), status=429)
    mocked.post(f"{BASE}/enrollments", json={"isSuccessful": True, "errors": []})
    dps.enrollment_put(_enrollment())
    dps.enrollment_bulk("create", [_enrollment()])
    assert len(mocked.calls) == 4
    assert len(sleeps) == 2


@pytest.mark.parametrize(
    ("method", "path", "call"),
    [
        ("PUT", "/enrollments/dev-1", lambda c: c.enrollment_put(_enrollment())),
        ("PUT", "/enrollments/dev-1", lambda c: c.enrollment_put(_enrollment(), if_match="*")),
        ("DELETE", "/enrollments/dev-1", lambda c: c.enrollment_delete("dev-1")),
        ("POST", "/enrollments", lambda c: c.enrollment_bulk("create", [_enrollment()])),
    ],
    ids=["create", "if-match-star", "unconditional-delete", "bulk"],
)
def test_unsafe_writes_are_not_retried_on_5xx(
    dps: DpsClient, mocked: responses.RequestsMock, sleeps: Sleeps, method: str, path: str, call
) -> None:
    """A 5xx may hide a write that happened; repeating could misreport or clobber."""
    mocked.add(method, f"{BASE}{path}", json=_error(500001), status=500)
    with pytest.raises(DpsUnavailable):
        call(dps)
    assert len(mocked.calls) == 1
    assert sleeps == []


@pytest.mark.parametrize(
    ("method", "path", "call"),
    [
        ("PUT", "/enrollments/dev-1", lambda c: c.enrollment_put(_enrollment(), if_match=ETAG)),
        ("DELETE", "/enrollments/dev-1", lambda c: c.enrollment_delete("dev-1", if_match=ETAG)),
        ("DELETE", "/registrations/r", lambda c: c.registration_delete("r", if_match=ETAG)),
        ("POST", "/enrollments/query", lambda c: c.enrollment_query()),
        ("POST", "/registrations/g/query", lambda c: c.registration_query_for_group("g")),
        (
            "POST",
            "/enrollmentGroups/g/attestationmechanism",
            lambda c: c.group_attestation_mechanism("g"),
        ),
    ],
    ids=[
        "put-etag",
        "delete-etag",
        "registration-delete-etag",
        "query",
        "registration-query",
        "attestation",
    ],
)
def test_safe_calls_are_retried_on_5xx(
    dps: DpsClient, mocked: responses.RequestsMock, sleeps: Sleeps, method: str, path: str, call
) -> None:
    mocked.add(method, f"{BASE}{path}", json=_error(503001), status=503)
    with pytest.raises(DpsUnavailable):
        call(dps)
    assert len(mocked.calls) == 4
    assert len(sleeps) == 3


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 412])
def test_4xx_other_than_429_is_never_retried(
    dps: DpsClient, mocked: responses.RequestsMock, sleeps: Sleeps, status: int
) -> None:
    mocked.get(f"{BASE}/enrollments/x", json=_error(status * 1000 + 1), status=status)
    with pytest.raises(DpsError):
        dps.enrollment_get("x")
    assert len(mocked.calls) == 1
    assert sleeps == []


def test_stale_etag_after_a_retry_is_flagged(
    dps: DpsClient, mocked: responses.RequestsMock, sleeps: Sleeps
) -> None:
    """A 412 that answers a retried PUT may mean the first attempt landed: the error says so."""
    mocked.put(f"{BASE}/enrollments/dev-1", json=_error(500001), status=500)
    mocked.put(f"{BASE}/enrollments/dev-1", json=_error(412002), status=412)
    with pytest.raises(DpsPreconditionFailed) as info:
        dps.enrollment_put(_enrollment(), if_match=ETAG)
    assert info.value.after_retry is True


def test_stale_etag_on_first_attempt_is_not_flagged(
    dps: DpsClient, mocked: responses.RequestsMock
) -> None:
    mocked.put(f"{BASE}/enrollments/dev-1", json=_error(412002), status=412)
    with pytest.raises(DpsPreconditionFailed) as info:
        dps.enrollment_put(_enrollment(), if_match=ETAG)
    assert info.value.after_retry is False


def test_conditional_delete_gone_after_retry_is_success(
    dps: DpsClient, mocked: responses.RequestsMock, sleeps: Sleeps
) -> None:
    mocked.delete(f"{BASE}/enrollments/dev-1", body=requests.exceptions.ReadTimeout())
    mocked.delete(f"{BASE}/enrollments/dev-1", json=_error(404201), status=404)
    assert dps.enrollment_delete("dev-1", if_match=ETAG) is None
    assert len(mocked.calls) == 2


def test_conditional_delete_missing_on_first_attempt_is_not_found(
    dps: DpsClient, mocked: responses.RequestsMock
) -> None:
    mocked.delete(f"{BASE}/enrollments/dev-1", json=_error(404201), status=404)
    with pytest.raises(DpsNotFound):
        dps.enrollment_delete("dev-1", if_match=ETAG)


def test_read_timeout_retried_for_reads_not_for_creates(
    dps: DpsClient, mocked: responses.RequestsMock, sleeps: Sleeps
) -> None:
    mocked.get(f"{BASE}/enrollments/x", body=requests.exceptions.ReadTimeout())
    mocked.put(f"{BASE}/enrollments/dev-1", body=requests.exceptions.ReadTimeout())
    with pytest.raises(DpsUnavailable) as info:
        dps.enrollment_get("x")
    assert "did not answer within 15 s" in str(info.value)
    assert info.value.status is None
    assert len(mocked.calls) == 4
    with pytest.raises(DpsUnavailable):
        dps.enrollment_put(_enrollment())
    assert len(mocked.calls) == 5


def test_connection_never_made_is_retried_even_for_creates(
    dps: DpsClient, mocked: responses.RequestsMock, sleeps: Sleeps
) -> None:
    """A refused connection or connect timeout means DPS never saw the request."""
    refused = requests.exceptions.ConnectionError(
        MaxRetryError(None, "/", NewConnectionError(None, "refused"))  # type: ignore[arg-type]
    )
    mocked.put(f"{BASE}/enrollments/dev-1", body=refused)
    mocked.put(f"{BASE}/enrollments/dev-1", body=requests.exceptions.ConnectTimeout())
    mocked.put(f"{BASE}/enrollments/dev-1", json=_enrollment().to_json())
    dps.enrollment_put(_enrollment())
    assert len(mocked.calls) == 3
    assert len(sleeps) == 2


def test_tls_failure_is_not_retried(
    dps: DpsClient, mocked: responses.RequestsMock, sleeps: Sleeps
) -> None:
    mocked.get(
        f"{BASE}/enrollments/x", body=requests.exceptions.SSLError("certificate verify failed")
    )
    with pytest.raises(DpsUnavailable) as info:
        dps.enrollment_get("x")
    assert "TLS" in str(info.value)
    assert len(mocked.calls) == 1


def test_token_provider_is_asked_before_each_attempt(mocked: responses.RequestsMock) -> None:
    """A renewed token is used on the retry."""
    tokens = iter(["tok-a", "tok-b"])
    client = DpsClient(HOST, lambda: next(tokens), sleep=lambda s: None, rng=random.Random(1))
    mocked.get(f"{BASE}/enrollments/x", status=500, json=_error(500001))
    mocked.get(
        f"{BASE}/enrollments/x", json={"registrationId": "x", "attestation": {"type": "none"}}
    )
    client.enrollment_get("x")
    assert [c.request.headers["Authorization"] for c in mocked.calls] == [
        "Bearer tok-a",
        "Bearer tok-b",
    ]


#
# Secrets never leak
#


def test_no_token_in_logs_or_errors(
    dps: DpsClient, mocked: responses.RequestsMock, caplog: pytest.LogCaptureFixture
) -> None:
    """Log records and exception text hold neither the token nor a key DPS echoed back."""
    key = "Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MGFiY2RlZkFCQ0RFRg=="
    mocked.get(
        f"{BASE}/enrollments/x",
        json=_error(401002, f"token {TOKEN} rejected; Authorization: Bearer {TOKEN}; key {key}"),
        status=401,
    )
    mocked.put(
        f"{BASE}/enrollments/dev-1",
        json=_error(500001, f"SharedAccessSignature sr=h&sig={key}"),
        status=500,
    )
    caplog.set_level(logging.DEBUG)
    with pytest.raises(DpsUnauthorized) as unauthorized:
        dps.enrollment_get("x")
    with pytest.raises(DpsUnavailable) as unavailable:
        dps.enrollment_put(
            IndividualEnrollment(
                registration_id="dev-1",
                attestation=AttestationMechanism.for_symmetric_key(key, key),
            )
        )
    texts = [str(unauthorized.value), repr(unauthorized.value), str(unavailable.value)]
    texts += [r.getMessage() for r in caplog.records]
    texts += [str(r.__dict__) for r in caplog.records]
    assert caplog.records, "each call is logged"
    for text in texts:
        assert TOKEN not in text
        assert key not in text
        assert "c2lnbmF0dXJl" not in text  # the token's signature part alone
    assert "[redacted]" in str(unauthorized.value)


def test_each_call_logged_with_method_path_status_and_tracking_id(
    dps: DpsClient, mocked: responses.RequestsMock, caplog: pytest.LogCaptureFixture
) -> None:
    mocked.get(f"{BASE}/enrollments/x", json=_error(404201), status=404)
    caplog.set_level(logging.INFO, logger="enrollments.dps")
    with pytest.raises(DpsNotFound):
        dps.enrollment_get("x")
    (record,) = [r for r in caplog.records if r.name == "enrollments.dps"]
    assert record.dps_method == "GET"
    assert record.dps_path == "/enrollments/x"
    assert record.dps_status == 404
    assert record.dps_tracking_id == TRACKING
    assert record.dps_duration_ms >= 0
    assert "api-version" not in record.getMessage()


def test_model_repr_hides_symmetric_keys() -> None:
    key = "c2VjcmV0LXN5bW1ldHJpYy1rZXktMTIzNDU2Nzg5MA=="
    mechanism = AttestationMechanism.for_symmetric_key(key, key)
    assert key not in repr(mechanism)
    assert mechanism.without_secrets().to_json() == {"type": "symmetricKey", "symmetricKey": {}}
    assert mechanism.to_json()["symmetricKey"]["primaryKey"] == key


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        ("registration sym_enrollment_abf63bb6 not found", True),
        ("trackingId 7f0c3b1e-2f9a-4d7e-9d7e-6a1b2c3d4e5f", True),
        ("etag 0a00b742000008000000646801f50000", True),
        (
            "key 8isrFI1sGsIlvvFSSFRiMfCNzv21fjbE/+ah/lSh3lF8e2YG1Te7w1KpZhJFFXJrqYKi9yegxkqIChbqOS9Egw==",
            False,
        ),
        ("HostName=h;SharedAccessKeyName=p;SharedAccessKey=abc", False),
    ],
)
def test_redact_keeps_ids_and_removes_secrets(text: str, kept: bool) -> None:
    assert (redact(text) == text) is kept


def test_an_opaque_token_echoed_by_dps_is_scrubbed(mocked: responses.RequestsMock) -> None:
    """Even a token no pattern recognises is removed, because the client knows what it sent."""
    token = "opaque_token.value-xyz"
    client = DpsClient(HOST, lambda: token, max_retries=0)
    mocked.get(f"{BASE}/enrollments/x", json=_error(401002, f"bad token {token}"), status=401)
    with pytest.raises(DpsUnauthorized) as info:
        client.enrollment_get("x")
    assert token not in str(info.value)
    assert info.value.message == "bad token [redacted]"
