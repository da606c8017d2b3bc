"""Quotas, injected faults and the loopback-only control routes of one emulated DPS instance.

``wrap(app, ctx, instance, store)`` returns an ASGI middleware around the whole instance app:

- ``/_emulator/*`` answers only callers on 127.0.0.1 or ::1 (403 otherwise). It serves
  ``GET/PUT /_emulator/config``, ``POST /_emulator/reset`` and ``GET /_emulator/stats`` itself
  and passes any other ``/_emulator`` path to the wrapped app. Control calls are never counted
  against a quota and never fault.
- Every other call first gets the configured latency, then the quota check (429 with
  ``Retry-After``), then a fault draw (500, 503, timeout, dropped connection).

Budgets: each service API call counts one operation (a bulk call counts one, whatever its item
count), ``PUT /{idScope}/registrations/{id}/register`` counts one device registration, and
operation-status lookups are free, as the DPS billing page says (API.md §10).

Configuration, per instance: built-in defaults, then ``<state_dir>/dps-controls.json``, then the
``EMULATOR_DPS_CONTROLS`` environment variable (inline JSON or a file path), then
``PUT /_emulator/config`` at run time (not persisted). Each source holds the sections
``quota``, ``faults`` and ``latency`` at the top level (every instance) and/or under
``instances.<name>`` (that instance only). docs/emulators-dps.md describes the format.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import logging
import math
import os
import random
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, Router

from emulators.common.context import EmulatorContext
from emulators.common.net import is_loopback
from emulators.common.tenant import DpsInstance
from emulators.dps import errors as e
from emulators.dps.errors import DpsError, error_response

log = logging.getLogger("emulators.dps.controls")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

CONTROL_PREFIX = "/_emulator"
CONFIG_FILE = "dps-controls.json"
CONFIG_ENV = "EMULATOR_DPS_CONTROLS"
FAULT_KINDS = ("500", "503", "timeout", "drop")
REGISTRATIONS_PER_MINUTE = 1000
MAX_HOLD_SECONDS = 600.0


class ConfigError(ValueError):
    """A controls configuration is malformed; the message names the field."""


class DroppedConnection(Exception):
    """Raised when the server offers no transport to abort (not uvicorn): the app errors out."""


# -- sliding-window limiter ----------------------------------------------------------------
class SlidingWindowLimiter:
    """Allow at most ``limit`` events in any 60-second window, counted per whole second.

    A deque of ``[second, count]`` pairs is trimmed lazily, so each call is O(1) amortised;
    one lock makes it safe from any thread.
    """

    window = 60

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._buckets: deque[list[int]] = deque()
        self._total = 0

    def reset(self) -> None:
        with self._lock:
            self._buckets.clear()
            self._total = 0

    def in_window(self, now: float | None = None) -> int:
        with self._lock:
            self._trim(int(now if now is not None else time.monotonic()))
            return self._total

    def _trim(self, second: int) -> None:
        edge = second - self.window
        while self._buckets and self._buckets[0][0] <= edge:
            self._total -= self._buckets.popleft()[1]

    def acquire(self, now: float | None = None) -> int | None:
        """Take one slot; return None when allowed, else whole seconds until a slot frees."""
        if self.limit is None:
            return None
        t = now if now is not None else time.monotonic()
        second = int(t)
        with self._lock:
            self._trim(second)
            if self._total >= self.limit:
                if not self._buckets:  # limit 0: nothing will ever free up
                    return self.window
                free_at = self._buckets[0][0] + self.window
                return max(1, math.ceil(free_at - t))
            if self._buckets and self._buckets[-1][0] == second:
                self._buckets[-1][1] += 1
            else:
                self._buckets.append([second, 1])
            self._total += 1
            return None


# -- configuration ---------------------------------------------------------------------------
def _matcher(raw: dict[str, Any], where: str) -> tuple[frozenset[str] | None, str | None]:
    methods = raw.get("methods")
    if methods is not None:
        if isinstance(methods, str):
            methods = [methods]
        if not isinstance(methods, list) or not all(isinstance(m, str) for m in methods):
            raise ConfigError(f"{where}.methods must be a list of HTTP methods")
        methods = frozenset(m.upper() for m in methods)
    prefix = raw.get("path_prefix")
    if prefix is not None and not isinstance(prefix, str):
        raise ConfigError(f"{where}.path_prefix must be a string")
    return methods, (prefix.lower() if prefix else None)


def _number(
    raw: dict[str, Any], key: str, where: str, default: float, lo: float, hi: float
) -> float:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{where}.{key} must be a number")
    if not lo <= value <= hi:
        raise ConfigError(f"{where}.{key} must be between {lo} and {hi}")
    return float(value)


class FaultRule:
    """One fault kind with its probability, scope (methods, path prefix) and parameters."""

    __slots__ = ("kind", "methods", "path_prefix", "probability", "retry_after", "seconds")

    def __init__(self, raw: dict[str, Any], where: str) -> None:
        if not isinstance(raw, dict):
            raise ConfigError(f"{where} must be an object")
        kind = str(raw.get("kind", ""))
        if kind not in FAULT_KINDS:
            raise ConfigError(f"{where}.kind must be one of {', '.join(FAULT_KINDS)}")
        self.kind = kind
        self.probability = _number(raw, "probability", where, 0.0, 0.0, 1.0)
        self.seconds = _number(raw, "seconds", where, 30.0, 0.0, MAX_HOLD_SECONDS)
        self.retry_after = int(_number(raw, "retry_after", where, 1, 0, 3600))
        self.methods, self.path_prefix = _matcher(raw, where)

    def matches(self, method: str, path: str) -> bool:
        if self.methods is not None and method not in self.methods:
            return False
        return self.path_prefix is None or path.startswith(self.path_prefix)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "probability": self.probability}
        if self.kind == "timeout":
            out["seconds"] = self.seconds
        if self.kind == "503":
            out["retry_after"] = self.retry_after
        out["methods"] = sorted(self.methods) if self.methods is not None else None
        out["path_prefix"] = self.path_prefix
        return out


class ControlsConfig:
    """The validated quota, fault and latency settings of one instance."""

    def __init__(self, instance: DpsInstance) -> None:
        default_ops = instance.operations_per_minute or 1000 * max(1, instance.units)
        self.quota_enabled = True
        self.operations_per_minute: int = int(default_ops)
        self.registrations_per_minute: int = REGISTRATIONS_PER_MINUTE
        self.seed: int | None = None
        self.rules: list[FaultRule] = []
        self.latency_fixed_ms = 0.0
        self.latency_jitter_ms = 0.0
        self.latency_methods: frozenset[str] | None = None
        self.latency_prefix: str | None = None

    def apply(self, raw: Any, where: str = "config") -> None:
        """Validate ``raw`` and apply each section it names; absent sections stay as they are."""
        if not isinstance(raw, dict):
            raise ConfigError(f"{where} must be a JSON object")
        unknown = set(raw) - {"quota", "faults", "latency", "instances"}
        if unknown:
            raise ConfigError(f"{where}: unknown section(s) {', '.join(sorted(unknown))}")
        staged = copy.copy(self)
        if "quota" in raw:
            staged._apply_quota(raw["quota"], f"{where}.quota")
        if "faults" in raw:
            staged._apply_faults(raw["faults"], f"{where}.faults")
        if "latency" in raw:
            staged._apply_latency(raw["latency"], f"{where}.latency")
        self.__dict__.update(staged.__dict__)

    def _apply_quota(self, q: Any, where: str) -> None:
        if not isinstance(q, dict):
            raise ConfigError(f"{where} must be an object")
        if "enabled" in q:
            if not isinstance(q["enabled"], bool):
                raise ConfigError(f"{where}.enabled must be true or false")
            self.quota_enabled = q["enabled"]
        for key in ("operations_per_minute", "registrations_per_minute"):
            if key in q:
                value = q[key]
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    raise ConfigError(f"{where}.{key} must be a whole number >= 0")
                setattr(self, key, value)

    def _apply_faults(self, f: Any, where: str) -> None:
        if not isinstance(f, dict):
            raise ConfigError(f"{where} must be an object")
        seed = f.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ConfigError(f"{where}.seed must be an integer or null")
        rules_raw = f.get("rules", [])
        if not isinstance(rules_raw, list):
            raise ConfigError(f"{where}.rules must be a list")
        rules = [FaultRule(r, f"{where}.rules[{i}]") for i, r in enumerate(rules_raw)]
        self.seed = seed
        self.rules = rules

    def _apply_latency(self, lat: Any, where: str) -> None:
        if not isinstance(lat, dict):
            raise ConfigError(f"{where} must be an object")
        self.latency_fixed_ms = _number(lat, "fixed_ms", where, 0, 0, MAX_HOLD_SECONDS * 1000)
        self.latency_jitter_ms = _number(lat, "jitter_ms", where, 0, 0, MAX_HOLD_SECONDS * 1000)
        self.latency_methods, self.latency_prefix = _matcher(lat, where)

    def as_dict(self) -> dict[str, Any]:
        return {
            "quota": {
                "enabled": self.quota_enabled,
                "operations_per_minute": self.operations_per_minute,
                "registrations_per_minute": self.registrations_per_minute,
            },
            "faults": {"seed": self.seed, "rules": [r.as_dict() for r in self.rules]},
            "latency": {
                "fixed_ms": self.latency_fixed_ms,
                "jitter_ms": self.latency_jitter_ms,
                "methods": sorted(self.latency_methods) if self.latency_methods else None,
                "path_prefix": self.latency_prefix,
            },
        }


def _source_sections(raw: Any, instance_name: str, where: str) -> list[tuple[dict[str, Any], str]]:
    """Split one configuration source into the parts that apply to ``instance_name``."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a JSON object")
    parts = [({k: v for k, v in raw.items() if k != "instances"}, where)]
    per = raw.get("instances") or {}
    if not isinstance(per, dict):
        raise ConfigError(f"{where}.instances must map instance names to sections")
    for name, section in per.items():
        if str(name).lower() == instance_name.lower():
            parts.append((section, f"{where}.instances.{name}"))
    return parts


