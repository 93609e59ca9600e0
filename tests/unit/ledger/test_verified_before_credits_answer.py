"""A visit verified while the ledger still awaits the time bank's answer to CreditsHoldRequested.

The ledger and the time bank run for real (in-memory stores, their effectively-once consumers);
the test decides when each consumer reads the visits topic and the funding topic, so the race
seen in the demo (VisitVerified read by the ledger before the time bank's CreditsReserved) is
reproduced deterministically, and hypothesis explores the other delivery orders.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts.events.visits import VisitVerified
from contracts.topics import FUNDING, VISITS
from contracts.values import FundingSource
from services.ledger.application import LedgerApplication
from services.ledger.domain.entitlement import ElderFacts
from services.ledger.domain.reservations import ReservationState
from services.runtime.consumer import ConsumedMessage, IdempotentConsumer, Outcome
from services.runtime.double_entry import Account, TransferState
from services.timebank.application import TimebankApplication
from services.timebank.domain.credits import Hold
from services.timebank.domain.rules import EarningCaps, TimebankRules
from tests.integration.ledger.conftest import (
    AREA,
    NOV,
    RecordingPublisher,
    cancelled,
    scheduled,
    verified,
)

ELDER = "E-9"  # no entitlement (aged 56): every minute is asked of the time bank
RESERVE = "funding:timebank_reserve:yiwu"
FAR = datetime.now(UTC) + timedelta(days=3650)


def _earned(person: str, minutes: int) -> VisitVerified:
    """A volunteer visit served by ``person``: the time bank credits their account."""
    return VisitVerified(service_area_id=AREA, payload={
        "visit_id": f"W-{person}", "order_id": f"O-W-{person}", "elder_id": "E-1",
        "caregiver_id": person, "caregiver_kind": "volunteer", "service_type": "welfare_check",
        "started_at": NOV - timedelta(days=2),
        "ended_at": NOV - timedelta(days=2) + timedelta(minutes=minutes),
        "actual_minutes": minutes, "planned_minutes": minutes, "confirmation": "elder_code",
        "location_verified": True})


@dataclass
class Reader:
    """One service's consumer with its own positions in the visits and funding logs."""

    app: Any
    group: str
    dlq: RecordingPublisher = field(default_factory=RecordingPublisher)
    positions: dict[str, int] = field(default_factory=lambda: {VISITS: 0, FUNDING: 0})
    delivered: list[Any] = field(default_factory=list)

    def __post_init__(self) -> None:
        handlers = {t: self.app.policy for ts in self.app.subscriptions.values() for t in ts}
        self.consumer = IdempotentConsumer(self.app, self.group, handlers, self.dlq,
                                           backoff_s=0.01, max_attempts=2)
        self.offsets = itertools.count()

    async def feed(self, event: Any) -> Outcome:
        self.delivered.append(event)
        return await self.consumer.consume(ConsumedMessage(
            topic=event.topic, partition=0, offset=next(self.offsets), key=event.key(),
            value=event.to_bytes()))


