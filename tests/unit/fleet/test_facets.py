"""The disjunctive facet tally and how facet values read beside their filters."""

from __future__ import annotations

from fleet.facets import chosen_values, tally
from fleet.templatetags.humanize_fleet import facet


def _cell(status: str, attestation: str, edge: str, n: int) -> tuple[dict[str, str], int]:
    return {"status": status, "attestation": attestation, "iot_edge": edge}, n


CELLS = [
    _cell("enabled", "x509", "true", 1),
    _cell("enabled", "x509", "false", 2),
    _cell("disabled", "x509", "true", 4),
    _cell("disabled", "tpm", "false", 8),
    _cell("enabled", "tpm", "true", 16),
]


def test_nothing_chosen_counts_every_cell() -> None:
    total, facets = tally(CELLS, {})
    assert total == 31
    assert facets["status"] == {"enabled": 19, "disabled": 12}
    assert facets["attestation"] == {"x509": 7, "tpm": 24}
    assert facets["iot_edge"] == {"true": 21, "false": 10}


def test_each_facet_leaves_out_only_its_own_choice() -> None:
    total, facets = tally(CELLS, {"status": "disabled", "attestation": "x509"})
    assert total == 4
    assert facets["status"] == {"disabled": 4, "enabled": 3}  # x509 kept
    assert facets["attestation"] == {"x509": 4, "tpm": 8}  # disabled kept
    assert facets["iot_edge"] == {"true": 4}  # both kept


def test_a_chosen_value_that_matches_nothing_shows_zero() -> None:
    total, facets = tally(CELLS, chosen_values("", "symmetricKey", True))
    assert total == 0
    assert facets["attestation"] == {"x509": 5, "tpm": 16, "symmetricKey": 0}
    assert facets["iot_edge"] == {"true": 0}


def test_chosen_values_spell_iot_edge_as_the_url_does() -> None:
    assert chosen_values("enabled", "", False) == {"status": "enabled", "iot_edge": "false"}
    assert chosen_values("", "", None) == {}


def test_iot_edge_reads_edge_or_not_edge() -> None:
    counts = {"iot_edge": {"true": 3, "false": 5}, "status": {"enabled": 2}}
    assert facet(counts, "iot_edge") == [("Not Edge", 5), ("Edge", 3)]
    assert facet(counts, "status") == [("enabled", 2)]
