"""ArmClient.permissions_for: request shape, paging, typed errors, no token in messages."""

from __future__ import annotations

import pytest
import requests
import responses
from django.test import override_settings

from authn.arm import (
    ArmBadResponse,
    ArmClient,
    ArmError,
    ArmForbidden,
    ArmNotFound,
    ArmUnauthorized,
    ArmUnavailable,
)

BASE = "https://arm.test"
RID = "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.Devices/provisioningServices/dps1"
URL = f"{BASE}{RID}/providers/Microsoft.Authorization/permissions"
TOKEN = "eyJhbGciOiJSUzI1NiJ9.secret-token-value.sig"


@pytest.fixture
def client():
    with override_settings(AZURE_CA_BUNDLE=None, HTTP_TIMEOUT_SECONDS=7):
        yield ArmClient(base_url=BASE)


@responses.activate
def test_request_shape_and_paging(client):
    """GET with api-version and the bearer token; nextLink pages are followed."""
    responses.get(
        URL,
        match=[
            responses.matchers.query_param_matcher({"api-version": "2022-04-01"}),
            responses.matchers.header_matcher({"Authorization": f"Bearer {TOKEN}"}),
        ],
        json={
            "value": [{"dataActions": ["a"]}],
            "nextLink": f"{URL}?api-version=2022-04-01&$skiptoken=2",
        },
    )
    responses.get(
        URL,
        match=[
            responses.matchers.query_param_matcher({"api-version": "2022-04-01", "$skiptoken": "2"})
        ],
        json={"value": [{"dataActions": ["b"]}], "nextLink": None},
    )
    assert client.permissions_for(RID, TOKEN) == [{"dataActions": ["a"]}, {"dataActions": ["b"]}]


@responses.activate
def test_next_link_to_another_host_is_refused(client):
    """The token is never sent to a host other than ARM's."""
    responses.get(URL, json={"value": [], "nextLink": "https://evil.example/next"})
    with pytest.raises(ArmBadResponse):
        client.permissions_for(RID, TOKEN)
    assert len(responses.calls) == 1


@pytest.mark.parametrize(
    ("status", "exc"),
    [
        (401, ArmUnauthorized),
        (403, ArmForbidden),
        (404, ArmNotFound),
        (429, ArmUnavailable),
        (500, ArmUnavailable),
        (503, ArmUnavailable),
        (400, ArmError),
    ],
)
@responses.activate
def test_errors_are_typed_and_carry_arm_code_not_token(client, status, exc):
    responses.get(
        URL, status=status, json={"error": {"code": "AuthorizationFailed", "message": TOKEN}}
    )
    with pytest.raises(exc) as info:
        client.permissions_for(RID, TOKEN)
    assert info.value.status == status
    assert info.value.code == "AuthorizationFailed"
    assert TOKEN not in str(info.value)


@responses.activate
def test_connection_failure_and_timeout_are_unavailable(client):
    responses.get(URL, body=requests.ConnectTimeout("timed out"))
    with pytest.raises(ArmUnavailable) as info:
        client.permissions_for(RID, TOKEN)
    assert TOKEN not in str(info.value)


@pytest.mark.parametrize("body", ["not json", "[]", '{"nothing": 1}', '{"value": "x"}'])
@responses.activate
def test_malformed_answers_are_bad_responses(client, body):
    responses.get(URL, body=body, status=200)
    with pytest.raises(ArmBadResponse):
        client.permissions_for(RID, TOKEN)


def test_session_has_timeout_explicit_trust_and_ignores_environment(client):
    assert client.session.trust_env is False
    assert client.session.timeout == 7
    assert client.session.verify is True


def test_relative_resource_id_is_refused(client):
    with pytest.raises(ValueError):
        client.permissions_for("subscriptions/x", TOKEN)


@responses.activate
def test_provisioning_service_get_reads_the_dps_resource(client):
    """GET {resource id} with the DPS resource api-version; 403 without a control-plane read."""
    body = {
        "id": RID,
        "properties": {"serviceOperationsHostName": "dps1.azure-devices-provisioning.net"},
    }
    responses.get(
        f"{BASE}{RID}",
        match=[
            responses.matchers.query_param_matcher({"api-version": "2022-02-05"}),
            responses.matchers.header_matcher({"Authorization": f"Bearer {TOKEN}"}),
        ],
        json=body,
    )
    assert client.provisioning_service_get(RID, TOKEN) == body
    responses.get(f"{BASE}{RID}", status=403, json={"error": {"code": "AuthorizationFailed"}})
    with pytest.raises(ArmForbidden) as info:
        client.provisioning_service_get(RID, TOKEN)
    assert TOKEN not in str(info.value)
