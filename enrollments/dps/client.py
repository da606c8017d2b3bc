"""A thin client of the DPS service API 2021-10-01 over ``requests``, made as the user.

One method per operation, typed results (``types.py``), typed errors (``exceptions.py``), a
timeout on every call and retries only where repeating the request cannot do harm; the
reasoning is in docs/dps-client.md.
"""

from __future__ import annotations

import enum
import logging
import random
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import requests
from urllib3.exceptions import NewConnectionError

from enrollments.dps.auth import TokenProvider, authorization_value
from enrollments.dps.exceptions import (
    DpsError,
    DpsHostRefused,
    DpsInvalidResponse,
    DpsPreconditionFailed,
    DpsUnavailable,
    error_for_status,
)
from enrollments.dps.types import (
    BULK_MODES,
    READ_ONLY_KEYS,
    AttestationMechanism,
    BulkEnrollmentOperationResult,
    DeviceRegistrationState,
    DpsModel,
    EnrollmentGroup,
    IndividualEnrollment,
    QueryPage,
)
from portal.metrics.recorder import dps_call_record
from portal.outgoing_http import OutgoingSession, backoff

API_VERSION = "2021-10-01"
MAX_BULK_ITEMS = 10
DEFAULT_QUERY = "SELECT *"
DEFAULT_TIMEOUT = 15.0
DOCS = "https://learn.microsoft.com/rest/api/iot-dps/service"

log = logging.getLogger("enrollments.dps")

M = TypeVar("M", bound=DpsModel)
T = TypeVar("T")


class RetryPolicy(enum.Enum):
    """When a failed attempt may be repeated (docs/dps-client.md, "Retries")."""

    #: Reads (GET, query, attestationmechanism): repeat on any transient failure.
    READ = "read"
    #: PUT or DELETE conditioned on a real etag: a repeat cannot overwrite a newer version.
    CONDITIONAL_WRITE = "conditional_write"
    #: Everything else (create, If-Match: *, unconditional delete, bulk): repeat only when
    #: DPS certainly did not act: 429, or the connection was never made.
    UNSAFE = "unsafe"


def _quote(identifier: str) -> str:
    if not identifier:
        raise ValueError("an enrollment, group or registration id is required")
    return urllib.parse.quote(identifier, safe="")


def _write_policy(if_match: str | None) -> RetryPolicy:
    if if_match and if_match.strip() != "*":
        return RetryPolicy.CONDITIONAL_WRITE
    return RetryPolicy.UNSAFE


def _never_sent(exc: requests.RequestException) -> bool:
    """Return whether the request certainly never reached DPS (no connection was made)."""
    if isinstance(exc, requests.exceptions.SSLError):
        return False
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    if isinstance(exc, requests.exceptions.ConnectionError):
        reason = exc.args[0] if exc.args else None
        reason = getattr(reason, "reason", reason)
        return isinstance(reason, NewConnectionError)
    return False


def _transport_retryable(exc: requests.RequestException, policy: RetryPolicy) -> bool:
    """Return whether a failed send may be repeated: never sent, or a timeout a repeat can't harm."""
    if _never_sent(exc):
        return True
    return (
        policy is not RetryPolicy.UNSAFE
        and not isinstance(exc, requests.exceptions.SSLError)
        and isinstance(exc, requests.exceptions.Timeout | requests.ConnectionError)
    )


def _status_retryable(status: int, policy: RetryPolicy) -> bool:
    """Return whether an error status may be retried: 429 always, 5xx and 408 if safe."""
    return status == 429 or (policy is not RetryPolicy.UNSAFE and (status >= 500 or status == 408))


@dataclass(frozen=True)
class _Call:
    """One operation being sent: what, where, how it may be retried, how often."""

    method: str
    path: str
    policy: RetryPolicy
    attempts: int


def _describe(exc: requests.RequestException, timeout: tuple[float, float]) -> str:
    # Own words only: a transport exception's text can carry a proxy URL with credentials.
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return f"connecting to DPS timed out after {timeout[0]:g} s"
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return f"DPS did not answer within {timeout[1]:g} s"
    if isinstance(exc, requests.exceptions.SSLError):
        return "the TLS connection to DPS failed (certificate not trusted?)"
    if isinstance(exc, requests.exceptions.ConnectionError):
        return "the connection to DPS failed"
    return f"the request to DPS failed ({type(exc).__name__})"


