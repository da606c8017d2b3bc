"""axe-core in the browser tests: every portal page a test visits is checked for accessibility.

The script comes from the project's own files (``node_modules/axe-core``, installed by
``npm ci``); it is evaluated through the DevTools protocol, which the portal's Content Security
Policy (``script-src 'self'``) does not apply to, so the page under test is not changed.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

AXE = Path(__file__).resolve().parents[2] / "node_modules" / "axe-core" / "axe.min.js"
#: What fails a test: axe's two highest impacts.
FAILING = frozenset({"serious", "critical"})


@cache
def _source() -> str:
    return AXE.read_text()


def axe_violations(page: Any) -> list[dict[str, Any]]:
    """Run axe-core on the page as it is; return its serious and critical violations."""
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.evaluate(_source())
    result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    return [v for v in result["violations"] if v.get("impact") in FAILING]


def describe(url: str, violations: list[dict[str, Any]]) -> str:
    """Return the violations of one page in words (rule, impact, help, first elements)."""
    lines = [f"{url}:"]
    for v in violations:
        lines.append(f"  {v['impact']} {v['id']}: {v['help']} ({len(v['nodes'])} elements)")
        for node in v["nodes"][:3]:
            summary = " ".join(str(node.get("failureSummary", "")).split())[:160]
            lines.append(f"    {' '.join(map(str, node['target']))}: {summary}")
    return "\n".join(lines)


def assert_accessible(page: Any, url: str | None = None) -> None:
    """Fail when axe finds a serious or critical violation on the page."""
    violations = axe_violations(page)
    assert not violations, describe(url or page.url, violations)
