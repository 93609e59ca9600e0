"""Offset commits of a subscriber (services/runtime/messaging.py OffsetCommits): throttled,
explicit, never lost at a pause, never fatal. The consumer here records what it is asked to
commit; the whole-system tests read the committed offsets from a real broker (consumer lag 0
in tests/integration/test_metrics.py)."""

from __future__ import annotations

import asyncio

from aiokafka import TopicPartition

from services.runtime.messaging import OffsetCommits


class RecordingConsumer:
    """Records the commits asked of it; the first ``failures`` of them fail."""

    def __init__(self, fail: bool = False, failures: int = 0,
                 assigned: set[TopicPartition] | None = None) -> None:
        self.commits: list[dict[TopicPartition, int]] = []
        self.failures = 10**9 if fail else failures
        self.assigned = assigned
        self.seen: set[TopicPartition] = set()

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.seen |= set(offsets)
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionError("broker away")
        self.commits.append(dict(offsets))

    def assignment(self) -> set[TopicPartition]:
        return self.seen if self.assigned is None else self.assigned


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
    """A commit the broker refuses (partition moved to another member, broker away) does not
    raise; a later message's offset of the same partition replaces the one that failed."""
    commits = OffsetCommits(interval_s=0)
    await commits.processed(RecordingConsumer(fail=True), "t", 0, 1)  # does not raise
    consumer = RecordingConsumer()
    await commits.processed(consumer, "t", 0, 2)
    assert consumer.commits == [{TopicPartition("t", 0): 3}]


async def test_a_failed_last_commit_is_tried_again_until_it_is_made(monkeypatch) -> None:
    """The last commit before a pause fails (the broker restarting, the group rebalancing):
    it is tried again after a while, twice here, and made; no other message has to arrive.
    Dropped, the group's committed offset would stay behind for good."""
    monkeypatch.setattr("services.runtime.messaging.RETRY_S", 0.05)
    consumer = RecordingConsumer(failures=2)
    commits = OffsetCommits(interval_s=0)
    await commits.processed(consumer, "t", 0, 5)
    await commits.processed(consumer, "t", 1, 9)  # (the retry already waits)
    await asyncio.sleep(0.3)
    assert consumer.commits == [{TopicPartition("t", 1): 10, TopicPartition("t", 0): 6}]


async def test_a_failed_commit_of_a_partition_no_longer_assigned_is_not_tried_again(
        monkeypatch) -> None:
    """After a rebalance took a partition away, its failed offset is not committed later
    (its new owner commits its own positions); the partitions still assigned are."""
    monkeypatch.setattr("services.runtime.messaging.RETRY_S", 0.05)
    kept, taken = TopicPartition("t", 0), TopicPartition("t", 1)
    consumer = RecordingConsumer(failures=1, assigned={kept})
    commits = OffsetCommits(interval_s=0.1)
    await commits.processed(consumer, "t", 0, 1)  # fails
    await commits.processed(consumer, "t", 1, 4)  # pending behind the interval
    await commits.flush()
    await asyncio.sleep(0.1)
    assert consumer.commits == [{kept: 2, taken: 5}]
    await asyncio.sleep(0.1)
    consumer.failures = 1
    await commits.processed(consumer, "t", 1, 5)  # fails: t/1 is no longer assigned
    await commits.processed(consumer, "t", 0, 2)  # within the interval: later
    await asyncio.sleep(0.25)
    assert consumer.commits[1:] == [{kept: 3}]


async def test_a_new_broker_log_forgets_the_offsets_of_the_old_one(monkeypatch) -> None:
    """Offsets pending (or waiting to be tried again) when the broker was restarted empty
    are positions in the old log: forget() drops them, so none is committed into the new one."""
    monkeypatch.setattr("services.runtime.messaging.RETRY_S", 0.05)
    consumer = RecordingConsumer(failures=1)
    commits = OffsetCommits(interval_s=0)
    await commits.processed(consumer, "t", 0, 500)  # fails, kept for the retry
    commits.forget()
    await asyncio.sleep(0.15)
    assert consumer.commits == []


class Broker:
    """What confirm_log sees: a broker that is away, or up with the same or a new log."""

    def __init__(self) -> None:
        self.commits: OffsetCommits | None = None
        self.away = False
        self.new_log = False
        self.asked = 0

    async def confirm_log(self) -> bool:
        self.asked += 1
        if self.away:
            raise ConnectionError("broker away")
        if self.new_log:
            self.new_log = False
            assert self.commits is not None
            self.commits.forget()  # what the host's switch to the new log does
            return True
        return False


async def test_after_a_failed_commit_the_broker_log_is_confirmed_before_committing_again(
        monkeypatch) -> None:
    """The commit failed because the broker was killed; it came back empty. The retry asks
    which log the broker has first and, a new one, commits nothing: the old log's offsets,
    committed into the new log, would point past its end and the group would skip the
    messages republished into it."""
    monkeypatch.setattr("services.runtime.messaging.RETRY_S", 0.05)
    consumer = RecordingConsumer(failures=1)
    broker = Broker()
    commits = broker.commits = OffsetCommits(interval_s=0, confirm_log=broker.confirm_log)
    broker.away = True
    await commits.processed(consumer, "t", 0, 500)  # fails, kept for the retry
    await asyncio.sleep(0.12)  # retries while the broker is away: not committed, kept
    assert broker.asked >= 1 and consumer.commits == []
    broker.away, broker.new_log = False, True
    await asyncio.sleep(0.15)
    assert consumer.commits == []
    await commits.processed(consumer, "t", 0, 3)  # read from the new log: committed at once
    assert consumer.commits == [{TopicPartition("t", 0): 4}]


async def test_after_a_failed_commit_the_same_log_gets_the_offsets_and_asking_stops(
        monkeypatch) -> None:
    """The broker was only away (the same log): the retry commits the kept offsets, and the
    next commits do not ask again (one broker round trip is all a commit costs)."""
    monkeypatch.setattr("services.runtime.messaging.RETRY_S", 0.05)
    consumer = RecordingConsumer(failures=1)
    broker = Broker()
    commits = broker.commits = OffsetCommits(interval_s=0, confirm_log=broker.confirm_log)
    await commits.processed(consumer, "t", 0, 7)  # fails
    await asyncio.sleep(0.12)
    assert consumer.commits == [{TopicPartition("t", 0): 8}] and broker.asked == 1
    await commits.processed(consumer, "t", 0, 8)
    assert consumer.commits[1:] == [{TopicPartition("t", 0): 9}] and broker.asked == 1


async def test_a_message_read_from_the_old_log_is_not_recorded_after_the_switch() -> None:
    """A batch read before the broker's log changed finishes after the switch: its offsets
    are positions in the old log and are not committed."""
    consumer = RecordingConsumer()
    commits = OffsetCommits(interval_s=0)
    generation = commits.generation  # read as the batch was handed over
    commits.forget()  # the switch happened while it was processed
    await commits.processed(consumer, "t", 0, 900, generation)
    assert consumer.commits == []
    await commits.processed(consumer, "t", 0, 0, commits.generation)
    assert consumer.commits == [{TopicPartition("t", 0): 1}]
