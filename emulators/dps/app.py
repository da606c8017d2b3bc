"""The DPS service API (api-version 2021-10-01) of one emulated instance, as an ASGI app.

``create_app(ctx, instance)`` serves the 15 service operations on case-insensitive paths,
plus the device registration routes (emulators/dps/device.py) and, around everything, the
quota/fault/control middleware (emulators/dps/controls.py) when those modules are present.

Request pipeline: route and method (404/405) → api-version (400) → authentication (401)
→ body size (413), media type (415) and JSON (400) → authorization per operation (401 for a
SAS policy without the right, 403 for an Entra principal without the data action) →
the operation (emulators/dps/service.py). Every error is a DPS error document; nothing
escapes as a bare 500 or a traceback.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote

from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import BaseRoute

from emulators.common.context import EmulatorContext
from emulators.common.tenant import DpsInstance
from emulators.dps import errors as e
from emulators.dps.auth import Authenticator
from emulators.dps.errors import HSTS, JSON_TYPE, DpsError, error_response
from emulators.dps.service import ENROLLMENTS, GROUPS, DpsService, Limits
from emulators.dps.store import DpsStore, store_path

log = logging.getLogger("emulators.dps")

API_VERSIONS = ("2021-10-01",)
MAX_BODY_BYTES = 96 * 1024  # DPS's maximum message size (API.md §10)

_ENROLLMENT_READ = "EnrollmentRead"
_ENROLLMENT_WRITE = "EnrollmentWrite"
_REGISTRATION_READ = "RegistrationStatusRead"
_REGISTRATION_WRITE = "RegistrationStatusWrite"


@dataclass(frozen=True)
class Operation:
    """One of the 15 operations: its name, SAS right and RBAC data action (IDENTITY §4.2)."""

    name: str
    right: str
    action: str  # relative to Microsoft.Devices/provisioningServices/


def _ops(prefix: str, resource: str) -> dict[str, Operation]:
    return {
        "get": Operation(f"{prefix}_Get", _ENROLLMENT_READ, f"{resource}/read"),
        "put": Operation(f"{prefix}_CreateOrUpdate", _ENROLLMENT_WRITE, f"{resource}/write"),
        "delete": Operation(f"{prefix}_Delete", _ENROLLMENT_WRITE, f"{resource}/delete"),
        "query": Operation(f"{prefix}_Query", _ENROLLMENT_READ, f"{resource}/read"),
        "attestation": Operation(
            f"{prefix}_GetAttestationMechanism",
            _ENROLLMENT_READ,
            "attestationmechanism/details/action",
        ),
        "bulk": Operation(f"{prefix}_RunBulkOperation", _ENROLLMENT_WRITE, f"{resource}/write"),
        "bulk_delete": Operation(
            f"{prefix}_RunBulkOperation", _ENROLLMENT_WRITE, f"{resource}/delete"
        ),
    }


ENROLLMENT_OPS = _ops("IndividualEnrollment", "enrollments")
GROUP_OPS = _ops("EnrollmentGroup", "enrollmentGroups")
REGISTRATION_OPS = {
    "get": Operation("DeviceRegistrationState_Get", _REGISTRATION_READ, "registrationStates/read"),
    "delete": Operation(
        "DeviceRegistrationState_Delete", _REGISTRATION_WRITE, "registrationStates/delete"
    ),
    "query": Operation(
        "DeviceRegistrationState_Query", _REGISTRATION_READ, "registrationStates/read"
    ),
}

_COLLECTIONS = {"enrollments": ENROLLMENTS, "enrollmentgroups": GROUPS}
_SERVICE_HEADS = frozenset({"enrollments", "enrollmentgroups", "registrations"})
_ITEM_TYPES = {False: "Enrollment", True: "EnrollmentGroup"}


_BASE_HEADERS = [(b"strict-transport-security", HSTS.encode())]
_JSON_HEADERS = [(b"content-type", JSON_TYPE.encode()), *_BASE_HEADERS]


class Reply:
    """A minimal ASGI response: the service's answers need no more than status, headers, body."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        self.status = status
        self.body = body
        self.headers = headers

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        headers = [*self.headers, (b"content-length", str(len(self.body)).encode())]
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": self.body})


def _json_response(doc: Any, extra: dict[str, str] | None = None) -> Reply:
    headers = list(_JSON_HEADERS)
    if extra:
        headers += [(k.lower().encode(), v.encode()) for k, v in extra.items()]
    return Reply(200, json.dumps(doc, separators=(",", ":")).encode(), headers)


def _no_content() -> Reply:
    return Reply(204, b"", list(_BASE_HEADERS))


