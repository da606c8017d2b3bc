"""The DPS emulator's modules stay layered: controls and device do not import each other."""

from __future__ import annotations

import ast
from pathlib import Path

import emulators.dps

DPS_DIR = Path(emulators.dps.__file__).resolve().parent


def imported_modules(source: str) -> set[str]:
    """Return every module an ``import`` or ``from ... import`` in ``source`` names."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_device_does_not_import_controls() -> None:
    imports = imported_modules((DPS_DIR / "device.py").read_text(encoding="utf-8"))
    assert "emulators.dps.controls" not in imports


def test_controls_does_not_import_device() -> None:
    imports = imported_modules((DPS_DIR / "controls.py").read_text(encoding="utf-8"))
    assert "emulators.dps.device" not in imports


def test_imported_modules_sees_function_level_imports() -> None:
    """A lazy import inside a function counts too (the old controls.wrap had one)."""
    source = "def wrap():\n    from emulators.dps import device\n"
    assert "emulators.dps.device" in imported_modules(source)
