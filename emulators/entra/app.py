"""Placeholder app factory; replaced by the real emulator."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from emulators.common.context import EmulatorContext


def create_app(ctx: EmulatorContext) -> Starlette:
    async def not_yet(request):  # type: ignore[no-untyped-def]
        return JSONResponse({"error": "not_implemented"}, status_code=501)

    return Starlette(routes=[Route("/{path:path}", not_yet)])