def build_session(timeout: float = DEFAULT_TIMEOUT) -> OutgoingSession:
    """Return a session for DPS calls: no transport retries (the client retries by policy).

    Like every outgoing session it ignores environment settings (REQUESTS_CA_BUNDLE,
    proxies, netrc).
    """
    return OutgoingSession("dps", timeout, max_retries=0, headers={"Accept": "application/json"})


class DpsClient:
    """Client of one DPS instance's service API.

    ``token_provider`` returns the full Authorization value (``Bearer …`` or
    ``SharedAccessSignature …``); a bare token is sent as a bearer token. It is called before
    every attempt, so a provider that renews tokens is honoured on retries.

    ``host_guard``, when given, is called with the base URL right before each attempt asks
    for its token; it raises :class:`DpsHostRefused` to stop the call with nothing sent.
    Credentials never go over plain http, whatever the guard.
    """

    def __init__(
        self,
        host: str,
        token_provider: TokenProvider,
        *,
        ca_bundle: str | bool = True,
        timeout: float | tuple[float, float] = DEFAULT_TIMEOUT,
        session: requests.Session | None = None,
        max_retries: int = 3,
        max_retry_wait: float = 10.0,
        backoff_base: float = 0.5,
        backoff_max: float = 8.0,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        host_guard: Callable[[str], None] | None = None,
    ) -> None:
        host = host.strip().rstrip("/")
        self.base_url = host if host.startswith(("https://", "http://")) else f"https://{host}"
        self._token_provider = token_provider
        self._host_guard = host_guard
        self.verify = ca_bundle
        self.timeout: tuple[float, float] = (
            (float(timeout), float(timeout))
            if isinstance(timeout, int | float)
            else (float(timeout[0]), float(timeout[1]))
        )
        self.session = session if session is not None else build_session()
        self.max_retries = max(0, max_retries)
        self.max_retry_wait = max_retry_wait
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self._sleep = sleep
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography

    def __repr__(self) -> str:
        return f"DpsClient({self.base_url!r})"

    # ------------------------------------------------------------------------------------------
    # Individual enrollments
    # ------------------------------------------------------------------------------------------
    def enrollment_get(self, registration_id: str) -> IndividualEnrollment:
        """Return the individual enrollment ``registration_id`` (keys masked by DPS).

        https://learn.microsoft.com/rest/api/iot-dps/service/individual-enrollment/get
        """
        path = f"/enrollments/{_quote(registration_id)}"
        response = self._request("GET", path, policy=RetryPolicy.READ)
        return self._model(IndividualEnrollment, response)

    def enrollment_put(
        self, enrollment: IndividualEnrollment, *, if_match: str | None = None
    ) -> IndividualEnrollment:
        """Create (no ``if_match``) or replace (``if_match`` = the etag read) an enrollment.

        https://learn.microsoft.com/rest/api/iot-dps/service/individual-enrollment/create-or-update
        """
        path = f"/enrollments/{_quote(enrollment.registration_id)}"
        response = self._request(
            "PUT",
            path,
            policy=_write_policy(if_match),
            json_body=_writable(enrollment),
            if_match=if_match,
        )
        return self._model(IndividualEnrollment, response)

    def enrollment_delete(self, registration_id: str, *, if_match: str | None = None) -> None:
        """Delete an individual enrollment, only if its etag still equals ``if_match`` when given.

        https://learn.microsoft.com/rest/api/iot-dps/service/individual-enrollment/delete
        """
        path = f"/enrollments/{_quote(registration_id)}"
        self._request("DELETE", path, policy=_write_policy(if_match), if_match=if_match)

    def enrollment_query(
        self,
        *,
        page_size: int | None = None,
        continuation: str | None = None,
        query: str = DEFAULT_QUERY,
    ) -> QueryPage[IndividualEnrollment]:
        """Return one page of individual enrollments; pass the page's token to get the next.

        https://learn.microsoft.com/rest/api/iot-dps/service/individual-enrollment/query
        """
        return self._query(
            "/enrollments/query",
            IndividualEnrollment,
            {"query": query},
            page_size=page_size,
            continuation=continuation,
        )

    def enrollment_bulk(
        self, mode: str, enrollments: Sequence[IndividualEnrollment]
    ) -> BulkEnrollmentOperationResult:
        """Create, update, update-if-etag-matches or delete up to 10 enrollments in one call.

        DPS answers 200 even when items fail; read ``errors`` of the result.
        https://learn.microsoft.com/rest/api/iot-dps/service/individual-enrollment/run-bulk-operation
        """
        body = {"enrollments": _bulk_items(mode, enrollments), "mode": mode}
        response = self._request("POST", "/enrollments", policy=RetryPolicy.UNSAFE, json_body=body)
        return self._model(BulkEnrollmentOperationResult, response)

    def enrollment_attestation_mechanism(self, registration_id: str) -> AttestationMechanism:
        """Return the attestation of an enrollment with its secrets (symmetric keys).

        https://learn.microsoft.com/rest/api/iot-dps/service/individual-enrollment/get-attestation-mechanism
        """
        path = f"/enrollments/{_quote(registration_id)}/attestationmechanism"
        response = self._request("POST", path, policy=RetryPolicy.READ, empty_body=True)
        return self._model(AttestationMechanism, response)

    # ------------------------------------------------------------------------------------------
    # Enrollment groups
    # ------------------------------------------------------------------------------------------
    def group_get(self, group_id: str) -> EnrollmentGroup:
        """Return the enrollment group ``group_id`` (keys masked by DPS).

        https://learn.microsoft.com/rest/api/iot-dps/service/enrollment-group/get
        """
        response = self._request(
            "GET", f"/enrollmentGroups/{_quote(group_id)}", policy=RetryPolicy.READ
        )
        return self._model(EnrollmentGroup, response)

    def group_put(self, group: EnrollmentGroup, *, if_match: str | None = None) -> EnrollmentGroup:
        """Create (no ``if_match``) or replace (``if_match`` = the etag read) a group.

        https://learn.microsoft.com/rest/api/iot-dps/service/enrollment-group/create-or-update
        """
        response = self._request(
            "PUT",
            f"/enrollmentGroups/{_quote(group.enrollment_group_id)}",
            policy=_write_policy(if_match),
            json_body=_writable(group),
            if_match=if_match,
        )
        return self._model(EnrollmentGroup, response)

    def group_delete(self, group_id: str, *, if_match: str | None = None) -> None:
        """Delete an enrollment group, only if its etag still equals ``if_match`` when given.

        https://learn.microsoft.com/rest/api/iot-dps/service/enrollment-group/delete
        """
        self._request(
            "DELETE",
            f"/enrollmentGroups/{_quote(group_id)}",
            policy=_write_policy(if_match),
            if_match=if_match,
        )

    def group_query(
        self,
        *,
        page_size: int | None = None,
        continuation: str | None = None,
        query: str = DEFAULT_QUERY,
    ) -> QueryPage[EnrollmentGroup]:
        """Return one page of enrollment groups.

        https://learn.microsoft.com/rest/api/iot-dps/service/enrollment-group/query
        """
        return self._query(
            "/enrollmentGroups/query",
            EnrollmentGroup,
            {"query": query},
            page_size=page_size,
            continuation=continuation,
        )

    def group_bulk(
        self, mode: str, groups: Sequence[EnrollmentGroup]
    ) -> BulkEnrollmentOperationResult:
        """Create, update, update-if-etag-matches or delete up to 10 groups in one call.

        https://learn.microsoft.com/rest/api/iot-dps/service/enrollment-group/run-bulk-operation
        """
        body = {"enrollmentGroups": _bulk_items(mode, groups), "mode": mode}
        response = self._request(
            "POST", "/enrollmentGroups", policy=RetryPolicy.UNSAFE, json_body=body
        )
        return self._model(BulkEnrollmentOperationResult, response)

    def group_attestation_mechanism(self, group_id: str) -> AttestationMechanism:
        """Return the attestation of a group with its secrets (symmetric keys).

        https://learn.microsoft.com/rest/api/iot-dps/service/enrollment-group/get-attestation-mechanism
        """
        path = f"/enrollmentGroups/{_quote(group_id)}/attestationmechanism"
        response = self._request("POST", path, policy=RetryPolicy.READ, empty_body=True)
        return self._model(AttestationMechanism, response)

    # ------------------------------------------------------------------------------------------
    # Device registration states
    # ------------------------------------------------------------------------------------------
    def registration_get(self, registration_id: str) -> DeviceRegistrationState:
        """Return the registration record of a device.

        https://learn.microsoft.com/rest/api/iot-dps/service/device-registration-state/get
        """
        response = self._request(
            "GET", f"/registrations/{_quote(registration_id)}", policy=RetryPolicy.READ
        )
        return self._model(DeviceRegistrationState, response)

    def registration_delete(self, registration_id: str, *, if_match: str | None = None) -> None:
        """Delete a device's registration record (the enrollment stays).

        https://learn.microsoft.com/rest/api/iot-dps/service/device-registration-state/delete
        """
        self._request(
            "DELETE",
            f"/registrations/{_quote(registration_id)}",
            policy=_write_policy(if_match),
            if_match=if_match,
        )

    def registration_query_for_group(
        self,
        group_id: str,
        *,
        page_size: int | None = None,
        continuation: str | None = None,
    ) -> QueryPage[DeviceRegistrationState]:
        """Return one page of the registration records of devices of enrollment group ``group_id``.

        https://learn.microsoft.com/rest/api/iot-dps/service/device-registration-state/query
        """
        return self._query(
            f"/registrations/{_quote(group_id)}/query",
            DeviceRegistrationState,
            None,
            page_size=page_size,
            continuation=continuation,
        )

    # ------------------------------------------------------------------------------------------
    # Machinery
    # ------------------------------------------------------------------------------------------
    def _query(
        self,
        path: str,
        model: type[M],
        body: dict[str, Any] | None,
        *,
        page_size: int | None,
        continuation: str | None,
    ) -> QueryPage[M]:
        headers: dict[str, str] = {}
        if page_size is not None:
            if page_size < 1:
                raise ValueError("page_size must be a positive number")
            headers["x-ms-max-item-count"] = str(int(page_size))
        if continuation:
            headers["x-ms-continuation"] = continuation
        response = self._request(
            "POST",
            path,
            policy=RetryPolicy.READ,
            json_body=body,
            empty_body=body is None,
            headers=headers,
        )
        data = self._json(response)
        if not isinstance(data, list):
            raise self._invalid(response, "a query answered with something other than a list")
        try:
            items = [model.from_json(item) for item in data]
        except ValueError as exc:
            raise self._invalid(response, str(exc)) from None
        max_items = response.headers.get("x-ms-max-item-count")
        return QueryPage(
            items=items,
            continuation_token=response.headers.get("x-ms-continuation") or None,
            item_type=response.headers.get("x-ms-item-type"),
            max_item_count=int(max_items) if max_items and max_items.isdigit() else None,
        )

    def _model(self, model: type[M], response: requests.Response) -> M:
        try:
            return model.from_json(self._json(response))
        except ValueError as exc:
            raise self._invalid(response, str(exc)) from None

    def _json(self, response: requests.Response) -> Any:
        try:
            return response.json()
        except ValueError:
            raise self._invalid(response, "the body is not JSON") from None

    def _invalid(self, response: requests.Response, why: str) -> DpsInvalidResponse:
        return DpsInvalidResponse(
            status=response.status_code,
            message=why,
            method=response.request.method if response.request else None,
            path=urllib.parse.urlsplit(response.url).path or None,
        )

    def _request(
        self,
        method: str,
        path: str,
        *,
        policy: RetryPolicy,
        json_body: Any = None,
        empty_body: bool = False,
        if_match: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> requests.Response:
        """Send one operation, retrying as ``policy`` allows; return the 2xx response."""
        call = _Call(method, path, policy, attempts=self.max_retries + 1)
        body: dict[str, Any] = {}
        if json_body is not None:
            body["json"] = json_body
        elif empty_body:
            body["data"] = b""  # Content-Length: 0, as the SDKs send
        for attempt in range(call.attempts):
            outcome = self._attempt(call, attempt, body, if_match, headers)
            if isinstance(outcome, requests.Response):
                return outcome
            error, retryable = outcome
            wait = self._wait(attempt, error) if retryable and attempt < call.attempts - 1 else None
            if wait is None:
                raise error
            log.warning(
                "DPS %s %s: retrying in %.2f s (attempt %d of %d)",
                method,
                path,
                wait,
                attempt + 2,
                call.attempts,
            )
            self._sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover

    def _attempt(
        self,
        call: _Call,
        attempt: int,
        body: Mapping[str, Any],
        if_match: str | None,
        headers: Mapping[str, str] | None,
    ) -> requests.Response | tuple[DpsError, bool]:
        """Make one attempt; return the response to keep, or the error and whether to retry."""
        self._check_host(call.method, call.path)
        auth = authorization_value(self._token_provider())
        request_headers = {"Authorization": auth, **(headers or {})}
        if if_match:
            request_headers["If-Match"] = if_match
        started = time.monotonic()
        try:
            response = self.session.request(
                call.method,
                f"{self.base_url}{call.path}",
                params={"api-version": API_VERSION},
                headers=request_headers,
                timeout=self.timeout,
                verify=self.verify,
                allow_redirects=False,
                **body,
            )
        except requests.RequestException as exc:
            unavailable = DpsUnavailable(
                message=_describe(exc, self.timeout), method=call.method, path=call.path
            )
            self._log(call, None, time.monotonic() - started, None, attempt, unavailable.message)
            return unavailable, _transport_retryable(exc, call.policy)
        elapsed = time.monotonic() - started
        status = response.status_code
        if status < 300:
            self._log(call, status, elapsed, None, attempt)
            return response
        error = error_for_status(
            status,
            body=response.content,
            headers=response.headers,
            method=call.method,
            path=call.path,
            secrets=(auth, auth.partition(" ")[2]),
        )
        self._log(call, status, elapsed, error.tracking_id, attempt)
        if attempt and call.policy is RetryPolicy.CONDITIONAL_WRITE:
            if status == 404 and call.method == "DELETE":
                # The earlier attempt most likely deleted it; the caller's goal holds.
                log.info("DPS %s %s: already gone after a retry", call.method, call.path)
                return response
            if isinstance(error, DpsPreconditionFailed):
                error.after_retry = True
        return error, _status_retryable(status, call.policy)

    def _check_host(self, method: str, path: str) -> None:
        """Refuse, before any token is asked for, a host credentials may not be sent to."""
        if not self.base_url.lower().startswith("https://"):
            raise DpsHostRefused(
                message=f"The DPS host {self.base_url} is not https: credentials go over "
                "https only.",
                method=method,
                path=path,
            )
        if self._host_guard is not None:
            self._host_guard(self.base_url)

    def _wait(self, attempt: int, error: DpsError) -> float | None:
        """Return the seconds before the next attempt, or ``None`` to give up now."""
        retry_after = error.retry_after if error.status in (429, 503) else None
        if retry_after is not None and retry_after > self.max_retry_wait:
            # Too long to block a web request: let the caller (a task) schedule it.
            return None
        return backoff(
            attempt, retry_after, base=self.backoff_base, cap=self.backoff_max, rng=self._rng
        )

    def _log(
        self,
        call: _Call,
        status: int | None,
        elapsed: float,
        tracking_id: str | None,
        attempt: int,
        failure: str | None = None,
    ) -> None:
        level = logging.INFO if status is not None and status < 400 else logging.WARNING
        method, path = call.method, call.path
        dps_call_record(self.base_url, method, path, status, elapsed)
        log.log(
            level,
            "DPS %s %s -> %s in %.1f ms%s%s",
            method,
            path,
            status if status is not None else "no response",
            elapsed * 1000,
            f" trackingId={tracking_id}" if tracking_id else "",
            f" ({failure})" if failure else "",
            extra={
                "dps_method": method,
                "dps_path": path,
                "dps_status": status,
                "dps_duration_ms": round(elapsed * 1000, 1),
                "dps_tracking_id": tracking_id,
                "dps_attempt": attempt + 1,
            },
        )


def _writable(model: DpsModel) -> dict[str, Any]:
    """Return the PUT body: the model without the fields only DPS sets."""
    return {k: v for k, v in model.to_json().items() if k not in READ_ONLY_KEYS}


def _bulk_items(mode: str, items: Sequence[DpsModel]) -> list[dict[str, Any]]:
    if mode not in BULK_MODES:
        raise ValueError(f"bulk mode must be one of {', '.join(BULK_MODES)}")
    if not 1 <= len(items) <= MAX_BULK_ITEMS:
        raise ValueError(f"a bulk call takes 1 to {MAX_BULK_ITEMS} items, not {len(items)}")
    return [_writable(item) for item in items]


def iterate_pages(
    fetch: Callable[[str | None], QueryPage[T]], *, max_pages: int | None = None
) -> Iterator[QueryPage[T]]:
    """Yield pages from ``fetch(continuation)`` until DPS returns no continuation token."""
    continuation: str | None = None
    pages = 0
    while True:
        page = fetch(continuation)
        yield page
        pages += 1
        if not page.continuation_token or (max_pages is not None and pages >= max_pages):
            return
        if page.continuation_token == continuation:
            raise DpsInvalidResponse(message="DPS returned the same continuation token twice")
        continuation = page.continuation_token
