"""Fast paths of parsing: cheap checks that accept the common valid cells, and a memo.

Most cells are valid and many repeat, so the shared validators of
:mod:`enrollments.validation` (which raise with a sentence) run only for a cell the cheap
checks cannot accept, and pure validators of repeating cells are memoised. Every fast path
accepts a subset of what its validator accepts and returns the same value: at a million rows
each saved validator call is a second.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any, TypeVar, cast

from django.core.exceptions import ValidationError

from enrollments import validation as v

T = TypeVar("T")

#: What ``validate_registration_id`` accepts, for ids of plain characters.
PLAIN_ID = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._:-]{0,126}[A-Za-z0-9-])?")
#: What ``validate_device_id`` accepts, without surrounding spaces.
PLAIN_DEVICE_ID = re.compile(r"[A-Za-z0-9\-.%_*?!(),:=@$']{1,128}")
_PLAIN_B64 = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")
_PLAIN_TWIN_KEY = re.compile(r"[A-Za-z0-9_\-:@#/]{1,128}")
_SCALAR_TYPES = frozenset((str, int, float, bool, type(None)))
#: Written compactly with ASCII escapes, one character takes at most 12 bytes (a surrogate pair).
_PLAIN_TWIN_MAX_CHARS = v.MAX_TWIN_BYTES // 12
_HUB_SPLIT = re.compile(r"[\s,;]+")

_MEMO: dict[tuple[Any, ...], tuple[bool, Any]] = {}
#: Entries a memo holds before it starts again (a file has few distinct repeating cells).
MEMO_MAX = 4096


def memo(key: tuple[Any, ...], fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Return ``fn(*args)`` from a bounded cache; a ValidationError is cached and re-raised."""
    hit = _MEMO.get(key)
    if hit is None:
        hit = _outcome(fn, args, kwargs)
        if len(_MEMO) >= MEMO_MAX:
            _MEMO.clear()
        _MEMO[key] = hit
    if hit[0]:
        return cast(T, hit[1])
    # A fresh traceback each time: re-raising one instance would keep growing the old one.
    raise hit[1].with_traceback(None)


def _outcome(fn: Callable[..., Any], args: Any, kwargs: Any) -> tuple[bool, Any]:
    """Return ``(True, value)`` of a call, or ``(False, error)`` when it raised a ValidationError."""
    try:
        return True, fn(*args, **kwargs)
    except ValidationError as exc:
        return False, exc


def hubs(text: str) -> tuple[str, ...]:
    """Return the hub host names of an ``iotHubs`` cell (spaces, commas or semicolons between)."""
    return tuple(v.validate_iot_hubs(_HUB_SPLIT.split(text.strip())))


def plain_key(value: str) -> bool:
    """Return whether ``value`` is plainly a valid symmetric key (base64 of 16 to 64 bytes)."""
    if _PLAIN_B64.fullmatch(value):
        low, high = v.SYMMETRIC_KEY_BYTES
        return low <= len(value) // 4 * 3 - value.count("=", -2) <= high
    return False


def symmetric_key(value: str | None, label: str) -> str | None:
    """Return the key of a cell, as ``validate_symmetric_key`` does."""
    if not value:
        return None
    if plain_key(value):
        return value
    return v.validate_symmetric_key(value, label)


def plain_twin(value: str) -> dict[str, Any] | None:
    """Return a flat twin object with plain keys, or None when the full check must decide."""
    if len(value) > _PLAIN_TWIN_MAX_CHARS:
        return None
    try:
        data = json.loads(value)
    except ValueError:
        return None
    # map() keeps both scans in C: a generator per row cost more than the JSON parse.
    if (
        type(data) is dict
        and _SCALAR_TYPES.issuperset(map(type, data.values()))
        and all(map(_PLAIN_TWIN_KEY.fullmatch, data))
    ):
        return data
    return None


def twin_json(value: str, label: str) -> dict[str, Any] | None:
    """Return the twin object of a cell, as ``parse_twin_json`` does."""
    if not value or not value.strip():
        return None
    data = plain_twin(value)
    if data is not None:
        return data
    return v.parse_twin_json(value, label)
