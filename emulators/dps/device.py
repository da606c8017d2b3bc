"""The DPS device registration API on the instance's own port, and a control route for records.

Device routes (``{idScope}`` is the instance's id scope):

- ``PUT /{idScope}/registrations/{registrationId}/register?api-version=2019-03-31+``: a
  symmetric-key device registers with a SAS (``sr={idScope}/registrations/{id}``,
  ``skn=registration``) signed with its individual enrollment key or with the key derived
  from its group's key. Answers 202 ``{"operationId", "status": "assigning"}``; the assignment
  itself is decided at once and written through the store, so the service API sees it.
- ``GET /{idScope}/registrations/{registrationId}/operations/{operationId}``: the operation
  status, with ``registrationState`` once it is final.
- ``POST /{idScope}/registrations/{registrationId}``: the device's registration status lookup.

Control route (loopback only): ``POST /_emulator/registrations`` writes a registration record
directly, for X.509 and TPM devices whose handshakes the emulator does not perform.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import uuid
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from emulators.common.context import EmulatorContext
from emulators.common.tenant import DpsInstance
from emulators.dps import allocation, sas, x509_auth
from emulators.dps import errors as e
from emulators.dps.errors import DpsError, control_body, error_response
from emulators.dps.store import DpsStore

MIN_API_VERSION = "2019-03-31"
REGISTRATION_ID = re.compile(r"^[a-z0-9](?:[a-z0-9._:-]{0,126}[a-z0-9-])?$", re.IGNORECASE)
STATUSES = ("unassigned", "assigning", "assigned", "failed", "disabled")
SUBSTATUSES = (
    "initialAssignment",
    "deviceDataMigrated",
    "deviceDataReset",
    "reprovisionedToInitialAssignment",
)
MAX_BODY = 96 * 1024  # DPS's maximum message size (API.md §10)
MAX_OPERATIONS = 10_000
JSON_TYPE = "application/json; charset=utf-8"

# Operation results per instance, newest last; kept in memory only (a device that polls
# after an emulator restart registers again, as it would after a lost operation).
_operations: dict[str, OrderedDict[str, dict[str, Any]]] = {}
_operations_lock = threading.Lock()


def forget(instance: DpsInstance) -> None:
    """Drop the remembered registration operations of one instance (control reset)."""
    with _operations_lock:
        _operations.pop(instance.name, None)


def _remember(instance: DpsInstance, operation: dict[str, Any]) -> None:
    with _operations_lock:
        ops = _operations.setdefault(instance.name, OrderedDict())
        ops[operation["operationId"]] = operation
        while len(ops) > MAX_OPERATIONS:
            ops.popitem(last=False)


def _recall(instance: DpsInstance, operation_id: str) -> dict[str, Any] | None:
    with _operations_lock:
        ops = _operations.get(instance.name)
        return None if ops is None else ops.get(operation_id)


def _json(body: Any, status: int = 200) -> Response:
    return Response(
        json.dumps(body, separators=(",", ":")), status_code=status, media_type=JSON_TYPE
    )


def _unauthorized() -> Response:
    # DPS answers every authentication failure alike (errorCode 401002, "Unauthorized").
    return error_response(DpsError(e.DEVICE_UNAUTHORIZED, "Unauthorized"))


def _api_version_error(request: Request) -> Response | None:
    version = request.query_params.get("api-version", "")
    if not version:
        return error_response(DpsError(e.BAD_BODY, "The api-version query parameter is required."))
    if version[:10] < MIN_API_VERSION:
        return error_response(
            DpsError(
                e.BAD_BODY,
                f"api-version {version} is not supported; use {MIN_API_VERSION} or later.",
            )
        )
    return None


def _symmetric_keys(record: dict[str, Any]) -> list[str]:
    attestation = record.get("attestation") or {}
    if attestation.get("type") != "symmetricKey":
        return []
    keys = attestation.get("symmetricKey") or {}
    return [k for k in (keys.get("primaryKey"), keys.get("secondaryKey")) if k]


def _symmetric_groups(store: DpsStore) -> Iterator[dict[str, Any]]:
    after = 0
    while True:
        page = store.list_groups(after, 500)
        for group in page.items:
            if (group.get("attestation") or {}).get("type") == "symmetricKey":
                yield group
        if page.next_after is None:
            return
        after = page.next_after


def _derived_keys(group: dict[str, Any], registration_id: str) -> list[str]:
    out = []
    for key in _symmetric_keys(group):
        try:
            out.append(sas.derive_device_key(key, registration_id))
        except ValueError:
            continue  # a stored key that is not base64 cannot sign anything
    return out


def _linked_hubs(instance: DpsInstance) -> list[allocation.Hub]:
    return [allocation.Hub(h.name, h.location) for h in instance.iot_hubs]


class DeviceApi:
    """Handlers of the device registration API for one instance."""

    def __init__(self, ctx: EmulatorContext, instance: DpsInstance, store: DpsStore) -> None:
        self.ctx = ctx
        self.instance = instance
        self.store = store

    # -- authentication -------------------------------------------------------------------
    def _authenticate(
        self, request: Request, registration_id: str
    ) -> tuple[dict[str, Any], str | None] | None:
        """Return (enrollment or group, group id or None) whose key signed the request."""
        if "authorization" not in request.headers:
            return x509_auth.authenticate(
                self.ctx, self.instance, self.store, request, registration_id
            )
        token = sas.parse_sas(request.headers.get("authorization"))
        if token is None or sas.expired(token):
            return None
        if token.key_name and token.key_name.lower() != "registration":
            return None
        expected = f"{self.instance.id_scope}/registrations/{registration_id}"
        if not sas.resource_matches(token, expected):
            return None
        # An individual enrollment takes precedence over any group (that is how a single
        # device of a group is blocked: a disabled individual enrollment of its id).
        individual = self.store.get_enrollment(registration_id)
        if individual is not None:
            if sas.signature_valid(token, _symmetric_keys(individual)):
                return individual, None
            return None
        for group in _symmetric_groups(self.store):
            if sas.signature_valid(token, _derived_keys(group, registration_id)):
                return group, str(group["enrollmentGroupId"])
        return None

    def _check_path(self, request: Request) -> tuple[str, Response | None]:
        registration_id = request.path_params["registrationId"]
        error = _api_version_error(request)
        if error is None and not REGISTRATION_ID.match(registration_id):
            error = error_response(DpsError(e.BAD_BODY, "The registration id is not valid."))
        return registration_id, error

    # -- PUT .../register -------------------------------------------------------------------
    async def register(self, request: Request) -> Response:
        registration_id, error = self._check_path(request)
        if error is not None:
            return error
        raw = await request.body()
        if len(raw) > MAX_BODY:
            return error_response(DpsError(e.TOO_LARGE, "The request body is too large."))
        try:
            body = json.loads(raw) if raw else {}
        except (json.JSONDecodeError, UnicodeDecodeError):
            return error_response(DpsError(e.BAD_BODY, "The body is not valid JSON."))
        if not isinstance(body, dict):
            return error_response(DpsError(e.BAD_BODY, "The body must be a JSON object."))
        body_id = body.get("registrationId")
        if body_id is not None and (
            not isinstance(body_id, str) or body_id.lower() != registration_id.lower()
        ):
            return error_response(
                DpsError(e.BAD_BODY, "registrationId in the body does not match the path.")
            )
        found = self._authenticate(request, registration_id)
        if found is None:
            return _unauthorized()
        record, group_id = found
        state = self._assign(registration_id, record, group_id)
        operation_id = f"5.{secrets.token_hex(8)}.{uuid.uuid4()}"
        _remember(
            self.instance,
            {
                "operationId": operation_id,
                "registrationId": registration_id.lower(),
                "status": state["status"],
                "registrationState": state,
            },
        )
        return _json({"operationId": operation_id, "status": "assigning"}, 202)

    def _assign(
        self, registration_id: str, record: dict[str, Any], group_id: str | None
    ) -> dict[str, Any]:
        """Allocate the device (or record why not) and write its registration state."""
        with self.store.transaction():
            if record.get("provisioningStatus") == "disabled":
                # Disabled enrollments end in status "disabled" (a DeviceRegistrationState
                # status value) rather than an HTTP error; docs/emulators-dps.md says why.
                return self.store.upsert_registration(
                    registration_id,
                    {
                        "status": "disabled",
                        "errorCode": 401002,
                        "errorMessage": "The enrollment is disabled.",
                    },
                    group_id=group_id,
                )
            old = self.store.get_registration(registration_id)
            previous = None
            if old and old.get("status") == "assigned" and old.get("assignedHub"):
                previous = allocation.Previous(old["assignedHub"], old.get("substatus"))
            result = allocation.allocate(
                registration_id=registration_id,
                enrollment=record,
                linked=_linked_hubs(self.instance),
                instance_location=self.instance.location,
                previous=previous,
            )
            if not result.assigned:
                return self.store.upsert_registration(
                    registration_id,
                    {
                        "status": "failed",
                        "errorCode": result.error_code,
                        "errorMessage": result.error_message,
                    },
                    group_id=group_id,
                )
            device_id = (record.get("deviceId") if group_id is None else None) or registration_id
            return self.store.upsert_registration(
                registration_id,
                {
                    "assignedHub": result.hub,
                    "deviceId": device_id,
                    "status": "assigned",
                    "substatus": result.substatus,
                },
                group_id=group_id,
            )

    # -- GET .../operations/{operationId} -------------------------------------------------------
    async def operation_status(self, request: Request) -> Response:
        registration_id, error = self._check_path(request)
        if error is not None:
            return error
        if self._authenticate(request, registration_id) is None:
            return _unauthorized()
        operation = _recall(self.instance, request.path_params["operationId"])
        if operation is None or operation["registrationId"] != registration_id.lower():
            return error_response(DpsError(e.NOT_FOUND_PATH, "The operation was not found."))
        return _json(
            {
                "operationId": operation["operationId"],
                "status": operation["status"],
                "registrationState": operation["registrationState"],
            }
        )

    # -- POST /{idScope}/registrations/{registrationId} ----------------------------------------
    async def status_lookup(self, request: Request) -> Response:
        registration_id, error = self._check_path(request)
        if error is not None:
            return error
        if self._authenticate(request, registration_id) is None:
            return _unauthorized()
        state = self.store.get_registration(registration_id)
        if state is None:
            return error_response(
                DpsError(e.REGISTRATION_NOT_FOUND, "The device registration was not found.")
            )
        return _json(state)

    # -- POST /_emulator/registrations ------------------------------------------------------------
    async def create_record(self, request: Request) -> Response:
        try:
            body = await control_body(request)
        except DpsError as err:
            return error_response(err)
        problem = _record_problem(body)
        if problem:
            return error_response(DpsError(e.BAD_BODY, problem))
        try:
            fields, group_id = self._record_fields(body)
        except DpsError as err:
            return error_response(err)
        state = self.store.upsert_registration(body["registrationId"], fields, group_id=group_id)
        return JSONResponse(state)

    def _record_owner(self, body: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
        """Return the enrollment or group a control-route record belongs to, and the group id."""
        registration_id: str = body["registrationId"]
        group_id = body.get("enrollmentGroupId")
        if group_id:
            group = self.store.get_group(group_id)
            if group is None:
                raise DpsError(e.GROUP_NOT_FOUND, f"Enrollment group {group_id} not found.")
            return group, str(group["enrollmentGroupId"])
        individual = self.store.get_enrollment(registration_id)
        if individual is None:
            raise DpsError(
                e.ENROLLMENT_NOT_FOUND,
                f"No individual enrollment {registration_id}; name an enrollmentGroupId "
                "for a group device.",
            )
        return individual, None

    def _record_fields(self, body: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
        """Return the registration fields a control-route body asks for, and the group id."""
        registration_id: str = body["registrationId"]
        record, group_id = self._record_owner(body)
        status = body.get("status", "assigned")
        fields: dict[str, Any] = {
            "status": status,
            "deviceId": body.get("deviceId")
            or ((record.get("deviceId") if not group_id else None) or registration_id),
            "errorCode": body.get("errorCode"),
            "errorMessage": body.get("errorMessage"),
            "payload": body.get("payload"),
        }
        if status == "assigned":
            hub = body.get("assignedHub") or self._choose_hub(record, registration_id)
            fields.update(assignedHub=hub, substatus=body.get("substatus", "initialAssignment"))
        elif body.get("assignedHub"):
            fields["assignedHub"] = body["assignedHub"]
        return fields, group_id

    def _choose_hub(self, record: dict[str, Any], registration_id: str) -> str | None:
        """Pick the hub the record's allocation policy gives ``registration_id``."""
        chosen = allocation.choose_hub(
            record.get("allocationPolicy"),
            registration_id,
            allocation.candidate_hubs(record, _linked_hubs(self.instance)),
            self.instance.location,
        )
        if not chosen.assigned:
            raise DpsError(e.BAD_BODY, chosen.error_message or "No hub.")
        return chosen.hub


