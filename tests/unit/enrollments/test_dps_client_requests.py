"""The request each DpsClient operation sends, and how it reads each response."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import responses

from enrollments.dps.auth import bearer, sas_token_provider
from enrollments.dps.client import API_VERSION, DpsClient, iterate_pages
from enrollments.dps.exceptions import DpsInvalidResponse
from enrollments.dps.types import (
    AttestationMechanism,
    BulkEnrollmentOperationResult,
    DeviceCapabilities,
    DeviceRegistrationState,
    DpsApi,
    EnrollmentGroup,
    IndividualEnrollment,
    InitialTwin,
    QueryPage,
)

from .conftest import BASE, HOST, TOKEN

ETAG = "IjBhMDBiNzQyLTAwMDAtMDgwMC0wMDAwLTY0NjgwMWY1MDAwMCI="

ENROLLMENT_JSON = {
    "registrationId": "dev-1",
    "deviceId": "device-1",
    "registrationState": {"registrationId": "dev-1", "status": "unassigned"},
    "attestation": {"type": "tpm", "tpm": {"endorsementKey": "AToAAQALAAMAsgAgg3GXZ0SEs"}},
    "capabilities": {"iotEdge": True},
    "initialTwin": {"tags": {"site": "a"}, "properties": {"desired": {"rate": 5}}},
    "etag": ETAG,
    "provisioningStatus": "enabled",
    "createdDateTimeUtc": "2023-05-19T23:10:45.1256254Z",
    "lastUpdatedDateTimeUtc": "2023-05-19T23:10:45.1256254Z",
}
GROUP_JSON = {
    "enrollmentGroupId": "grp 1/a",
    "attestation": {
        "type": "symmetricKey",
        "symmetricKey": {"primaryKey": "cA==", "secondaryKey": "cw=="},
    },
    "etag": ETAG,
    "provisioningStatus": None,
}
REGISTRATION_JSON = {
    "registrationId": "device-4dfe3739",
    "createdDateTimeUtc": "2023-05-19T23:10:28.8800437Z",
    "assignedHub": "hub.azure-devices.net",
    "deviceId": "device-4dfe3739",
    "status": "assigned",
    "substatus": "initialAssignment",
    "etag": ETAG,
}
MECHANISM_JSON = {
    "type": "symmetricKey",
    "symmetricKey": {"primaryKey": "cA==", "secondaryKey": "cw=="},
}
BULK_JSON = {
    "isSuccessful": False,
    "errors": [
        {
            "registrationId": "dev-1",
            "errorCode": 409201,
            "errorStatus": "Enrollment already exists.",
        }
    ],
}


def _enrollment() -> IndividualEnrollment:
    return IndividualEnrollment(
        registration_id="dev-1",
        attestation=AttestationMechanism.for_tpm("AToAAQALAAMAsgAgg3GXZ0SEs"),
        capabilities=DeviceCapabilities(iot_edge=True),
        initial_twin=InitialTwin.of(tags={"site": "a"}, desired={"rate": 5}),
    )


def _group() -> EnrollmentGroup:
    return EnrollmentGroup(
        enrollment_group_id="grp 1/a",
        attestation=AttestationMechanism.for_symmetric_key(),
    )


# (name, call, method, path, request headers expected, request body expected, status, response body, check)
OPERATIONS: list[
    tuple[
        str,
        Callable[[DpsClient], Any],
        str,
        str,
        dict[str, str],
        Any,
        int,
        Any,
        Callable[[Any], None],
    ]
] = [
    (
        "enrollment_get",
        lambda c: c.enrollment_get("dev-1"),
        "GET",
        "/enrollments/dev-1",
        {},
        None,
        200,
        ENROLLMENT_JSON,
        lambda r: (
            isinstance(r, IndividualEnrollment)
            and r.registration_state.status == "unassigned"
            and r.attestation.tpm.endorsement_key == "AToAAQALAAMAsgAgg3GXZ0SEs"
            and r.initial_twin.desired == {"rate": 5}
        ),
    ),
    (
        "enrollment_put_create",
        lambda c: c.enrollment_put(_enrollment()),
        "PUT",
        "/enrollments/dev-1",
        {"If-Match": None},
        {
            "registrationId": "dev-1",
            "attestation": {"type": "tpm", "tpm": {"endorsementKey": "AToAAQALAAMAsgAgg3GXZ0SEs"}},
            "capabilities": {"iotEdge": True},
            "initialTwin": {"tags": {"site": "a"}, "properties": {"desired": {"rate": 5}}},
        },
        200,
        ENROLLMENT_JSON,
        lambda r: isinstance(r, IndividualEnrollment) and r.etag == ETAG,
    ),
    (
        "enrollment_put_update",
        lambda c: c.enrollment_put(IndividualEnrollment.from_json(ENROLLMENT_JSON), if_match=ETAG),
        "PUT",
        "/enrollments/dev-1",
        {"If-Match": ETAG},
        # Fields only DPS sets are not sent back.
        {
            k: v
            for k, v in ENROLLMENT_JSON.items()
            if k not in ("registrationState", "createdDateTimeUtc", "lastUpdatedDateTimeUtc")
        },
        200,
        ENROLLMENT_JSON,
        lambda r: isinstance(r, IndividualEnrollment),
    ),
    (
        "enrollment_delete",
        lambda c: c.enrollment_delete("dev-1", if_match=ETAG),
        "DELETE",
        "/enrollments/dev-1",
        {"If-Match": ETAG},
        None,
        204,
        None,
        lambda r: r is None,
    ),
    (
        "enrollment_delete_unconditional",
        lambda c: c.enrollment_delete("dev-1"),
        "DELETE",
        "/enrollments/dev-1",
        {"If-Match": None},
        None,
        204,
        None,
        lambda r: r is None,
    ),
    (
        "enrollment_query",
        lambda c: c.enrollment_query(page_size=10, continuation="tok-1"),
        "POST",
        "/enrollments/query",
        {"x-ms-max-item-count": "10", "x-ms-continuation": "tok-1"},
        {"query": "SELECT *"},
        200,
        [ENROLLMENT_JSON],
        lambda r: isinstance(r, QueryPage) and isinstance(r.items[0], IndividualEnrollment),
    ),
    (
        "enrollment_query_first_page",
        lambda c: c.enrollment_query(),
        "POST",
        "/enrollments/query",
        {"x-ms-max-item-count": None, "x-ms-continuation": None},
        {"query": "SELECT *"},
        200,
        [],
        lambda r: r.items == [] and r.continuation_token is None,
    ),
    (
        "enrollment_bulk",
        lambda c: c.enrollment_bulk("create", [_enrollment()]),
        "POST",
        "/enrollments",
        {},
        {"mode": "create", "enrollments": [_enrollment().to_json()]},
        200,
        BULK_JSON,
        lambda r: (
            isinstance(r, BulkEnrollmentOperationResult)
            and not r.is_successful
            and r.errors[0].error_code == 409201
            and r.failed_ids() == {"dev-1"}
        ),
    ),
    (
        "enrollment_attestation_mechanism",
        lambda c: c.enrollment_attestation_mechanism("dev-1"),
        "POST",
        "/enrollments/dev-1/attestationmechanism",
        {"Content-Length": "0"},
        None,
        200,
        MECHANISM_JSON,
        lambda r: isinstance(r, AttestationMechanism) and r.symmetric_key.primary_key == "cA==",
    ),
    (
        "group_get",
        lambda c: c.group_get("grp 1/a"),
        "GET",
        "/enrollmentGroups/grp%201%2Fa",
        {},
        None,
        200,
        GROUP_JSON,
        lambda r: isinstance(r, EnrollmentGroup) and r.enrollment_group_id == "grp 1/a",
    ),
    (
        "group_put",
        lambda c: c.group_put(_group(), if_match=ETAG),
        "PUT",
        "/enrollmentGroups/grp%201%2Fa",
        {"If-Match": ETAG},
        {
            "enrollmentGroupId": "grp 1/a",
            "attestation": {"type": "symmetricKey", "symmetricKey": {}},
        },
        200,
        GROUP_JSON,
        lambda r: isinstance(r, EnrollmentGroup) and r.to_json()["provisioningStatus"] is None,
    ),
    (
        "group_delete",
        lambda c: c.group_delete("grp 1/a", if_match=ETAG),
        "DELETE",
        "/enrollmentGroups/grp%201%2Fa",
        {"If-Match": ETAG},
        None,
        204,
        None,
        lambda r: r is None,
    ),
    (
        "group_query",
        lambda c: c.group_query(page_size=5),
        "POST",
        "/enrollmentGroups/query",
        {"x-ms-max-item-count": "5"},
        {"query": "SELECT *"},
        200,
        [GROUP_JSON],
        lambda r: isinstance(r.items[0], EnrollmentGroup),
    ),
    (
        "group_bulk",
        lambda c: c.group_bulk("delete", [_group()]),
        "POST",
        "/enrollmentGroups",
        {},
        {"mode": "delete", "enrollmentGroups": [_group().to_json()]},
        200,
        {"errors": [], "isSuccessful": True},
        lambda r: r.is_successful and r.errors == [],
    ),
    (
        "group_attestation_mechanism",
        lambda c: c.group_attestation_mechanism("grp 1/a"),
        "POST",
        "/enrollmentGroups/grp%201%2Fa/attestationmechanism",
        {"Content-Length": "0"},
        None,
        200,
        MECHANISM_JSON,
        lambda r: r.symmetric_key.secondary_key == "cw==",
    ),
    (
        "registration_get",
        lambda c: c.registration_get("device-4dfe3739"),
        "GET",
        "/registrations/device-4dfe3739",
        {},
        None,
        200,
        REGISTRATION_JSON,
        lambda r: (
            isinstance(r, DeviceRegistrationState) and r.assigned_hub == "hub.azure-devices.net"
        ),
    ),
    (
        "registration_delete",
        lambda c: c.registration_delete("device-4dfe3739", if_match=ETAG),
        "DELETE",
        "/registrations/device-4dfe3739",
        {"If-Match": ETAG},
        None,
        204,
        None,
        lambda r: r is None,
    ),
    (
        "registration_query_for_group",
        lambda c: c.registration_query_for_group("grp 1/a", page_size=2),
        "POST",
        "/registrations/grp%201%2Fa/query",
        {"x-ms-max-item-count": "2", "Content-Length": "0"},
        None,
        200,
        [REGISTRATION_JSON],
        lambda r: (
            isinstance(r.items[0], DeviceRegistrationState) and r.items[0].status == "assigned"
        ),
    ),
]


@pytest.mark.parametrize(
    ("call", "method", "path", "headers", "body", "status", "answer", "check"),
    [op[1:] for op in OPERATIONS],
    ids=[op[0] for op in OPERATIONS],
)
def test_operation_request_shape_and_result(
    dps: DpsClient,
    mocked: responses.RequestsMock,
    call: Callable[[DpsClient], Any],
    method: str,
    path: str,
    headers: dict[str, str | None],
    body: Any,
    status: int,
    answer: Any,
    check: Callable[[Any], bool],
) -> None:
    """Each operation sends its method, path, api-version, headers and body, and parses the answer."""
    mocked.add(
        method, f"{BASE}{path}", json=answer, status=status
    ) if answer is not None else mocked.add(method, f"{BASE}{path}", status=status)
    result = call(dps)

    assert len(mocked.calls) == 1
    sent = mocked.calls[0].request
    url = urlsplit(sent.url)
    assert sent.method == method
    assert url.path == path
    assert parse_qs(url.query) == {"api-version": [API_VERSION]}
    assert sent.headers["Authorization"] == f"Bearer {TOKEN}"
    for name, value in headers.items():
        if value is None:
            assert name not in sent.headers
        else:
            assert sent.headers[name] == value
    if body is None:
        assert not sent.body
    else:
        assert sent.headers["Content-Type"] == "application/json"
        assert json.loads(sent.body) == body
    assert sent.req_kwargs["timeout"] == (15.0, 15.0)
    assert sent.req_kwargs["verify"] == "/tmp/unit-ca.pem"
    assert check(result)


def test_fifteen_operations_are_covered() -> None:
    """The table above exercises every method of the DpsApi protocol."""
    protocol_methods = {n for n in DpsApi.__dict__ if not n.startswith("_")}
    assert len(protocol_methods) == 15
    exercised = {
        name.split("_create")[0]
        .split("_update")[0]
        .split("_unconditional")[0]
        .split("_first_page")[0]
        for name, *_ in OPERATIONS
    }
    assert protocol_methods <= exercised


def test_client_satisfies_protocol(dps: DpsClient) -> None:
    """DpsClient implements DpsApi, so services can take either it or a fake."""
    assert isinstance(dps, DpsApi)


def test_query_page_reads_paging_headers(dps: DpsClient, mocked: responses.RequestsMock) -> None:
    """x-ms-continuation, x-ms-item-type and x-ms-max-item-count land on the page."""
    mocked.post(
        f"{BASE}/enrollments/query",
        json=[ENROLLMENT_JSON],
        headers={
            "x-ms-continuation": "abc==",
            "x-ms-item-type": "Enrollment",
            "x-ms-max-item-count": "1",
        },
    )
    page = dps.enrollment_query(page_size=1)
    assert page.continuation_token == "abc=="
    assert page.has_more
    assert page.item_type == "Enrollment"
    assert page.max_item_count == 1


def test_iterate_pages_follows_continuation(dps: DpsClient, mocked: responses.RequestsMock) -> None:
    """iterate_pages passes each token back until a page has none."""
    mocked.post(
        f"{BASE}/enrollments/query", json=[ENROLLMENT_JSON], headers={"x-ms-continuation": "t1"}
    )
    mocked.post(f"{BASE}/enrollments/query", json=[ENROLLMENT_JSON, ENROLLMENT_JSON])
    pages = list(iterate_pages(lambda token: dps.enrollment_query(page_size=2, continuation=token)))
    assert [len(p.items) for p in pages] == [1, 2]
    assert "x-ms-continuation" not in mocked.calls[0].request.headers
    assert mocked.calls[1].request.headers["x-ms-continuation"] == "t1"


def test_iterate_pages_stops_on_a_repeated_token(
    dps: DpsClient, mocked: responses.RequestsMock
) -> None:
    """A server that returns the same token forever cannot loop the portal."""
    mocked.post(f"{BASE}/enrollments/query", json=[], headers={"x-ms-continuation": "same"})
    with pytest.raises(DpsInvalidResponse):
        list(iterate_pages(lambda token: dps.enrollment_query(continuation=token)))
    assert len(mocked.calls) == 2


@pytest.mark.parametrize("count", [0, 11])
def test_bulk_refuses_more_than_ten_or_none(
    dps: DpsClient, mocked: responses.RequestsMock, count: int
) -> None:
    """DPS takes at most 10 items per bulk call; the client refuses before sending."""
    with pytest.raises(ValueError, match="1 to 10 items"):
        dps.enrollment_bulk("create", [_enrollment()] * count)
    assert len(mocked.calls) == 0


def test_bulk_refuses_an_unknown_mode(dps: DpsClient, mocked: responses.RequestsMock) -> None:
    with pytest.raises(ValueError, match="bulk mode"):
        dps.group_bulk("upsert", [_group()])
    assert len(mocked.calls) == 0


def test_bulk_sends_ten(dps: DpsClient, mocked: responses.RequestsMock) -> None:
    mocked.post(f"{BASE}/enrollments", json={"isSuccessful": True, "errors": []})
    dps.enrollment_bulk("updateIfMatchETag", [_enrollment()] * 10)
    body = json.loads(mocked.calls[0].request.body)
    assert body["mode"] == "updateIfMatchETag"
    assert len(body["enrollments"]) == 10


def test_empty_id_is_refused(dps: DpsClient, mocked: responses.RequestsMock) -> None:
    with pytest.raises(ValueError, match="id is required"):
        dps.enrollment_get("")
    assert len(mocked.calls) == 0


def test_sas_provider_value_is_sent_as_is(mocked: responses.RequestsMock) -> None:
    """A SAS provider's value goes to Authorization unchanged (no Bearer prefix)."""
    provider = sas_token_provider(
        HOST, "provisioningserviceowner", "c2VjcmV0LWtleS1vZi10aGUtcG9saWN5"
    )
    client = DpsClient(HOST, provider)
    mocked.get(f"{BASE}/registrations/x", json={"registrationId": "x"})
    client.registration_get("x")
    assert mocked.calls[0].request.headers["Authorization"] == provider()
    assert mocked.calls[0].request.headers["Authorization"].startswith("SharedAccessSignature sr=")


