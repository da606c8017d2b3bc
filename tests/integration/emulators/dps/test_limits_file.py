"""Count limits from ``<state_dir>/dps-limits.json``: small limits for tests and demos."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from emulators.dps.app import create_app
from emulators.dps.service import Limits
from tests.integration.emulators.dps.conftest import LOCAL_HOST, Dps

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")


def _with_limits(dps: Dps, content: object) -> Dps:
    """Rebuild ``dps``'s app after writing the limits file into its state directory."""
    (dps.ctx.state_dir / "dps-limits.json").write_text(json.dumps(content))
    app = create_app(dps.ctx, dps.instance, store=dps.store)
    client = TestClient(app, base_url=f"https://{LOCAL_HOST}", raise_server_exceptions=True)
    return Dps(dps.ctx, dps.instance, dps.store, client)


def _enrollment(rid: str) -> dict[str, object]:
    return {"registrationId": rid, "attestation": {"type": "symmetricKey"}}


def test_limits_file_caps_enrollments_with_403002(make_dps: Callable[..., Dps]) -> None:
    dps = _with_limits(make_dps(), {"max_enrollments": 1})
    assert dps.call("PUT", "/enrollments/e-1", body=_enrollment("e-1")).status_code == 200
    resp = dps.call("PUT", "/enrollments/e-2", body=_enrollment("e-2"))
    assert resp.status_code == 403, resp.text
    assert resp.json()["errorCode"] == 403002
    assert resp.json()["message"] == "The limit of 1 individual enrollments is reached."
    # Replacing an existing record is not a new one.
    again = dps.call("PUT", "/enrollments/e-1", body=_enrollment("e-1"), headers={"If-Match": "*"})
    assert again.status_code == 200, again.text


def test_instance_section_overrides_the_top_level(make_dps: Callable[..., Dps]) -> None:
    dps = _with_limits(
        make_dps(),
        {
            "max_groups_per_attestation": 5,
            "instances": {"dps-fleet-prod": {"max_groups_per_attestation": 0}},
        },
    )
    body = {"enrollmentGroupId": "g-1", "attestation": {"type": "symmetricKey"}}
    resp = dps.call("PUT", "/enrollmentGroups/g-1", body=body)
    assert resp.status_code == 403
    assert resp.json()["errorCode"] == 403002
    assert "0 enrollment groups with symmetricKey" in resp.json()["message"]


def test_no_file_means_the_real_limits(tmp_path: Path) -> None:
    assert Limits.load(tmp_path, "x") == Limits(1_000_000, 100)


@pytest.mark.parametrize(
    ("content", "named"),
    [
        ("{not json", "not JSON"),
        ('{"max_enrolments": 3}', "unknown limit max_enrolments"),
        ('{"max_enrollments": -1}', "max_enrollments must be"),
        ('{"max_enrollments": "3"}', "max_enrollments must be"),
        ('{"instances": {"x": {"max_enrollments": true}}}', "instances.x.max_enrollments"),
        ("[]", "JSON object"),
    ],
)
def test_bad_limits_file_is_refused_at_start(tmp_path: Path, content: str, named: str) -> None:
    (tmp_path / "dps-limits.json").write_text(content)
    with pytest.raises(ValueError, match=named):
        Limits.load(tmp_path, "x")
