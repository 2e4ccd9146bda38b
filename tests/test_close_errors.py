"""Every error that comes from a websocket close carries the close's ``code`` and ``reason``."""
from __future__ import annotations

import pytest

from fastshard import GatewayCloseError, InvalidSessionError, ShardStatus
from fastshard.close_codes import FATAL, SESSION_INVALIDATING


@pytest.mark.parametrize("code", sorted(SESSION_INVALIDATING | FATAL))
async def test_a_close_that_stops_the_shard_names_its_code_and_reason(sim, make_shard, code):
    shard, rec = make_shard(sim)
    await shard.connect()
    await rec.until(lambda: rec.ready, what="READY")
    await sim.connections[0].close(code, "the gateway's words")
    await rec.until(lambda: rec.closes, what="close event")
    (error,) = rec.closes
    expected = InvalidSessionError if code in SESSION_INVALIDATING else GatewayCloseError
    assert isinstance(error, expected)
    assert (error.code, error.reason) == (code, "the gateway's words")
    assert str(code) in str(error)
    assert shard.status == ShardStatus.CLOSED


async def test_op9_invalid_session_is_not_a_close(sim, make_shard):
    shard, rec = make_shard(sim)
    await shard.connect()
    await rec.until(lambda: rec.ready, what="READY")
    await sim.connections[0].invalidate_session(False)
    await rec.until(lambda: rec.closes, what="close event")
    (error,) = rec.closes
    assert isinstance(error, InvalidSessionError)
    assert (error.code, error.reason, error.resumable) == (None, "", False)
