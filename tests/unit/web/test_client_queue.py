"""A dashboard page that stops reading costs bounded memory on the server: its queue
holds at most CLIENT_QUEUE messages, and once it overflows the page is told to
reconnect (None: the sender closes the socket) instead of being sent stale updates."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from tickvault.web.app import CLIENT_QUEUE, _Client


@given(st.integers(0, CLIENT_QUEUE * 5))
def test_a_client_that_never_reads_holds_at_most_its_queue(puts: int) -> None:
    client = _Client(ws=None)  # type: ignore[arg-type]  # no loop needed: put and get never wait
    most = 0
    for i in range(puts):
        client.put(f"delta {i}")
        most = max(most, client.queue.qsize())
    held: list[Any] = [client.queue.get_nowait() for _ in range(client.queue.qsize())]
    assert most <= CLIENT_QUEUE
    if puts <= CLIENT_QUEUE:
        assert held == [f"delta {i}" for i in range(puts)]  # nothing dropped
    else:
        assert None in held  # dropped: the page reconnects and starts from a snapshot
        assert "delta 0" not in held
