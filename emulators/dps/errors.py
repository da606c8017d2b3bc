"""DPS-shaped errors: the ``ProvisioningServiceErrorDetails`` body and ``x-ms-error-code``.

``errorCode`` is six digits: the HTTP status times 1000 plus a sub-code. The sub-codes
404201, 404202, 404204, 409201 and 409202 come from real responses (API.md §7); the
others are this emulator's choices, listed in docs/emulators-dps.md.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from emulators.common.net import is_loopback
from emulators.dps.store import utc_now

JSON_TYPE = "application/json; charset=utf-8"
HSTS = "max-age=31536000; includeSubDomains"

# Sub-codes chosen by the emulator (documented); real ones are only partly published.
BAD_BODY = 400001  # body is not JSON, or not the JSON type the operation needs
INVALID_FIELD = 400002  # a property has the wrong type or an invalid value
INVALID_ID = 400003  # registration id / enrollment group id fails the id grammar
INVALID_ATTESTATION = 400004  # unknown type, broken certificate, bad key, wrong kind
BULK_INVALID = 400005  # bulk: bad mode, no items, more than 10 items
API_VERSION = 400006  # api-version missing or unsupported
ID_MISMATCH = 400007  # body id differs from the id in the path
BAD_PAGING = 400008  # x-ms-max-item-count or x-ms-continuation unusable
UNAUTHORIZED = 401001
DEVICE_UNAUTHORIZED = 401002  # any failed device authentication, as real DPS answers devices
FORBIDDEN = 403001  # Azure RBAC: the data action is not granted
QUOTA_EXCEEDED = 403002  # count limits (enrollments, groups per attestation kind)
NOT_FOUND_PATH = 404001
ENROLLMENT_NOT_FOUND = 404201
REGISTRATION_NOT_FOUND = 404202
GROUP_NOT_FOUND = 404204
METHOD_NOT_ALLOWED = 405001
ENROLLMENT_EXISTS = 409201
GROUP_EXISTS = 409202
PRECONDITION_FAILED = 412001
TOO_LARGE = 413001
UNSUPPORTED_MEDIA = 415001
THROTTLED = 429001  # the operations or device-registrations quota is used up
INTERNAL = 500001
UNAVAILABLE = 503001  # injected fault


class DpsError(Exception):
    """An error to answer in DPS's shape; ``code`` is the six-digit errorCode."""

    def __init__(self, code: int, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.status = code // 1000
        self.message = message
        self.headers = headers or {}


def error_body(code: int, message: str) -> dict[str, Any]:
    """Return a ProvisioningServiceErrorDetails document."""
    return {
        "errorCode": code,
        "trackingId": uuid.uuid4().hex,
        "message": message,
        "timestampUtc": utc_now(),
    }


def error_response(err: DpsError) -> Response:
    """Render a :class:`DpsError` as DPS does: JSON body plus ``x-ms-error-code``."""
    headers = {
        "x-ms-error-code": str(err.code),
        "Strict-Transport-Security": HSTS,
        **err.headers,
    }
    body = json.dumps(error_body(err.code, err.message), separators=(",", ":"))
    return Response(body, status_code=err.status, headers=headers, media_type=JSON_TYPE)


async def control_body(request: Request) -> Any:
    """Return the JSON body of an ``/_emulator`` control request from this machine.

    Raise :class:`DpsError` (403) for a caller elsewhere and (400) for a body that is not JSON.
    """
    if not is_loopback(request.scope.get("client")):
        raise DpsError(FORBIDDEN, "Emulator control routes answer only the local machine.")
    try:
        return json.loads(await request.body() or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise DpsError(BAD_BODY, "The body is not valid JSON.") from None
