"""Reading a lean route's body (croupier.lean.read_body)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from croupier.errors import TooLarge
from croupier.lean import ClientGone, read_body


def _receiver(*messages: dict[str, Any]) -> Any:
    """A receive() giving `messages`, then never returning (a server waiting on the client)."""
    queue = list(messages)

    async def receive() -> dict[str, Any]:
        if queue:
            return queue.pop(0)
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    return receive


async def test_the_announced_length_completes_the_body_without_the_closing_message() -> None:
    # granian sends the body with more_body true, then an empty closing message
    receive = _receiver({"type": "http.request", "body": b'{"a": 1}', "more_body": True})
    body = await asyncio.wait_for(read_body(receive, "8", 100, "decide"), 1.0)
    assert body == b'{"a": 1}'


async def test_chunks_are_joined_until_the_announced_length() -> None:
    receive = _receiver(
        {"type": "http.request", "body": b"abc", "more_body": True},
        {"type": "http.request", "body": b"def", "more_body": True},
    )
    assert await asyncio.wait_for(read_body(receive, "6", 100, "decide"), 1.0) == b"abcdef"


async def test_without_a_length_the_body_ends_with_more_body_false() -> None:
    receive = _receiver(
        {"type": "http.request", "body": b"abc", "more_body": True},
        {"type": "http.request", "body": b"", "more_body": False},
    )
    assert await read_body(receive, None, 100, "decide") == b"abc"
    stuck = _receiver({"type": "http.request", "body": b"abc", "more_body": True})
    with pytest.raises(TimeoutError):  # no length: the end has to be announced
        await asyncio.wait_for(read_body(stuck, None, 100, "decide"), 0.1)


async def test_too_large_and_gone() -> None:
    with pytest.raises(TooLarge, match="larger than 4 bytes"):
        await read_body(_receiver(), "5", 4, "decide")
    chunked = _receiver(
        {"type": "http.request", "body": b"abc", "more_body": True},
        {"type": "http.request", "body": b"de", "more_body": True},
    )
    with pytest.raises(TooLarge):
        await read_body(chunked, None, 4, "decide")
    with pytest.raises(ClientGone):
        await read_body(_receiver({"type": "http.disconnect"}), "3", 4, "decide")
