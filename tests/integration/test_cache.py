"""The Redis cache backend: Django's, with one Redis client per connection pool."""

from __future__ import annotations

import os
import threading
import uuid

import pytest

from portal.cache import RedisCache

pytestmark = pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="needs Redis")


def _cache() -> RedisCache:
    return RedisCache(os.environ["REDIS_URL"], {"KEY_PREFIX": f"test-cache-{uuid.uuid4().hex}"})


def test_one_client_serves_every_operation() -> None:
    cache = _cache()
    client = cache._cache.get_client(write=True)
    assert cache._cache.get_client() is client
    assert cache._cache.get_client("some-key", write=True) is client


def test_reads_writes_and_deletes_as_django_does() -> None:
    cache = _cache()
    cache.set("k", {"a": [1, 2]}, 30)
    cache.set("n", 5, 30)
    assert cache.get("k") == {"a": [1, 2]}
    assert cache.incr("n") == 6
    assert cache.get_many(["k", "n", "missing"]) == {"k": {"a": [1, 2]}, "n": 6}
    assert cache.add("k", "other", 30) is False
    assert cache.delete("k") is True
    assert cache.get("k", "gone") == "gone"
    cache.delete_many(["n"])
    assert cache.get("n") is None


def test_threads_share_the_client_safely() -> None:
    cache = _cache()
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            for j in range(50):
                cache.set(f"t{i}-{j}", j, 30)
                assert cache.get(f"t{i}-{j}") == j
        except BaseException as exc:  # noqa: BLE001 - reported by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_the_portal_uses_it_when_redis_is_configured(settings) -> None:
    assert settings.CACHES["default"]["BACKEND"] == "portal.cache.RedisCache"