class Pipe:
    """Dispatch's visits log and the shared funding log, read by the ledger and the time bank
    each at its own pace (the funding log keeps the order the two services published in)."""

    def __init__(self) -> None:
        ledger = LedgerApplication(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
        ledger.register_elder(ELDER, AREA, ElderFacts(birth_date=date(1970, 1, 1)))
        timebank = TimebankApplication(
            env={"PERSISTENCE_MODULE": "eventsourcing.popo"},
            rules=TimebankRules(caps=EarningCaps(per_day_minutes=None,
                                                 balance_cap_minutes=None)))
        self.ledger = Reader(ledger, "homecare-ledger")
        self.timebank = Reader(timebank, "homecare-timebank")
        self.logs: dict[str, list[Any]] = {VISITS: [], FUNDING: []}
        self._relayed = {id(ledger): 0, id(timebank): 0}

    def publish(self, event: Any) -> None:
        """Dispatch publishes a visit event."""
        self.logs[VISITS].append(event)

    def _relay(self) -> None:
        """Each service's outbox appends what it stored since the last relay to the funding log."""
        for reader in (self.ledger, self.timebank):
            app = reader.app
            for n in app.process_recorder.select_notifications(self._relayed[id(app)] + 1, 10_000):
                self._relayed[id(app)] = n.id
                self.logs[FUNDING].extend(app.translate(app.mapper.to_domain_event(n)))

    async def step(self, reader: Reader, topic: str) -> bool:
        """``reader`` reads the next message of ``topic`` it subscribes to; False if none."""
        self._relay()
        log, wanted = self.logs[topic], reader.app.subscriptions[topic]
        while reader.positions[topic] < len(log):
            event = log[reader.positions[topic]]
            reader.positions[topic] += 1
            if event.type in wanted:
                assert await reader.feed(event) in (Outcome.PROCESSED, Outcome.DUPLICATE,
                                                   Outcome.UNCHANGED)
                self._relay()
                return True
        return False

    async def drain(self) -> None:
        while any([await self.step(r, t) for r in (self.ledger, self.timebank)
                   for t in (VISITS, FUNDING)]):
            pass

    def published(self, type_name: str) -> list[Any]:
        self._relay()
        return [e for e in self.logs[FUNDING] if e.type == type_name]


async def _earn_and_schedule(pipe: Pipe, credits: int, planned: int, visits: list[str],
                             oop: bool = False) -> None:
    await pipe.timebank.feed(_earned(ELDER, credits))
    for visit in visits:
        pipe.publish(scheduled(visit, planned, elder=ELDER, credits=True, oop=oop))
    for _ in visits:
        await pipe.step(pipe.ledger, VISITS)  # the ledger asks for the credits
        await pipe.step(pipe.timebank, VISITS)
    while await pipe.step(pipe.timebank, FUNDING):  # the time bank answers: not yet read
        pass


def _credit_minutes(legs: list[dict[str, Any]]) -> int:
    return sum(leg["minutes"] for leg in legs if leg["source"] == FundingSource.TIME_CREDITS)


def _assert_books_agree(pipe: Pipe, verified_visits: set[str]) -> None:
    """Both books balance; each verified visit is charged once; the credits the time bank
    redeemed for it are exactly the time-credit minutes the ledger charged, and those are all
    the credits its reservation got (up to the actual minutes); nothing is left pending."""
    ledger, timebank = pipe.ledger.app, pipe.timebank.app
    assert pipe.ledger.dlq.sent == [] and pipe.timebank.dlq.sent == []
    assert sum(ledger.trial_balance().values()) == 0
    assert timebank.trial_balance() == 0
    charged = [e.payload.visit_id for e in pipe.published("VisitCharged")]
    assert len(charged) == len(set(charged))
    total = 0
    for visit in verified_visits:
        charge = ledger.charge_for(visit)
        hold = timebank.get_or_none(Hold.create_id(visit))
        redeemed = hold.redeemed_minutes if hold is not None and hold.state == "redeemed" else 0
        assert _credit_minutes(charge.legs) == redeemed, visit
        total += redeemed
        # Credits the reservation got from the time bank pay for the visit (the elder has no
        # entitlement: credits come first), unless the reservation was rejected as a whole, or
        # expired before the verification was read (an expiry sweep ran first: the credits
        # went back, and the visit is charged without them).
        res = ledger.reservation_for(visit)
        if res.state is not ReservationState.REJECTED and res.release_reason != "expired":
            actual = next(e.payload.actual_minutes for e in pipe.logs[VISITS]
                          if e.type == "VisitVerified" and e.payload.visit_id == visit)
            assert _credit_minutes(charge.legs) == min(actual, _credit_minutes(res.legs)), visit
    reserve = ledger.get_or_none(Account.create_id(RESERVE))
    assert (reserve.balance if reserve is not None else 0) == -total
    ledger.index.catch_up()
    for transfers in ledger._transfers_by_account.values():
        for transfer_id in transfers:
            assert ledger.repository.get(transfer_id).state is not TransferState.PENDING
    for reservation_id in ledger._open_reservations:
        assert not ledger.repository.get(reservation_id).open
    timebank.index.catch_up()
    assert timebank._open_holds == {}
    for account_id in timebank._transfers_by_account:
        account: Account = timebank.repository.get(account_id)
        assert account.debits_pending == 0 and account.credits_pending == 0, account.code


async def test_credits_held_after_the_verification_was_read_still_pay_for_the_visit():
    """The demo's race: CreditsHoldRequested for 30, the visit verified and read by the ledger
    before the time bank's CreditsReserved. The charge waits for the answer, then posts 30
    time-credit minutes; the time bank redeems exactly 30 (not a hold left to expire)."""
    pipe = Pipe()
    await _earn_and_schedule(pipe, credits=60, planned=30, visits=["V1"])
    assert [e.type for e in pipe.logs[FUNDING]] == [
        "CreditsEarned", "CreditsHoldRequested", "CreditsReserved"]

    pipe.publish(verified("V1", 30, elder=ELDER))
    await pipe.step(pipe.ledger, VISITS)  # the verification overtakes the answer
    res = pipe.ledger.app.reservation_for("V1")
    assert res.state is ReservationState.AWAITING_CREDITS and res.charge_waits
    assert pipe.ledger.app.get_or_none(res.id) is not None
    assert pipe.published("VisitCharged") == []  # not settled without the answer

    await pipe.drain()
    charge = pipe.ledger.app.charge_for("V1")
    assert (charge.charged_minutes, charge.unfunded_minutes) == (30, 0)
    assert charge.legs == [{"source": "time_credits", "account_id": f"member:{AREA}:{ELDER}",
                            "minutes": 30}]
    assert pipe.ledger.app.reservation_for("V1").state is ReservationState.CHARGED
    hold = pipe.timebank.app.hold_for("V1")
    assert (hold.state, hold.redeemed_minutes, hold.released_minutes) == ("redeemed", 30, 0)
    assert pipe.timebank.app.balance(ELDER).balance_minutes == 30
    _assert_books_agree(pipe, {"V1"})


async def test_a_partial_hold_answered_late_pays_its_part_and_the_rest_is_unfunded():
    """Only 20 credits for a 30-minute visit, no out-of-pocket agreement: the answer after the
    verification rejects the reservation (nothing promised that does not exist), so nothing is
    posted from credits and the time bank releases its 20."""
    pipe = Pipe()
    await _earn_and_schedule(pipe, credits=20, planned=30, visits=["V1"])
    pipe.publish(verified("V1", 30, elder=ELDER))
    await pipe.step(pipe.ledger, VISITS)
    await pipe.drain()
    charge = pipe.ledger.app.charge_for("V1")
    assert (charge.charged_minutes, charge.unfunded_minutes) == (0, 30)
    assert pipe.timebank.app.hold_for("V1").state == "released"
    _assert_books_agree(pipe, {"V1"})


async def test_a_late_answer_completed_by_out_of_pocket_charges_both_legs():
    """20 credits held late, the elder agreed to pay the rest: 20 from credits, 10 out of
    pocket, in the funding order; the time bank redeems 20."""
    pipe = Pipe()
    await _earn_and_schedule(pipe, credits=20, planned=30, visits=["V1"], oop=True)
    pipe.publish(verified("V1", 30, elder=ELDER))
    await pipe.step(pipe.ledger, VISITS)
    await pipe.drain()
    charge = pipe.ledger.app.charge_for("V1")
    assert [(leg["source"], leg["minutes"]) for leg in charge.legs] == [
        ("time_credits", 20), ("out_of_pocket", 10)]
    assert pipe.timebank.app.hold_for("V1").redeemed_minutes == 20
    _assert_books_agree(pipe, {"V1"})


async def test_no_answer_before_the_expiry_charges_without_credits_and_the_late_answer_is_void():
    """The answer never came in time: the expiry sweep charges the verified visit with what it
    can fund without credits; the time bank's answer read afterwards changes nothing and its
    hold is released (the ledger's charge has no credit minutes)."""
    pipe = Pipe()
    await _earn_and_schedule(pipe, credits=60, planned=30, visits=["V1"], oop=True)
    pipe.publish(verified("V1", 25, elder=ELDER))
    await pipe.step(pipe.ledger, VISITS)
    assert pipe.ledger.app.expire_holds(now=FAR) == 1
    charge = pipe.ledger.app.charge_for("V1")
    assert [(leg["source"], leg["minutes"]) for leg in charge.legs] == [("out_of_pocket", 25)]
    await pipe.drain()
    assert pipe.ledger.app.charge_for("V1").legs == charge.legs
    assert pipe.timebank.app.hold_for("V1").state == "released"
    _assert_books_agree(pipe, {"V1"})


async def test_redelivered_verification_and_answer_charge_once():
    """The verification delivered twice (and a second event for the same visit) while waiting,
    the answer delivered twice: one charge, one VisitCharged, 30 credits redeemed once."""
    pipe = Pipe()
    await _earn_and_schedule(pipe, credits=60, planned=30, visits=["V1"])
    first = verified("V1", 30, elder=ELDER)
    pipe.publish(first)
    pipe.publish(first)  # redelivered by the broker
    pipe.publish(verified("V1", 30, elder=ELDER))  # dispatch said it again, a new event id
    while await pipe.step(pipe.ledger, VISITS):
        pass
    assert pipe.ledger.delivered[-2:] == [first, pipe.logs[VISITS][-1]]
    (answer,) = pipe.published("CreditsReserved")
    pipe.logs[FUNDING].append(answer)  # the answer redelivered
    await pipe.drain()
    assert len(pipe.published("VisitCharged")) == 1
    assert pipe.ledger.app.charge_for("V1").charged_minutes == 30
    assert pipe.timebank.app.hold_for("V1").redeemed_minutes == 30
    _assert_books_agree(pipe, {"V1"})


async def test_a_cancellation_read_after_the_verification_still_charges_the_visit():
    """Dispatch cancels only visits not started, but if a cancellation is read after the
    verification while the answer is awaited, the visit that took place is charged, without
    the credits (the time bank releases them on the same cancellation)."""
    pipe = Pipe()
    await _earn_and_schedule(pipe, credits=60, planned=30, visits=["V1"], oop=True)
    pipe.publish(verified("V1", 30, elder=ELDER))
    pipe.publish(cancelled("V1", elder=ELDER))
    while await pipe.step(pipe.ledger, VISITS):  # both read before the answer
        pass
    await pipe.drain()
    charge = pipe.ledger.app.charge_for("V1")
    assert [(leg["source"], leg["minutes"]) for leg in charge.legs] == [("out_of_pocket", 30)]
    _assert_books_agree(pipe, {"V1"})


READERS = st.sampled_from([("ledger", VISITS), ("ledger", FUNDING), ("timebank", VISITS),
                           ("timebank", FUNDING), ("expire", "")])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(credits=st.integers(0, 100), oop=st.booleans(),
       visits=st.lists(st.tuples(st.integers(15, 60), st.integers(0, 70)), min_size=1,
                       max_size=3),
       order=st.lists(READERS, max_size=30))
def test_whatever_the_delivery_order_credits_redeemed_equal_credits_charged(
        credits, oop, visits, order):
    """Any interleaving of the two consumers' reads of both logs (and expiry sweeps): every
    verified visit is charged once, the time bank redeems exactly the time-credit minutes the
    ledger charged, both books balance and no hold is left open."""
    async def run() -> Pipe:
        pipe = Pipe()
        await pipe.timebank.feed(_earned(ELDER, credits or 1))
        for i, (planned, _) in enumerate(visits):
            pipe.publish(scheduled(f"V{i}", planned, elder=ELDER, credits=True, oop=oop))
        for i, (_, actual) in enumerate(visits):
            pipe.publish(verified(f"V{i}", actual, elder=ELDER))
        for who, topic in order:
            if who == "expire":
                pipe.ledger.app.expire_holds(now=FAR)
            else:
                await pipe.step(pipe.ledger if who == "ledger" else pipe.timebank, topic)
        await pipe.drain()
        pipe.ledger.app.expire_holds(now=FAR)
        await pipe.drain()
        # The time bank's own sweep: a visit charged 0 minutes is never announced (no
        # VisitCharged), so its credit hold ends by the time bank's expiry, a day later.
        pipe.timebank.app.expire_holds(now=FAR)
        return pipe

    pipe = asyncio.run(run())
    _assert_books_agree(pipe, {f"V{i}" for i in range(len(visits))})
