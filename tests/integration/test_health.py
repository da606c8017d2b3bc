"""Liveness, readiness, request ids and security headers."""

from __future__ import annotations

import logging

import pytest
from django.core.exceptions import ImproperlyConfigured


@pytest.mark.django_db
def test_healthz_answers_ok(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_reports_every_dependency(client, settings):
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    response = client.get("/readyz")
    body = response.json()
    assert set(body["checks"]) == {"database", "cache", "broker"}
    assert body["checks"]["database"] == "ok"
    assert response.status_code == (200 if body["status"] == "ok" else 503)


@pytest.mark.django_db
def test_readyz_is_503_when_the_broker_is_down(client, settings):
    from portal.celery import app

    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    old = app.conf.broker_url
    app.conf.broker_url = "redis://127.0.0.1:1/0"
    try:
        response = client.get("/readyz")
    finally:
        app.conf.broker_url = old
    assert response.status_code == 503
    assert response.json()["checks"]["broker"].startswith("unavailable")


@pytest.mark.django_db
def test_every_response_carries_a_request_id_and_security_headers(client):
    response = client.get("/healthz")
    assert len(response["X-Request-ID"]) == 32
    assert "default-src 'self'" in response["Content-Security-Policy"]
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["X-Frame-Options"] == "DENY"
    assert response["Referrer-Policy"] == "same-origin"


@pytest.mark.django_db
def test_a_sane_incoming_request_id_is_kept_and_a_hostile_one_replaced(client):
    assert (
        client.get("/healthz", HTTP_X_REQUEST_ID="abc12345-proxy")["X-Request-ID"]
        == "abc12345-proxy"
    )
    assert client.get("/healthz", HTTP_X_REQUEST_ID="<script>")["X-Request-ID"] != "<script>"


def test_log_lines_carry_the_request_id():
    from portal.context import request_id_var
    from portal.logging import RequestIdFilter

    record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello", None, None)
    token = request_id_var.set("rid-1234")
    try:
        RequestIdFilter().filter(record)
    finally:
        request_id_var.reset(token)
    assert record.request_id == "rid-1234"


def test_missing_required_variable_is_named(monkeypatch):
    from portal.env import required

    monkeypatch.delenv("SOME_REQUIRED_THING", raising=False)
    with pytest.raises(ImproperlyConfigured, match="SOME_REQUIRED_THING"):
        required("SOME_REQUIRED_THING")


def test_bad_boolean_is_named(monkeypatch):
    from portal.env import env_bool

    monkeypatch.setenv("PORTAL_FLAG", "maybe")
    with pytest.raises(ImproperlyConfigured, match="PORTAL_FLAG"):
        env_bool("PORTAL_FLAG")
