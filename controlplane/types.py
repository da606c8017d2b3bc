"""What the control plane pages show: CA certificates and linked hubs, parsed from ARM's JSON."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any, Generic, TypeVar

T = TypeVar("T")


def _date(value: Any) -> dt.datetime | None:
    """Parse an RFC 7231 date (what the resource provider sends) or an ISO 8601 one."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        try:
            parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


@dataclass(frozen=True)
class CaCertificate:
    """One CA certificate of a DPS instance (the PEM itself is not kept)."""

    name: str
    subject: str
    thumbprint: str
    expiry: dt.datetime | None
    is_verified: bool
    created: dt.datetime | None
    updated: dt.datetime | None
    etag: str

    @classmethod
    def from_arm(cls, body: dict[str, Any]) -> CaCertificate:
        props = body.get("properties") if isinstance(body.get("properties"), dict) else {}
        assert isinstance(props, dict)
        return cls(
            name=str(body.get("name") or ""),
            subject=str(props.get("subject") or ""),
            thumbprint=str(props.get("thumbprint") or ""),
            expiry=_date(props.get("expiry")),
            is_verified=props.get("isVerified") is True,
            created=_date(props.get("created")),
            updated=_date(props.get("updated")),
            etag=str(body.get("etag") or ""),
        )

    def expires_within(self, days: int, now: dt.datetime | None = None) -> bool:
        now = now or dt.datetime.now(dt.UTC)
        return self.expiry is not None and self.expiry <= now + dt.timedelta(days=days)

    @property
    def expired(self) -> bool:
        return self.expires_within(0)

    def as_audit(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "thumbprint": self.thumbprint,
            "isVerified": self.is_verified,
            "expiry": self.expiry.isoformat() if self.expiry else None,
        }


@dataclass(frozen=True)
class LinkedHub:
    """An IoT hub linked to a DPS instance. The connection string is never kept."""

    name: str
    location: str
    allocation_weight: int | None
    apply_allocation_policy: bool

    @classmethod
    def from_arm(cls, body: dict[str, Any]) -> LinkedHub:
        weight = body.get("allocationWeight")
        return cls(
            name=str(body.get("name") or body.get("hostName") or ""),
            location=str(body.get("location") or ""),
            allocation_weight=weight if isinstance(weight, int) else None,
            apply_allocation_policy=body.get("applyAllocationPolicy") is not False,
        )


@dataclass(frozen=True)
class Choices(Generic[T]):
    """Items for a choice field, or the reason they cannot be offered (then ``items`` is empty)."""

    items: list[T] = field(default_factory=list)
    reason: str = ""
    fetched_at: dt.datetime | None = None

    @property
    def available(self) -> bool:
        return not self.reason
