"""The gateway state machine and the rate limiter, without sockets or sleeps."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from fastshard import close_codes
from fastshard.errors import GatewayCloseError, InvalidSessionError
from fastshard.gateway import Emit, Fail, GatewayState, Reconnect, Send
from fastshard.ratelimit import SlidingWindow


def make_state(**kw):
    seq = SimpleNamespace(sequence=kw.pop("sequence", None))
    defaults = dict(token="tok", intents=513, shard=(0, 1), properties={"os": "linux"}, sequence=seq,
                    rand=lambda: 0.25)
    defaults.update(kw)
    return GatewayState(**defaults), seq


def hello(ms=1000):
    return {"op": 10, "d": {"heartbeat_interval": ms}}


def test_hello_identifies_with_only_the_fields_that_are_set():
    state, _ = make_state()
    actions = state.receive(hello(), now=100.0)
    assert actions == [Send({"op": 2, "d": {"token": "tok", "intents": 513, "properties": {"os": "linux"},
                                            "shard": [0, 1], "compress": False}})]
    # first beat after interval * random()
    assert state.next_heartbeat_at == pytest.approx(100.25)

    state, _ = make_state(large_threshold=100, presence={"status": "idle"}, compress=True)
    (send,) = state.receive(hello(), 0.0)
    assert send.payload["d"]["large_threshold"] == 100
    assert send.payload["d"]["presence"] == {"status": "idle"}
    assert send.payload["d"]["compress"] is True


def test_hello_resumes_when_a_session_is_held():
    state, seq = make_state(session_id="abc", sequence=41)
    (send,) = state.receive(hello(), 0.0)
    assert send == Send({"op": 6, "d": {"token": "tok", "session_id": "abc", "seq": 41}})
    assert state.resuming


def test_heartbeats_carry_the_sequence_and_detect_zombies():
    state, seq = make_state()
    state.receive(hello(1000), 0.0)
    (beat,) = state.heartbeat_due(0.25)
    assert beat == Send({"op": 1, "d": None})
    assert state.next_heartbeat_at == pytest.approx(1.25)
    state.receive({"op": 11, "d": None}, 0.30)
    assert state.last_ping == pytest.approx(50.0)
    seq.sequence = 7
    (beat,) = state.heartbeat_due(1.25)
    assert beat.payload == {"op": 1, "d": 7}
    # no ACK before the next beat: zombie
    (action,) = state.heartbeat_due(2.25)
    assert isinstance(action, Reconnect) and action.code == close_codes.CLIENT_ZOMBIE
    assert action.code not in (1000, 1001)


def test_op1_gets_an_immediate_heartbeat_without_moving_the_schedule():
    state, seq = make_state(sequence=3)
    state.receive(hello(1000), 0.0)
    at = state.next_heartbeat_at
    assert state.receive({"op": 1, "d": None}, 0.1) == [Send({"op": 1, "d": 3})]
    assert state.next_heartbeat_at == at


def test_ready_and_resumed():
    state, _ = make_state()
    state.receive(hello(), 0.0)
    d = {"session_id": "s1", "resume_gateway_url": "wss://resume.example", "v": 10}
    assert state.receive({"op": 0, "t": "READY", "s": 1, "d": d}, 0.0) == [Emit("ready", d)]
    assert state.session_id == "s1" and state.resume_url == "wss://resume.example"
    state.connection_opened()
    state.receive(hello(), 0.0)
    state.replayed = 4
    assert state.receive({"op": 0, "t": "RESUMED", "s": 9, "d": None}, 0.0) == [Emit("resumed", {"replayed": 4})]
    assert not state.resuming


def test_op7_and_op9():
    state, seq = make_state(session_id="s", sequence=5)
    (a,) = state.receive({"op": 7, "d": None}, 0.0)
    assert isinstance(a, Reconnect)
    (a,) = state.receive({"op": 9, "d": True}, 0.0)
    assert isinstance(a, Reconnect)
    state.receive(hello(), 0.0)  # sends RESUME
    (a,) = state.receive({"op": 9, "d": False}, 0.0)
    assert isinstance(a, Fail) and isinstance(a.error, InvalidSessionError)
    assert "resume attempt was refused" in str(a.error)
    assert state.session_id is None and seq.sequence is None
    # Discord asked for a reconnect: that holds even before a session exists (it then identifies).
    fresh, _ = make_state()
    (a,) = fresh.receive({"op": 9, "d": True}, 0.0)
    assert isinstance(a, Reconnect)


@pytest.mark.parametrize("code", sorted(close_codes.FATAL))
def test_fatal_close_codes_fail_with_advice(code):
    state, _ = make_state(session_id="s", sequence=1)
    decision = state.connection_lost(code, "nope")
    assert isinstance(decision, Fail) and isinstance(decision.error, GatewayCloseError)
    assert decision.error.code == code and decision.error.reason == "nope"
    assert close_codes.CLOSE_CODES[code].advice in str(decision.error)
    assert state.session_id is None


@pytest.mark.parametrize("code", sorted(close_codes.SESSION_INVALIDATING))
def test_session_invalidating_close_codes(code):
    state, seq = make_state(session_id="s", sequence=1)
    decision = state.connection_lost(code, "")
    assert isinstance(decision, Fail) and isinstance(decision.error, InvalidSessionError)
    assert state.session_id is None and seq.sequence is None


@pytest.mark.parametrize("code", sorted(close_codes.RESUMABLE) + [None, 1000, 1001, 1006, 1011])
def test_resumable_losses_reconnect_only_with_a_session(code):
    state, _ = make_state(session_id="s", sequence=1)
    assert isinstance(state.connection_lost(code, ""), Reconnect)
    fresh, _ = make_state()
    assert isinstance(fresh.connection_lost(code, ""), Fail)


def test_bad_hello_reconnects():
    state, _ = make_state()
    (a,) = state.receive({"op": 10, "d": {"heartbeat_interval": "soon"}}, 0.0)
    assert isinstance(a, Reconnect) and a.code == close_codes.CLIENT_BAD_DATA


def test_sliding_window_counts_a_real_window():
    w = SlidingWindow(3, 10.0)
    for t in (0.0, 1.0, 2.0):
        assert w.retry_after(t) == 0.0
        w.hit(t)
    assert w.retry_after(5.0) == pytest.approx(5.0)   # the hit at 0.0 expires at 10.0
    assert w.retry_after(10.0) == 0.0
    assert w.retry_after(10.0, limit=1) == pytest.approx(2.0)  # two must expire: 1.0 and 2.0 -> at 12.0
    assert w.used(11.5) == 1
    with pytest.raises(ValueError):
        SlidingWindow(0, 1.0)
