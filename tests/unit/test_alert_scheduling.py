"""When the alert evaluator runs a tenant's rules: debounced, one round at a time, and never missing a poke.

The database work of a round is covered by the integration tests (``tests/integration/test_alerts*.py``);
here ``evaluate`` is replaced by a recorder so the scheduling itself can be timed exactly.
"""

from __future__ import annotations

import asyncio
import uuid

from app.alerts.evaluator import AlertEvaluator


class _Recording(AlertEvaluator):
    def __init__(self, round_seconds: float) -> None:
        super().__init__({}, "postgresql://unused", debounce=0.02)
        self.rounds: list[uuid.UUID] = []
        self.running = asyncio.Event()
        self._round = round_seconds

    async def evaluate(self, tenant_id: uuid.UUID) -> int:
        self.rounds.append(tenant_id)
        self.running.set()
        await asyncio.sleep(self._round)
        self.running.clear()
        return 0


async def _settle(evaluator: AlertEvaluator) -> None:
    for task in list(evaluator._due.values()):
        await task


async def test_pokes_within_the_debounce_make_one_round() -> None:
    evaluator = _Recording(round_seconds=0.01)
    tenant = uuid.uuid4()
    for _ in range(5):
        evaluator.poke(tenant)
    await _settle(evaluator)
    assert evaluator.rounds == [tenant]


async def test_a_poke_during_a_round_makes_one_more_round_after_it() -> None:
    evaluator = _Recording(round_seconds=0.2)
    tenant, other = uuid.uuid4(), uuid.uuid4()
    evaluator.poke(tenant)
    await asyncio.wait_for(evaluator.running.wait(), 5)
    evaluator.poke(tenant)  # events committed while the round reads: they must not wait for the sweep
    evaluator.poke(tenant)
    evaluator.poke(other)
    await _settle(evaluator)
    await _settle(evaluator)
    assert evaluator.rounds.count(tenant) == 2
    assert evaluator.rounds.count(other) == 1
