"""Reset the portal's process-level caches so that no test sees what an earlier one left.

A module that keeps state in process memory (a memo of tokens, a discovery document, a rate
bucket, a backend instance) offers a function that forgets it. :func:`reset_module_caches`
calls every one of them; the autouse fixture in tests/conftest.py runs it around each test.

Found without being listed here, in every first-party module already imported:

- a module-level function named ``reset_caches`` (the convention for new modules);
- every module-level ``functools.lru_cache``/``cache`` function (``cache_clear()``).

Only reset functions that predate the convention are named in :data:`NAMED_RESETS`.
tests/unit/test_module_caches.py checks that every module-level cache is covered.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]

#: Top-level directories that are not the portal: the emulators' state belongs to the
#: session-wide emulator stack, and the tests' own modules hold fixtures, not caches.
NOT_PORTAL = frozenset({"tests", "emulators"})

#: Reset functions with names of their own ("module.function", called without arguments).
NAMED_RESETS: tuple[str, ...] = (
    "authn.msal_app.reset_http_cache",
    "authn.tokens.token_memo_forget",
    "authn.selectors.instance_names_forget",
    "fleet.access.forget_app_token",
)


@functools.cache
def portal_packages() -> frozenset[str]:
    """Return the names of the portal's top-level packages (each directory with __init__.py)."""
    return frozenset(
        p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file() and p.name not in NOT_PORTAL
    )


def _portal_modules() -> Iterator[tuple[str, ModuleType]]:
    packages = portal_packages()
    for name, module in list(sys.modules.items()):
        if module is not None and name.partition(".")[0] in packages:
            yield name, module


def named_reset(dotted: str) -> Callable[[], object] | None:
    """Return the reset function ``dotted`` names, or None while its module is not imported.

    A name that no longer resolves is skipped here rather than failing every test;
    tests/unit/test_module_caches.py fails on it instead.
    """
    module_name, _, function = dotted.rpartition(".")
    module = sys.modules.get(module_name)
    reset: Callable[[], object] | None = getattr(module, function, None)
    return reset


def module_resets() -> list[Callable[[], object]]:
    """Return every reset function of the portal modules imported so far."""
    resets: list[Callable[[], object]] = []
    for name, module in _portal_modules():
        for value in list(vars(module).values()):
            if getattr(value, "__module__", None) != name:
                continue  # imported from elsewhere: its own module resets it
            if hasattr(value, "cache_info") and not isinstance(value, type):
                resets.append(value.cache_clear)  # a functools cache
            elif getattr(value, "__name__", None) == "reset_caches" and callable(value):
                resets.append(value)
    resets.extend(r for r in map(named_reset, NAMED_RESETS) if r is not None)
    return resets


def reset_module_caches() -> None:
    """Forget everything the portal's modules remember in process memory."""
    for reset in module_resets():
        reset()


def import_portal_modules() -> list[ModuleType]:
    """Import every portal module except migrations; return them."""
    modules = []
    for package in sorted(portal_packages()):
        root = importlib.import_module(package)
        modules.append(root)
        for info in pkgutil.walk_packages(root.__path__, f"{package}."):
            if ".migrations" not in info.name:
                modules.append(importlib.import_module(info.name))
    return modules
