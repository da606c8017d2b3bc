"""The instance overview: every number equals what the index holds; buckets, orphans, 403."""
# ruff: noqa: F811 - the enrollment tests' fixtures are imported by name, then requested

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.utils import timezone

from audit.models import AuditAction, AuditEvent
from fleet import facets
from fleet.models import IndexedRecord, IndexedRegistration, RecordKind
from fleet.overview import certificate_buckets, orphans, overview
from instances.models import DpsInstance

from .overview_fleet import (  # noqa: F401 - fixtures
    HUB_A,
    HUB_B,
    INSTANCE,
    _isolated_caches,
    _record,
    dps_entry,
    dps_instances,
    fleet,
    owner_client,
    prod,
    seed,
    signed_in,
)
from .support import run_pass

pytestmark = pytest.mark.django_db
HOME = f"/dps/{INSTANCE}/"


def _hubs(instance: DpsInstance) -> dict[str, int]:
    regs = IndexedRegistration.objects.filter(instance=instance).exclude(assigned_hub="")
    return {
        h: regs.filter(assigned_hub=h).count()
        for h in set(regs.values_list("assigned_hub", flat=True))
    }


def _expected(instance: DpsInstance) -> dict[str, Any]:
    """Count the index the plain way, to compare the overview's every number with."""
    records = IndexedRecord.objects.filter(instance=instance)
    regs = IndexedRegistration.objects.filter(instance=instance)
    enrollments = records.filter(kind=RecordKind.ENROLLMENT)
    groups = records.filter(kind=RecordKind.GROUP)
    return {
        "quotas": {
            "enrollments": enrollments.count(),
            "registrations": regs.count(),
            "x509_groups": groups.filter(attestation="x509").count(),
            "symmetric_groups": groups.filter(attestation="symmetricKey").count(),
        },
        "attestation": {
            a: enrollments.filter(attestation=a).count() for a in ("symmetricKey", "x509", "tpm")
        },
        "status": {s: enrollments.filter(status=s).count() for s in ("enabled", "disabled")},
        "hubs": {h: regs.filter(assigned_hub=h).count() for h in (HUB_A, HUB_B)},
        "failed": regs.filter(status="failed").count(),
        "assigned": regs.filter(status="assigned").count(),
    }


@pytest.mark.parametrize("counted", [False, True], ids=["group-by", "facet-counts"])
def test_every_number_equals_the_index(fleet: DpsInstance, signed_in: Any, counted: bool) -> None:
    if counted:
        facets.rebuild(fleet, RecordKind.ENROLLMENT)
        facets.rebuild(fleet, RecordKind.GROUP)
    expected = _expected(fleet)
    response = signed_in("reggie").get(HOME)
    assert response.status_code == 200
    ov = response.context["ov"]
    assert {q.name: q.used for q in ov.quotas} == expected["quotas"]
    assert ov.enrollment_attestation == expected["attestation"]
    assert ov.provisioning == expected["status"]
    assert ov.group_attestation == {"x509": 1, "symmetricKey": 1}
    assert ov.hubs == expected["hubs"]
    assert ov.failed_count == expected["failed"] == 1
    assert ov.registration_status["assigned"] == expected["assigned"]
    assert ov.registration_status["failed"] == 1
    assert ov.registration_status["never registered"] == 1  # tpm-0: read, no record
    assert ov.never_registered == 1  # and older than FLEET_NEVER_REGISTERED_DAYS
    assert ov.drifted == 1
    assert ov.orphans == {"grp-gone": 2}
    assert (
        sum(n for _, n in ov.timeline) == IndexedRegistration.objects.filter(instance=fleet).count()
    )
    body = response.content.decode()
    for name, used in expected["quotas"].items():
        assert f'data-testid="quota-{name}" data-used="{used}"' in body
    assert 'data-testid="number-provisioning-disabled" data-count="3"' in body
    assert "The certificate chain is not trusted." in body
    assert 'data-testid="cert-group-expired" data-count="1"' in body


def test_chart_segments_link_to_the_filtered_lists(fleet: DpsInstance, signed_in: Any) -> None:
    reggie = signed_in("reggie")
    body = reggie.get(HOME).content.decode()
    base = f"/dps/{INSTANCE}"
    assert f'href="{base}/enrollments/?attestation=x509"' in body
    assert f'href="{base}/groups/?attestation=symmetricKey"' in body
    assert f'href="{base}/enrollments/?status=disabled"' in body
    assert f'href="{base}/enrollments/?expires_within=30"' in body
    filtered = reggie.get(f"{base}/enrollments/", {"status": "disabled"})
    assert filtered.context["page"].total == 3


