"""The generic record views: sections, DPS error pages and the capability each page names."""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import reverse

from enrollments.dps.exceptions import DpsForbidden, DpsQuotaExceeded

from .conftest import INSTANCE

pytestmark = pytest.mark.django_db


def test_group_list_is_in_the_groups_section(signed_in: Any, seed: Any) -> None:
    """The groups tab is the current one on the group list, and the switcher stays on groups."""
    seed.group()
    html = signed_in("dana").get(reverse("enrollments:group_list", args=[INSTANCE])).content
    page = html.decode()
    assert 'aria-current="page" href="/dps/dps-fleet-prod/groups/" data-testid="tab-groups"' in page
    assert 'href="/dps/dps-fleet-lab/groups/" data-testid="switch-dps-fleet-lab"' in page


class _Refusing:
    """A DPS client whose reads work and whose deletes and writes are refused."""

    def __init__(self, real: Any, error: Exception) -> None:
        self.real, self.error = real, error

    def __getattr__(self, name: str) -> Any:
        if name.endswith(("_delete", "_put")):

            def refuse(*args: Any, **kwargs: Any) -> Any:
                raise self.error

            return refuse
        return getattr(self.real, name)


def _refusing(monkeypatch: pytest.MonkeyPatch, error: Exception) -> list[Any]:
    from enrollments.views import errors, generic

    forgotten: list[Any] = []
    real = generic.dps_client

    def client(request: Any) -> Any:
        return _Refusing(real(request), error)

    monkeypatch.setattr(generic, "dps_client", client)
    monkeypatch.setattr(errors, "capabilities_invalidate", lambda u, i: forgotten.append(i))
    return forgotten


def test_a_refused_delete_names_the_delete_action(
    signed_in: Any, seed: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DPS's 403 on the delete itself names enrollments/delete (the read before it worked)."""
    record = seed.enrollment()
    dana = signed_in("dana")
    forgotten = _refusing(monkeypatch, DpsForbidden(status=403, tracking_id="trk-del"))
    url = reverse("enrollments:enrollment_delete", args=[INSTANCE, record.registration_id])
    response = dana.post(url, {"etag": record.etag})
    assert response.status_code == 403
    page = response.content.decode()
    assert "provisioningServices/enrollments/delete" in page
    assert "trk-del" in page
    assert len(forgotten) == 1


def test_a_full_instance_on_status_is_409_and_keeps_the_capabilities(
    signed_in: Any, seed: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The instance's count limit is not a missing role: 409, and permissions are not re-read."""
    record = seed.enrollment()
    dana = signed_in("dana")
    full = DpsQuotaExceeded(status=403, error_code=403002, tracking_id="trk-full")
    forgotten = _refusing(monkeypatch, full)
    url = reverse("enrollments:enrollment_status", args=[INSTANCE, record.registration_id])
    response = dana.post(url, {"status": "disabled", "etag": record.etag})
    assert response.status_code == 409
    assert "DPS instance limit reached" in response.content.decode()
    assert forgotten == []
