"""Links to the audit pages of a target, whatever its id holds."""

from __future__ import annotations

from urllib.parse import quote, urlencode

from django.urls import reverse

# Path segments a browser or proxy would rewrite (dot segments) or that the route cannot hold.
_UNSAFE_SEGMENTS = {"", ".", ".."}


def _path_safe(value: str) -> bool:
    return "/" not in value and value not in _UNSAFE_SEGMENTS


def target_history_url(dps_instance: str, target_type: str, target_id: str) -> str:
    """Return the URL of a target's history page, or "" when there is no target to show.

    Plain ids get the readable path form ``/audit/targets/<instance>/<type>/<id>/``. An id
    with a slash, a dot segment (``.``/``..``, which browsers fold away) or an empty part
    (no DPS instance) gets the query form ``/audit/targets/?dps_instance=&target_type=
    &target_id=``, which holds any string unchanged.
    """
    if not target_type or not target_id:
        return ""
    if all(_path_safe(v) for v in (dps_instance, target_type, target_id)):
        base = reverse("audit:event_list")
        parts = "/".join(quote(v, safe="") for v in (dps_instance, target_type, target_id))
        return f"{base}targets/{parts}/"
    query = urlencode(
        {"dps_instance": dps_instance, "target_type": target_type, "target_id": target_id}
    )
    return f"{reverse('audit:target_history_query')}?{query}"
