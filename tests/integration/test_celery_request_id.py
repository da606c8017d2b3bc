"""A task's log lines carry the id of the web request that queued it."""

from __future__ import annotations

import logging

import pytest
from celery import Celery
from celery.contrib.testing.worker import start_worker

import portal.celery  # noqa: F401 - connects the request-id signal handlers
from portal.context import request_id_var, task_id_var
from portal.logging import RequestIdFilter


@pytest.fixture
def celery_app_in_memory():
    app = Celery("request-id-test", broker="memory://", backend="cache+memory://")
    app.conf.task_default_queue = "request-id-test"
    seen: dict[str, str] = {}

    @app.task(name="tests.record_context")
    def record_context() -> str:
        record = logging.LogRecord("t", logging.INFO, __file__, 1, "in task", None, None)
        RequestIdFilter().filter(record)
        seen["request_id"] = request_id_var.get()
        seen["task_id"] = task_id_var.get()
        seen["log_prefix"] = record.request_id
        return seen["log_prefix"]

    with start_worker(app, perform_ping_check=False, loglevel="WARNING"):
        yield app, record_context, seen


def test_request_id_travels_from_the_publisher_to_the_worker(celery_app_in_memory):
    _app, task, seen = celery_app_in_memory
    token = request_id_var.set("web-req-0001")
    try:
        result = task.delay()
    finally:
        request_id_var.reset(token)
    prefix = result.get(timeout=20)
    assert seen["request_id"] == "web-req-0001"
    assert seen["task_id"] == result.id
    assert prefix == f"web-req-0001/{result.id}"
