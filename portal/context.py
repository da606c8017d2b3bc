"""Per-request (or per-task) context carried through logs and audit rows."""

from __future__ import annotations

from contextvars import ContextVar

request_id_var: ContextVar[str] = ContextVar("request_id", default="-")
task_id_var: ContextVar[str] = ContextVar("task_id", default="")
client_ip_var: ContextVar[str] = ContextVar("client_ip", default="")
