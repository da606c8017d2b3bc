"""Migration 0003 on a log written before keying: the old rows stay, a keyed event seals them."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from audit.chain import GENESIS_HASH, canonical_json

BEFORE = [("audit", "0002_append_only_and_indexes")]
AFTER = [("audit", "0003_keyed_chain_and_guards")]


def _migrate(targets: list[tuple[str, str]]) -> Any:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


@pytest.fixture
def at_0002(transactional_db: None) -> Iterator[Any]:
    apps = _migrate(BEFORE)
    yield apps
    _migrate([("audit", n) for n in _leaf_names()])


def _leaf_names() -> list[str]:
    executor = MigrationExecutor(connection)
    return [name for app, name in executor.loader.graph.leaf_nodes() if app == "audit"]


def test_rows_written_before_keying_are_sealed_and_verify(at_0002: Any) -> None:
    event_model = at_0002.get_model("audit", "AuditEvent")
    head_model = at_0002.get_model("audit", "AuditChainHead")
    from django.utils import timezone

    prev = GENESIS_HASH
    for i in range(3):
        e = event_model(time=timezone.now(), action="signin", outcome="success", message=f"old {i}")
        payload = {
            name: getattr(e, name)
            for name in (
                "actor_oid", "actor_upn", "actor_name", "request_id", "task_id",
                "dps_instance", "action", "target_type", "target_id", "outcome", "dps_status",
                "dps_error_code", "tracking_id", "before", "after", "message",
            )
        }  # fmt: skip
        payload.update(time=e.time.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), client_ip="", prev_hash=prev)
        e.prev_hash = prev
        e.hash = hashlib.sha256(canonical_json(payload).encode()).hexdigest()
        e.save()
        prev = e.hash
    head_model.objects.create(pk=1, last_hash=prev, count=3)

    apps = _migrate(AFTER)
    rows = list(apps.get_model("audit", "AuditEvent").objects.order_by("id"))
    assert [r.key_id for r in rows] == ["", "", "", "test"]
    seal = rows[-1]
    assert seal.action == "chain_keyed"
    assert seal.prev_hash == prev
    assert seal.after == {"unkeyed_rows": 3, "unkeyed_head": prev, "key_id": "test"}
    out = io.StringIO()
    _migrate([("audit", n) for n in _leaf_names()])
    call_command("audit_verify", stdout=out)
    assert "audit chain intact (4 events, from genesis)" in out.getvalue()
