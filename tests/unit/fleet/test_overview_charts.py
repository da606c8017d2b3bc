"""Geometry and links of the overview's charts."""

from __future__ import annotations

from fleet.overview import Quota
from fleet.overview_charts import BAR_WIDTH, bars, list_url


def test_bars_scale_to_the_peak_and_keep_their_links() -> None:
    chart = bars("c", "Title", {"enabled": 30, "disabled": 10, "": 0}, {"enabled": "/e"})
    widths = {s.key: s.width for s in chart.segments}
    assert widths == {"enabled": BAR_WIDTH, "disabled": round(BAR_WIDTH / 3, 2), "": 0}
    assert [s.url for s in chart.segments] == ["/e", "", ""]
    assert chart.total == 40
    assert [s.label for s in chart.segments] == ["enabled", "disabled", "(none)"]


def test_an_empty_chart_draws_nothing() -> None:
    chart = bars("c", "Title", {}, {})
    assert chart.segments == []
    assert chart.height > 0


def test_list_urls_carry_the_filterset_parameters() -> None:
    url = list_url("dps-x", "enrollments:enrollment_list", hub="h.azure-devices.net")
    assert url == "/dps/dps-x/enrollments/?hub=h.azure-devices.net"
    assert list_url("dps-x", "enrollments:group_list") == "/dps/dps-x/groups/"


def test_a_gauge_from_half_the_limit() -> None:
    assert not Quota("g", "G", 49, 100).near
    assert Quota("g", "G", 50, 100).near
    assert Quota("g", "G", 50, 100).percent == 50.0
    assert Quota("z", "Z", 0, 0).share == 0.0
