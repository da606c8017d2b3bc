"""The fleet index's sync pass against the DPS emulator: fill, drift, write-through, resume."""
# ruff: noqa: F811 - the enrollment tests' fixtures are imported by name, then requested

from __future__ import annotations

import json
from typing import Any

import pytest
from django.contrib.auth import get_user_model

from audit.models import AuditEvent
from enrollments import services as enrollment_services
from enrollments.dps.exceptions import DpsThrottled
from enrollments.dps.types import AttestationMechanism, IndividualEnrollment, InitialTwin
from fleet import services as fleet_services
from fleet.drift import DRIFT_ACTION
from fleet.models import (
    IndexedRecord,
    IndexedRegistration,
    PortalWrite,
    RecordKind,
    SeenPage,
    SyncPhase,
    SyncState,
)
from fleet.sync import Reader
from instances.models import DpsInstance
from tests.integration.enrollments.conftest import (  # noqa: F401 - fixtures
    INSTANCE,
    _isolated_caches,
    dps_entry,
    dps_instances,
    owner_client,
    seed,
    signed_in,
    unique,
)
from tests.support import certs

from .support import dps_etags, index_etags, run_pass

pytestmark = pytest.mark.django_db

PRIMARY_KEY = "ZmxlZXQtaW5kZXgtbmV2ZXIta2VlcHMta2V5cy0wMDAwMDAwMDAwMDAwMDAwMDAwMDA="
SECONDARY_KEY = "c2Vjb25kYXJ5LWtleS1tdXN0LW5vdC1sZWFrLXRvLXRoZS1pbmRleC0wMDAwMDA="


@pytest.fixture
def prod(azure_settings: Any, dps_instances: Any, settings: Any) -> DpsInstance:
    settings.FLEET_SYNC_STATE_READS = 1000
    return DpsInstance.objects.get(name=INSTANCE)


def drift_events(**filters: Any) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=DRIFT_ACTION, **filters).order_by("id"))


def test_first_pass_fills_the_index_exactly(
    prod: DpsInstance, seed: Any, owner_client: Any
) -> None:
    twin = InitialTwin.of(tags={"plant": "3", "line": "a"}, desired={"fw": "1.2"})
    sym = seed.enrollment(unique("fleet-sym"), initial_twin=twin, provisioning_status="disabled")
    x509 = seed.enrollment(
        unique("fleet-x509"),
        attestation=AttestationMechanism.for_x509_client_certificates(
            certs.self_signed_pem("fleet-dev")
        ),
    )
    group = seed.group(unique("fleet-g"))
    device = unique("fleet-dev")
    seed.registration(device, group.enrollment_group_id)
    seed.registration(sym.registration_id)

    result = run_pass(prod)

    assert result.finished
    assert index_etags(prod) == dps_etags(owner_client)
    state = SyncState.objects.get(instance=prod)
    assert state.phase == SyncPhase.IDLE
    assert state.finished_at is not None
    assert state.identity == "app"  # the portal's app holds Data Reader on dps-fleet-prod
    assert state.counts[RecordKind.ENROLLMENT] == len(
        [k for k in dps_etags(owner_client) if k[0] == RecordKind.ENROLLMENT]
    )
    row = IndexedRecord.objects.get(instance=prod, key=sym.registration_id.lower())
    assert row.tags == {"plant": "3", "line": "a"}
    assert row.desired == {"fw": "1.2"}
    assert row.status == "disabled"
    assert row.attestation == "symmetricKey"
    assert row.registration_status == "assigned"
    cert_row = IndexedRecord.objects.get(instance=prod, key=x509.registration_id.lower())
    assert cert_row.cert_subject == "CN=fleet-dev"
    assert cert_row.x509_kind == "client"
    assert cert_row.cert_not_after is not None
    assert cert_row.primary_thumbprint
    reg = IndexedRegistration.objects.get(instance=prod, key=device.lower())
    assert reg.group_key == group.enrollment_group_id.lower()
    assert reg.status == "assigned"
    assert not drift_events()  # a first pass fills; it reports nothing


