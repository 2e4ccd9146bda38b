"""Exceptions raised by fastshard.

Every exception the library raises on purpose derives from :class:`ShardError`,
so ``except fastshard.ShardError`` catches them all.  Option errors are plain
``ValueError``/``TypeError`` because they are programming mistakes.
"""
from __future__ import annotations

__all__ = [
    "ShardError",
    "GatewayCloseError",
    "InvalidSessionError",
    "RateLimitedError",
    "NotConnectedError",
    "ConnectionFailedError",
    "DecodeError",
    "PayloadTooLargeError",
    "SessionStartLimitError",
]


class ShardError(Exception):
    """Base class of every fastshard error."""


class GatewayCloseError(ShardError):
    """The gateway closed the websocket with a code that ends the shard.

    ``code`` is the websocket close code (4004, 4014, ...) and ``reason`` the
    text Discord sent with it.  The message says what the code means and what
    to do about it.
    """

    def __init__(self, code: int, reason: str = "", message: str | None = None) -> None:
        self.code = code
        self.reason = reason
        super().__init__(message or f"gateway closed the connection with code {code}: {reason or 'no reason given'}")


class InvalidSessionError(ShardError):
    """Discord invalidated the session (op 9 with ``d: false``, or close 4007/4009).

    The session data has been cleared; calling ``connect()`` again identifies
    a new session.  ``resumable`` is what op 9 said (always False here).
    ``code`` and ``reason`` are the websocket close code and text when a close
    ended the session (4007, 4009), like on :class:`GatewayCloseError`; after
    op 9 ``code`` is None and ``reason`` empty.
    """

    def __init__(self, message: str, resumable: bool = False, *, code: int | None = None,
                 reason: str = "") -> None:
        self.resumable = resumable
        self.code = code
        self.reason = reason
        super().__init__(message)


class RateLimitedError(ShardError):
    """A command was refused before sending because Discord would punish it.

    ``retry_after`` is how many seconds to wait before the same command fits,
    ``limit`` names the limit that was hit.
    """

    def __init__(self, retry_after: float, limit: str) -> None:
        self.retry_after = retry_after
        self.limit = limit
        super().__init__(f"{limit} rate limit reached: retry in {retry_after:.3f} s")


class NotConnectedError(ShardError):
    """A command was sent while the shard has no open gateway connection."""


class ConnectionFailedError(ShardError):
    """The websocket to the gateway could not be opened (DNS, refused, TLS, handshake)."""

    def __init__(self, url: str, cause: BaseException | str) -> None:
        self.url = url
        super().__init__(f"could not connect to the gateway at {url}: {cause}")


class DecodeError(ShardError):
    """Data from the gateway could not be decompressed or decoded.

    Raised by the codecs on untrusted input (corrupt zlib/zstd stream,
    invalid JSON, truncated or unknown ETF, a buffer past its size cap).  The
    shard reports it on ``debug`` and reconnects to resume.
    """


class PayloadTooLargeError(ShardError, ValueError):
    """An outgoing payload encodes to more than the gateway accepts (4096 bytes)."""


class SessionStartLimitError(ShardError):
    """Not enough session starts are left in Discord's daily budget.

    ``remaining`` is how many IDENTIFYs the budget still allows and
    ``reset_after`` how many seconds until it resets.  Spending the last ones
    makes Discord terminate every session and reset the bot's token, so
    fastshard refuses before spending any.
    """

    def __init__(self, remaining: int, reset_after: float, needed: int | None = None) -> None:
        self.remaining = remaining
        self.reset_after = reset_after
        self.needed = needed
        need = f"{needed} shards must identify but " if needed is not None else ""
        super().__init__(f"{need}only {remaining} session starts are left today; the budget resets in "
                         f"{reset_after:.0f} s. Wait for the reset (or resume stored sessions) rather than "
                         "identify: Discord resets the token of a bot that runs out")
