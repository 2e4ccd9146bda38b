"""ShardManager: many WebsocketShards in one process, identified as Discord allows.

The manager decides which shards exist (``GET /gateway/bot`` or the user's
numbers), gives each the identify queue (so every IDENTIFY, re-identifies
included, waits for its bucket and is counted against the daily budget),
resumes stored sessions instead of identifying, re-identifies a shard whose
session died, and stops the whole application on a close code that no
reconnect can fix.  The rules it applies are plain functions elsewhere:
``sharding.py`` (formula, ranges), ``identify_queue.py`` (buckets, budget),
``session_store.py`` (what survives a restart).
"""
from __future__ import annotations

import asyncio
import functools
import gc
import inspect
import random
from dataclasses import dataclass
from typing import Any, AsyncIterator, Iterable, Optional, SupportsInt

from . import close_codes
from .errors import GatewayCloseError, InvalidSessionError, SessionStartLimitError, ShardError
from .identify_queue import IdentifyQueue, LocalIdentifyQueue
from .rest import API_URL, GatewayInfo, fetch_gateway_bot
from .session_store import MemorySessionStore, SessionInfo, SessionStore
from .emitter import EventEmitter, EventStream
from .shard import ShardStatus, WebsocketShard
from .sharding import shard_for

__all__ = ["ShardManager", "ShardSummary"]


#: WebsocketShard options the manager sets itself, with what to use instead.
_MANAGED_OPTIONS = {
    "id": "shard_ids",
    "total": "shard_count",
    "session": "session_store",
    "sequence": "session_store",
    "identify_queue": "the manager's identify_queue argument",
    "resume_url": "session_store",
}
_SHARD_OPTIONS = frozenset(inspect.signature(WebsocketShard.__init__).parameters) - {"self", "token", "intents",
                                                                                   "url"}

#: Close codes after which no shard of this application can work: the manager stops.
_FATAL_FOR_APP = close_codes.FATAL


@dataclass(frozen=True)
class ShardSummary:
    """One shard, as ``ShardManager.status()`` reports it."""

    shard_id: int
    status: ShardStatus
    session_id: str | None
    sequence: int | None
    latency: float | None
    identifies: int
    resumes: int


