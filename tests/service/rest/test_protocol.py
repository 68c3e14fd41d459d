"""The protocol's synchronous run of an early refusal: to its end, or closed if it would wait."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from service.rest.protocol import _run_now


class _Suspends:
    """An awaitable that yields to its event loop once, as a paused transport's drain does."""

    def __await__(self) -> Generator[Any, None, None]:
        yield None


def test_a_coroutine_with_nothing_to_wait_for_runs_to_its_end_at_once():
    done = []

    async def write(part: str) -> None:  # a send that does not suspend, like uvicorn's unpaused one
        done.append(part)

    async def reply() -> None:
        await write("head")
        await write("body")

    assert _run_now(reply()) is True
    assert done == ["head", "body"]


def test_a_coroutine_that_would_wait_is_closed_not_left_half_run():
    steps = []

    async def reply() -> None:
        steps.append("head")
        try:
            await _Suspends()
            steps.append("body")
        finally:
            steps.append("closed")

    assert _run_now(reply()) is False
    assert steps == ["head", "closed"]
