"""Every cache a portal module keeps in process memory is emptied between tests.

A private module-level name bound to an empty dict, list, set or deque in the module's source
is taken for a cache: constants are written filled, caches fill up while the portal runs.
Reading the source, not the live object, finds a cache whatever earlier tests left in it.
"""

from __future__ import annotations

import ast
import importlib
import sys
from collections import deque
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.support import caches

#: Memos of pure functions, keyed by the whole input: what they remember is right in any test.
PURE = {
    "_MEMO": "CSV cell validators: (kind, cell text) -> result",
    "_SETTINGS_MEMO": "CSV settings cells -> payload fragment and errors",
}

SENTINEL = ("test_module_caches", "sentinel")
_EMPTY_CALLS = frozenset({"dict", "list", "set", "OrderedDict", "deque", "defaultdict"})


def _is_empty_container(node: ast.expr | None) -> bool:
    if isinstance(node, ast.Dict | ast.List | ast.Set):
        return not (node.keys if isinstance(node, ast.Dict) else node.elts)
    if isinstance(node, ast.Call) and not node.keywords:
        name = node.func.attr if isinstance(node.func, ast.Attribute) else ""
        name = node.func.id if isinstance(node.func, ast.Name) else name
        return name in _EMPTY_CALLS and (not node.args or name == "defaultdict")
    return False


def _private_empty_names(module: ModuleType) -> list[str]:
    """Return the private names the module's source binds to an empty container."""
    names = []
    for node in ast.parse(Path(str(module.__file__)).read_text()).body:
        targets = node.targets if isinstance(node, ast.Assign) else []
        if isinstance(node, ast.AnnAssign):
            targets = [node.target]
        if isinstance(node, ast.Assign | ast.AnnAssign) and _is_empty_container(node.value):
            names += [t.id for t in targets if isinstance(t, ast.Name)]
    return [n for n in names if n.startswith("_") and not n.startswith("__") and n not in PURE]


def _empty_containers() -> list[tuple[str, Any]]:
    found = []
    for module in caches.import_portal_modules():
        if module.__name__.rpartition(".")[2] == "settings":
            continue  # settings are read once at start-up, never refilled
        for name in _private_empty_names(module):
            value = getattr(module, name)
            if isinstance(value, dict | list | set | deque):
                found.append((f"{module.__name__}.{name}", value))
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
