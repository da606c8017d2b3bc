"""Entra-shaped OAuth errors.

Every failure of the token endpoint is an :class:`EntraError`; :func:`error_response`
renders it as Entra does: ``error``, ``error_description`` starting with the AADSTS code
and ending with trace/correlation ids and a timestamp, ``error_codes``, ``timestamp``,
``trace_id``, ``correlation_id``, ``error_uri`` and, when relevant, ``suberror``.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse


class EntraError(Exception):
    """An OAuth error answered to the client; never carries a secret in its text."""

    def __init__(
        self,
        error: str,
        code: int,
        message: str,
        *,
        status: int | None = None,
        suberror: str | None = None,
    ) -> None:
        super().__init__(f"AADSTS{code}: {message}")
        self.error = error
        self.code = code
        self.message = message
        # Entra answers invalid_client with 401, everything else with 400.
        self.status = status or (401 if error == "invalid_client" else 400)
        self.suberror = suberror

    @property
    def description(self) -> str:
        return f"AADSTS{self.code}: {self.message}"


def correlation_id(request: Request | None) -> str:
    """Echo the client's ``client-request-id`` like Entra does, else make one up."""
    if request is not None:
        given = request.headers.get("client-request-id", "")
        try:
            return str(uuid.UUID(given))
        except ValueError:
            pass
    return str(uuid.uuid4())


def error_body(exc: EntraError, request: Request | None, entra_url: str) -> dict[str, Any]:
    """Return the JSON body Entra sends for ``exc``."""
    now = dt.datetime.now(dt.UTC)
    trace = str(uuid.uuid4())
    corr = correlation_id(request)
    stamp = now.strftime("%Y-%m-%d %H:%M:%SZ")
    body: dict[str, Any] = {
        "error": exc.error,
        "error_description": (
            f"{exc.description} Trace ID: {trace} Correlation ID: {corr} Timestamp: {stamp}"
        ),
        "error_codes": [exc.code],
        "timestamp": stamp,
        "trace_id": trace,
        "correlation_id": corr,
        "error_uri": f"{entra_url}/error?code={exc.code}",
    }
    if exc.suberror:
        body["suberror"] = exc.suberror
    return body


def error_response(exc: EntraError, request: Request | None, entra_url: str) -> JSONResponse:
    """Render ``exc`` as Entra's JSON error with its HTTP status."""
    return JSONResponse(
        error_body(exc, request, entra_url),
        status_code=exc.status,
        headers={"Cache-Control": "no-store, no-cache", "Pragma": "no-cache"},
    )


# -- the errors the emulator raises, named after what went wrong -------------------
def missing_parameter(name: str) -> EntraError:
    return EntraError(
        "invalid_request",
        900144,
        f"The request body must contain the following parameter: '{name}'.",
    )


def invalid_grant(code: int, message: str) -> EntraError:
    return EntraError("invalid_grant", code, message)


def malformed(detail: str) -> EntraError:
    return EntraError("invalid_request", 9002313, f"Invalid request. {detail}")


def tenant_not_found(tenant: str) -> EntraError:
    return EntraError(
        "invalid_request",
        90002,
        f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID "
        "and are signing into the correct cloud.",
    )


def unknown_client(client_id: str, tenant_name: str) -> EntraError:
    return EntraError(
        "unauthorized_client",
        700016,
        f"Application with identifier '{client_id}' was not found in the directory "
        f"'{tenant_name}'. This can happen if the application has not been installed by the "
        "administrator of the tenant or consented to by any user in the tenant.",
    )