def test_registration_numbers_open_lists_of_exactly_those_records(
    fleet: DpsInstance, signed_in: Any
) -> None:
    """A registration-status or hub bar, or "failed", counts registration records of groups
    and individual enrollments alike: its link opens the list of all of them, same total."""
    reggie = signed_in("reggie")
    response = reggie.get(HOME)
    charts = {c.name: c for c in response.context["charts"]}
    shown = [
        (s.url, s.n) for name in ("registration", "hubs") for s in charts[name].segments if s.url
    ]
    shown.append((response.context["links"]["failed"], response.context["ov"].failed_count))
    assert len(shown) == 8  # five states (some at 0), two hubs, the failed item
    for url, n in shown:
        assert url.startswith(f"/dps/{INSTANCE}/registrations/?")
        page = reggie.get(url)
        assert page.status_code == 200
        assert page.context["page"].total == n, url
        assert f"<strong>{n}</strong>" in page.content.decode()
    assert charts["hubs"].total == 7  # four of a group, two orphans, one individual


def test_certificate_buckets_at_their_edges(prod: DpsInstance) -> None:
    now = timezone.now().replace(microsecond=0)
    ends = {
        "expired-1s": now - dt.timedelta(seconds=1),
        "now": now,
        "7d": now + dt.timedelta(days=7),
        "7d+1s": now + dt.timedelta(days=7, seconds=1),
        "30d": now + dt.timedelta(days=30),
        "90d+1s": now + dt.timedelta(days=90, seconds=1),
    }
    for name, end in ends.items():
        _record(prod, RecordKind.ENROLLMENT, f"cert-{name}", attestation="x509", cert_not_after=end)
    _record(
        prod,
        RecordKind.GROUP,
        "signing",
        attestation="x509",
        cert_not_after=now + dt.timedelta(days=8),
    )
    got = {(b.kind, b.within_days): b.count for b in certificate_buckets(prod, now=now)}
    assert got[(RecordKind.ENROLLMENT, None)] == 1  # expired one second ago
    assert got[(RecordKind.ENROLLMENT, 7)] == 2  # ends now, ends in exactly 7 days
    assert got[(RecordKind.ENROLLMENT, 30)] == 4
    assert got[(RecordKind.ENROLLMENT, 90)] == 4  # 90 days and 1 s is beyond
    assert got[(RecordKind.GROUP, None)] == 0
    assert got[(RecordKind.GROUP, 7)] == 0
    assert got[(RecordKind.GROUP, 30)] == 1


def test_orphans_are_registrations_whose_group_is_gone(fleet: DpsInstance, signed_in: Any) -> None:
    assert orphans(fleet) == {"grp-gone": 2}
    # Individual enrollments' records (no group) and live groups' records are never orphans.
    IndexedRecord.objects.filter(instance=fleet, key="grp-sym").delete()
    assert orphans(fleet) == {"grp-gone": 2, "grp-sym": 4}


def test_delete_these_goes_through_the_registration_deletion(
    fleet: DpsInstance, signed_in: Any
) -> None:
    dana = signed_in("dana")  # Contributor: may delete registration records
    body = dana.get(HOME).content.decode()
    action = f'action="/dps/{INSTANCE}/groups/grp-gone/registrations/delete/"'
    assert action in body
    assert 'value="orphan-0|etag-0"' in body
    assert 'value="orphan-1|etag-1"' in body
    confirm = dana.post(
        f"/dps/{INSTANCE}/groups/grp-gone/registrations/delete/",
        {"selected": ["orphan-0|etag-0", "orphan-1|etag-1"]},
    )
    assert confirm.status_code == 200
    assert b"orphan-0" in confirm.content
    reader = signed_in("reggie").get(HOME).content.decode()
    assert 'data-testid="orphan-grp-gone"' in reader
    assert action not in reader  # a Reader sees the orphans, not the button


def test_a_user_without_read_sees_nothing_of_the_instance(
    fleet: DpsInstance, signed_in: Any
) -> None:
    nora = signed_in("nora")
    response = nora.get(HOME)
    assert response.status_code == 403
    assert b"overview-quotas" not in response.content
    assert AuditEvent.objects.filter(action=AuditAction.DENIED, dps_instance=INSTANCE).exists()
    home = nora.get("/").content.decode()
    assert 'data-testid="overview-line-' not in home


