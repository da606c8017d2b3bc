"""manage.py fleet_report: its items, formats and exit codes."""
# ruff: noqa: F811 - fixtures are imported by name, then requested

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from fleet.models import IndexedRecord, RecordKind
from fleet.report import ExitCode
from instances.models import DpsInstance

from .overview_fleet import (  # noqa: F401 - fixtures
    INSTANCE,
    _isolated_caches,
    _record,
    dps_entry,
    dps_instances,
    fleet,
    prod,
)

pytestmark = pytest.mark.django_db


def _run(*args: str) -> tuple[int, str]:
    out = io.StringIO()
    try:
        call_command("fleet_report", *args, stdout=out)
    except SystemExit as exc:
        return int(exc.code or 0), out.getvalue()
    return 0, out.getvalue()


def test_nothing_to_report_exits_0(prod: DpsInstance) -> None:
    assert _run("--instance", INSTANCE) == (ExitCode.OK, "Nothing needs attention.\n")


def test_expiring_only_exits_1(prod: DpsInstance) -> None:
    now = timezone.now()
    _record(
        prod,
        RecordKind.ENROLLMENT,
        "soon",
        primary_not_after=now + dt.timedelta(days=3),
        secondary_not_after=now + dt.timedelta(days=60),
        cert_not_after=now + dt.timedelta(days=3),
    )
    code, out = _run("--instance", INSTANCE)
    assert code == ExitCode.ATTENTION
    assert "expiring_certificate\tenrollment soon: primary client certificate expires" in out
    assert "secondary" not in out  # 60 days is beyond --within 30d
    code, out = _run("--instance", INSTANCE, "--within", "90d")
    assert "secondary client certificate expires" in out
    assert _run("--instance", INSTANCE, "--within", "48h")[0] == ExitCode.OK


def test_an_expired_certificate_exits_2_in_every_format(fleet: DpsInstance) -> None:
    code, text = _run("--instance", INSTANCE)
    assert code == ExitCode.EXPIRED
    assert "expired_certificate\tgroup grp-x509" in text
    assert "failed_registration\tregistration dev-bad: 401002: The certificate chain" in text
    assert "orphaned_registrations\tgroup grp-gone: 2 registration record(s)" in text
    assert "never_registered\tenrollment tpm-0" in text
    assert "changed_outside_portal\tenrollment tpm-0" in text
    code, raw = _run("--instance", INSTANCE, "--format", "json")
    assert code == ExitCode.EXPIRED
    items = json.loads(raw)
    assert {i["item"] for i in items} == {
        "expired_certificate",
        "expiring_certificate",
        "failed_registration",
        "orphaned_registrations",
        "never_registered",
        "changed_outside_portal",
    }
    code, table = _run("--instance", INSTANCE, "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(table)))
    assert code == ExitCode.EXPIRED
    assert [(r["item"], r["id"]) for r in rows] == [(i["item"], i["id"]) for i in items]
    assert rows[0].keys() == {"instance", "item", "kind", "id", "detail", "at"}


def test_expired_one_second_ago_counts_as_expired(prod: DpsInstance) -> None:
    gone = timezone.now() - dt.timedelta(seconds=1)
    IndexedRecord.objects.create(
        instance=prod,
        kind=RecordKind.GROUP,
        key="g",
        record_id="g",
        secondary_not_after=gone,
        cert_not_after=gone,
    )
    code, out = _run()
    assert code == ExitCode.EXPIRED
    assert "secondary signing certificate expired" in out


@pytest.mark.parametrize("args", [("--instance", "no-such-dps"), ("--within", "soon")])
def test_a_bad_question_exits_3(prod: DpsInstance, args: Any) -> None:
    with pytest.raises(CommandError) as raised:
        call_command("fleet_report", *args, stdout=io.StringIO())
    assert raised.value.returncode == ExitCode.ERROR
