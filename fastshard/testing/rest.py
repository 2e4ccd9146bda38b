"""The simulator's slice of Discord's HTTP API: ``GET /gateway`` and ``GET /gateway/bot``.

Served on the simulator's own port through the websockets server's
``process_request`` hook: a request under ``/api/`` gets an HTTP answer, any
other path goes on to the websocket handshake.  Field names and error
bodies are Discord's (gateway.mdx "Get Gateway", "Get Gateway Bot",
"Session Start Limit Object"; errors as ``{"message": "401: Unauthorized",
"code": 0}``).
"""
from __future__ import annotations

import email.utils
import json
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from websockets.datastructures import Headers
from websockets.http11 import Request, Response

if TYPE_CHECKING:
    from websockets.asyncio.server import ServerConnection

    from .server import GatewaySimulator

__all__ = ["API_PATH", "rest_answer", "process_request"]

API_PATH = "/api/v10"

# /api/gateway, /api/v10/gateway/bot, ... (Discord serves every version under /api/vN).
_ROUTE = re.compile(r"/api(?:/v\d+)?(/gateway(?:/bot)?)/?")
_REASONS = {200: "OK", 401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed"}


def _error(status: int) -> tuple[int, dict[str, Any]]:
    return status, {"message": f"{status}: {_REASONS[status]}", "code": 0}


def _authorized(sim: GatewaySimulator, authorization: str | None) -> bool:
    # Bot tokens go as "Bot TOKEN"; a bare token is a different kind of credential to Discord.
    if authorization is None or not authorization.startswith("Bot "):
        return False
    token = authorization[4:].strip()
    if not token:
        return False
    expected = sim.token
    return expected is None or token == (expected[4:] if expected.startswith("Bot ") else expected)


def rest_answer(sim: GatewaySimulator, method: str, path: str,
                authorization: str | None) -> tuple[int, dict[str, Any]] | None:
    """``(status, JSON body)`` for a request to ``path``; None when it is not an API path."""
    target = urlsplit(path).path
    if not target.startswith("/api/"):
        return None
    match = _ROUTE.fullmatch(target)
    if match is None:
        return _error(404)
    if method != "GET":
        return _error(405)
    if match[1] == "/gateway":  # documented as needing no authentication
        return 200, {"url": sim.url}
    if not _authorized(sim, authorization):
        return _error(401)
    return 200, sim.gateway_bot()


def process_request(sim: GatewaySimulator, connection: ServerConnection, request: Request) -> Response | None:
    """The websockets ``process_request`` hook: answer API paths, let websockets have the rest."""
    # Request.method is newer than the websockets this package supports (>= 14).
    method = getattr(request, "method", "GET")
    answer = rest_answer(sim, method, request.path, request.headers.get("Authorization"))
    if answer is None:
        return None
    status, body = answer
    data = json.dumps(body).encode()
    headers = Headers([
        ("Date", email.utils.formatdate(usegmt=True)),
        ("Connection", "close"),
        ("Content-Type", "application/json"),
        ("Content-Length", str(len(data))),
    ])
    sim._log(f"HTTP {method} {request.path} -> {status}")
    return Response(status, _REASONS[status], headers, data)