@pytest.mark.parametrize(
    "provider",
    [lambda: TOKEN, bearer(lambda: TOKEN), lambda: f"Bearer {TOKEN}"],
    ids=["bare", "bearer-adapter", "full-header"],
)
def test_bearer_tokens(mocked: responses.RequestsMock, provider: Callable[[], str]) -> None:
    """A bare token, the bearer() adapter and a full header value all send one Bearer header."""
    client = DpsClient(HOST, provider)
    mocked.get(f"{BASE}/registrations/x", json={"registrationId": "x"})
    client.registration_get("x")
    assert mocked.calls[0].request.headers["Authorization"] == f"Bearer {TOKEN}"


def test_default_session_ignores_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """REQUESTS_CA_BUNDLE and proxy variables cannot change where or how the client connects."""
    client = DpsClient(HOST, lambda: TOKEN, ca_bundle="/ca.pem")
    assert client.session.trust_env is False
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/elsewhere.pem")
    settings = client.session.merge_environment_settings(f"{BASE}/x", {}, None, client.verify, None)
    assert settings["verify"] == "/ca.pem"


def test_timeout_tuple_and_base_url() -> None:
    client = DpsClient("https://127.0.0.1:8443/", lambda: TOKEN, timeout=(3, 20))
    assert client.timeout == (3.0, 20.0)
    assert client.base_url == "https://127.0.0.1:8443"
    assert DpsClient("127.0.0.1:8443", lambda: TOKEN).base_url == "https://127.0.0.1:8443"


def test_success_with_a_non_json_body_is_invalid_response(
    dps: DpsClient, mocked: responses.RequestsMock
) -> None:
    """A 200 HTML page from a proxy is not mistaken for an enrollment."""
    mocked.get(f"{BASE}/enrollments/x", body="<html>proxy login</html>", status=200)
    with pytest.raises(DpsInvalidResponse) as info:
        dps.enrollment_get("x")
    assert info.value.status == 200


def test_success_with_a_wrong_shape_is_invalid_response(
    dps: DpsClient, mocked: responses.RequestsMock
) -> None:
    mocked.get(f"{BASE}/enrollments/x", json={"deviceId": "no registrationId"})
    mocked.post(f"{BASE}/enrollments/query", json={"not": "a list"})
    with pytest.raises(DpsInvalidResponse):
        dps.enrollment_get("x")
    with pytest.raises(DpsInvalidResponse):
        dps.enrollment_query()
