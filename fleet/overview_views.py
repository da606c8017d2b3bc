"""The instance overview page (the instance's home, ``/dps/<instance>/``): the index at a glance.

Requires read of individual enrollments on the instance, as the instance home always has (403
and a ``denied`` event otherwise). CA certificates come from the control plane as the user,
only where the user's role may read them.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from authn.capabilities import capabilities_resolve
from authn.decorators import capability_required
from authn.exceptions import TokenUnavailable
from authn.permissions import Capability
from controlplane.selectors import expiring_ca_certificates
from fleet import overview_charts
from fleet.overview import EXPIRY_BUCKETS, orphan_records, overview

#: At most this many orphaned records of one group are offered for deletion in one go (one
#: confirm page of the registration-deletion view; the rest come back on the next visit).
ORPHAN_BATCH = 100


@never_cache
@require_GET
@capability_required(Capability.ENROLLMENTS_READ)
def instance_overview(request: HttpRequest, instance: str) -> HttpResponse:
    """Show the instance's counts, charts and what needs attention."""
    dps = request.dps_instance  # type: ignore[attr-defined]
    ov = overview(dps)
    try:
        ov.ca_certificates = expiring_ca_certificates(request.user, dps, days=max(EXPIRY_BUCKETS))
        ca_unavailable = False
    except TokenUnavailable:  # Entra unreachable: the index's numbers still stand
        ca_unavailable = True
    orphans = [
        {
            "group": group,
            "n": n,
            "records": list(orphan_records(dps, group).order_by("key")[:ORPHAN_BATCH]),
        }
        for group, n in ov.orphans.items()
    ]
    return render(
        request,
        "fleet/overview.html",
        {
            "instance": dps,
            "caps": capabilities_resolve(request.user, dps),
            "ov": ov,
            "orphans": orphans,
            "cert_rows": overview_charts.certificate_rows(ov),
            "ca_unavailable": ca_unavailable,
            "charts": overview_charts.charts(ov),
            "timeline": overview_charts.timeline(ov),
            "links": overview_charts.attention_links(dps.name),
        },
    )
