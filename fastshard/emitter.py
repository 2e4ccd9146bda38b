"""Event callbacks and ``async for`` streams, shared by WebsocketShard and ShardManager.

A shard calls ``callback(value)``; a manager calls ``callback(shard_id,
value)``: the bookkeeping is the same, only the arguments differ, so
``_emit`` passes them through as they come.
"""
from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import weakref
from typing import Any, Callable, Generic, Optional, TypeVar, overload

__all__ = ["EventEmitter", "EventStream", "EVENT_NAMES"]

log = logging.getLogger("fastshard")

EVENT_NAMES = frozenset({"ready", "resumed", "event", "close", "debug"})

Callback = Callable[..., Any]
F = TypeVar("F", bound=Callback)
T = TypeVar("T")


class EventStream(Generic[T]):
    """Every item put in, in order, none dropped; ends with ``END`` or raises an exception put in."""

    END = object()

    def __init__(self, owner: EventEmitter) -> None:
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._done = False
        # A weak reference: an iterator the user dropped must not keep collecting events.
        owner._streams.append(weakref.ref(self, owner._forget_stream))

    def _put(self, item: Any) -> None:
        self._queue.put_nowait(item)

    def __aiter__(self) -> EventStream[T]:
        return self

    async def __anext__(self) -> T:
        if self._done:
            raise StopAsyncIteration
        item = await self._queue.get()
        if item is EventStream.END:
            self._done = True
            raise StopAsyncIteration
        if isinstance(item, BaseException):
            self._done = True
            raise item
        return item  # type: ignore[no-any-return]


class EventEmitter:
    """``on``/``once``/``off`` over the five event names, with the hot-path cache for ``event``."""

    #: What a debug message is emitted with before the message itself: () for a shard,
    #: (None,) for the manager's own messages (no shard id).
    _debug_args: tuple[Any, ...] = ()

    def _init_events(self) -> None:
        self._listeners: dict[str, list[list[Any]]] = {name: [] for name in EVENT_NAMES}
        # The "event" callbacks as a tuple while none of them is a once(): the
        # hot path calls them without walking the entries.  None otherwise.
        self._event_callbacks: Optional[tuple[Callback, ...]] = ()
        self._streams: list[weakref.ref[EventStream[Any]]] = []
        self._tasks: set[asyncio.Future[Any]] = set()

    @overload
    def on(self, name: str) -> Callable[[F], F]: ...
    @overload
    def on(self, name: str, callback: F) -> F: ...

    def on(self, name: str, callback: Optional[Callback] = None) -> Any:
        """Call ``callback`` on every ``name`` event; usable as a decorator (``@x.on("event")``)."""
        return self._add_listener(name, callback, once=False)

    @overload
    def once(self, name: str) -> Callable[[F], F]: ...
    @overload
    def once(self, name: str, callback: F) -> F: ...

    def once(self, name: str, callback: Optional[Callback] = None) -> Any:
        """Call ``callback`` on the next ``name`` event only."""
        return self._add_listener(name, callback, once=True)

    def off(self, name: str, callback: Callback) -> None:
        """Remove ``callback`` from ``name`` (registered with on() or once())."""
        check_event_name(name)
        self._listeners[name][:] = [e for e in self._listeners[name] if e[0] is not callback and e[0] != callback]
        self._listeners_changed()

    def _listeners_changed(self) -> None:
        entries = self._listeners["event"]
        self._event_callbacks = None if any(once for _, once in entries) else tuple(cb for cb, _ in entries)

    def _add_listener(self, name: str, callback: Optional[Callback], once: bool) -> Any:
        check_event_name(name)
        if callback is None:
            def decorator(func: F) -> F:
                self._add_listener(name, func, once)
                return func
            return decorator
        if not callable(callback):
            raise TypeError(f"callback must be callable, not {type(callback).__name__}")
        self._listeners[name].append([callback, once])
        self._listeners_changed()
        return callback

    def _emit(self, name: str, *args: Any) -> None:
        entries = self._listeners[name]
        if not entries:
            if name == "debug":
                log.debug("%r: %s", self, args[-1])
            return
        for entry in tuple(entries):
            callback, once = entry
            if once:
                try:
                    entries.remove(entry)
                except ValueError:
                    continue  # removed meanwhile by off() or an earlier emit
                self._listeners_changed()
            try:
                result = callback(*args)
            except Exception as exc:
                self._callback_failed(name, callback, exc)
                continue
            if result is not None:
                self._schedule(result, name, callback)

    def _schedule(self, result: Any, name: str, callback: Callback) -> None:
        """What a callback returned: a coroutine (or other awaitable) runs as a task."""
        if inspect.isawaitable(result):
            # Scheduled, never awaited here: a slow handler must not stall the read loop.
            task = asyncio.ensure_future(result)
            self._tasks.add(task)
            task.add_done_callback(functools.partial(self._task_done, name=name, callback=callback))

    def _task_done(self, task: asyncio.Future[Any], *, name: str, callback: Callback) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._callback_failed(name, callback, task.exception())  # type: ignore[arg-type]

    def _callback_failed(self, name: str, callback: Callback, exc: BaseException) -> None:
        message = f"{name!r} callback {getattr(callback, '__qualname__', callback)!r} raised {exc!r}"
        if name == "debug":
            log.error("%r: %s", self, message, exc_info=exc)
        else:
            self._emit("debug", *self._debug_args, message)

    def _forget_stream(self, ref: weakref.ref[EventStream[Any]]) -> None:
        try:
            self._streams.remove(ref)
        except ValueError:
            pass  # already ended

    def _end_streams(self, item: Any) -> None:
        """End every stream with ``item``: an exception to raise, or ``EventStream.END``."""
        streams, self._streams = self._streams, []
        for ref in streams:
            stream = ref()
            if stream is not None:
                stream._put(item)


def check_event_name(name: str) -> None:
    if name not in EVENT_NAMES:
        raise ValueError(f"unknown event {name!r}; events are: {', '.join(sorted(EVENT_NAMES))}")
