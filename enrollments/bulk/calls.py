"""DPS calls of a bulk job: every one paced by the instance's shared bucket and retried here.

The client is built with ``max_retries=0``, so every attempt passes through :func:`paced`,
takes a token and honours ``Retry-After`` by holding the bucket for every worker.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

from enrollments.dps.client import iterate_pages
from enrollments.dps.exceptions import DpsThrottled, DpsUnavailable
from enrollments.dps.types import QueryPage
from enrollments.ratelimit import TokenBucket
from portal.outgoing_http import backoff

__all__ = ["READ_ATTEMPTS", "backoff", "paced"]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Attempts of one read before it is reported as failed.
READ_ATTEMPTS = 8


def paced(
    bucket: TokenBucket,
    call: Callable[[], T],
    *,
    attempts: int = READ_ATTEMPTS,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run a call that is safe to repeat (a read), pacing and retrying 429 and 5xx."""
    for attempt in range(attempts):
        bucket.acquire()
        try:
            return call()
        except DpsThrottled as exc:
            wait = backoff(attempt, exc.retry_after if exc.retry_after is not None else 1.0)
            bucket.hold(wait)
            log.info("DPS throttled a read; every worker waits %.1f s", wait)
            if attempt == attempts - 1:
                raise
        except DpsUnavailable:
            if attempt == attempts - 1:
                raise
            sleep(backoff(attempt))
    raise AssertionError("unreachable")  # pragma: no cover


def paced_pages(
    bucket: TokenBucket, query: Callable[[str | None], QueryPage[T]]
) -> Iterator[QueryPage[T]]:
    """Yield every page of a DPS query, each fetched through :func:`paced`.

    ``query`` takes the continuation token (None for the first page); the pages are fetched
    one at a time, as the caller asks for the next.
    """
    return iterate_pages(lambda continuation: paced(bucket, lambda: query(continuation)))
