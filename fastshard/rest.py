"""GET /gateway/bot for the command line, with the standard library only.

The CLI needs one HTTP request per run, so urllib (run in a thread so the
event loop stays free) is enough and adds no dependency.
"""
from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from .errors import ShardError

__all__ = ["GatewayInfo", "GatewayLookupError", "fetch_gateway_bot", "API_URL", "GATEWAY_BOT_URL"]

API_URL = "https://discord.com/api/v10"
GATEWAY_BOT_URL = f"{API_URL}/gateway/bot"
_USER_AGENT = "DiscordBot (fastshard, 0.1.0)"


class GatewayLookupError(ShardError):
    """GET /gateway/bot failed; the message says why and what to do."""


@dataclass(frozen=True)
class GatewayInfo:
    url: str
    shards: int
    session_start_remaining: int | None
    session_start_reset_after_ms: int | None
    max_concurrency: int | None
    session_start_total: int | None = None


def _parse(body: bytes, source: str = GATEWAY_BOT_URL) -> GatewayInfo:
    try:
        data: Any = json.loads(body)
        url = data["url"]
        shards = int(data.get("shards", 1))
        limit = data.get("session_start_limit") or {}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise GatewayLookupError(f"unexpected answer from {source}: {exc!r}") from None
    if not isinstance(url, str) or not url:
        raise GatewayLookupError(f"unexpected answer from {source}: no gateway url")
    if not isinstance(limit, dict):
        raise GatewayLookupError(f"unexpected answer from {source}: session_start_limit is not an object")
    for key in ("remaining", "reset_after", "max_concurrency", "total"):
        value = limit.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise GatewayLookupError(f"unexpected answer from {source}: session_start_limit.{key} is {value!r}")
    return GatewayInfo(
        url=url,
        shards=max(shards, 1),
        session_start_remaining=limit.get("remaining"),
        session_start_reset_after_ms=limit.get("reset_after"),
        max_concurrency=limit.get("max_concurrency") or None,
        session_start_total=limit.get("total"),
    )


def _http_error_message(exc: urllib.error.HTTPError, url: str = GATEWAY_BOT_URL) -> str:
    if exc.code == 401:
        return ("Discord rejected the token (HTTP 401 Unauthorized from GET /gateway/bot). "
                "Copy the bot token again from https://discord.com/developers/applications "
                "(your app -> Bot -> Reset Token) and pass it with --token or DISCORD_TOKEN.")
    if exc.code == 429:
        retry = exc.headers.get("Retry-After", "?") if exc.headers else "?"
        return f"Discord is rate limiting this bot (HTTP 429 from GET /gateway/bot): retry in {retry} s."
    return f"GET {url} failed with HTTP {exc.code} {exc.reason}."


def _fetch_blocking(token: str, url: str, timeout: float) -> GatewayInfo:
    request = urllib.request.Request(url, headers={
        "Authorization": f"Bot {token}",
        "User-Agent": _USER_AGENT,
    })
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read(1 << 20)
    except urllib.error.HTTPError as exc:
        raise GatewayLookupError(_http_error_message(exc, url)) from None
    except urllib.error.URLError as exc:
        raise GatewayLookupError(f"could not reach {url}: {exc.reason}. "
                                 "Check the network connection (or run without a token "
                                 "to use the built-in simulator).") from None
    except (OSError, ValueError) as exc:  # timeouts, resets, bad URL
        raise GatewayLookupError(f"could not reach {url}: {exc}") from None
    return _parse(body, url)


async def fetch_gateway_bot(token: str, *, url: str | None = None, api_url: str = API_URL,
                            timeout: float = 15.0) -> GatewayInfo:
    """GET /gateway/bot: the gateway URL, the recommended shard count and the session start limit.

    ``api_url`` is the REST base (``GatewaySimulator.api_url`` in tests);
    ``url`` overrides the whole endpoint.  Raises ``GatewayLookupError`` (a
    ``ShardError``) with a message that says what to do.
    """
    if url is None:
        url = api_url.rstrip("/") + "/gateway/bot"
    if token.startswith("Bot "):  # people paste the header value; the header adds it again
        token = token[4:]
    return await asyncio.to_thread(_fetch_blocking, token, url, timeout)
