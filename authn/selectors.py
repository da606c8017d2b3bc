"""Read-only queries of the DPS instance registry."""

from __future__ import annotations

import time

from instances.models import DpsInstance

# The enabled instances' names, read at most every few seconds per process: the instance
# switcher is navigation only (a disabled or removed instance answers 404 whatever the menu
# says), and the query was a fifth of a page's database time.
SWITCHER_SECONDS = 10.0
_names: list[tuple[float, list[str]]] = []


def instance_names_enabled() -> list[str]:
    """Return the names of the enabled DPS instances (remembered for a few seconds)."""
    now = time.monotonic()
    if _names and now - _names[0][0] < SWITCHER_SECONDS:
        return _names[0][1]
    names = list(DpsInstance.objects.filter(enabled=True).values_list("name", flat=True))
    _names[:] = [(now, names)]
    return names


def instance_names_forget() -> None:
    """Read the instances again at the next page (tests; after an instance changed here)."""
    _names.clear()
