"""Bearer tokens must name the tenant (``tid``), as every Entra access token does (IDENTITY §3.9)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from emulators.common.tenant import DEFAULT_TENANT_FILE
from tests.integration.emulators.dps.conftest import Dps, v1_claims

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")

RAW_TENANT = json.loads(DEFAULT_TENANT_FILE.read_text())
DANA = next(u["object_id"] for u in RAW_TENANT["users"] if u["username"].startswith("dana."))


def _bearer(dps: Dps, claims: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": "Bearer " + dps.ctx.keys.sign(claims, v1=True)}


def test_token_with_tid_is_accepted(dps: Dps) -> None:
    """The control case: the same principal's token with its tid reaches the operation."""
    resp = dps.call("POST", "/enrollments/query", body={"query": "*"}, auth=dps.bearer(DANA))
    assert resp.status_code == 200, resp.text


def test_token_without_tid_is_refused_with_401(dps: Dps) -> None:
    """No tid: 401 in DPS's error shape, before any RBAC decision, nothing listed."""
    claims = v1_claims(dps.ctx.tenant, DANA)
    del claims["tid"]
    resp = dps.call("POST", "/enrollments/query", body={"query": "*"}, auth=_bearer(dps, claims))
    assert resp.status_code == 401, resp.text
    body = resp.json()
    assert body["errorCode"] == 401001
    assert resp.headers["x-ms-error-code"] == "401001"
    assert "tid" in body["message"]


@pytest.mark.parametrize("tid", ["", "00000000-0000-0000-0000-00000000dead"])
def test_token_with_empty_or_foreign_tid_is_refused(dps: Dps, tid: str) -> None:
    claims = v1_claims(dps.ctx.tenant, DANA, tid=tid)
    resp = dps.call("GET", "/enrollments/anything", auth=_bearer(dps, claims))
    assert resp.status_code == 401, resp.text
    assert resp.json()["errorCode"] == 401001
