"""Azure RBAC permission blocks → portal capabilities. Pure: no I/O, no Django.

Semantics (Azure RBAC's, for data actions): ``*`` matches any run of characters, ``/`` included,
anywhere in a pattern; comparison ignores case; ``actions`` never grant data actions;
inside one block ``notDataActions`` subtract from ``dataActions``; blocks are unioned, so a
data action removed by one role and granted by another is allowed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from enum import StrEnum
from functools import lru_cache
from typing import Any

_PREFIX = "Microsoft.Devices/provisioningServices/"


class Capability(StrEnum):
    """What the portal lets a user do on one DPS instance, named like Django permissions."""

    ENROLLMENTS_READ = "enrollments.read"
    ENROLLMENTS_WRITE = "enrollments.write"
    ENROLLMENTS_DELETE = "enrollments.delete"
    ENROLLMENTGROUPS_READ = "enrollmentgroups.read"
    ENROLLMENTGROUPS_WRITE = "enrollmentgroups.write"
    ENROLLMENTGROUPS_DELETE = "enrollmentgroups.delete"
    REGISTRATIONS_READ = "registrations.read"
    REGISTRATIONS_DELETE = "registrations.delete"
    ATTESTATION_REVEAL = "attestation.reveal"

    @property
    def data_action(self) -> str:
        return DATA_ACTIONS[self]

    @property
    def testid(self) -> str:
        """Return the data action's suffix as used in ``data-testid`` (enrollments-write)."""
        return self.data_action[len(_PREFIX) :].lower().replace("/", "-")

    @property
    def sentence(self) -> str:
        return SENTENCES[self]


DATA_ACTIONS: Mapping[Capability, str] = {
    Capability.ENROLLMENTS_READ: _PREFIX + "enrollments/read",
    Capability.ENROLLMENTS_WRITE: _PREFIX + "enrollments/write",
    Capability.ENROLLMENTS_DELETE: _PREFIX + "enrollments/delete",
    Capability.ENROLLMENTGROUPS_READ: _PREFIX + "enrollmentGroups/read",
    Capability.ENROLLMENTGROUPS_WRITE: _PREFIX + "enrollmentGroups/write",
    Capability.ENROLLMENTGROUPS_DELETE: _PREFIX + "enrollmentGroups/delete",
    Capability.REGISTRATIONS_READ: _PREFIX + "registrationStates/read",
    Capability.REGISTRATIONS_DELETE: _PREFIX + "registrationStates/delete",
    Capability.ATTESTATION_REVEAL: _PREFIX + "attestationmechanism/details/action",
}

SENTENCES: Mapping[Capability, str] = {
    Capability.ENROLLMENTS_READ: "List and view individual enrollments.",
    Capability.ENROLLMENTS_WRITE: "Create, change and import individual enrollments.",
    Capability.ENROLLMENTS_DELETE: "Delete individual enrollments.",
    Capability.ENROLLMENTGROUPS_READ: "List and view enrollment groups.",
    Capability.ENROLLMENTGROUPS_WRITE: "Create and change enrollment groups.",
    Capability.ENROLLMENTGROUPS_DELETE: "Delete enrollment groups.",
    Capability.REGISTRATIONS_READ: "View device registration records.",
    Capability.REGISTRATIONS_DELETE: "Delete device registration records.",
    Capability.ATTESTATION_REVEAL: "See attestation keys and certificates.",
}

ALL_CAPABILITIES: frozenset[Capability] = frozenset(Capability)
_READS = frozenset(
    {Capability.ENROLLMENTS_READ, Capability.ENROLLMENTGROUPS_READ, Capability.REGISTRATIONS_READ}
)


@lru_cache(maxsize=4096)
def _pattern(pattern: str) -> re.Pattern[str]:
    return re.compile("^" + ".*".join(map(re.escape, pattern.split("*"))) + "$", re.IGNORECASE)


def action_matches(pattern: str, action: str) -> bool:
    """Return True if an RBAC action pattern (``*`` wildcards, any case) covers ``action``."""
    return bool(_pattern(pattern.strip()).match(action))


def _strings(block: Mapping[str, Any], key: str) -> list[str]:
    # ARM may omit a list or send null; a lone string is tolerated rather than iterated.
    value = block.get(key) or []
    if isinstance(value, str):
        return [value]
    return [v for v in value if isinstance(v, str)]


def data_action_allowed(blocks: Iterable[Mapping[str, Any]], action: str) -> bool:
    """Decide one data action over ARM permission blocks (union of per-block results)."""
    for block in blocks:
        if not isinstance(block, Mapping):
            continue
        granted = any(action_matches(p, action) for p in _strings(block, "dataActions"))
        if granted and not any(
            action_matches(p, action) for p in _strings(block, "notDataActions")
        ):
            return True
    return False


def capabilities_from_permissions(blocks: Iterable[Mapping[str, Any]]) -> frozenset[Capability]:
    """Return the capabilities the permission blocks grant (deny by default)."""
    blocks = list(blocks)
    return frozenset(c for c in Capability if data_action_allowed(blocks, c.data_action))


# -- describing capabilities in words --------------------------------------------------------
_OBJECTS = (
    ("enrollments", "individual enrollments"),
    ("enrollmentgroups", "enrollment groups"),
    ("registrations", "registration records"),
)
_VERBS = (("read", "read"), ("write", "create or change"), ("delete", "delete"))


def _join(items: list[str], conj: str) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + f" {conj} " + items[-1]


def _join_clauses(clauses: list[str], conj: str) -> str:
    if len(clauses) == 2 and any("," in c for c in clauses):
        return f"{clauses[0]}, {conj} {clauses[1]}"
    if len(clauses) > 2 and any("," in c for c in clauses):
        return "; ".join(clauses[:-1]) + f"; {conj} " + clauses[-1]
    return _join(clauses, conj)


def _clauses(caps: frozenset[Capability], have: bool) -> list[str]:
    clauses = []
    for verb, verb_text in _VERBS:
        objs = [
            text
            for prefix, text in _OBJECTS
            if (f"{prefix}.{verb}" in {c.value for c in caps}) is have
            and f"{prefix}.{verb}" in {c.value for c in Capability}
        ]
        if objs:
            clauses.append(f"{verb_text} {_join(objs, 'and' if have else 'or')}")
    if (Capability.ATTESTATION_REVEAL in caps) is have:
        clauses.append("see attestation keys")
    return clauses


def capabilities_describe(caps: Iterable[Capability]) -> str:
    """Say in plain words what the capabilities allow and what they do not."""
    caps = frozenset(caps)
    if not caps:
        return "You have no access to this DPS instance."
    if caps == ALL_CAPABILITIES:
        return (
            "You can do everything here: read, create, change and delete enrollments, "
            "enrollment groups and registration records, and see attestation keys."
        )
    if caps == _READS:
        return (
            "You can read enrollments, enrollment groups and registration records. "
            "You cannot change or delete them, or see keys."
        )
    can = _clauses(caps, True)
    cannot = _clauses(caps, False)
    text = f"You can {_join_clauses(can, 'and')}."
    if cannot:
        text += f" You cannot {_join_clauses(cannot, 'or')}."
    return text[0].upper() + text[1:]
