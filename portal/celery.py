"""The Celery app, wired the Django way (settings namespace ``CELERY``)."""

from __future__ import annotations

import os
from typing import Any

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

app = Celery("portal")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@signals.before_task_publish.connect
def _propagate_request_id(headers: dict[str, Any] | None = None, **_: Any) -> None:
    """Carry the publishing request's id to the worker so one request can be followed."""
    from portal.context import request_id_var

    if headers is not None:
        headers.setdefault("portal_request_id", request_id_var.get())


@signals.task_prerun.connect
def _bind_request_id(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    from portal.context import request_id_var, task_id_var

    rid = getattr(task.request, "portal_request_id", None) if task is not None else None
    request_id_var.set(rid or "-")
    task_id_var.set(task_id or "")


@signals.task_postrun.connect
def _unbind_request_id(**_: Any) -> None:
    from portal.context import request_id_var, task_id_var

    request_id_var.set("-")
    task_id_var.set("")
