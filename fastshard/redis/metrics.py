"""Prometheus metrics of a gateway process (``fastshard gateway --metrics-port``).

Read at scrape time from the gateway's own counters, so the hot path pays
nothing; what lives in Redis (stream lengths, consumer-group lag, the shared
budget) is refreshed by a task every ``refresh`` seconds.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Iterator

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from .gateway import RedisGateway

__all__ = ["GatewayMetrics"]

log = logging.getLogger("fastshard.redis")


class GatewayMetrics(Collector):
    """Serves ``gateway``'s metrics on ``port`` (``start()``/``stop()``)."""

    def __init__(self, gateway: RedisGateway, port: int, *, addr: str = "0.0.0.0", refresh: float = 5.0) -> None:
        self.gateway = gateway
        self.port = port
        self.addr = addr
        self.refresh = refresh
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)
        self._server: Any = None
        self._task: asyncio.Task[None] | None = None
        self._redis: dict[str, Any] = {"lengths": {}, "groups": {}, "remaining": None, "spent": 0}

    def start(self) -> None:
        self._server, _ = start_http_server(self.port, addr=self.addr, registry=self.registry)
        self._task = asyncio.ensure_future(self._refresh_loop())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    async def _refresh_loop(self) -> None:
        while True:
            try:
                await self.refresh_now()
            except Exception as exc:  # Redis down: keep the last values, the publish metrics tell the story
                log.debug("metrics refresh failed: %s", exc)
            await asyncio.sleep(self.refresh)

    async def refresh_now(self) -> None:
        redis, keys = self.gateway.redis, self.gateway.keys
        lengths: dict[int, int] = {}
        groups: dict[tuple[int, str], tuple[int, int]] = {}
        for shard_id in self.gateway.shard_ids:
            key = keys.stream(shard_id)
            lengths[shard_id] = int(await redis.xlen(key))
            if lengths[shard_id]:
                for group in await redis.xinfo_groups(key):
                    name = group["name"].decode() if isinstance(group["name"], bytes) else str(group["name"])
                    groups[(shard_id, name)] = (int(group.get("lag") or 0), int(group.get("pending") or 0))
        self._redis = {"lengths": lengths, "groups": groups, "remaining": await self.gateway.queue.remaining(),
                       "spent": await self.gateway.queue.total_spent()}

    def collect(self) -> Iterator[Any]:
        gateway, publisher = self.gateway, self.gateway.publisher
        status = GaugeMetricFamily("fastshard_shard_status", "Shard status (0 connecting, 1 connected, "
                                   "2 reconnecting, 3 closing, 4 closed, 5 identifying)", labels=["shard"])
        latency = GaugeMetricFamily("fastshard_shard_latency_seconds", "Last heartbeat round trip", labels=["shard"])
        identifies = CounterMetricFamily("fastshard_shard_identifies", "IDENTIFYs sent (new sessions)",
                                         labels=["shard"])
        resumes = CounterMetricFamily("fastshard_shard_resumes", "Sessions resumed", labels=["shard"])
        for shard_id, summary in gateway.manager.status().items():
            label = [str(shard_id)]
            status.add_metric(label, int(summary.status))
            if summary.latency is not None:
                latency.add_metric(label, summary.latency / 1000.0)
            identifies.add_metric(label, summary.identifies)
            resumes.add_metric(label, summary.resumes)
        yield from (status, latency, identifies, resumes)
        events = CounterMetricFamily("fastshard_events_published", "Events written to Redis (rate() for events/s)",
                                     labels=["shard"])
        for shard_id, n in publisher.published_counts.items():
            events.add_metric([str(shard_id)], n)
        yield events
        yield CounterMetricFamily("fastshard_publish_errors", "Publish batches that failed (and were retried)",
                                  value=publisher.errors)
        yield GaugeMetricFamily("fastshard_publish_buffer_events", "Events waiting for Redis",
                                value=publisher.buffered)
        yield GaugeMetricFamily("fastshard_publish_buffer_limit", "Events waiting before the shards pause",
                                value=publisher.max_buffer)
        yield GaugeMetricFamily("fastshard_publish_paused", "1 while the shards are paused for Redis",
                                value=int(publisher.paused))
        data = self._redis
        yield CounterMetricFamily("fastshard_identifies_spent", "Session starts spent through this Redis "
                                  "(every process)", value=data["spent"])
        if data["remaining"] is not None:
            yield GaugeMetricFamily("fastshard_session_starts_remaining", "Session starts left today",
                                    value=data["remaining"])
        length = GaugeMetricFamily("fastshard_stream_length", "Entries in the shard's stream", labels=["shard"])
        for shard_id, n in data["lengths"].items():
            length.add_metric([str(shard_id)], n)
        yield length
        lag = GaugeMetricFamily("fastshard_consumer_group_lag", "Entries not yet delivered to the group",
                                labels=["shard", "group"])
        pending = GaugeMetricFamily("fastshard_consumer_group_pending", "Entries delivered, not acked",
                                    labels=["shard", "group"])
        for (shard_id, group), (n_lag, n_pending) in data["groups"].items():
            lag.add_metric([str(shard_id), group], n_lag)
            pending.add_metric([str(shard_id), group], n_pending)
        yield lag
        yield pending
