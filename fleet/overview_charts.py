"""Geometry of the overview's charts, drawn server-side as SVG (no script, no inline style).

Each chart is a list of segments with its count and the URL of the index list filtered to it;
the template draws the bars and, beside them, the same numbers as a table.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from urllib.parse import urlencode

from django.urls import reverse

from fleet.overview import Overview

CHART_WIDTH = 300  # SVG units: a label, the bar, its count
BAR_LEFT = 110
BAR_WIDTH = 150  # of the longest bar
ROW = 26
TIMELINE_WIDTH, TIMELINE_HEIGHT = 600, 120
_LABELS = {
    "symmetricKey": "symmetric key",
    "x509": "X.509",
    "tpm": "TPM",
    "": "(none)",
}
# Registration statuses the enrollment list can filter on (fleet/filters.py).
_FILTERABLE_REGISTRATION = {"assigned", "assigning", "failed", "disabled", "unassigned"}


@dataclass(frozen=True)
class Segment:
    """One bar of a chart: its label, count, length in SVG units and the filtered list."""

    key: str
    label: str
    n: int
    width: float
    url: str
    y: int = 0

    @property
    def text_y(self) -> int:
        return self.y + ROW // 2

    @property
    def count_x(self) -> float:
        return BAR_LEFT + self.width + 4


@dataclass(frozen=True)
class Chart:
    """A named horizontal bar chart."""

    name: str
    title: str
    segments: list[Segment]

    @property
    def height(self) -> int:
        return max(1, len(self.segments)) * ROW

    @property
    def width(self) -> int:
        return CHART_WIDTH

    @property
    def bar_left(self) -> int:
        return BAR_LEFT

    @property
    def total(self) -> int:
        return sum(s.n for s in self.segments)


def list_url(instance_name: str, url_name: str, **params: str) -> str:
    """Return the URL of an index list (``enrollments:enrollment_list`` …) filtered by ``params``."""
    base = reverse(url_name, args=[instance_name])
    return f"{base}?{urlencode(params)}" if params else base


def bars(name: str, title: str, counts: dict[str, int], links: dict[str, str]) -> Chart:
    """Return a chart of ``counts`` with each bar linked to ``links[key]`` (or nothing)."""
    peak = max(counts.values(), default=0) or 1
    segments = [
        Segment(
            key=key,
            label=_LABELS.get(key, key),
            n=n,
            width=round(BAR_WIDTH * n / peak, 2),
            url=links.get(key, ""),
            y=i * ROW,
        )
        for i, (key, n) in enumerate(counts.items())
    ]
    return Chart(name, title, segments)


def charts(ov: Overview) -> list[Chart]:
    """Return the overview's bar charts, each bar linked to the list filtered to it."""
    name = ov.instance.name

    def link(
        url_name: str, param: str, keys: dict[str, int], only: set[str] | None = None
    ) -> dict[str, str]:
        return {
            k: list_url(name, url_name, **{param: k})
            for k in keys
            if k and (only is None or k in only)
        }

    return [
        bars(
            "enrollment-attestation",
            "Individual enrollments by attestation",
            ov.enrollment_attestation,
            link("enrollments:enrollment_list", "attestation", ov.enrollment_attestation),
        ),
        bars(
            "group-attestation",
            "Enrollment groups by attestation",
            ov.group_attestation,
            link("enrollments:group_list", "attestation", ov.group_attestation),
        ),
        bars(
            "provisioning",
            "Individual enrollments by provisioning status",
            ov.provisioning,
            link("enrollments:enrollment_list", "status", ov.provisioning),
        ),
        # Both count registration records (of groups and individual enrollments alike), so
        # they link to the list of all of them, whose totals are the same numbers.
        bars(
            "registration",
            "Registration status",
            ov.registration_status,
            link(
                "enrollments:all_registration_list",
                "status",
                ov.registration_status,
                _FILTERABLE_REGISTRATION,
            ),
        ),
        bars(
            "hubs",
            "Devices per IoT hub",
            ov.hubs,
            link("enrollments:all_registration_list", "hub", ov.hubs),
        ),
    ]


@dataclass(frozen=True)
class Day:
    """One day's bar of the registrations-over-time chart."""

    day: dt.date
    n: int
    x: float
    y: float
    h: float
    w: float


def timeline(ov: Overview) -> dict[str, object]:
    """Return the bars of registrations created per day, in SVG units."""
    n = max(len(ov.timeline), 1)
    slot = TIMELINE_WIDTH / n
    peak = max((c for _, c in ov.timeline), default=0) or 1
    days = []
    for i, (day, count) in enumerate(ov.timeline):
        h = round((TIMELINE_HEIGHT - 4) * count / peak, 2)
        days.append(
            Day(
                day,
                count,
                round(i * slot + slot * 0.1, 2),
                TIMELINE_HEIGHT - h,
                h,
                round(slot * 0.8, 2),
            )
        )
    return {
        "days": days,
        "width": TIMELINE_WIDTH,
        "height": TIMELINE_HEIGHT,
        "total": sum(c for _, c in ov.timeline),
        "peak": peak,
    }


@dataclass(frozen=True)
class CertRow:
    """One certificate bucket with the list filtered to it."""

    key: str
    label: str
    count: int
    expired: bool
    url: str


def certificate_rows(ov: Overview) -> list[CertRow]:
    """Return the certificate buckets, each linked to the index list filtered to it."""
    lists = {"enrollment": "enrollments:enrollment_list", "group": "enrollments:group_list"}
    rows = []
    for b in ov.certificates:
        params = {"expired": "true"} if b.expired else {"expires_within": str(b.within_days)}
        rows.append(
            CertRow(
                key=f"{b.kind}-{'expired' if b.expired else b.within_days}",
                label=b.label[0].upper() + b.label[1:],
                count=b.count,
                expired=b.expired,
                url=list_url(ov.instance.name, lists[b.kind], **params),
            )
        )
    return rows


def attention_links(instance_name: str) -> dict[str, str]:
    """Return the filtered lists the other "needs attention" items link to."""
    return {
        "drifted": list_url(instance_name, "enrollments:enrollment_list", drifted="true"),
        "failed": list_url(instance_name, "enrollments:all_registration_list", status="failed"),
    }
