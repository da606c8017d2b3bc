"""Read ``application/x-www-form-urlencoded`` bodies defensively.

Garbage must give a clear 4xx, never a 500: the body is size-capped, must decode as
UTF-8, and a parameter given twice is refused (Entra refuses it too).
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from starlette.requests import Request

from emulators.entra.errors import EntraError, malformed

MAX_BODY = 256 * 1024


async def read_body(request: Request, limit: int = MAX_BODY) -> bytes:
    """Return the request body, refusing anything over ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise EntraError(
                    "invalid_request", 90005, f"The request body is larger than {limit} bytes."
                )
        except ValueError:
            raise malformed("The Content-Length header is not a number.") from None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise EntraError(
                "invalid_request", 90005, f"The request body is larger than {limit} bytes."
            )
        chunks.append(chunk)
    return b"".join(chunks)


def parse_pairs(raw: str) -> dict[str, str]:
    """Parse a query string or form body into a dict; duplicates are an error."""
    try:
        pairs = parse_qsl(raw, keep_blank_values=True, strict_parsing=False, errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise malformed("The request is not properly URL-encoded UTF-8.") from None
    out: dict[str, str] = {}
    for k, v in pairs:
        if k in out:
            raise malformed(f"The parameter '{k}' is duplicated.")
        out[k] = v
    return out


async def read_form(request: Request) -> dict[str, str]:
    """Return the form fields of a POST; refuse other content types and oversize bodies."""
    ctype = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if ctype != "application/x-www-form-urlencoded":
        raise EntraError(
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'grant_type'. "
            "(The body must be sent as application/x-www-form-urlencoded, got "
            f"'{ctype[:60] or 'no content type'}'.)",
        )
    body = await read_body(request)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise malformed("The request body is not UTF-8.") from None
    return parse_pairs(text)
