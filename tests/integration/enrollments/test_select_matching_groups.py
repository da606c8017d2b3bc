""" "Select all N matching" on the enrollment groups list: disable, enable and delete (issue 13).

As for individual enrollments (test_select_matching.py): against the emulators, signed in as
the demo users, the task bodies called directly; the job reaches DPS as its owner.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import pytest
from django.core.exceptions import PermissionDenied
from django.template.loader import render_to_string

from audit.models import AuditAction, AuditEvent, AuditOutcome
from enrollments.dps.exceptions import DpsNotFound
from enrollments.models import BulkJob, BulkRow, JobKind, JobState, RowStatus
from fleet.models import IndexedRecord
from instances.models import DpsInstance
from tests.integration.fleet.support import run_pass

from .conftest import INSTANCE, unique
from .test_select_matching import _bulk_settings, _job, _run, prod  # noqa: F401 - fixtures

pytestmark = pytest.mark.django_db
URL = f"/dps/{INSTANCE}/bulk/select-matching/group/"


def _groups(seed: Any, stem: str, n: int, **fields: Any) -> list[str]:
    return [seed.group(f"{stem}-{i}", **fields).enrollment_group_id for i in range(n)]


def _change_outside(owner_client: Any, gid: str) -> None:
    """Change a group directly on the emulator (SAS): its ETag moves past the index's."""
    current = owner_client.group_get(gid)
    current.attestation = owner_client.group_attestation_mechanism(gid)
    current.iot_hub_host_name = None
    current.reprovision_policy = None
    owner_client.group_put(current, if_match=current.etag)


def test_disable_all_matching_groups_changes_exactly_those_and_conflicts_on_a_change_since(
    prod: DpsInstance,  # noqa: F811 - the fixture imported above
    seed: Any,
    signed_in: Any,
    owner_client: Any,
) -> None:
    stem = unique("gsel")
    matching = _groups(seed, f"{stem}-a", 3)
    other = _groups(seed, f"{stem}-b", 2)
    run_pass(prod)
    changed = matching[-1]
    _change_outside(owner_client, changed)
    query = urlencode({"q": f"{stem}-a"})
    dana = signed_in("dana")

    confirm = dana.post(URL, {"action": "disable", "query_string": query})
    assert confirm.status_code == 200
    assert "Disable 3 enrollment groups" in confirm.content.decode()
    assert not BulkJob.objects.exists()

    job = _job(dana.post(URL, {"action": "disable", "query_string": query, "confirm": "on"}))
    assert (job.kind, job.options["record_kind"], job.options["status"]) == (
        JobKind.SET_STATUS,
        "group",
        "disabled",
    )
    job = _run(job)
    assert (job.state, job.count_done, job.count_conflict) == (
        JobState.COMPLETED_WITH_ERRORS,
        2,
        1,
    )
    for gid in matching[:-1]:
        assert owner_client.group_get(gid).provisioning_status == "disabled"
        row = IndexedRecord.objects.get(instance=prod, kind="group", key=gid.lower())
        assert row.status == "disabled"  # written through to the index
    assert owner_client.group_get(changed).provisioning_status == "enabled"
    conflict = BulkRow.objects.get(job=job, registration_id=changed)
    assert (conflict.status, conflict.error_code) == (RowStatus.CONFLICT, "412")
    for gid in other:
        assert owner_client.group_get(gid).provisioning_status == "enabled"
    updates = AuditEvent.objects.filter(
        action=AuditAction.ENROLLMENTGROUP_UPDATE,
        target_id__in=matching,
        outcome=AuditOutcome.SUCCESS,
    )
    assert updates.count() == 2
    # Keys carried unchanged (the group's devices still derive the same keys).
    assert owner_client.group_attestation_mechanism(matching[0]).symmetric_key is not None
    page = dana.get(f"/dps/{INSTANCE}/bulk/jobs/{job.pk}/").content.decode()
    assert 'data-testid="job-record-kind">enrollment groups<' in page
    listing = dana.get(f"/dps/{INSTANCE}/groups/", {"q": f"{stem}-a"}).content.decode()
    assert 'data-testid="select-matching-disable"' in listing  # the groups list offers it
    assert f'action="{URL}"' in listing


def test_enable_all_matching_groups(
    prod: DpsInstance,  # noqa: F811
    seed: Any,
    signed_in: Any,
    owner_client: Any,
) -> None:
    stem = unique("gselen")
    off = _groups(seed, stem, 2, provisioning_status="disabled")
    run_pass(prod)
    query = urlencode({"q": stem, "status": "disabled"})
    job = _run(
        _job(
            signed_in("dana").post(
                URL, {"action": "enable", "query_string": query, "confirm": "on"}
            )
        )
    )
    assert (job.state, job.count_done) == (JobState.COMPLETED, 2)
    assert {owner_client.group_get(g).provisioning_status for g in off} == {"enabled"}