def load_startup_config(state_dir: Path, instance: DpsInstance) -> ControlsConfig:
    """Build the start-up configuration from the defaults, the state-dir file and the env."""
    config = ControlsConfig(instance)
    sources: list[tuple[Any, str]] = []
    path = Path(state_dir) / CONFIG_FILE
    if path.is_file():
        try:
            sources.append((json.loads(path.read_text(encoding="utf-8")), str(path)))
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path} is not valid JSON: {exc}") from exc
    env = os.environ.get(CONFIG_ENV, "").strip()
    if env:
        text = env if env.startswith("{") else Path(env).read_text(encoding="utf-8")
        try:
            sources.append((json.loads(text), CONFIG_ENV))
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{CONFIG_ENV} is not valid JSON: {exc}") from exc
    for raw, where in sources:
        for section, section_where in _source_sections(raw, instance.name, where):
            config.apply(section, section_where)
    return config


# -- responses ---------------------------------------------------------------------------------
async def drop_connection(send: Send) -> None:
    """Close the client's connection without an answer.

    uvicorn hands the app a bound ``send`` of its per-request cycle object, which holds the
    asyncio transport; aborting it makes the client see the connection close before any
    response byte (requests raises ConnectionError). Other servers get an exception.
    """
    cycle = getattr(send, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if transport is None or not hasattr(transport, "abort"):
        raise DroppedConnection("fault injection: connection dropped")
    transport.abort()
    # Let connection_lost run so uvicorn marks the cycle disconnected and sends no 500.
    for _ in range(3):
        await asyncio.sleep(0)


async def _drop(scope: Scope, receive: Receive, send: Send) -> None:
    """Answer nothing: close the connection (the ``drop`` fault)."""
    await drop_connection(send)


# -- the middleware -------------------------------------------------------------------------------
class Controls:
    """ASGI middleware: quota, faults and latency for one instance, plus its control routes."""

    def __init__(
        self,
        app: ASGIApp,
        instance: DpsInstance,
        store: Any,
        config: ControlsConfig,
        on_reset: list[Callable[[], None]] | None = None,
    ) -> None:
        self.app = app
        self.instance = instance
        self.store = store
        self.config = config
        self.on_reset = list(on_reset or [])
        self._id_scope = instance.id_scope.lower()
        self._lock = threading.Lock()
        self.operations = SlidingWindowLimiter(None)
        self.registrations = SlidingWindowLimiter(None)
        self._apply_limits()
        self._reseed()
        self.stats: dict[str, Any] = self._empty_stats()
        self._control = Router(
            routes=[
                Route(f"{CONTROL_PREFIX}/config", self._get_config, methods=["GET"]),
                Route(f"{CONTROL_PREFIX}/config", self._put_config, methods=["PUT"]),
                Route(f"{CONTROL_PREFIX}/reset", self._reset, methods=["POST"]),
                Route(f"{CONTROL_PREFIX}/stats", self._get_stats, methods=["GET"]),
            ],
            default=self.app,
        )

    # -- state ----------------------------------------------------------------------------
    @staticmethod
    def _empty_stats() -> dict[str, Any]:
        return {
            "requests": 0,
            "service_operations": 0,
            "device_registrations": 0,
            "device_lookups": 0,
            "throttled": 0,
            "delayed": 0,
            "faults": dict.fromkeys(FAULT_KINDS, 0),
        }

    def _apply_limits(self) -> None:
        c = self.config
        self.operations.limit = c.operations_per_minute if c.quota_enabled else None
        self.registrations.limit = c.registrations_per_minute if c.quota_enabled else None

    def _reseed(self) -> None:
        seed = self.config.seed
        # Separate generators, so latency jitter does not shift the fault sequence.
        self._fault_rng = random.Random(seed)  # noqa: S311 - simulation, not security
        self._latency_rng = random.Random(None if seed is None else seed + 1)  # noqa: S311

    def _count(self, key: str, sub: str | None = None) -> None:
        with self._lock:
            if sub is None:
                self.stats[key] += 1
            else:
                self.stats[key][sub] += 1

    # -- classification -----------------------------------------------------------------
    def _classify(self, method: str, path: str) -> str:
        """Return ``registration``, ``lookup`` (device, free) or ``operation`` (service)."""
        parts = path.strip("/").split("/")
        if len(parts) >= 3 and parts[1] == "registrations" and parts[0] == self._id_scope:
            if method == "PUT" and len(parts) == 4 and parts[3] == "register":
                return "registration"
            return "lookup"
        return "operation"

    # -- ASGI entry ------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if path.startswith(CONTROL_PREFIX + "/") or path == CONTROL_PREFIX:
            await self._control_call(scope, receive, send)
            return
        method: str = scope["method"]
        lowered = path.lower()
        kind = self._classify(method, lowered)
        with self._lock:
            self.stats["requests"] += 1
        await self._delay(method, lowered)
        refusal = self._throttle(kind) or await self._fault(method, lowered)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def _control_call(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve a ``/_emulator`` path to a loopback caller; refuse anyone else with 403."""
        if not is_loopback(scope.get("client")):
            refusal = DpsError(
                e.FORBIDDEN, "Emulator control routes answer only the local machine."
            )
            await error_response(refusal)(scope, receive, send)
            return
        await self._control(scope, receive, send)

    async def _delay(self, method: str, path: str) -> None:
        """Sleep the configured latency when the request matches its scope."""
        config = self.config
        if not (config.latency_fixed_ms or config.latency_jitter_ms):
            return
        if config.latency_methods is not None and method not in config.latency_methods:
            return
        if config.latency_prefix is not None and not path.startswith(config.latency_prefix):
            return
        delay = config.latency_fixed_ms + self._latency_rng.uniform(0, config.latency_jitter_ms)
        self._count("delayed")
        await asyncio.sleep(delay / 1000)

    def _throttle(self, kind: str) -> Response | None:
        """Count the request against its budget; return the 429 when the budget is used up."""
        if kind == "lookup":
            self._count("device_lookups")
            return None
        if kind == "operation":
            self._count("service_operations")
            limiter, what = self.operations, "operations"
        else:
            self._count("device_registrations")
            limiter, what = self.registrations, "device registrations"
        wait = limiter.acquire()
        if wait is None:
            return None
        self._count("throttled")
        return error_response(
            DpsError(
                e.THROTTLED,
                f"Too many requests: the {what} quota of {limiter.limit} per minute is used up.",
                headers={"Retry-After": str(wait)},
            )
        )

    async def _fault(self, method: str, path: str) -> ASGIApp | None:
        """Draw a fault: return the app that answers it, or None to go on.

        A timeout holds the request here and then lets it through (a client whose timeout
        is shorter has given up by then).
        """
        rule = self._draw_fault(method, path) if self.config.rules else None
        if rule is None:
            return None
        self._count("faults", rule.kind)
        if rule.kind == "500":
            return error_response(DpsError(e.INTERNAL, "Injected internal server error."))
        if rule.kind == "503":
            return error_response(
                DpsError(
                    e.UNAVAILABLE,
                    "Injected service unavailable.",
                    headers={"Retry-After": str(rule.retry_after)},
                )
            )
        if rule.kind == "drop":
            return _drop
        await asyncio.sleep(rule.seconds)
        return None

    def _draw_fault(self, method: str, path: str) -> FaultRule | None:
        """Draw once per request; rules that match share the unit interval in order."""
        matching = [r for r in self.config.rules if r.probability > 0 and r.matches(method, path)]
        if not matching:
            return None
        with self._lock:
            u = self._fault_rng.random()
        edge = 0.0
        for rule in matching:
            edge += rule.probability
            if u < edge:
                return rule
        return None

    # -- control routes -------------------------------------------------------------------
    async def _get_config(self, request: Request) -> Response:
        return JSONResponse(self.config.as_dict())

    async def _put_config(self, request: Request) -> Response:
        try:
            raw = json.loads(await request.body() or b"null")
        except (json.JSONDecodeError, UnicodeDecodeError):
            return error_response(DpsError(e.BAD_BODY, "The body is not valid JSON."))
        try:
            if isinstance(raw, dict) and "instances" in raw:
                raise ConfigError("config: 'instances' is for start-up files only")
            self.config.apply(raw)
        except ConfigError as exc:
            return error_response(DpsError(e.BAD_BODY, str(exc)))
        self._apply_limits()
        self._reseed()
        return JSONResponse(self.config.as_dict())

    async def _reset(self, request: Request) -> Response:
        reset = getattr(self.store, "reset", None)
        if callable(reset):
            reset()
        self.operations.reset()
        self.registrations.reset()
        self._reseed()
        with self._lock:
            self.stats = self._empty_stats()
        for hook in self.on_reset:
            with contextlib.suppress(Exception):
                hook()
        return Response(status_code=204)

    async def _get_stats(self, request: Request) -> Response:
        with self._lock:
            stats = copy.deepcopy(self.stats)
        stats["operations_in_window"] = self.operations.in_window()
        stats["registrations_in_window"] = self.registrations.in_window()
        return JSONResponse(stats)


def wrap(
    app: ASGIApp,
    ctx: EmulatorContext,
    instance: DpsInstance,
    store: Any,
    config: ControlsConfig | None = None,
    on_reset: list[Callable[[], None]] | None = None,
) -> Controls:
    """Wrap an instance's app with quotas, faults and the ``/_emulator`` control routes.

    ``on_reset`` hooks run on ``POST /_emulator/reset`` (the device API's operation memory).
    """
    if config is None:
        config = load_startup_config(ctx.state_dir, instance)
    return Controls(app, instance, store, config, on_reset=on_reset)
