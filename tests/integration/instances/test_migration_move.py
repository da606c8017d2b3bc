"""The registry's move from authn to its own app: the rows, their ids and the FKs survive."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [
    ("authn", "0002_usertokencache_version"),
    ("enrollments", "0005_bulkjob_pause_reason_service_unavailable"),
    ("instances", None),
]
AFTER = [
    ("authn", "0003_dpsinstance_to_instances_app"),
    ("enrollments", "0006_bulkjob_instance_from_instances_app"),
]


def _migrate(targets: list[tuple[str, str | None]]) -> Any:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    nodes = [(app, name) for app, name in targets if name is not None]
    return executor.loader.project_state(nodes).apps


def _leaves() -> list[tuple[str, str]]:
    return MigrationExecutor(connection).loader.graph.leaf_nodes()


@pytest.fixture
def before_move(transactional_db: None) -> Iterator[Any]:
    apps = _migrate(BEFORE)
    yield apps
    _migrate(_leaves())


def test_instance_row_and_job_fk_survive_the_move(before_move: Any) -> None:
    old_instance = before_move.get_model("authn", "DpsInstance")
    user_model = before_move.get_model("auth", "User")
    # As on a database the old code ran on: the content type is authn's only.
    ContentType.objects.filter(model="dpsinstance").delete()
    ContentType.objects.create(app_label="authn", model="dpsinstance")
    old_instance.objects.create(
        name="dps-filler", host="a.azure-devices-provisioning.net", resource_id="/x"
    )
    row = old_instance.objects.create(
        name="dps-kept",
        host="dps-kept.azure-devices-provisioning.net",
        resource_id="/subscriptions/s/resourceGroups/g/providers/"
        "Microsoft.Devices/provisioningServices/dps-kept",
        enabled=False,
    )
    owner = user_model.objects.create(username="owner")
    job = before_move.get_model("enrollments", "BulkJob").objects.create(
        owner=owner, instance_id=row.pk
    )

    apps = _migrate(AFTER)

    moved = apps.get_model("instances", "DpsInstance").objects.get(pk=row.pk)
    assert (moved.name, moved.host, moved.enabled) == (
        "dps-kept",
        "dps-kept.azure-devices-provisioning.net",
        False,
    )
    assert apps.get_model("enrollments", "BulkJob").objects.get(pk=job.pk).instance == moved
    assert apps.get_model("instances", "DpsInstance")._meta.db_table == "authn_dpsinstance"
    assert not ContentType.objects.filter(app_label="authn", model="dpsinstance").exists()
    assert ContentType.objects.filter(app_label="instances", model="dpsinstance").exists()
    # A new row continues the same id sequence.
    newer = apps.get_model("instances", "DpsInstance").objects.create(
        name="dps-new", host="n.azure-devices-provisioning.net", resource_id="/n"
    )
    assert newer.pk > row.pk


def test_the_move_runs_backwards(before_move: Any) -> None:
    _migrate(AFTER)
    apps = _migrate(BEFORE)
    assert apps.get_model("authn", "DpsInstance")._meta.db_table == "authn_dpsinstance"
