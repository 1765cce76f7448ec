"""The one timer that ends every CONNECT read past ``connect_timeout`` (adapters/amqtt/connect.py).

Driven on a real event loop with real tasks, as patch 2 uses it: the reading task watches itself,
awaits, and asks :meth:`ConnectDeadlines.finish` whether its deadline is what cancelled it.
"""

from __future__ import annotations

import asyncio

from mqtt_licensing.adapters.amqtt.connect import ConnectDeadlines


async def read_connect(deadlines: ConnectDeadlines, reading: asyncio.Future[None]) -> str:
    task = asyncio.current_task()
    assert task is not None
    deadlines.watch(task)
    try:
        await reading
    except asyncio.CancelledError:
        if not deadlines.finish(task):
            raise
        await asyncio.sleep(0)  # after its deadline the task runs on (to answer and close its socket)
        return "deadline"
    deadlines.finish(task)
    return "read"


def test_a_connect_past_its_deadline_is_ended_and_told_so() -> None:
    async def scenario() -> str:
        deadlines = ConnectDeadlines(0.05)
        return await read_connect(deadlines, asyncio.get_running_loop().create_future())

    assert asyncio.run(scenario()) == "deadline"


def test_a_connect_read_in_time_is_never_cancelled_later() -> None:
    async def scenario() -> tuple[str, str]:
        deadlines = ConnectDeadlines(0.05)
        done = asyncio.get_running_loop().create_future()
        done.set_result(None)
        first = await read_connect(deadlines, done)
        # a second, silent socket keeps the timer ticking past the first one's deadline
        second = await read_connect(deadlines, asyncio.get_running_loop().create_future())
        return first, second

    assert asyncio.run(scenario()) == ("read", "deadline")


def test_another_cancellation_stays_a_cancellation() -> None:
    """The broker's shutdown cancelling a reading task is not mistaken for its deadline, even when
    the deadline passed too."""

    async def scenario(swept: bool) -> bool:
        deadlines = ConnectDeadlines(10.0)
        task = asyncio.create_task(read_connect(deadlines, asyncio.get_running_loop().create_future()))
        await asyncio.sleep(0)  # the task watches itself and waits for its CONNECT
        if swept:  # its deadline passes: the sweeper cancels it, and before it runs, the shutdown too
            for _ in range(ConnectDeadlines.TICKS + 1):
                deadlines._sweep()
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            return True
        return False

    assert asyncio.run(scenario(swept=False)) is True  # cancelled long before its deadline
    assert asyncio.run(scenario(swept=True)) is True  # cancelled while its deadline's cancellation is pending
