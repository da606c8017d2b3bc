"""Network helpers shared by the emulators."""

from __future__ import annotations

import ipaddress
from typing import Any


def is_loopback(client: tuple[str, int] | list[Any] | None) -> bool:
    """Tell whether an ASGI ``client`` address is 127.0.0.0/8 or ::1."""
    if not client:
        return False
    host = str(client[0]).split("%")[0]
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
