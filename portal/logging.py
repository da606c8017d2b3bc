"""Logging helpers: every record carries the request id of the request or task it serves."""

from __future__ import annotations

import logging

from portal.context import request_id_var, task_id_var


class RequestIdFilter(logging.Filter):
    """Add ``request_id`` to each record (a task's log lines show ``<request id>/<task id>``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        rid = request_id_var.get()
        tid = task_id_var.get()
        record.request_id = f"{rid}/{tid}" if tid else rid
        return True