def test_no_key_material_in_any_row(prod: DpsInstance, seed: Any) -> None:
    seed.enrollment(
        unique("fleet-keys"),
        attestation=AttestationMechanism.for_symmetric_key(PRIMARY_KEY, SECONDARY_KEY),
    )
    run_pass(prod)
    for model in (IndexedRecord, IndexedRegistration, PortalWrite, SyncState):
        for values in model.objects.values():
            text = json.dumps(values, default=str)
            assert PRIMARY_KEY not in text
            assert SECONDARY_KEY not in text
            assert "primaryKey" not in text
            assert 'symmetricKey": {' not in text


def test_changes_outside_the_portal_give_one_event_each(
    prod: DpsInstance, seed: Any, owner_client: Any
) -> None:
    changed = seed.enrollment(unique("fleet-chg"))
    gone = seed.enrollment(unique("fleet-gone"))
    run_pass(prod)

    changed.initial_twin = InitialTwin.of(tags={"plant": "7"})
    after = owner_client.enrollment_put(changed, if_match=changed.etag)
    owner_client.enrollment_delete(gone.registration_id, if_match=gone.etag)
    created = seed.enrollment(unique("fleet-new"))
    run_pass(prod)

    events = {e.target_id: e for e in drift_events()}
    assert set(events) == {changed.registration_id, gone.registration_id, created.registration_id}
    chg = events[changed.registration_id]
    assert chg.before["tags"] == {}
    assert chg.after["tags"] == {"plant": "7"}
    assert chg.before["etag"] == changed.etag
    assert chg.after["etag"] == after.etag
    assert events[gone.registration_id].after is None
    assert events[gone.registration_id].before["record_id"] == gone.registration_id
    assert events[created.registration_id].before is None
    assert events[created.registration_id].after["etag"] == created.etag
    assert index_etags(prod) == dps_etags(owner_client)
    row = IndexedRecord.objects.get(instance=prod, key=changed.registration_id.lower())
    assert row.drift_at is not None

    run_pass(prod)  # nothing new: nothing reported again
    assert len(drift_events()) == 3


def test_a_pass_that_finds_nothing_changed_rewrites_no_row(
    prod: DpsInstance, seed: Any, owner_client: Any
) -> None:
    for _ in range(3):
        seed.enrollment(unique("fleet-still"))
    first = run_pass(prod)

    def versions() -> dict[str, tuple[int, Any]]:
        rows = IndexedRecord.objects.filter(instance=prod, kind=RecordKind.ENROLLMENT)
        return {key: (n, at) for key, n, at in rows.values_list("key", "seen_pass", "indexed_at")}

    before = versions()
    second = run_pass(prod)

    assert second.finished
    assert second.pass_id > first.pass_id
    assert len(before) >= 3
    assert versions() == before  # listed, not rewritten
    assert not SeenPage.objects.exists()  # the pass's listed keys are forgotten at its end
    assert not drift_events()
    assert index_etags(prod) == dps_etags(owner_client)


def _dana() -> Any:
    return get_user_model().objects.get(entra_identity__upn="dana.contributor@contoso-iot.example")


def test_portal_writes_are_never_drift(
    prod: DpsInstance, seed: Any, owner_client: Any, signed_in: Any
) -> None:
    signed_in("dana")
    actor = _dana()
    target = seed.enrollment(unique("fleet-portal"))
    doomed = seed.enrollment(unique("fleet-portal-del"))
    run_pass(prod)

    edited = IndividualEnrollment.from_json(target.to_json())
    edited.provisioning_status = "disabled"
    written = enrollment_services.record_update(
        actor=actor,
        instance=prod,
        client=owner_client,
        model=edited,
        etag=target.etag,
        before=target,
    )
    row = IndexedRecord.objects.get(instance=prod, key=target.registration_id.lower())
    assert row.etag == written.etag
    assert row.status == "disabled"
    enrollment_services.enrollment_delete(
        actor=actor,
        instance=prod,
        client=owner_client,
        registration_id=doomed.registration_id,
        etag=doomed.etag,
    )
    assert not IndexedRecord.objects.filter(key=doomed.registration_id.lower()).exists()
    made = enrollment_services.enrollment_create(
        actor=actor,
        instance=prod,
        client=owner_client,
        enrollment=IndividualEnrollment(
            registration_id=unique("fleet-portal-new"),
            attestation=AttestationMechanism.for_symmetric_key(),
        ),
    )
    run_pass(prod)
    assert not drift_events()
    assert index_etags(prod) == dps_etags(owner_client)
    assert IndexedRecord.objects.filter(key=made.registration_id.lower()).exists()


