"""Every cache a portal module keeps in process memory is emptied between tests.

A private module-level dict, list or set that is still empty once its module is imported is
taken for a cache: constants are filled at import, caches fill up while the portal runs.
"""

from __future__ import annotations

import importlib
import sys
from collections import deque
from typing import Any

import pytest

from tests.support import caches

#: Memos of pure functions, keyed by the whole input: what they remember is right in any test.
PURE = {
    "_MEMO": "CSV cell validators: (kind, cell text) -> result",
    "_SETTINGS_MEMO": "CSV settings cells -> payload fragment and errors",
}

SENTINEL = ("test_module_caches", "sentinel")


def _empty_containers() -> list[tuple[str, Any]]:
    found = []
    for module in caches.import_portal_modules():
        if module.__name__.rpartition(".")[2] == "settings":
            continue  # settings are read once at start-up, never refilled
        for attr, value in vars(module).items():
            if not attr.startswith("_") or attr.startswith("__") or attr in PURE:
                continue
            if isinstance(value, dict | list | set | deque) and not value:
                found.append((f"{module.__name__}.{attr}", value))
    return found


def _fill(container: Any) -> None:
    if isinstance(container, dict):
        container[SENTINEL] = SENTINEL
    elif isinstance(container, set):
        container.add(SENTINEL)
    else:
        container.append(SENTINEL)


def test_every_module_cache_is_emptied_by_the_reset() -> None:
    """A cache that no reset empties names itself: give its module a ``reset_caches()``."""
    found = _empty_containers()
    assert found, "no module cache found: the discovery itself is broken"
    try:
        for _, container in found:
            _fill(container)
        caches.reset_module_caches()
        left = [name for name, container in found if SENTINEL in container]
    finally:
        for _, container in found:
            if isinstance(container, dict):
                container.pop(SENTINEL, None)
            elif SENTINEL in container:
                container.remove(SENTINEL)
    assert left == [], (
        f"{left}: not emptied between tests; add reset_caches() to the module "
        "(tests/support/caches.py finds it) or, for a memo of a pure function, list it in PURE"
    )


def test_functools_caches_are_cleared() -> None:
    from authn import crypto

    crypto.fernet()  # fills one functools cache, so the check below is not vacuous
    caches.import_portal_modules()
    caches.reset_module_caches()
    filled = [
        f"{name}.{attr}"
        for name, module in list(sys.modules.items())
        if name.partition(".")[0] in caches.portal_packages()
        for attr, value in vars(module).items()
        if getattr(value, "__module__", None) == name
        and hasattr(value, "cache_info")
        and not isinstance(value, type)
        and value.cache_info().currsize
    ]
    assert filled == []


@pytest.mark.parametrize("dotted", caches.NAMED_RESETS)
def test_named_resets_exist(dotted: str) -> None:
    """A reset function that was renamed or moved fails here (the fixture skips it silently)."""
    module_name, _, function = dotted.rpartition(".")
    assert callable(getattr(importlib.import_module(module_name), function, None)), dotted
