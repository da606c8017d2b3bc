"""Helpers shared by the authn integration tests."""

from __future__ import annotations

import re
from typing import Any

from emulators.common.rbac import DPS_DATA_ACTIONS, data_action_allowed, permission_blocks
from emulators.common.tenant import load_tenant

_PREFIX = "Microsoft.Devices/provisioningServices/"
_SECTION = re.compile(r'data-testid="instance-([A-Za-z0-9-]+)"(.*?)</section>', re.DOTALL)
_CAP = re.compile(r'data-testid="capability-([a-z0-9-]+)"')


def testid_of(data_action: str) -> str:
    return data_action[len(_PREFIX) :].lower().replace("/", "-")


def expected_capabilities(user_oid: str) -> dict[str, set[str]]:
    """What the tenant file grants the user on each DPS instance, via the emulators' RBAC."""
    tenant = load_tenant(None)
    out: dict[str, set[str]] = {}
    for dps in tenant.dps_instances:
        blocks = permission_blocks(tenant, user_oid, dps.resource_id)
        out[dps.name] = {testid_of(a) for a in DPS_DATA_ACTIONS if data_action_allowed(blocks, a)}
    return out


def shown_capabilities(html: str) -> dict[str, set[str]]:
    """Parse the home page: instance name → capability test ids shown as granted."""
    return {name: set(_CAP.findall(body)) for name, body in _SECTION.findall(html)}


def all_text_of(obj: Any) -> str:
    return repr(obj)
