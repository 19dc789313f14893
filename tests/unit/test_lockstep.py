"""The turn barrier of ``rollout.lockstep``: a turn goes when every running trajectory has asked for one, in
trajectory order, and a trajectory that ends or is cancelled no longer holds the others back."""

from __future__ import annotations

import asyncio

from tapo.rollout.lockstep import TurnBarrier


async def _trajectory(barrier: TurnBarrier, index: int, turns: int, delays: list[float], log: list) -> None:
    try:
        for turn in range(turns):
            await asyncio.sleep(delays[turn])  # a tool call of its own latency
            await barrier.turn(index)
            log.append((turn, index))
    finally:
        barrier.finish()


def test_turns_go_together_in_trajectory_order_and_finished_trajectories_stop_counting():
    async def main() -> list:
        log: list = []
        barrier = TurnBarrier(3)
        turns = [3, 1, 2]  # trajectory 1 ends after its first turn, 2 after its second
        delays = [[0.03, 0.0, 0.01], [0.0], [0.0, 0.02]]
        await asyncio.wait_for(
            asyncio.gather(*(_trajectory(barrier, i, turns[i], delays[i], log) for i in range(3))), timeout=5
        )
        return log

    assert asyncio.run(main()) == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 2), (2, 0)]


def test_a_cancelled_trajectory_does_not_hold_the_others():
    async def main() -> list:
        log: list = []
        barrier = TurnBarrier(3)
        slow = asyncio.create_task(_trajectory(barrier, 2, 2, [0.0, 10.0], log))
        others = [asyncio.create_task(_trajectory(barrier, i, 2, [0.0, 0.0], log)) for i in range(2)]
        await asyncio.sleep(0.05)  # turn 0 went; 0 and 1 now wait at turn 1 for 2, which sleeps
        slow.cancel()
        await asyncio.wait_for(asyncio.gather(*others), timeout=5)
        return log

    assert asyncio.run(main()) == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1)]


def test_a_trajectory_cancelled_while_waiting_is_not_counted_as_waiting():
    async def main() -> list:
        log: list = []
        barrier = TurnBarrier(3)
        waiting = asyncio.create_task(_trajectory(barrier, 0, 1, [0.0], log))
        await asyncio.sleep(0.01)  # 0 waits at the barrier for 1 and 2
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)
        await asyncio.wait_for(asyncio.gather(*(_trajectory(barrier, i, 1, [0.0], log) for i in (1, 2))), timeout=5)
        return log

    assert asyncio.run(main()) == [(0, 1), (0, 2)]
