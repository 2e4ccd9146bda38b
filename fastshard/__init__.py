"""fastshard: the fastest, most dependable Discord gateway shard for Python.

>>> from fastshard import WebsocketShard, ShardStatus
"""
from __future__ import annotations

from .errors import (ConnectionFailedError, DecodeError, GatewayCloseError, InvalidSessionError,
                     NotConnectedError, PayloadTooLargeError, RateLimitedError, SessionStartLimitError,
                     ShardError)
from .identify_queue import IdentifyQueue, LocalIdentifyQueue
from .manager import ShardManager, ShardSummary
from .session_store import FileSessionStore, MemorySessionStore, SessionInfo, SessionStore
from .shard import ShardStatus, WebsocketShard

__version__ = "0.1.0"

__all__ = [
    "WebsocketShard",
    "ShardManager",
    "ShardSummary",
    "ShardStatus",
    "ShardError",
    "GatewayCloseError",
    "InvalidSessionError",
    "RateLimitedError",
    "NotConnectedError",
    "ConnectionFailedError",
    "DecodeError",
    "PayloadTooLargeError",
    "SessionStartLimitError",
    "IdentifyQueue",
    "LocalIdentifyQueue",
    "SessionStore",
    "SessionInfo",
    "MemorySessionStore",
    "FileSessionStore",
    "__version__",
]