class ShardManager(EventEmitter):
    """Holds the shards of one process.  See the README, "Many shards: ShardManager"."""

    _debug_args = (None,)  # the manager's own debug messages come with no shard id

    #: Seconds before re-opening a shard whose connection could not be made or whose
    #: session ended; doubles per failure up to ``reconnect_max_delay``.
    reconnect_base_delay = 1.0
    reconnect_max_delay = 60.0
    #: While its shards connect for the first time, the manager raises the cyclic GC's
    #: first threshold to 5 per shard, at most this; None leaves the GC alone.  A connect
    #: storm builds a large heap of long-lived objects, and CPython fully collects each
    #: time it grows by a quarter: half of the storm's CPU (bench/README.md, "Scale").
    startup_gc_threshold: Optional[int] = 50_000

    def __init__(
        self,
        *,
        token: str,
        intents: int,
        shard_ids: Iterable[int] | None = None,
        shard_count: int | None = None,
        max_concurrency: int | None = None,
        api_url: str = API_URL,
        url: str | None = None,
        identify_queue: IdentifyQueue | None = None,
        session_store: SessionStore | None = None,
        **shard_options: Any,
    ) -> None:
        for name in shard_options:
            if name in _MANAGED_OPTIONS:
                raise TypeError(f"{name!r} is set by the ShardManager for each shard; use {_MANAGED_OPTIONS[name]}")
            if name not in _SHARD_OPTIONS:
                raise TypeError(f"unknown option {name!r}; ShardManager takes its own options and every "
                                f"WebsocketShard option ({', '.join(sorted(_SHARD_OPTIONS))})")
        _check_optional_int("shard_count", shard_count, minimum=1)
        _check_optional_int("max_concurrency", max_concurrency, minimum=1)
        ids: list[int] | None = None
        if shard_ids is not None:
            if isinstance(shard_ids, (str, bytes)):
                raise TypeError("shard_ids must be an iterable of ints (e.g. range(16)), not a str")
            ids = []
            for shard_id in shard_ids:
                if isinstance(shard_id, bool) or not isinstance(shard_id, int) or shard_id < 0:
                    raise ValueError(f"shard_ids must hold ints >= 0, not {shard_id!r}")
                ids.append(shard_id)
            if not ids:
                raise ValueError("shard_ids must not be empty")
            ids = sorted(set(ids))
            if shard_count is not None and ids[-1] >= shard_count:
                raise ValueError(f"shard_ids holds {ids[-1]}, but shard ids must be below shard_count "
                                 f"({shard_count})")
        if not isinstance(api_url, str) or not api_url.strip():
            raise ValueError(f"api_url must be a non-empty str, not {api_url!r}")
        if session_store is not None and not all(callable(getattr(session_store, m, None))
                                                 for m in ("load", "save", "delete")):
            raise TypeError(f"session_store must be a SessionStore (async load/save/delete), "
                            f"not {type(session_store).__name__}")
        # Every shard option (url and identify_queue included) is checked now, by the shard
        # itself, so a bad one names itself before start() talks to Discord.
        checked: dict[str, Any] = {} if url is None else {"url": url}
        WebsocketShard(token=token, intents=intents, identify_queue=identify_queue, **checked, **shard_options)

        self._token = token
        self._intents = intents
        self._requested_ids = ids
        self._requested_count = shard_count
        self._requested_concurrency = max_concurrency
        self.api_url = api_url.strip()
        self._url = url.strip() if url is not None else None
        self.identify_queue: IdentifyQueue | None = identify_queue
        self.session_store: SessionStore = session_store if session_store is not None else MemorySessionStore()
        self._shard_options = shard_options

        self.shards: dict[int, WebsocketShard] = {}
        self.shard_count: int | None = shard_count
        self.max_concurrency: int | None = max_concurrency
        #: The /gateway/bot answer start() used (None when every number was given).
        self.gateway_info: GatewayInfo | None = None
        self._init_events()
        self._connecting: dict[int, asyncio.Task[None]] = {}
        self._attempts: dict[int, int] = {}
        self._identifies: dict[int, int] = {}
        self._resumes: dict[int, int] = {}
        self._ready_ids: set[int] = set()
        self._all_ready: asyncio.Event | None = None
        self._stopped: asyncio.Event | None = None
        self._started = False
        self._closing = False
        #: (threshold we set, the thresholds before) while the start-up GC setting is on.
        self._gc_saved: Optional[tuple[int, tuple[int, ...]]] = None
        #: The error that stopped the manager, with the shard it came from.
        self.error: ShardError | None = None
        self.error_shard: int | None = None

    # -- public state -------------------------------------------------------
    def shard_for(self, guild_id: SupportsInt | str | None) -> int:
        """The shard id that receives ``guild_id``'s events: ``(guild_id >> 22) % shard_count``."""
        if self.shard_count is None:
            raise ShardError("shard_for() needs the shard count: call start() first (or pass shard_count)")
        return shard_for(guild_id, self.shard_count)

    @property
    def latency(self) -> float | None:
        """Mean ``last_ping`` (ms) of the connected shards; None when none has one."""
        pings = [s.last_ping for s in self.shards.values()
                 if s.status == ShardStatus.CONNECTED and s.last_ping is not None]
        return sum(pings) / len(pings) if pings else None

    @property
    def identifies_spent(self) -> int:
        """IDENTIFYs sent since start() (each spent a session start)."""
        return sum(self._identifies.values())

    @property
    def session_starts_remaining(self) -> int | None:
        """What the identify queue says is left of the daily budget (None when unknown)."""
        remaining = getattr(self.identify_queue, "remaining", None)
        if callable(remaining):  # a shared queue asks its server; its last answer is the hint
            remaining = getattr(self.identify_queue, "known_remaining", None)
        return remaining if isinstance(remaining, int) else None

    def status(self) -> dict[int, ShardSummary]:
        """A summary per shard id."""
        return {sid: ShardSummary(sid, s.status, s.session_id, s.sequence, s.last_ping,
                                  self._identifies.get(sid, 0), self._resumes.get(sid, 0))
                for sid, s in self.shards.items()}

    def __repr__(self) -> str:
        connected = sum(1 for s in self.shards.values() if s.status == ShardStatus.CONNECTED)
        return f"<ShardManager shards={len(self.shards)} connected={connected} shard_count={self.shard_count}>"

    # -- events (on/once/off come from EventEmitter) ----------------------
    def events(self) -> AsyncIterator[tuple[int, dict[str, Any]]]:
        """Every dispatch of every shard as ``(shard_id, payload)``, in each shard's order.

        Ends when ``close()`` is called; raises the error that stopped the manager.
        """
        stream: EventStream[tuple[int, dict[str, Any]]] = EventStream(self)
        if self.error is not None:
            stream._put(self.error)
        return stream

    # -- lifecycle ----------------------------------------------------------
    async def start(self) -> None:
        """Fetch /gateway/bot (unless every number was given), create the shards, schedule their connections.

        Returns without waiting for READY (see ``wait_ready``).  Raises
        ``GatewayLookupError`` when the REST API refuses or cannot be
        reached, ``SessionStartLimitError`` before spending anything when the
        daily budget cannot identify every shard that has no stored session.
        """
        if self._started:
            raise ShardError("start() was already called; create a new ShardManager to start again")
        self._started = True
        self._all_ready = asyncio.Event()
        self._stopped = asyncio.Event()
        try:
            await self._start()
        except BaseException:
            self._started = False
            raise

    async def _start(self) -> None:
        info: GatewayInfo | None = None
        if self._requested_count is None or self._requested_concurrency is None or self._url is None:
            info = await fetch_gateway_bot(self._token, api_url=self.api_url)
            self.gateway_info = info
        shard_count = self._requested_count or (info.shards if info else 1)
        max_concurrency = self._requested_concurrency or (info.max_concurrency if info else None) or 1
        url = self._url or (info.url if info else None)
        assert url is not None
        ids = self._requested_ids if self._requested_ids is not None else list(range(shard_count))
        if ids[-1] >= shard_count:
            raise ValueError(f"shard_ids holds {ids[-1]}, but GET /gateway/bot says shard_count is {shard_count}: "
                             "pass shard_count, or shard ids below it")
        self.shard_count = shard_count
        self.max_concurrency = max_concurrency
        if self.identify_queue is None:
            self.identify_queue = LocalIdentifyQueue(max_concurrency)

        stored = await self._load_sessions(ids)
        resumable = {sid: s for sid, s in stored.items() if s.shard_count == shard_count}
        for sid in stored.keys() - resumable.keys():
            # Made for another shard count: Discord would route other guilds to it. Identify afresh.
            await self.session_store.delete(sid)
        must_identify = len(ids) - len(resumable)
        if info is not None and info.session_start_remaining is not None:
            remaining = info.session_start_remaining
            reset_after = (info.session_start_reset_after_ms or 0) / 1000.0
            if must_identify > remaining:
                raise SessionStartLimitError(remaining, reset_after, needed=must_identify)
            set_budget = getattr(self.identify_queue, "set_budget", None)
            if callable(set_budget):
                total = info.session_start_total if info.session_start_total is not None else remaining
                result = set_budget(total, remaining, reset_after)
                if inspect.isawaitable(result):
                    await result

        self._relax_gc(len(ids))  # before creating the shards: that is part of the storm
        for sid in ids:
            session = resumable.get(sid)
            shard = WebsocketShard(
                token=self._token, intents=self._intents, id=sid, total=shard_count, url=url,
                session=session.session_id if session else None,
                sequence=(session.sequence or 0) if session else 0,
                resume_url=session.resume_url if session else None,
                identify_queue=self.identify_queue, **self._shard_options)
            self._bind(shard)
            self.shards[sid] = shard
        self._emit("debug", None, f"starting {len(ids)} shards of {shard_count} (max_concurrency "
                                  f"{max_concurrency}): {len(resumable)} resume, {must_identify} identify")
        for sid in ids:
            self._schedule_connect(sid, delay=0.0)

    def _relax_gc(self, shards: int) -> None:
        limit = self.startup_gc_threshold
        before = gc.get_threshold()
        wanted = min(limit, 5 * shards) if limit is not None else 0
        if wanted > before[0]:
            gc.set_threshold(wanted, *before[1:])
            self._gc_saved = (wanted, before)

    def _restore_gc(self) -> None:
        saved, self._gc_saved = self._gc_saved, None
        # Unless someone set thresholds of their own meanwhile.
        if saved is not None and gc.get_threshold()[0] == saved[0]:
            gc.set_threshold(*saved[1])

    async def _load_sessions(self, ids: list[int]) -> dict[int, SessionInfo]:
        load_all = getattr(self.session_store, "load_all", None)
        if callable(load_all):
            every = await load_all()
            return {sid: every[sid] for sid in ids if sid in every}
        found = await asyncio.gather(*(self.session_store.load(sid) for sid in ids))
        return {sid: info for sid, info in zip(ids, found) if info is not None}

    async def wait_ready(self, timeout: float | None = None) -> None:
        """Wait until every shard has been READY or RESUMED since start().

        Raises the error that stopped the manager, if one did, and
        ``TimeoutError`` after ``timeout`` seconds.
        """
        if not self._started or self._all_ready is None or self._stopped is None:
            raise ShardError("call start() before wait_ready()")
        ready = asyncio.ensure_future(self._all_ready.wait())
        stopped = asyncio.ensure_future(self._stopped.wait())
        try:
            done, _ = await asyncio.wait({ready, stopped}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            ready.cancel()
            stopped.cancel()
        if self.error is not None:
            raise self.error
        if not done:
            waiting = sorted(set(self.shards) - self._ready_ids)
            raise TimeoutError(f"{len(waiting)} shards were not ready within {timeout} s: "
                               f"{_id_list(waiting)}")
        if self._stopped.is_set() and not self._all_ready.is_set():
            raise ShardError("the manager was closed before every shard was ready")

    async def send(self, shard_id: int, payload: dict[str, Any]) -> None:
        """``WebsocketShard.send`` on shard ``shard_id`` (same checks and errors)."""
        shard = self.shards.get(shard_id)
        if shard is None:
            raise ValueError(f"no shard {shard_id!r} in this manager (it holds {_id_list(sorted(self.shards))})")
        await shard.send(payload)

    async def close(self) -> None:
        """Close every shard resumably (code 4900) and save every session."""
        if self._closing:
            return
        self._closing = True
        await self._shutdown()
        self._end_streams(EventStream.END)

    async def _shutdown(self, keep: Optional[int] = None) -> None:
        self._restore_gc()
        for task in list(self._connecting.values()):
            task.cancel()
        self._connecting.clear()
        await asyncio.gather(*(s.close() for sid, s in self.shards.items() if sid != keep),
                             return_exceptions=True)
        current = asyncio.current_task()
        pending = [t for t in self._tasks if not t.done() and t is not current]
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        await self._save_all()
        if self._stopped is not None:
            self._stopped.set()

    async def _save_all(self) -> None:
        assert self.shard_count is not None or not self.shards
        infos = {sid: SessionInfo(s.session_id, s.sequence, s.resume_url, self.shard_count or 1)
                 for sid, s in self.shards.items() if s.session_id is not None}
        if not infos:
            return
        save_many = getattr(self.session_store, "save_many", None)
        if callable(save_many):
            await save_many(infos)
        else:
            await asyncio.gather(*(self.session_store.save(sid, info) for sid, info in infos.items()))

    async def __aenter__(self) -> ShardManager:
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    # -- internals ----------------------------------------------------------
    def _bind(self, shard: WebsocketShard) -> None:
        sid = shard.id
        shard.on("event", functools.partial(self._on_shard_event, sid))
        shard.on("ready", functools.partial(self._on_shard_ready, sid, "ready"))
        shard.on("resumed", functools.partial(self._on_shard_ready, sid, "resumed"))
        shard.on("close", functools.partial(self._on_shard_close, sid))
        shard.on("debug", functools.partial(self._emit, "debug", sid))

    def _on_shard_event(self, shard_id: int, payload: dict[str, Any]) -> None:
        # The per-dispatch hot path of a manager: one call per event and callback.
        callbacks = self._event_callbacks
        if callbacks is None:
            self._emit("event", shard_id, payload)
        else:
            for callback in callbacks:
                try:
                    result = callback(shard_id, payload)
                except Exception as exc:
                    self._callback_failed("event", callback, exc)
                    continue
                if result is not None:
                    self._schedule(result, "event", callback)
        if self._streams:
            item = (shard_id, payload)
            for ref in self._streams:
                stream = ref()
                if stream is not None:
                    stream._put(item)

    def _on_shard_ready(self, shard_id: int, name: str, data: Any) -> None:
        shard = self.shards[shard_id]
        counts = self._identifies if name == "ready" else self._resumes
        counts[shard_id] = counts.get(shard_id, 0) + 1
        self._attempts.pop(shard_id, None)
        if shard.session_id is not None and self.shard_count is not None:
            info = SessionInfo(shard.session_id, shard.sequence, shard.resume_url, self.shard_count)
            self._track(self._save(shard_id, info))
        self._ready_ids.add(shard_id)
        if self._all_ready is not None and len(self._ready_ids) >= len(self.shards):
            self._all_ready.set()
            self._restore_gc()
        self._emit(name, shard_id, data)

    async def _save(self, shard_id: int, info: SessionInfo) -> None:
        try:
            await self.session_store.save(shard_id, info)
        except Exception as exc:  # a failing store must not take the shard down; the next save retries
            self._emit("debug", shard_id, f"saving the session failed: {exc!r}")

    def _track(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_shard_close(self, shard_id: int, error: ShardError) -> None:
        if self._closing:
            return
        code = getattr(error, "code", None)
        if isinstance(error, SessionStartLimitError) or (isinstance(error, GatewayCloseError)
                                                          and code in _FATAL_FOR_APP):
            self._track(self._stop(shard_id, self._explain(error)))
            return
        if isinstance(error, InvalidSessionError):
            self._emit("debug", shard_id, f"session ended ({error}); identifying a new one through the queue")
            self._track(self.session_store.delete(shard_id))
        else:
            self._emit("debug", shard_id, f"shard stopped ({error}); connecting it again")
        self._schedule_connect(shard_id, delay=None)

    def _explain(self, error: ShardError) -> ShardError:
        code = getattr(error, "code", None)
        if code in (4010, 4011) and isinstance(error, GatewayCloseError):
            got = self.gateway_info.shards if self.gateway_info else None
            advice = ("leave shard_count=None so the ShardManager takes it from GET /gateway/bot"
                      + (f" (it recommends {got})" if got else ""))
            return GatewayCloseError(error.code, error.reason, f"{error}. ShardManager: the shard count "
                                     f"{self.shard_count} is wrong for this bot; {advice}")
        return error

    async def _stop(self, shard_id: int, error: ShardError) -> None:
        """A close no reconnect can fix: every other shard closes resumably, sessions are saved."""
        if self._closing:
            return
        self._closing = True
        self.error = error
        self.error_shard = shard_id
        self._emit("debug", shard_id, f"stopping every shard: {error}")
        if self._stopped is not None:
            self._stopped.set()  # wake wait_ready() now; the shutdown below takes a moment
        try:
            await self.session_store.delete(shard_id)  # the gateway ended that session
        except Exception as exc:
            self._emit("debug", shard_id, f"deleting the session failed: {exc!r}")
        await self._shutdown(keep=shard_id)
        self._emit("close", shard_id, error)
        self._end_streams(error)

    def _schedule_connect(self, shard_id: int, delay: float | None) -> None:
        if self._closing:
            return
        old = self._connecting.get(shard_id)
        if old is not None and not old.done():
            return
        if delay is None:
            attempt = self._attempts.get(shard_id, 0)
            self._attempts[shard_id] = attempt + 1
            ceiling = min(self.reconnect_max_delay, self.reconnect_base_delay * 2.0 ** attempt)
            delay = ceiling * (0.5 + random.random() / 2)
        task = asyncio.ensure_future(self._connect(shard_id, delay))
        self._connecting[shard_id] = task

    async def _connect(self, shard_id: int, delay: float) -> None:
        shard = self.shards[shard_id]
        try:
            while not self._closing:
                if delay:
                    await asyncio.sleep(delay)
                if self._closing or shard.status != ShardStatus.CLOSED:
                    return
                try:
                    await shard.connect()
                    return
                except ShardError as exc:
                    attempt = self._attempts.get(shard_id, 0)
                    self._attempts[shard_id] = attempt + 1
                    delay = min(self.reconnect_max_delay, self.reconnect_base_delay * 2.0 ** attempt)
                    delay *= 0.5 + random.random() / 2
                    self._emit("debug", shard_id, f"could not connect ({exc}); retrying in {delay:.2f} s")
        finally:
            if self._connecting.get(shard_id) is asyncio.current_task():
                del self._connecting[shard_id]


def _check_optional_int(name: str, value: Any, *, minimum: int) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int or None, not {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, not {value}")


def _id_list(ids: list[int], most: int = 20) -> str:
    shown = ", ".join(map(str, ids[:most]))
    return shown + (f" and {len(ids) - most} more" if len(ids) > most else "")