def test_overview_needs_no_sync_to_render(prod: DpsInstance) -> None:
    ov = overview(prod)
    assert not ov.indexed
    assert all(q.used == 0 for q in ov.quotas)
    assert ov.attention_count == 0


def test_the_home_page_has_one_line_per_readable_instance(
    fleet: DpsInstance, signed_in: Any
) -> None:
    response = signed_in("reggie").get("/")
    line = next(r for r in response.context["instances"] if r["instance"] == fleet)["summary"]
    assert (line.enrollments, line.groups, line.registrations) == (10, 2, 8)
    assert line.expired == 1  # the X.509 group's signing certificate
    assert line.expiring_30 == 1  # x509-0 in 5 days; x509-1 in 35 days is not
    assert (line.failed, line.orphans, line.never_registered, line.drifted) == (1, 2, 1, 1)
    assert line.attention == 7
    assert signed_in("reggie").get(f"/dps/{INSTANCE}/").context["ov"].attention_count == 7
    body = response.content.decode()
    assert f'data-testid="overview-line-{INSTANCE}" data-attention="{line.attention}"' in body
    assert "1 certificate expired, 1 certificate expiring within 30 days" in body
    assert f'href="/dps/{INSTANCE}/"' in body


def test_a_gauge_shows_where_a_limit_is_near(prod: DpsInstance, signed_in: Any) -> None:
    for i in range(95):
        _record(prod, RecordKind.GROUP, f"x-{i}", attestation="x509", status="enabled")
    _record(prod, RecordKind.GROUP, "sym", attestation="symmetricKey", status="enabled")
    body = signed_in("reggie").get(HOME).content.decode()
    assert 'data-testid="gauge-x509_groups"' in body
    assert 'aria-label="95.0% of the limit used"' in body
    assert 'data-testid="gauge-symmetric_groups"' not in body
    assert 'data-testid="gauge-enrollments"' not in body


def _ca(name: str, expiry: dt.datetime) -> Any:
    from controlplane.types import CaCertificate

    return CaCertificate(name, f"CN={name}", "AB" * 20, expiry, True, None, None, "e")


def test_ca_certificates_expiring_are_listed(
    fleet: DpsInstance, signed_in: Any, monkeypatch: Any
) -> None:
    asked: list[int] = []

    def expiring(user: Any, instance: Any, *, days: int) -> list[Any]:
        asked.append(days)
        now = timezone.now()
        return [
            _ca("old-root", now - dt.timedelta(days=1)),
            _ca("soon", now + dt.timedelta(days=20)),
        ]

    monkeypatch.setattr("fleet.overview_views.expiring_ca_certificates", expiring)
    response = signed_in("dana").get(HOME)
    assert asked == [90]
    body = response.content.decode()
    assert 'data-testid="ca-old-root"' in body
    assert 'data-testid="ca-soon"' in body
    assert response.context["ov"].attention_count == 7 + 2


def test_entra_down_leaves_the_overview_standing(
    fleet: DpsInstance, signed_in: Any, monkeypatch: Any
) -> None:
    from authn.exceptions import TokenUnavailable

    dana = signed_in("dana")

    def down(*args: Any, **kw: Any) -> list[Any]:
        raise TokenUnavailable("Entra ID could not be reached")

    monkeypatch.setattr("fleet.overview_views.expiring_ca_certificates", down)
    response = dana.get(HOME)
    assert response.status_code == 200
    assert b'data-testid="attention-ca-unavailable"' in response.content


def test_numbers_after_a_sync_of_the_seeded_emulator(
    prod: DpsInstance, seed: Any, signed_in: Any
) -> None:
    from tests.integration.enrollments.conftest import unique

    stem = unique("ov")
    for i in range(4):
        seed.enrollment(f"{stem}-{i}", provisioning_status="disabled" if i % 2 else "enabled")
    group = seed.group(f"{stem}-grp")
    for i in range(3):
        seed.registration(f"{stem}-dev-{i}", group.enrollment_group_id)
    run_pass(prod)
    expected = _expected(prod)
    ov = signed_in("reggie").get(HOME).context["ov"]
    assert {q.name: q.used for q in ov.quotas} == expected["quotas"]
    assert ov.provisioning == expected["status"]
    assert ov.registration_status["assigned"] == expected["assigned"] >= 3
    assert ov.hubs == {h: n for h, n in _hubs(prod).items() if n}
    assert sum(n for _, n in ov.timeline) == expected["quotas"]["registrations"]
