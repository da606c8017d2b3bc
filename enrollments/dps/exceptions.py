"""Typed errors of the DPS service API, built from DPS's error body or a transport failure.

Every exception carries the HTTP status, DPS's six-digit ``errorCode``, the ``trackingId`` to
quote to support, and a user-facing sentence. No token, signature or key ever reaches the text:
DPS's own message is passed through :func:`redact` before it is kept.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar

__all__ = [
    "DpsBadRequest",
    "DpsConflict",
    "DpsError",
    "DpsForbidden",
    "DpsHostRefused",
    "DpsInvalidResponse",
    "DpsNotFound",
    "DpsPreconditionFailed",
    "DpsQuotaExceeded",
    "DpsThrottled",
    "DpsUnauthorized",
    "DpsUnavailable",
    "error_for_status",
    "item_error_text",
    "parse_error_body",
    "redact",
]

REDACTED = "[redacted]"

# Authorization values and their parts, wherever they turn up in a message.
_SECRET_PATTERNS = (
    re.compile(r"SharedAccessSignature\s+\S+", re.IGNORECASE),
    re.compile(r"Bearer\s+\S+", re.IGNORECASE),
    re.compile(r"\b(sig|SharedAccessKey|client_secret|access_token)=[^&;\s]+", re.IGNORECASE),
    re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"),  # a JWT
)
# Keys are base64: a long run of the alphabet that mixes upper case, lower case and digits.
# Registration ids, GUIDs and hex etags are not redacted because they lack one of the three.
_BASE64_RUN = re.compile(r"[A-Za-z0-9+/]{20,}={0,2}")
_MAX_MESSAGE = 500


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Return ``text`` with tokens, signatures, keys and each of ``secrets`` replaced."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(REDACTED, text)

    def _key(match: re.Match[str]) -> str:
        run = match.group(0)
        looks_random = (
            any(c.isupper() for c in run)
            and any(c.islower() for c in run)
            and any(c.isdigit() for c in run)
        )
        return REDACTED if looks_random else run

    return _BASE64_RUN.sub(_key, text)


class DpsError(Exception):
    """A DPS service call failed; base of every DPS error."""

    user_message: ClassVar[str] = "The Device Provisioning Service could not complete the request."

    def __init__(
        self,
        *,
        status: int | None = None,
        error_code: int | str | None = None,
        tracking_id: str | None = None,
        message: str | None = None,
        retry_after: float | None = None,
        timestamp_utc: str | None = None,
        info: Mapping[str, Any] | None = None,
        method: str | None = None,
        path: str | None = None,
    ) -> None:
        self.status = status
        self.error_code = error_code
        self.tracking_id = tracking_id
        self.message = redact(message)[:_MAX_MESSAGE] if message else None
        self.retry_after = retry_after
        self.timestamp_utc = timestamp_utc
        self.info = dict(info or {})
        self.method = method
        self.path = path
        super().__init__(str(self))

    def __str__(self) -> str:
        details = []
        if self.status is not None:
            details.append(f"HTTP {self.status}")
        if self.error_code is not None:
            details.append(f"errorCode {self.error_code}")
        if self.tracking_id:
            details.append(f"trackingId {self.tracking_id}")
        text = self.user_message
        if details:
            text += f" ({', '.join(details)})"
        if self.message:
            text += f" DPS said: {self.message}"
        return text

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only constructor: rebuild from the attributes when pickled (Celery results).
        return (_rebuild, (type(self), self.__dict__.copy()))


def _rebuild(cls: type[DpsError], state: dict[str, Any]) -> DpsError:
    error = cls.__new__(cls)
    error.__dict__.update(state)
    Exception.__init__(error, str(error))
    return error


class DpsHostRefused(DpsError):
    """The portal refused to send credentials to the instance's host; nothing was sent.

    ``message`` names the host and the rule it broke (``instances.hosts``).
    """

    user_message = "The portal sends no credentials to this DPS instance's host."
    refused_by_portal = True

    def __str__(self) -> str:
        return f"{self.user_message} {self.message}" if self.message else self.user_message


class DpsBadRequest(DpsError):
    """DPS refused the request as malformed or invalid (400, 405, 415)."""

    user_message = "DPS rejected the request as invalid."


class DpsUnauthorized(DpsError):
    """DPS did not accept the credentials (401): missing, expired or for another host."""

    user_message = "DPS did not accept the portal's credentials; sign in again."


class DpsForbidden(DpsError):
    """The caller's role on the DPS instance lacks the data action (403)."""

    user_message = "Your role on this DPS instance does not allow this action."


class DpsQuotaExceeded(DpsError):
    """DPS refused a new record past a count limit of the instance (403 with ``403002``).

    Not a permission problem: the caller's role is fine, the instance is full. DPS's message
    names the limit (for example "The limit of 1000000 individual enrollments is reached.").
    """

    user_message = (
        "This DPS instance has reached a count limit (of individual enrollments, enrollment "
        "groups or registrations); remove records it no longer needs before adding more."
    )


class DpsNotFound(DpsError):
    """The enrollment, group or registration does not exist (404)."""

    user_message = "DPS has no such enrollment, enrollment group or registration."


class DpsConflict(DpsError):
    """The resource already exists or is in a conflicting state (409)."""

    user_message = "DPS reported a conflict: the record already exists or changed."


class DpsPreconditionFailed(DpsError):
    """The ETag sent in If-Match is stale: someone else changed the record (412).

    ``after_retry`` is true when the 412 answered a retried request; the first attempt may then
    have been applied already, so the caller should read the record before deciding.
    """

    user_message = (
        "The record changed in DPS since it was read; reload it and apply the change again."
    )
    after_retry: bool = False


