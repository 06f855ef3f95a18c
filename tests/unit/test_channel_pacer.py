"""The per-channel pace of Slack posts: one at a time, at most one per interval, the most
urgent first, also ahead of a post that already holds the channel waiting for its turn."""

from __future__ import annotations

import asyncio
import itertools

from bot.slack.chat import ChannelPacer

INTERVAL = 0.3


async def _post(pacer: ChannelPacer, name: str, priority: int, order: list[tuple[str, float]]) -> None:
    loop = asyncio.get_running_loop()
    async with pacer.slot("C1", priority):
        order.append((name, loop.time()))


def test_posts_to_one_channel_are_spaced_by_the_interval() -> None:
    async def scenario() -> list[tuple[str, float]]:
        pacer = ChannelPacer(interval=INTERVAL)
        order: list[tuple[str, float]] = []
        await asyncio.gather(*(_post(pacer, f"p{i}", 2, order) for i in range(3)))
        return order

    order = asyncio.run(scenario())
    assert [name for name, _ in order] == ["p0", "p1", "p2"]
    gaps = [b - a for (_, a), (_, b) in itertools.pairwise(order)]
    assert all(gap >= INTERVAL * 0.95 for gap in gaps), gaps


def test_an_urgent_post_overtakes_one_waiting_for_the_channels_turn() -> None:
    async def scenario() -> list[str]:
        pacer = ChannelPacer(interval=INTERVAL)
        order: list[tuple[str, float]] = []
        await _post(pacer, "first root", 2, order)
        # Takes the free channel at once and waits out the interval holding it.
        warning = asyncio.create_task(_post(pacer, "warning root", 2, order))
        await asyncio.sleep(INTERVAL / 3)
        assert pacer.queued("C1") == 1
        digest = asyncio.create_task(_post(pacer, "digest", 0, order))
        await asyncio.gather(warning, digest)
        return [name for name, _ in order]

    assert asyncio.run(scenario()) == ["first root", "digest", "warning root"]


def test_equal_priorities_keep_their_order_when_stepping_aside() -> None:
    async def scenario() -> list[str]:
        pacer = ChannelPacer(interval=INTERVAL)
        order: list[tuple[str, float]] = []
        await _post(pacer, "first", 2, order)
        early = asyncio.create_task(_post(pacer, "warning a", 2, order))
        await asyncio.sleep(0.01)
        late = asyncio.create_task(_post(pacer, "warning b", 2, order))
        await asyncio.sleep(0.01)
        critical = asyncio.create_task(_post(pacer, "critical", 1, order))
        await asyncio.gather(early, late, critical)
        return [name for name, _ in order]

    assert asyncio.run(scenario()) == ["first", "critical", "warning a", "warning b"]
