"""Every HTTP session the portal opens to another service, and the one backoff formula.

Modelled on Zulip's ``OutgoingSession``: a session names its ``role`` (``entra``, ``arm``,
``dps``), always has a ``timeout`` (applied to any request that does not bring its own) and
an explicit transport retry policy (``max_retries``, counted on connections that were never
made, so a request that may have reached the other side is never sent twice here; callers
that know an operation is safe to repeat retry it themselves, with :func:`backoff`).

``trust_env`` is off: ``REQUESTS_CA_BUNDLE`` would otherwise silently replace the CA set
here, and proxy or netrc settings of the environment would apply.
"""

from __future__ import annotations

import random
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

USER_AGENT = "dps-enrollment-portal/0.1"

_rng = random.Random()  # noqa: S311 - jitter, not cryptography


class OutgoingSession(requests.Session):
    """A ``requests.Session`` with a role, a default timeout and an explicit retry policy."""

    def __init__(
        self,
        role: str,
        timeout: float | tuple[float, float],
        max_retries: int = 0,
        *,
        verify: str | bool = True,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__()
        self.role = role
        self.timeout = timeout
        self.trust_env = False
        self.verify = verify
        self.headers["User-Agent"] = f"{USER_AGENT} ({role})"
        self.headers.update(headers or {})
        retry = Retry(
            total=max_retries,
            connect=max_retries,
            read=False,
            status=0,
            other=0,
            redirect=False,
            raise_on_status=False,
            backoff_factor=0.5,
        )
        adapter = HTTPAdapter(max_retries=retry)
        self.mount("https://", adapter)
        self.mount("http://", adapter)

    def request(
        self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any
    ) -> requests.Response:
        """Send the request with the session's timeout unless the caller gives one."""
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.timeout
        return super().request(method, url, *args, **kwargs)


def backoff(
    attempt: int,
    retry_after: float | None = None,
    *,
    base: float = 0.5,
    cap: float = 30.0,
    rng: random.Random | None = None,
) -> float:
    """Return the seconds to wait before attempt ``attempt + 1`` (``attempt`` counts from 0).

    ``Retry-After`` when the server sent one, plus up to a second of jitter so waiting
    clients do not all come back at once; else exponential from ``base`` up to ``cap``
    with "equal jitter" (half fixed, half random).
    """
    rng = rng or _rng
    if retry_after is not None:
        return retry_after + rng.uniform(0, min(1.0, 0.1 * retry_after + 0.1))
    ceiling = min(cap, base * 2.0 ** min(attempt, 64))  # a float power overflows past 1023
    return ceiling / 2 + rng.uniform(0, ceiling / 2)