class Req:
    """The parts of an ASGI HTTP request the service API reads, without Starlette's wrappers."""

    __slots__ = ("headers", "method", "path", "query_string", "receive")

    def __init__(self, scope: Any, receive: Any) -> None:
        self.method: str = scope["method"]
        raw = scope.get("raw_path")
        path = raw.decode("latin-1") if isinstance(raw, bytes | bytearray) else scope["path"]
        self.path = path.split("?", 1)[0]
        # ASGI servers send header names in lower case; the last value of a name wins.
        self.headers = {
            k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]
        }
        self.query_string: bytes = scope.get("query_string", b"")
        self.receive = receive

    def query_param(self, name: str) -> str | None:
        if self.query_string == b"api-version=2021-10-01" and name == "api-version":
            return "2021-10-01"  # the common case, without parsing
        for key, value in parse_qsl(self.query_string.decode("latin-1"), keep_blank_values=True):
            if key == name:
                return value
        return None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _segments(path: str) -> list[str]:
    parts = path.split("/")[1:]
    if parts and parts[-1] == "":
        parts.pop()  # tolerate one trailing slash
    return [unquote(p) if "%" in p else p for p in parts]


def _check_api_version(version: str | None) -> None:
    if version is None:
        raise DpsError(e.API_VERSION, "The api-version query parameter is required.")
    if version not in API_VERSIONS:
        raise DpsError(
            e.API_VERSION,
            f"The api-version '{version[:40]}' is not supported; use 2021-10-01.",
        )


class ServiceApi:
    """Route, authenticate and run the service operations of one instance."""

    def __init__(self, ctx: EmulatorContext, instance: DpsInstance, service: DpsService) -> None:
        self.instance = instance
        self.service = service
        self.auth = Authenticator(ctx, instance)

    async def asgi(self, scope: Any, receive: Any, send: Any) -> None:
        """Serve one HTTP request as a plain ASGI app (the router's default)."""
        if scope["type"] != "http":
            return
        response = await self.handle(Req(scope, receive))
        await response(scope, receive, send)

    async def handle(self, request: Req) -> Reply | Response:
        """Answer one request; every failure becomes a DPS error document."""
        try:
            return await self._dispatch(request)
        except DpsError as err:
            return error_response(err)
        except Exception:  # the service must answer in its own shape
            log.exception("unexpected error in %s %s", request.method, request.path)
            return error_response(DpsError(e.INTERNAL, "An internal error occurred."))

    # -- routing -------------------------------------------------------------------------
    @staticmethod
    def _method_not_allowed(allowed: str) -> DpsError:
        return DpsError(
            e.METHOD_NOT_ALLOWED,
            "The HTTP method is not allowed on this resource.",
            headers={"Allow": allowed},
        )

    def _route(self, method: str, segs: list[str]) -> tuple[str, Any, str]:
        """Return (handler name, kind, id) for the path, or raise 404/405."""
        head = segs[0].lower() if segs else ""
        if head in _COLLECTIONS:
            found = self._route_collection(method, segs, _COLLECTIONS[head])
        elif head == "registrations":
            found = self._route_registrations(method, segs)
        else:
            found = None
        if found is None:
            raise DpsError(e.NOT_FOUND_PATH, "The requested resource does not exist.")
        return found

    def _route_collection(
        self, method: str, segs: list[str], kind: Any
    ) -> tuple[str, Any, str] | None:
        """Route ``/enrollments/...`` and ``/enrollmentGroups/...``."""
        n = len(segs)
        if n == 1:
            self._require(method, "POST")
            return "bulk", kind, ""
        if n == 2:
            if method == "POST" and segs[1].lower() == "query":
                return "query", kind, ""
            if method in ("GET", "PUT", "DELETE"):
                return method.lower(), kind, segs[1]
            raise self._method_not_allowed("GET, PUT, DELETE")
        if n == 3 and segs[2].lower() == "attestationmechanism":
            self._require(method, "POST")
            return "attestation", kind, segs[1]
        return None

    def _route_registrations(self, method: str, segs: list[str]) -> tuple[str, Any, str] | None:
        """Route ``/registrations/...``."""
        n = len(segs)
        if n == 1:
            raise self._method_not_allowed("")
        if n == 2:
            if method in ("GET", "DELETE"):
                return "reg_" + method.lower(), None, segs[1]
            raise self._method_not_allowed("GET, DELETE")
        if n == 3 and segs[2].lower() == "query":
            self._require(method, "POST")
            return "reg_query", None, segs[1]
        return None

    def _require(self, method: str, allowed: str) -> None:
        if method != allowed:
            raise self._method_not_allowed(allowed)

    # -- request parts ---------------------------------------------------------------------
    @staticmethod
    async def _body(request: Req) -> bytes:
        declared = request.headers.get("content-length")
        if declared is not None:
            try:
                if int(declared) > MAX_BODY_BYTES:
                    raise DpsError(e.TOO_LARGE, "The request body exceeds 96 KB.")
            except ValueError:
                raise DpsError(e.BAD_BODY, "Content-Length is not a number.") from None
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await request.receive()
            if message["type"] != "http.request":
                break  # the client went away; whatever arrived is all there is
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise DpsError(e.TOO_LARGE, "The request body exceeds 96 KB.")
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    @staticmethod
    def _json(request: Req, raw: bytes, what: str) -> Any:
        if not raw.strip():
            raise DpsError(e.BAD_BODY, f"The request needs a JSON {what} in its body.")
        ctype = request.headers.get("content-type")
        if ctype is not None:
            media = ctype.split(";", 1)[0].strip().lower()
            if media not in ("application/json", "text/json") and not media.endswith("+json"):
                raise DpsError(e.UNSUPPORTED_MEDIA, "Send the body as application/json.")
        try:
            doc = json.loads(raw, parse_constant=_reject_constant)
        except (ValueError, RecursionError):
            raise DpsError(e.BAD_BODY, "The request body is not valid JSON.") from None
        if not isinstance(doc, dict):
            raise DpsError(e.BAD_BODY, f"The request body must be a JSON object ({what}).")
        return doc

    @staticmethod
    def _if_match(request: Req) -> str | None:
        value = request.headers.get("if-match")
        if value is None:
            return None
        value = value.strip()
        return value or None

    # -- the pipeline -----------------------------------------------------------------------
    async def _dispatch(self, request: Req) -> Reply:
        method = request.method
        handler, kind, rid = self._route(method, _segments(request.path))
        _check_api_version(request.query_param("api-version"))
        caller = self.auth.authenticate(
            request.headers.get("authorization"), request.headers.get("host"), request.path
        )
        ops = GROUP_OPS if kind is GROUPS else ENROLLMENT_OPS
        svc = self.service

        if handler == "bulk":
            body = self._json(request, await self._body(request), "bulk operation")
            op = ops["bulk_delete"] if body.get("mode") == "delete" else ops["bulk"]
            self.auth.authorize(caller, op.right, op.action)
            return _json_response(svc.bulk(kind, body))
        op = REGISTRATION_OPS[handler[4:]] if handler.startswith("reg_") else ops[handler]
        self.auth.authorize(caller, op.right, op.action)

        if handler == "get":
            return _json_response(svc.get(kind, rid))
        if handler == "put":
            body = self._json(request, await self._body(request), kind.noun)
            return _json_response(svc.create_or_update(kind, rid, body, self._if_match(request)))
        if handler == "delete":
            svc.delete(kind, rid, self._if_match(request))
            return _no_content()
        if handler == "attestation":
            await self._body(request)  # no body expected; drain and bound it
            return _json_response(svc.attestation(kind, rid))
        if handler == "query":
            body = self._json(request, await self._body(request), "query specification")
            if not isinstance(body.get("query"), str):
                raise DpsError(e.INVALID_FIELD, "'query' must be a string.")
            size = svc.page_size(request.headers.get("x-ms-max-item-count"))
            result = svc.query(kind, size, request.headers.get("x-ms-continuation"))
            return self._page(result, _ITEM_TYPES[kind.group])
        if handler == "reg_get":
            return _json_response(svc.get_registration(rid))
        if handler == "reg_delete":
            svc.delete_registration(rid, self._if_match(request))
            return _no_content()
        # reg_query: the spec defines no body; whatever is sent is drained and ignored.
        await self._body(request)
        size = svc.page_size(request.headers.get("x-ms-max-item-count"))
        result = svc.query_registrations(rid, size, request.headers.get("x-ms-continuation"))
        return self._page(result, "DeviceRegistration")

    @staticmethod
    def _page(result: Any, item_type: str) -> Reply:
        headers = {"X-Content-Type-Options": "nosniff", "x-ms-item-type": item_type}
        if result.continuation:
            headers["x-ms-continuation"] = result.continuation
        return _json_response(result.items, headers)