def test_portal_write_during_a_pass_is_not_drift(
    prod: DpsInstance, seed: Any, owner_client: Any, settings: Any
) -> None:
    """Pages read before, during and after portal writes: none of them is reported."""
    settings.FLEET_SYNC_PAGE_SIZE = 2
    early = seed.enrollment(unique("fleet-race-a"))
    late = seed.enrollment(unique("fleet-race-b"))
    inflight = seed.enrollment(unique("fleet-race-c"))
    run_pass(prod)
    journal: dict[str, int] = {}

    class RacingReader(Reader):
        calls = 0

        def call(self, fn: Any) -> Any:
            RacingReader.calls += 1
            if RacingReader.calls == 1:
                # In flight: journaled, DPS changed, write-through not yet done when paged.
                journal["c"] = fleet_services.record_writing(
                    prod, "enrollment", inflight.registration_id
                )
                inflight.provisioning_status = "disabled"
                journal["c-model"] = owner_client.enrollment_put(  # type: ignore[assignment]
                    inflight, if_match=inflight.etag
                )
            page = super().call(fn)
            if RacingReader.calls == 1:
                # The page is read; the portal now writes records on it and on later pages.
                for rec in (early, late):
                    rec.provisioning_status = "disabled"
                    fleet_services.tracked(
                        prod,
                        "enrollment",
                        rec.registration_id,
                        lambda r=rec: owner_client.enrollment_put(r, if_match=r.etag),
                        deleting=False,
                    )()
            if RacingReader.calls == 3:
                fleet_services.record_written(prod, journal["c-model"], journal=journal["c"])
            return page

    run_pass(prod, reader_factory=RacingReader)
    run_pass(prod)
    assert not drift_events()
    assert index_etags(prod) == dps_etags(owner_client)


class Killed(BaseException):
    """Stands for SIGKILL: nothing after it runs, not even ``except Exception``."""


def test_killed_mid_pass_resumes_from_its_page(
    prod: DpsInstance, seed: Any, owner_client: Any, settings: Any
) -> None:
    settings.FLEET_SYNC_PAGE_SIZE = 2
    for _ in range(6):
        seed.enrollment(unique("fleet-kill"))
    full = run_pass(prod)
    seed.enrollment(unique("fleet-kill-later"))

    class DyingReader(Reader):
        pages = 0

        def call(self, fn: Any) -> Any:
            DyingReader.pages += 1
            if DyingReader.pages == 4:
                raise Killed
            return super().call(fn)

    with pytest.raises(Killed):
        run_pass(prod, reader_factory=DyingReader)
    state = SyncState.objects.get(instance=prod)
    assert state.phase == SyncPhase.ENROLLMENTS
    assert state.continuation
    SyncState.objects.filter(pk=state.pk).update(
        lease_until=None
    )  # the dead worker's lease ran out
    resumed = run_pass(prod)
    assert resumed.finished
    assert resumed.pass_id == state.pass_id
    assert resumed.pages < full.pages  # the first three pages were not read again
    assert index_etags(prod) == dps_etags(owner_client)
    assert len(drift_events()) == 1  # the record created in between, once


