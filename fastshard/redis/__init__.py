"""Scale out on Redis: shards in gateway processes, bot logic in workers.

``pip install 'fastshard[redis]'``.  See the README's "Scale out on Redis".
"""
from __future__ import annotations

from .commands import CommandServer, RedisCommands, shard_for_guild
from .consumer import GatewayEvent, RedisConsumer
from .gateway import RedisGateway
from .identify_queue import RedisIdentifyQueue
from .keys import Keys
from .publisher import RedisPublisher
from .session_store import RedisSessionStore

__all__ = ["RedisIdentifyQueue", "RedisSessionStore", "RedisPublisher", "RedisConsumer", "GatewayEvent",
           "RedisCommands", "CommandServer", "RedisGateway", "Keys", "shard_for_guild"]
