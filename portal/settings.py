"""Settings of the DPS Enrollment Portal: the only settings module.

Every value comes from the environment (see .env.example and the README). Defaults are
the safe production ones, except where ``DJANGO_DEBUG`` turns on development conveniences.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import dj_database_url

from portal.env import env_bool, env_int, env_list, env_str, required

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("PORTAL_VAR_DIR", str(BASE_DIR / "var")) or BASE_DIR / "var")

DEBUG = env_bool("DJANGO_DEBUG", False)

if DEBUG:
    SECRET_KEY = env_str(
        "DJANGO_SECRET_KEY", "dev-only-insecure-key-never-use-in-production-0123456789"
    )
else:
    SECRET_KEY = required("DJANGO_SECRET_KEY", "a long random string")

ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["localhost", "127.0.0.1"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "portal",
    "audit",
    "authn",
    "instances",
    "enrollments",
    "controlplane",
    "fleet",
]

MIDDLEWARE = [
    "portal.middleware.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "portal.middleware.SecurityHeadersMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "authn.middleware.ReauthRequiredMiddleware",
]

ROOT_URLCONF = "portal.urls"
WSGI_APPLICATION = "portal.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# -- database ------------------------------------------------------------------
DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'portal.sqlite3'}") or "",
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web, worker and beat share the file: wait for locks instead of failing at once.
    DATABASES["default"].setdefault("OPTIONS", {})["timeout"] = 20
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# -- cache and Celery broker -------------------------------------------------------
REDIS_URL = env_str("REDIS_URL")
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "portal.cache.RedisCache", "LOCATION": REDIS_URL}}
    CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", REDIS_URL)
    CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {
        # Longer than any countdown a task schedules, or Redis redelivers it early.
        "visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 3600),
    }
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.db.DatabaseCache",
            "LOCATION": "portal_cache",
        }
    }
    _broker_dir = VAR_DIR / "celery-broker"
    CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "filesystem://")
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "out"),
        "data_folder_out": str(_broker_dir / "out"),
        "processed_folder": str(_broker_dir / "processed"),
        # Without it kombu writes broadcast state to ./control in the working directory.
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
    if CELERY_BROKER_URL == "filesystem://":
        for _d in ("out", "processed", "control"):
            (_broker_dir / _d).mkdir(parents=True, exist_ok=True)
        logging.getLogger("portal.settings").warning(
            "REDIS_URL is not set: Celery uses kombu's filesystem transport and the cache "
            "uses the database. Set REDIS_URL for production."
        )

CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 1800)
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 1900)
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
# Periodic tasks (celery beat): every one is here, none is added elsewhere.
CELERY_BEAT_SCHEDULE: dict[str, dict[str, object]] = {
    # Token caches of users whose sessions all expired: refresh tokens nobody can use.
    "authn-token-caches-purge": {"task": "authn.token_caches_purge", "schedule": 3600.0},
    # Bulk jobs whose worker died are queued again; jobs paused for sign-in resume.
    "bulk-jobs-sweep": {"task": "enrollments.bulk_jobs_sweep", "schedule": 30.0},
    # Export files past BULK_FILE_RETENTION_HOURS go; keys left in ended jobs' rows too.
    "bulk-files-expire": {"task": "enrollments.bulk_files_expire", "schedule": 900.0},
}
# A job's task keeps working through a broker outage (its state is in PostgreSQL; a Redis
# restarted without persistence has lost the message anyway, so cancelling the task would
# leave the job to the sweep). Explicit because Celery 6 turns the default to True.
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

# -- Entra ID, ARM, DPS ----------------------------------------------------------------
# EMULATOR_ENDPOINTS_FILE points at the emulators' endpoints.json (development and tests);
# it fills every Azure endpoint below that is not set explicitly. Production leaves it unset.
EMULATOR_ENDPOINTS_FILE = env_str("EMULATOR_ENDPOINTS_FILE")
_emu: dict[str, object] = {}
if EMULATOR_ENDPOINTS_FILE:
    _emu = json.loads(Path(EMULATOR_ENDPOINTS_FILE).read_text())


def _portal_app_default(field: str) -> str | None:
    apps = _emu.get("apps") or []
    assert isinstance(apps, list)
    portal_app = next((a for a in apps if a.get("name") == "DPS Enrollment Portal"), None)
    return portal_app.get(field) if portal_app else None


ENTRA_TENANT_ID = env_str("ENTRA_TENANT_ID", str(_emu.get("tenant_id", "")) or None)
ENTRA_AUTHORITY = env_str(
    "ENTRA_AUTHORITY",
    str(_emu["authority"])
    if _emu
    else (f"https://login.microsoftonline.com/{ENTRA_TENANT_ID}" if ENTRA_TENANT_ID else None),
)
ENTRA_CLIENT_ID = env_str("ENTRA_CLIENT_ID", _portal_app_default("client_id"))
ENTRA_CLIENT_SECRET = env_str("ENTRA_CLIENT_SECRET", _portal_app_default("client_secret"))
ENTRA_CLIENT_CERTIFICATE_PATH = env_str("ENTRA_CLIENT_CERTIFICATE_PATH")  # PEM with key + cert
ENTRA_USE_WORKLOAD_IDENTITY = env_bool("ENTRA_USE_WORKLOAD_IDENTITY", False)
# A CA bundle for Entra, ARM and DPS; None means the system trust store (production).
AZURE_CA_BUNDLE = env_str("AZURE_CA_BUNDLE", str(_emu["ca_cert"]) if _emu else None)
ARM_ENDPOINT = env_str(
    "ARM_ENDPOINT", str(_emu.get("arm_endpoint", "")) or "https://management.azure.com"
)
# The only hosts a user's DPS token is sent to (https, under one of these suffixes; instances/hosts.py).
DPS_HOST_SUFFIX = env_list("DPS_HOST_SUFFIX", [".azure-devices-provisioning.net"])
# Development only: the emulators' own DPS endpoints (host:port -> resource id) are allowed too.
_emu_dps = _emu.get("dps") or []
assert isinstance(_emu_dps, list)
DPS_EMULATOR_HOSTS: dict[str, str] = (
    {str(d["host"]).lower(): str(d["resource_id"]) for d in _emu_dps} if DEBUG else {}
)
HTTP_TIMEOUT_SECONDS = env_int("HTTP_TIMEOUT_SECONDS", 15)
TOKEN_CACHE_KEYS = env_list("TOKEN_CACHE_KEYS")  # Fernet keys, newest first
PERMISSIONS_CACHE_SECONDS = env_int("PERMISSIONS_CACHE_SECONDS", 300)

# -- auth, sessions, security ------------------------------------------------------------
AUTH_USER_MODEL = "auth.User"
AUTHENTICATION_BACKENDS = ["authn.backends.EntraBackend"]
LOGIN_URL = "authn:login"
LOGIN_REDIRECT_URL = "/"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"  # Lax: the Entra redirect back is a top-level GET
SESSION_COOKIE_AGE = env_int("SESSION_COOKIE_AGE", 8 * 3600)
# Every page reads its session: from Redis when there is one, the database row standing behind
# it (written with it, read on a cache miss, listed by the token-cache purge). Sign-out deletes
# both. Without Redis the cache is the database, so a cached read would gain nothing.
SESSION_ENGINE = (
    "django.contrib.sessions.backends.cached_db"
    if REDIS_URL
    else "django.contrib.sessions.backends.db"
)
CSRF_COOKIE_HTTPONLY = True
CSRF_COOKIE_SAMESITE = "Lax"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
USE_TLS = env_bool("PORTAL_USE_TLS", not DEBUG)
SESSION_COOKIE_SECURE = USE_TLS
CSRF_COOKIE_SECURE = USE_TLS
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", USE_TLS)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000 if USE_TLS else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = USE_TLS
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
# Preloading commits the whole registered domain to HTTPS for good (hstspreload.org): an
# operator's decision (SECURE_HSTS_PRELOAD=true), so its deploy warning is not an issue here.
SILENCED_SYSTEM_CHECKS = ["security.W021"]
PORTAL_BEHIND_PROXY = env_bool("PORTAL_BEHIND_PROXY", False)
# Trusted proxies in front of the portal: the audit's client address is this many entries
# from the right of X-Forwarded-For (portal.middleware.client_address).
PORTAL_PROXY_HOPS = env_int("PORTAL_PROXY_HOPS", 1)
if PORTAL_BEHIND_PROXY:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]

# -- metrics -------------------------------------------------------------------------
# The bearer token a Prometheus scrape of /metrics sends; unset, /metrics answers 404.
METRICS_TOKEN = env_str("METRICS_TOKEN")
# The Redis hash of the DPS call counters; portals sharing one Redis database need one each.
METRICS_REDIS_KEY = env_str("METRICS_REDIS_KEY", "portal:metrics:dps")
# form-action: portal/middleware.py adds the Entra authority's origin (sign-out redirects there).
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'"
)

# -- i18n, static ---------------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(VAR_DIR / "staticfiles")) or VAR_DIR / "staticfiles")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(VAR_DIR / "media")) or VAR_DIR / "media")

# -- logging ------------------------------------------------------------------------------------
LOG_LEVEL = env_str("LOG_LEVEL", "INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "portal.logging.RequestIdFilter"}},
    "formatters": {
        "line": {
            "format": "%(asctime)s %(levelname)s [%(request_id)s] %(name)s: %(message)s",
        }
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "filters": ["request_id"],
            "formatter": "line",
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        # MSAL logs token responses at DEBUG; keep it quiet whatever LOG_LEVEL says.
        "msal": {"level": "WARNING"},
        "urllib3": {"level": "WARNING"},
    },
}

# -- bulk jobs (CSV import, export, bulk delete; enrollments/bulk) ------------------------------
BULK_DIR = Path(env_str("BULK_DIR", str(MEDIA_ROOT / "bulk")) or MEDIA_ROOT / "bulk")
BULK_UPLOAD_MAX_BYTES = env_int("BULK_UPLOAD_MAX_BYTES", 512 * 1024 * 1024)
BULK_MAX_ROWS = env_int("BULK_MAX_ROWS", 1_000_000)
# A CSV row longer than this (bytes, all its lines) or with more fields is a row error.
BULK_MAX_ROW_BYTES = env_int("BULK_MAX_ROW_BYTES", 256 * 1024)
BULK_MAX_COLUMNS = env_int("BULK_MAX_COLUMNS", 64)
# Operations per minute allowed per DPS instance; overrides as "name=ops,name2=ops".
DPS_OPS_PER_MINUTE = env_int("DPS_OPS_PER_MINUTE", 1000)
DPS_OPS_PER_MINUTE_OVERRIDES = {
    k.strip(): int(v)
    for k, _, v in (i.partition("=") for i in env_list("DPS_OPS_PER_MINUTE_OVERRIDES"))
    if v.strip()
}
# A running job whose worker has not reported for this long is resumed by the sweep.
BULK_STALE_SECONDS = env_int("BULK_STALE_SECONDS", 120)
# How long a worker owns the rows it claimed; longer than one chunk with its retries.
BULK_LEASE_SECONDS = env_int("BULK_LEASE_SECONDS", 120)
# Bulk calls one running job keeps in flight at once (threads of its task): one call's round
# trip to DPS would otherwise cap a job below the quota. The rate limiter paces them all.
BULK_CALLS_IN_FLIGHT = env_int("BULK_CALLS_IN_FLIGHT", 4)
BULK_ACCESS_BACKEND = env_str("BULK_ACCESS_BACKEND", "enrollments.bulk.access.PortalAccess")
# Export files are deleted this many hours after their job ended (an export with keys at once
# after its first download); the beat task bulk-files-expire does it.
BULK_FILE_RETENTION_HOURS = env_int("BULK_FILE_RETENTION_HOURS", 24)

# -- audit log (audit/) ----------------------------------------------------------------------
# manage.py audit_retention deletes events older than this many days unless --older-than says.
AUDIT_RETENTION_DAYS = env_int("AUDIT_RETENTION_DAYS", 400)
# "<key id>:<base64 key>" entries, newest first, that key the audit hash chain (audit/keys.py).
# Required when DEBUG is off; never stored in the database.
AUDIT_HMAC_KEYS = env_list("AUDIT_HMAC_KEYS")
# Failed sign-ins per client address: the first AUDIT_SIGNIN_FAILED_BURST of each window are
# audited one by one, the rest counted and written as one summary row (audit/throttle.py).
AUDIT_SIGNIN_FAILED_WINDOW_SECONDS = env_int("AUDIT_SIGNIN_FAILED_WINDOW_SECONDS", 60)
AUDIT_SIGNIN_FAILED_BURST = env_int("AUDIT_SIGNIN_FAILED_BURST", 5)

# -- fleet index (fleet/) -------------------------------------------------------------------
# A sync pass of every instance this often (seconds); its share of each instance's quota
# (percent); records per query page; individual registration states read per pass (one GET
# each); and whether a newly registered instance gets its first pass at once.
FLEET_SYNC_INTERVAL_SECONDS = env_int("FLEET_SYNC_INTERVAL_SECONDS", 900)
FLEET_SYNC_SHARE = env_int("FLEET_SYNC_SHARE_PERCENT", 20) / 100
FLEET_SYNC_PAGE_SIZE = env_int("FLEET_SYNC_PAGE_SIZE", 1000)
FLEET_SYNC_STATE_READS = env_int("FLEET_SYNC_STATE_READS", 100)
# The overview lists enrollments never registered for longer than this many days.
FLEET_NEVER_REGISTERED_DAYS = env_int("FLEET_NEVER_REGISTERED_DAYS", 14)
FLEET_SYNC_ON_REGISTER = env_bool("FLEET_SYNC_ON_REGISTER", True)
CELERY_BEAT_SCHEDULE["fleet-sync-all"] = {
    "task": "fleet.sync_all",
    "schedule": float(FLEET_SYNC_INTERVAL_SECONDS),
}
