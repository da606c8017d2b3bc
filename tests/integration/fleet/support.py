"""Helpers of the fleet index tests: run a pass in-process, compare the index with DPS."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from enrollments.dps.client import DpsClient, iterate_pages
from enrollments.ratelimit import LocalTokenBucket
from fleet.models import IndexedRecord, RecordKind
from fleet.sync import PassResult, Reader, sync_instance
from instances.models import DpsInstance
from tests.integration.enrollments.conftest import INSTANCE as INDEXED_INSTANCE


def fast_bucket() -> LocalTokenBucket:
    """A bucket that never makes a test wait (the pacing itself is tested elsewhere)."""
    return LocalTokenBucket(10_000_000)


def run_pass(
    instance: DpsInstance, *, reader_factory: Callable[..., Reader] = Reader, **kw: Any
) -> PassResult:
    return sync_instance(instance.pk, reader_factory=reader_factory, bucket=fast_bucket(), **kw)


def dps_etags(owner: DpsClient) -> dict[tuple[str, str], str]:
    """Return {(kind, lower-cased id): etag} of every enrollment and group DPS holds (SAS)."""
    out: dict[tuple[str, str], str] = {}
    for page in iterate_pages(lambda t: owner.enrollment_query(page_size=500, continuation=t)):
        for e in page.items:
            out[(RecordKind.ENROLLMENT, e.registration_id.lower())] = e.etag or ""
    for gpage in iterate_pages(lambda t: owner.group_query(page_size=500, continuation=t)):
        for g in gpage.items:
            out[(RecordKind.GROUP, g.enrollment_group_id.lower())] = g.etag or ""
    return out


def index_etags(instance: DpsInstance) -> dict[tuple[str, str], str]:
    return {
        (kind, key): etag
        for kind, key, etag in IndexedRecord.objects.filter(instance=instance).values_list(
            "kind", "key", "etag"
        )
    }


@pytest.fixture(params=["dps", "index"])
def list_source(request: pytest.FixtureRequest) -> Callable[[], None]:
    """Run a list test on both paths: DPS's pages (never synced) and the index (after a pass).

    The test calls the fixture's value once its records are seeded.
    """

    def ready() -> None:
        if request.param == "index":
            request.getfixturevalue("dps_instances")
            run_pass(DpsInstance.objects.get(name=INDEXED_INSTANCE))

    return ready


def list_html(client: Any, url: str, search: str, *wanted: str) -> str:
    """Return the list's HTML that shows every id of ``wanted`` (``search`` narrows the index).

    DPS pages in storage order, and the emulator lives for the whole session: the DPS path
    follows the continuation tokens (100 a page) until every wanted row has been shown.
    """
    params: dict[str, Any] = {"size": 100, "q": search}
    html = ""
    while True:
        response = client.get(url, params)
        html += response.content.decode()
        token = getattr(response.context["page"], "continuation_token", None)
        if all(f'data-testid="row-{w}"' in html for w in wanted) or not token:
            return html
        params["ct"] = token
