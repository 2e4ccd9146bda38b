"""What the third-party client tests (tests/test_compat_*.py) share: a log
recorder, polling, and the run through every simulator fault knob."""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable, Callable, Iterable, Iterator

import pytest
from fastshard.testing import GatewaySimulator, SimConnection


class LogRecorder(logging.Handler):
    """Every record of a library's logger, to find what it discarded."""

    def __init__(self, phrases: Iterable[str]) -> None:
        super().__init__(logging.DEBUG)
        self.phrases = [p.lower() for p in phrases]
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())

    def discarded(self) -> list[str]:
        return [m for m in self.messages if any(p in m.lower() for p in self.phrases)]

    def attach(self, name: str) -> Callable[[], None]:
        logger = logging.getLogger(name)
        old = logger.level
        logger.setLevel(logging.DEBUG)
        logger.addHandler(self)

        def detach() -> None:
            logger.removeHandler(self)
            logger.setLevel(old)
        return detach


def library_log(name: str, phrases: Iterable[str]) -> Any:
    """A fixture recording the ``name`` logger at DEBUG; ``phrases`` mark discarded dispatches."""
    @pytest.fixture
    def fixture() -> Iterator[LogRecorder]:
        recorder = LogRecorder(phrases)
        detach = recorder.attach(name)
        yield recorder
        detach()
    return fixture


async def wait_for(predicate: Callable[[], object], timeout: float = 5.0, what: str = "condition") -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise TimeoutError(f"{what} not reached within {timeout} s")
        await asyncio.sleep(0.01)


async def _zombie(conn: SimConnection) -> None:
    conn.ack_heartbeats = False


# Faults after which the client must RESUME the same session.
RESUME_KNOBS: dict[str, Callable[[SimConnection], Awaitable[None]]] = {
    "drop": lambda c: c.drop(),
    "reconnect": lambda c: c.reconnect(),
    "invalidate_resumable": lambda c: c.invalidate_session(True),
    "close_4000": lambda c: c.close(4000),
    "zombie": _zombie,
}


async def run_every_fault_knob(sim: GatewaySimulator, received: Callable[[int], bool]) -> None:
    """Each knob in turn, checking with ``received(message_id)`` that a message
    dispatched meanwhile reaches the client: RESUME after the RESUME_KNOBS,
    the same connection for split/fragmented messages and op 1, then a new
    session (IDENTIFY) after op 9 ``d: false``."""
    session_id = sim.connections[0].session.session_id  # type: ignore[union-attr]

    async def post(conn: SimConnection, what: str) -> None:
        message = conn.traffic.message_create()
        await conn.session.dispatch("MESSAGE_CREATE", message)  # type: ignore[union-attr]
        await wait_for(lambda: received(int(message["id"])), what=f"the message after {what}")

    for name, knob in RESUME_KNOBS.items():
        before = len(sim.connections)
        conn = sim.connections[-1]
        await knob(conn)
        # Posted while the client is away: it arrives by replay.
        message = conn.traffic.message_create()
        await conn.session.dispatch("MESSAGE_CREATE", message)  # type: ignore[union-attr]
        new = await sim.wait_connection(before, timeout=5)
        resume = await new.wait_for_op(6, timeout=5)
        assert resume["d"]["session_id"] == session_id, name
        await wait_for(lambda: received(int(message["id"])), what=f"replay after {name}")
    conn = sim.connections[-1]
    conn.split_messages, conn.fragment_frames = 3, True
    await conn.request_heartbeat()
    await post(conn, "split and fragmented messages")
    before = len(sim.connections)
    await conn.invalidate_session(False)
    new = await sim.wait_connection(before, timeout=5)
    await new.wait_for_op(2, timeout=5)
    await wait_for(lambda: new.session is not None and new.session.seq >= 1 + sim.guilds, what="a new session")
    await post(new, "a new session")