def create_app(
    ctx: EmulatorContext,
    instance: DpsInstance,
    *,
    store: DpsStore | None = None,
    limits: Limits | None = None,
) -> Any:
    """Build the ASGI app of one DPS instance (state in ``<state_dir>/dps-<name>.sqlite3``)."""
    if store is None:
        store = DpsStore(store_path(ctx.state_dir, instance.name))
    if limits is None:
        limits = Limits.load(ctx.state_dir, instance.name)
    service = DpsService(store, instance, limits)
    api = ServiceApi(ctx, instance, service)
    routes: list[BaseRoute] = []
    on_reset: list[Callable[[], None]] = []
    try:
        from emulators.dps import device
    except ImportError:  # the device API is optional: the service API works without it
        log.warning("emulators.dps.device is missing: no device registration API")
    else:
        routes += device.routes(ctx, instance, store)
        on_reset.append(lambda: device.forget(instance))
    from emulators.dps import seeding

    routes += seeding.routes(store)
    inner = Starlette(routes=routes)
    # Everything the device routes do not claim, any method included, is the service API's.
    inner.router.default = api.asgi
    inner.router.redirect_slashes = False

    async def front(scope: Any, receive: Any, send: Any) -> None:
        # Service API paths skip Starlette's middleware and routing: a measurable share of
        # a GET's cost, and the emulator must not be the bottleneck of the portal's benches.
        if scope["type"] == "http":
            head = scope["path"][1:].split("/", 1)[0].lower()
            if head in _SERVICE_HEADS:
                await api.asgi(scope, receive, send)
                return
        await inner(scope, receive, send)

    app: Any = front
    try:
        from emulators.dps import controls
    except ImportError:
        log.warning("emulators.dps.controls is missing: no quotas, faults or control routes")
    else:
        app = controls.wrap(app, ctx, instance, store, on_reset=on_reset)
    return app