def test_delete_all_matching_groups_deletes_exactly_those(
    prod: DpsInstance,  # noqa: F811
    seed: Any,
    signed_in: Any,
    owner_client: Any,
) -> None:
    stem = unique("gseldel")
    matching = _groups(seed, f"{stem}-a", 3)
    other = _groups(seed, f"{stem}-b", 1)
    run_pass(prod)
    _change_outside(owner_client, matching[0])
    job = _run(
        _job(
            signed_in("dana").post(
                URL, {"action": "delete", "query_string": f"q={stem}-a", "confirm": "on"}
            )
        )
    )
    assert (job.kind, job.options["record_kind"]) == (JobKind.DELETE_SELECTED, "group")
    assert (job.count_done, job.count_conflict) == (2, 1)
    for gid in matching[1:]:
        with pytest.raises(DpsNotFound):
            owner_client.group_get(gid)
        assert not IndexedRecord.objects.filter(instance=prod, kind="group", key=gid.lower())
    assert owner_client.group_get(matching[0])  # changed since: a conflict, kept
    assert owner_client.group_get(other[0])
    deletes = AuditEvent.objects.filter(
        action=AuditAction.ENROLLMENTGROUP_DELETE,
        target_id__in=matching,
        outcome=AuditOutcome.SUCCESS,
    )
    assert deletes.count() == 2


@pytest.mark.parametrize(("persona", "action"), [("reggie", "disable"), ("oscar", "delete")])
def test_without_the_group_capability_403_audited_and_no_job(
    prod: DpsInstance,  # noqa: F811
    seed: Any,
    signed_in: Any,
    persona: str,
    action: str,
) -> None:
    stem = unique("gseldeny")
    _groups(seed, stem, 1)
    run_pass(prod)
    client = signed_in(persona)
    response = client.post(URL, {"action": action, "query_string": f"q={stem}", "confirm": "on"})
    assert response.status_code == 403
    assert not BulkJob.objects.exists()
    assert AuditEvent.objects.filter(
        action=AuditAction.DENIED, outcome=AuditOutcome.DENIED, target_id=URL
    ).exists()


def test_a_group_job_checks_the_group_capabilities_when_it_runs(
    prod: DpsInstance,  # noqa: F811
    seed: Any,
    signed_in: Any,
    owner_client: Any,
) -> None:
    """The worker asks for enrollmentgroups.delete, not enrollments.delete."""
    from enrollments.bulk import jobs as bulk
    from enrollments.bulk.permissions import kind_require

    with pytest.raises(PermissionDenied):
        kind_require(
            JobKind.DELETE_SELECTED,
            ["enrollments.read", "enrollments.delete"],
            record_kind="group",
        )
    kind_require(
        JobKind.DELETE_SELECTED,
        ["enrollmentgroups.read", "enrollmentgroups.delete"],
        record_kind="group",
    )
    stem = unique("gselrun")
    gid = _groups(seed, stem, 1)[0]
    run_pass(prod)
    user = signed_in("oscar").get(f"/dps/{INSTANCE}/bulk/jobs/").wsgi_request.user
    with pytest.raises(PermissionDenied, match=r"enrollmentgroups\.delete"):
        bulk.job_create(
            owner=user,
            instance=prod,
            kind=JobKind.DELETE_SELECTED,
            capabilities=["enrollmentgroups.read", "enrollmentgroups.write"],
            options={"record_kind": "group", "query": f"q={stem}"},
        )
    assert owner_client.group_get(gid)


def test_the_group_control_offers_only_what_the_role_allows(
    prod: DpsInstance,  # noqa: F811
    signed_in: Any,
) -> None:
    def control(persona: str) -> str:
        page = signed_in(persona).get(f"/instances/{INSTANCE}/fleet/groups/")
        return render_to_string(
            "enrollments/bulk/_select_matching.html",
            {"matching_total": 5, "query_string": "q=a", "record_kind": "group", "instance": prod},
            request=page.wsgi_request,
        )

    full = control("dana")
    for action in ("disable", "enable", "delete"):
        assert f'data-testid="select-matching-{action}"' in full
    assert 'data-testid="select-matching-export"' not in full
    assert f'action="{URL}"' in full
    assert "select-matching" not in control("reggie")  # read only: nothing to offer on groups
    oscar = control("oscar")
    assert 'data-testid="select-matching-disable"' in oscar
    assert 'data-testid="select-matching-delete"' not in oscar


def test_group_bad_requests(prod: DpsInstance, signed_in: Any) -> None:  # noqa: F811
    dana = signed_in("dana")
    assert dana.post(URL, {"action": "export", "query_string": ""}).status_code == 400
    registration_url = URL.replace("/group/", "/registration/")
    assert dana.post(registration_url, {"action": "disable"}).status_code == 404
    none = dana.post(URL, {"action": "disable", "query_string": "q=nothing-matches-this"})
    assert 'data-testid="select-matching-none"' in none.content.decode()
    assert "No group matches" in none.content.decode()
    assert signed_in("nora").post(URL, {"action": "disable"}).status_code == 403


def test_group_jobs_are_listed_only_for_readers_of_groups(
    prod: DpsInstance,  # noqa: F811
    signed_in: Any,
) -> None:
    from enrollments.bulk import selectors
    from enrollments.bulk.permissions import job_visible_kinds

    user = signed_in("dana").get(f"/dps/{INSTANCE}/bulk/jobs/").wsgi_request.user
    common = {"owner": user, "instance": prod, "kind": JobKind.SET_STATUS}
    mine = BulkJob.objects.create(options={"status": "disabled"}, **common)
    group = BulkJob.objects.create(options={"status": "disabled", "record_kind": "group"}, **common)

    def listed(caps: list[str]) -> set[int]:
        kinds = job_visible_kinds(caps)
        return {j.pk for j in selectors.job_list(instance=prod, owner=user, kinds=kinds)}

    assert listed(["enrollments.read"]) == {mine.pk}
    assert listed(["enrollmentgroups.read"]) == {group.pk}
    assert listed(["enrollments.read", "enrollmentgroups.read"]) == {mine.pk, group.pk}
    assert listed([]) == set()
