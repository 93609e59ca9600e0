"""Offset commits of a subscriber (services/runtime/messaging.py OffsetCommits): throttled,
explicit, never lost at a pause, never fatal. The consumer here records what it is asked to
commit; the whole-system tests read the committed offsets from a real broker (consumer lag 0
in tests/integration/test_metrics.py)."""

from __future__ import annotations

import asyncio

from aiokafka import TopicPartition

from services.runtime.messaging import OffsetCommits


class RecordingConsumer:
    def __init__(self, fail: bool = False) -> None:
        self.commits: list[dict[TopicPartition, int]] = []
        self.fail = fail

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        if self.fail:
            raise ConnectionError("broker away")
        self.commits.append(dict(offsets))


async def test_first_message_is_committed_at_once_with_the_next_offset() -> None:
    """The offset committed is the one after the processed message (where reading resumes)."""
    consumer = RecordingConsumer()
    commits = OffsetCommits(interval_s=10)
    await commits.processed(consumer, "homecare.visits", 3, 41)
    assert consumer.commits == [{TopicPartition("homecare.visits", 3): 42}]


async def test_messages_within_the_interval_share_one_commit_made_after_the_pause() -> None:
    """Within the interval nothing is committed; the last offsets of each partition are then
    committed together by the timer, without another message having to arrive."""
    consumer = RecordingConsumer()
    commits = OffsetCommits(interval_s=0.2)
    await commits.processed(consumer, "t", 0, 1)
    await commits.processed(consumer, "t", 0, 2)
    await commits.processed(consumer, "t", 1, 7)
    await commits.processed(consumer, "t", 0, 3)
    assert len(consumer.commits) == 1
    await asyncio.sleep(0.35)
    assert consumer.commits[1:] == [{TopicPartition("t", 0): 4, TopicPartition("t", 1): 8}]


async def test_flush_commits_what_is_pending_now_and_only_once() -> None:
    """Before a subscriber stops, flush() commits the pending offsets; the timer then has
    nothing left to do, and a flush with nothing pending commits nothing."""
    consumer = RecordingConsumer()
    commits = OffsetCommits(interval_s=0.2)
    await commits.processed(consumer, "t", 0, 1)
    await commits.processed(consumer, "t", 0, 2)
    await commits.flush()
    await commits.flush()
    await asyncio.sleep(0.3)
    assert consumer.commits == [{TopicPartition("t", 0): 2}, {TopicPartition("t", 0): 3}]


async def test_a_failed_commit_is_not_the_message_s_failure() -> None:
    """A commit the broker refuses (partition moved to another member, broker away) is logged
    and dropped: the messages may be read again and their tracking records skip them."""
    commits = OffsetCommits(interval_s=0)
    await commits.processed(RecordingConsumer(fail=True), "t", 0, 1)  # does not raise
    consumer = RecordingConsumer()
    await commits.processed(consumer, "t", 0, 2)
    assert consumer.commits == [{TopicPartition("t", 0): 3}]
