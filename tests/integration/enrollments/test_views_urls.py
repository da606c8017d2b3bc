"""One URL convention: every page ends in a slash; the slash-less forms of before answer 301."""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, reverse

pytestmark = pytest.mark.django_db

# Addresses registered outside the portal keep their form: the redirect URI in Entra ID and
# the health probes of the container platform (docker-compose, SECURE_REDIRECT_EXEMPT).
KEPT = {"authn:callback", "healthz", "readyz", "metrics"}
ARGS = {"instance": "dps-fleet-prod", "key": "dev-1", "job_id": 7, "pk": 7, "fmt": "csv"}


def _named(resolver: Any, prefix: str = "") -> list[tuple[str, URLPattern]]:
    found = []
    for entry in resolver.url_patterns:
        if isinstance(entry, URLResolver):
            ns = f"{prefix}{entry.namespace}:" if entry.namespace else prefix
            found += _named(entry, ns)
        elif entry.name:
            found.append((prefix + entry.name, entry))
    return found


def _url(name: str, pattern: URLPattern) -> str:
    converters = set(pattern.pattern.converters)
    if name.startswith(("enrollments:", "bulk:", "controlplane:", "fleet:")):
        converters.add("instance")
    kwargs: dict[str, Any] = {k: ARGS.get(k, "x") for k in converters}
    return reverse(name, kwargs=kwargs)


NAMED = sorted(dict(_named(get_resolver())).items())


def test_the_url_list_is_not_empty() -> None:
    assert len(NAMED) > 40


@pytest.mark.parametrize(("name", "pattern"), NAMED, ids=[n for n, _ in NAMED])
def test_every_named_url_ends_in_a_slash(name: str, pattern: URLPattern) -> None:
    url = _url(name, pattern)
    if name in KEPT:
        assert not url.endswith("/"), url
    else:
        assert url.endswith("/"), url


OLD_FORMS = [
    ("/dps/dps-fleet-prod/enrollments/new", "/dps/dps-fleet-prod/enrollments/new/"),
    ("/dps/dps-fleet-prod/enrollments/dev-1/edit", "/dps/dps-fleet-prod/enrollments/dev-1/edit/"),
    ("/dps/dps-fleet-prod/groups/g-1/delete", "/dps/dps-fleet-prod/groups/g-1/delete/"),
    ("/dps/dps-fleet-prod/bulk/import", "/dps/dps-fleet-prod/bulk/import/"),
    ("/dps/dps-fleet-prod/bulk/jobs/7/download", "/dps/dps-fleet-prod/bulk/jobs/7/download/"),
    ("/dps/dps-fleet-prod/bulk/jobs/7/report.csv", "/dps/dps-fleet-prod/bulk/jobs/7/report/"),
    ("/auth/login?next=/audit/", "/auth/login/?next=/audit/"),
    ("/auth/permissions/refresh", "/auth/permissions/refresh/"),
    ("/audit/export.csv?outcome=denied", "/audit/export/csv/?outcome=denied"),
]


@pytest.mark.parametrize(("old", "new"), OLD_FORMS)
def test_slashless_old_forms_redirect_permanently(client: Any, old: str, new: str) -> None:
    response = client.get(old)
    assert response.status_code == 301
    assert response["Location"] == new


@pytest.mark.parametrize(
    ("path", "testid"),
    [
        ("/dps/dps-fleet-prod/enrollments/new/", "field-registration_id"),
        ("/dps/dps-fleet-prod/groups/new/", "field-enrollment_group_id"),
        ("/dps/dps-fleet-prod/bulk/import/", "import-form"),
    ],
)
def test_slashed_forms_reach_their_view(signed_in: Any, path: str, testid: str) -> None:
    """These answered 404 before (``new/`` was taken for a registration ID called "new")."""
    response = signed_in("dana").get(path)
    assert response.status_code == 200
    assert f'data-testid="{testid}"' in response.content.decode()


def test_callback_keeps_its_registered_form() -> None:
    assert reverse("authn:callback") == "/auth/callback"