def test_a_429_storm_slows_the_pass_without_failing_it(
    prod: DpsInstance, seed: Any, owner_client: Any, settings: Any
) -> None:
    settings.FLEET_SYNC_PAGE_SIZE = 3
    for _ in range(4):
        seed.enrollment(unique("fleet-429"))
    throttled = []

    class StormReader(Reader):
        def call(self, fn: Any) -> Any:
            def storm(client: Any) -> Any:
                if len(throttled) < 12 and len(throttled) % 4 != 3:
                    throttled.append(1)
                    raise DpsThrottled(status=429, message="storm", retry_after=0.01)
                throttled.append(0)
                return fn(client)

            return super().call(storm)

    result = run_pass(prod, reader_factory=StormReader)
    assert result.finished
    assert sum(throttled) >= 9
    assert index_etags(prod) == dps_etags(owner_client)


def test_instance_the_app_may_not_read_runs_as_the_requesting_user(
    azure_settings: Any,
    dps_instances: Any,
    signed_in: Any,
    settings: Any,
) -> None:
    lab = DpsInstance.objects.get(name="dps-fleet-lab")
    with pytest.raises(Exception, match="nobody pressed"):
        run_pass(lab)
    state = SyncState.objects.get(instance=lab)
    assert "nobody pressed" in state.last_error

    signed_in("dana")
    SyncState.objects.filter(pk=state.pk).update(requested_by=_dana())
    assert run_pass(lab).finished
    state.refresh_from_db()
    assert state.identity == "user:dana.contributor@contoso-iot.example"
    assert state.last_error == ""


def test_bulk_writes_of_the_portal_are_not_drift(
    prod: DpsInstance, seed: Any, owner_client: Any
) -> None:
    """DPS's bulk answer has no ETags: the versions stamped during the call are the portal's."""
    updated = [seed.enrollment(unique("fleet-bulk")) for _ in range(3)]
    doomed = seed.enrollment(unique("fleet-bulk-del"))
    run_pass(prod)
    for rec in updated:
        rec.provisioning_status = "disabled"
    result = owner_client.enrollment_bulk("updateIfMatchETag", updated)
    fleet_services.record_bulk_applied(prod, "updateIfMatchETag", updated, result.failed_ids())
    result = owner_client.enrollment_bulk("delete", [doomed])
    fleet_services.record_bulk_applied(prod, "delete", [doomed], result.failed_ids())
    statuses = set(
        IndexedRecord.objects.filter(
            key__in=[r.registration_id.lower() for r in updated]
        ).values_list("status", flat=True)
    )
    assert statuses == {"disabled"}  # written through at once
    run_pass(prod)
    assert not drift_events()
    assert index_etags(prod) == dps_etags(owner_client)


def _counts_agree(instance: DpsInstance) -> None:
    from fleet import facets
    from fleet.selectors import RecordQuery, live_facets

    for q in (
        RecordQuery(),
        RecordQuery(status="disabled"),
        RecordQuery(attestation="symmetricKey", status="enabled"),
        RecordQuery(tags={"plant": "7"}),
        RecordQuery(tags={"plant": "7"}, status="disabled"),
        RecordQuery(tags={"plant": "7"}, status="disabled", iot_edge=False),
    ):
        tag = next(iter(q.tags.items())) if q.tags else None
        stored = facets.counted(
            instance,
            "enrollment",
            status=q.status,
            attestation=q.attestation,
            iot_edge=q.iot_edge,
            tag=tag,
        )
        live = live_facets(instance, "enrollment", q)  # the same disjunctive facets, on the rows
        assert stored is not None
        assert stored[0] == live[0], q
        assert {k: v for k, v in stored[1].items() if k != "iot_edge"} == {
            k: v for k, v in live[1].items() if k != "iot_edge"
        }, q