class DpsThrottled(DpsError):
    """DPS throttled the caller (429); ``retry_after`` holds the seconds to wait, if given."""

    user_message = "DPS is throttling requests; try again shortly."


class DpsUnavailable(DpsError):
    """DPS failed or could not be reached: 5xx, 408, timeout or connection error."""

    user_message = "DPS is unavailable or did not answer in time; try again later."


class DpsInvalidResponse(DpsError):
    """DPS answered success with a body that is not the expected JSON (e.g. a proxy page)."""

    user_message = "DPS answered with a response the portal could not read."


_BY_STATUS: dict[int, type[DpsError]] = {
    400: DpsBadRequest,
    401: DpsUnauthorized,
    403: DpsForbidden,
    404: DpsNotFound,
    405: DpsBadRequest,
    408: DpsUnavailable,
    409: DpsConflict,
    412: DpsPreconditionFailed,
    415: DpsBadRequest,
    429: DpsThrottled,
}


# errorCodes DPS sends with 403 for a count limit (the IoT Hub family's "quota exceeded"),
# as opposed to 403001, an RBAC denial.
QUOTA_ERROR_CODES = frozenset({403002})


def item_error_text(error_code: int | str | None, message: str) -> str:
    """Return the words for one failed bulk item: DPS's message, explained for a count limit."""
    if _int_or_str(error_code) in QUOTA_ERROR_CODES:
        said = redact(message)[:_MAX_MESSAGE]
        return DpsQuotaExceeded.user_message + (f" DPS said: {said}" if said else "")
    return message


def _lower_keys(data: Mapping[str, Any]) -> dict[str, Any]:
    return {str(k).lower(): v for k, v in data.items()}


def _json_or_none(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def _error_fields(data: dict[str, Any]) -> dict[str, Any]:
    """Return the body's fields, lower-cased, with an ARM-style ``error`` envelope opened."""
    fields = _lower_keys(data)
    if isinstance(fields.get("error"), dict):
        fields = {
            **_lower_keys(fields["error"]),
            **{k: v for k, v in fields.items() if k != "error"},
        }
    return fields


def _inner_message(message: str, out: dict[str, Any]) -> str:
    """Return the text of an IoT Hub ``Message`` holding JSON; take its ids into ``out``."""
    inner = _json_or_none(message)
    if not isinstance(inner, dict):
        return message
    inner_fields = _lower_keys(inner)
    out.setdefault("tracking_id", inner_fields.get("trackingid"))
    if out.get("error_code") is None and inner_fields.get("errorcode") is not None:
        out["error_code"] = _int_or_str(inner_fields["errorcode"])
    return str(inner_fields.get("message") or message)


def parse_error_body(body: bytes | str | None) -> dict[str, Any]:
    """Return errorCode, trackingId, message, timestampUtc and info from any error body.

    Accept DPS's ``ProvisioningServiceErrorDetails``, the ARM-style ``{"error": {...}}`` envelope,
    an IoT Hub style ``Message`` holding JSON, plain text, HTML from a proxy, or nothing.
    """
    if not body:
        return {}
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    data = _json_or_none(text)
    if not isinstance(data, dict):
        plain = _plain_text(text)
        return {"message": plain} if plain else {}
    fields = _error_fields(data)
    out: dict[str, Any] = {}
    code = fields.get("errorcode", fields.get("code"))
    if code is not None:
        out["error_code"] = _int_or_str(code)
    for key, name in (("trackingid", "tracking_id"), ("timestamputc", "timestamp_utc")):
        if fields.get(key) is not None:
            out[name] = str(fields[key])
    message = fields.get("message")
    if isinstance(message, str) and message:
        out["message"] = _inner_message(message, out)
    if isinstance(fields.get("info"), dict):
        out["info"] = {str(k): str(v) for k, v in fields["info"].items()}
    return {k: v for k, v in out.items() if v is not None}


def _int_or_str(value: Any) -> int | str:
    try:
        return int(value)
    except (TypeError, ValueError):
        return str(value)


_TAGS = re.compile(r"<(script|style)\b.*?</\1>|<[^>]+>", re.IGNORECASE | re.DOTALL)


def _plain_text(text: str) -> str:
    """Strip markup and squeeze whitespace so an HTML error page becomes one short line."""
    return " ".join(_TAGS.sub(" ", text).split())[:200]


def parse_retry_after(value: str | None) -> float | None:
    """Return the seconds a ``Retry-After`` header asks for (delta-seconds or HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def error_for_status(
    status: int,
    *,
    body: bytes | str | None = None,
    headers: Mapping[str, str] | None = None,
    method: str | None = None,
    path: str | None = None,
    secrets: Iterable[str] = (),
) -> DpsError:
    """Build the exception for an HTTP error response of DPS."""
    headers = headers or {}
    parsed = parse_error_body(body)
    header_code = headers.get("x-ms-error-code")
    if parsed.get("error_code") is None and header_code:
        parsed["error_code"] = _int_or_str(header_code)
    if parsed.get("tracking_id") is None and headers.get("x-ms-request-id"):
        parsed["tracking_id"] = headers["x-ms-request-id"]
    if parsed.get("message"):
        parsed["message"] = redact(parsed["message"], secrets)
    cls = _BY_STATUS.get(status) or (DpsUnavailable if status >= 500 else DpsError)
    if status == 403 and parsed.get("error_code") in QUOTA_ERROR_CODES:
        cls = DpsQuotaExceeded
    return cls(
        status=status,
        retry_after=parse_retry_after(headers.get("Retry-After")),
        method=method,
        path=path,
        **parsed,
    )
