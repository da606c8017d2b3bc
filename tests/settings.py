"""Test settings: the production settings with test-only conveniences."""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SECRET_KEY", "test-secret-key-not-for-production-000000000000000000")
os.environ.setdefault("DJANGO_DEBUG", "false")
os.environ.setdefault("PORTAL_USE_TLS", "false")
os.environ.setdefault("DJANGO_ALLOWED_HOSTS", "testserver,localhost,127.0.0.1")
# In-process job runs stay in the test's thread (its database transaction is invisible to
# others); the real-worker tests set their workers' value themselves.
os.environ.setdefault("BULK_CALLS_IN_FLIGHT", "1")
# A registered instance queues no fleet pass by itself: fleet tests run their passes in-process.
os.environ.setdefault("FLEET_SYNC_ON_REGISTER", "false")
os.environ.setdefault("TOKEN_CACHE_KEYS", "dGVzdC1rZXktdGVzdC1rZXktdGVzdC1rZXktdGVzdC0=")
os.environ.setdefault("AUDIT_HMAC_KEYS", "test:dGVzdC1hdWRpdC1rZXktdGVzdC1hdWRpdC1rZXktMzI=")

from portal.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# No collectstatic in tests: serve from the finders, without the manifest.
STORAGES = {
    **STORAGES,  # noqa: F405
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = True
