"""What differs between individual enrollments and groups, and what their pages print.

A :class:`RecordKind` configures the generic views of :mod:`enrollments.views.generic`; the
helpers here prepare list rows and status cells so templates only print values.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from django.urls import reverse
from django.utils.text import slugify

from authn.capabilities import InstanceCapabilities
from authn.permissions import Capability
from enrollments import edit_rules, selectors, services
from enrollments.dps.types import DpsApi
from instances.models import DpsInstance

# What reverse() leaves unquoted in a path argument (django.urls.resolvers).
PATH_SAFE = "!$&'()*+,;=/~:@"
_KEY_MARK = "--key--"


@dataclass(frozen=True)
class RecordKind:
    """What differs between the pages of individual enrollments and of enrollment groups."""

    name: str  # URL names are enrollments:<name>_<view>
    is_group: bool
    noun: str
    read: Capability
    write: Capability
    delete: Capability
    record: services.RecordType
    form_class: Any
    get: Callable[[DpsApi, str], Any]
    page: Callable[[DpsApi, int, str | None], Any]
    reveal: Capability = Capability.ATTESTATION_REVEAL

    @property
    def target_type(self) -> str:
        return self.record.target_type

    def url(self, view: str, instance: DpsInstance, key: str | None = None) -> str:
        args = [instance.name] + ([key] if key is not None else [])
        return reverse(f"enrollments:{self.name}_{view}", args=args)


def key_urls(kind: RecordKind, view: str, instance: Any) -> Callable[[str], str]:
    """Return a function giving ``kind.url(view, instance, key)`` for any key.

    The URL is reversed once around a placeholder and each key is quoted into it, so a page
    of rows costs one ``reverse()`` per link kind instead of one per row.
    """
    head, _, tail = kind.url(view, instance, _KEY_MARK).partition(_KEY_MARK)
    return lambda key: head + quote(key, safe=PATH_SAFE) + tail


def status_cell(
    kind: RecordKind, model: Any, key: str, caps: InstanceCapabilities, blocker: str, url: str
) -> dict[str, Any]:
    """Return what the status cell shows: the badge and, if allowed, the toggle form."""
    return {
        "key": key,
        "dom_id": f"status-{slugify(key)}",
        "disabled": model.provisioning_status == "disabled",
        "can_toggle": kind.write in caps,
        "blocker": blocker,
        "url": url,
        "etag": model.etag,
    }


def list_rows(
    kind: RecordKind,
    items: Iterable[Any],
    caps: InstanceCapabilities,
    instance: DpsInstance,
    *,
    selectable: bool,
) -> list[dict[str, Any]]:
    """Return the rows of a list page, links and status cells included.

    Rows are prepared here so the template only prints values: per-row ``{% url %}``,
    ``{% include %}`` and filters were two thirds of the page's time. A selectable row's
    checkbox carries the etag the user saw, so a record changed since is not deleted.
    """
    detail_url, status_url = key_urls(kind, "detail", instance), key_urls(kind, "status", instance)
    return [
        {
            "key": item.id,
            "url": detail_url(item.id),
            "device_id": getattr(item, "device_id", None),
            "attestation": selectors.attestation_label(item),
            "hubs": ", ".join(item.iot_hubs or ()),
            "updated": selectors.when(item.last_updated_date_time_utc),
            "cell": status_cell(
                kind,
                item,
                item.id,
                caps,
                edit_rules.status_blocker(item, caps),
                status_url(item.id),
            ),
            "select": f"{item.id}|{item.etag or ''}" if selectable else None,
        }
        for item in items
    ]
