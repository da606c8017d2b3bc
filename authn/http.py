"""The HTTP sessions authn uses to reach Entra ID and ARM."""

from __future__ import annotations

from typing import Any

import requests
from django.conf import settings


class TimeoutSession(requests.Session):
    """A ``requests.Session`` that never waits forever and ignores proxy/CA environment.

    ``trust_env=False`` matters: ``REQUESTS_CA_BUNDLE`` would otherwise silently replace
    the CA configured here (reference/identity §1.11).
    """

    def __init__(self, timeout: float) -> None:
        super().__init__()
        self.trust_env = False
        self.timeout = timeout
        self.verify = settings.AZURE_CA_BUNDLE or True
        self.headers["User-Agent"] = "dps-enrollment-portal"

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        kwargs.setdefault("timeout", self.timeout)
        return super().request(method, url, *args, **kwargs)


def azure_session() -> TimeoutSession:
    """Return a session for Entra ID / ARM with the configured CA and timeout."""
    return TimeoutSession(float(settings.HTTP_TIMEOUT_SECONDS))