def _record_problem(body: Any) -> str | None:
    """Return what is wrong with a control-route registration body, or None."""
    if not isinstance(body, dict):
        return "The body must be a JSON object."
    rid = body.get("registrationId")
    if not isinstance(rid, str) or not REGISTRATION_ID.match(rid):
        return "registrationId is required and must be a valid registration id."
    for name in ("enrollmentGroupId", "assignedHub", "deviceId", "errorMessage"):
        if body.get(name) is not None and not isinstance(body[name], str):
            return f"{name} must be a string."
    if body.get("status", "assigned") not in STATUSES:
        return f"status must be one of {', '.join(STATUSES)}."
    if body.get("substatus", "initialAssignment") not in SUBSTATUSES:
        return f"substatus must be one of {', '.join(SUBSTATUSES)}."
    code = body.get("errorCode")
    if code is not None and (isinstance(code, bool) or not isinstance(code, int)):
        return "errorCode must be an integer."
    return None


def routes(ctx: EmulatorContext, instance: DpsInstance, store: DpsStore) -> list[BaseRoute]:
    """Return the device API routes and the registration-record control route."""
    api = DeviceApi(ctx, instance, store)
    out: list[BaseRoute] = [
        Route("/_emulator/registrations", api.create_record, methods=["POST"]),
    ]
    # The id scope is literal in the paths, so these never shadow the service API's
    # /registrations/{id}/query; both spellings are served because clients copy it verbatim.
    for scope in dict.fromkeys((instance.id_scope, instance.id_scope.lower())):
        base = f"/{scope}/registrations/{{registrationId}}"
        out += [
            Route(base + "/register", api.register, methods=["PUT"]),
            Route(base + "/operations/{operationId}", api.operation_status, methods=["GET"]),
            Route(base, api.status_lookup, methods=["POST"]),
        ]
    return out