def test_stored_counts_follow_passes_and_portal_writes(
    prod: DpsInstance, seed: Any, owner_client: Any, signed_in: Any
) -> None:
    tagged = [
        seed.enrollment(unique("fleet-count"), initial_twin=InitialTwin.of(tags={"plant": "7"}))
        for _ in range(3)
    ]
    run_pass(prod)
    _counts_agree(prod)
    signed_in("dana")
    edited = IndividualEnrollment.from_json(tagged[0].to_json())
    edited.provisioning_status = "disabled"
    enrollment_services.record_update(
        actor=_dana(),
        instance=prod,
        client=owner_client,
        model=edited,
        etag=tagged[0].etag,
        before=tagged[0],
    )
    enrollment_services.enrollment_delete(
        actor=_dana(),
        instance=prod,
        client=owner_client,
        registration_id=tagged[1].registration_id,
        etag=tagged[1].etag,
    )
    _counts_agree(prod)
    outside = IndividualEnrollment.from_json(tagged[2].to_json())
    outside.provisioning_status = "disabled"
    owner_client.enrollment_put(outside, if_match=tagged[2].etag)
    run_pass(prod, stop=lambda: SyncState.objects.get(instance=prod).phase == SyncPhase.FINISH)
    _counts_agree(prod)  # during the pass, before the rebuild
    run_pass(prod)
    _counts_agree(prod)


def test_a_detail_page_read_refreshes_the_row_and_the_pass_still_reports_it(
    prod: DpsInstance, seed: Any, owner_client: Any
) -> None:
    record = seed.enrollment(unique("fleet-seen"))
    run_pass(prod)
    record.provisioning_status = "disabled"
    changed = owner_client.enrollment_put(record, if_match=record.etag)  # outside the portal
    fleet_services.record_seen(prod, owner_client.enrollment_get(record.registration_id))
    row = IndexedRecord.objects.get(instance=prod, key=record.registration_id.lower())
    assert row.etag == changed.etag
    assert row.status == "disabled"
    run_pass(prod)
    events = drift_events(target_id=record.registration_id)
    assert len(events) == 1
    assert events[0].before["status"] == "enabled"
    assert events[0].after["status"] == "disabled"


def test_a_page_of_new_keys_written_meanwhile_falls_back_to_the_merge(
    prod: DpsInstance,
) -> None:
    from fleet.extract import RECORD_FIELDS, record_fields
    from fleet.upsert import upsert_records

    doc = {"registrationId": "fleet-race-new", "attestation": {"type": "tpm"}, "etag": "e1"}
    row = {"instance_id": prod.pk, "kind": "enrollment", "key": "fleet-race-new", "seen_pass": 1}
    update = (*RECORD_FIELDS, "seen_pass", "drift_pending", "drift_at")
    upsert_records([{**row, **record_fields("enrollment", doc)}], update, new_only=True)
    doc["etag"] = "e2"  # the same key again, as if the portal had written it meanwhile
    upsert_records([{**row, **record_fields("enrollment", doc)}], update, new_only=True)
    assert IndexedRecord.objects.get(instance=prod, key="fleet-race-new").etag == "e2"


def test_a_deleted_groups_records_stay_as_orphans_until_dps_drops_them(
    prod: DpsInstance, seed: Any, owner_client: Any
) -> None:
    """DPS keeps a deleted group's registration records; the index keeps them as orphans."""
    from fleet.overview import orphans

    group = seed.group(unique("fleet-orphan-g"))
    kept, dropped = unique("fleet-orphan-a"), unique("fleet-orphan-b")
    seed.registration(kept, group.enrollment_group_id)
    seed.registration(dropped, group.enrollment_group_id)
    assert run_pass(prod).finished
    key = group.enrollment_group_id.lower()
    assert IndexedRegistration.objects.filter(instance=prod, group_key=key).count() == 2

    owner_client.group_delete(group.enrollment_group_id)  # outside the portal
    assert run_pass(prod).finished
    assert orphans(prod) == {key: 2}

    owner_client.registration_delete(dropped)  # an orphan deleted outside the portal
    assert run_pass(prod).finished
    assert orphans(prod) == {key: 1}
    (row,) = IndexedRegistration.objects.filter(instance=prod, group_key=key)
    assert row.registration_id == kept
