"""Who may call the time bank's endpoints, on the real API and event store: a volunteer sees
only their own account and spends only their own credits, the auditor reads everything and
writes nothing, finance reads the banks, caregivers and elders have nothing here."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta

import httpx
import pytest
from fastapi import FastAPI

from contracts.events.visits import VisitVerified
from services.runtime.access import check_every_route_guarded, endpoints, is_public
from services.runtime.consumer import ConsumedMessage, IdempotentConsumer, Outcome
from services.runtime.http import install_error_handlers
from services.timebank.api import build_router
from services.timebank.application import NotFound, TimebankApplication
from services.timebank.domain.rules import EarningCaps, RuleError, TimebankRules
from tests.support.auth import bearer, install_test_auth

# Who gets through does not depend on the store: PostgreSQL (what runs in production) only.
pytestmark = [pytest.mark.integration,
              pytest.mark.parametrize("persistence", ["postgres"], indirect=True)]

AREA, BANK = "a1", "A"
# A volunteer's token names their time-bank person and their dispatch caregiver (the same id).
LI = bearer("volunteer", volunteer_id="V-1", caregiver_id="V-1")
WANG = bearer("volunteer", volunteer_id="V-2", caregiver_id="V-2")
AUDITOR = bearer("auditor")
START = datetime.now(UTC) - timedelta(days=1)


class NoDeadLetters:
    async def publish(self, topic: str, key: bytes, value: bytes,
                      headers: dict[str, str]) -> None:
        raise AssertionError(f"dead-lettered on {topic}: {value!r}")


def verified(visit_id: str, caregiver: str, minutes: int) -> VisitVerified:
    return VisitVerified(service_area_id=AREA, payload={
        "visit_id": visit_id, "order_id": f"O-{visit_id}", "elder_id": "E-1",
        "caregiver_id": caregiver, "caregiver_kind": "volunteer", "provider_id": None,
        "service_type": "welfare_check", "started_at": START,
        "ended_at": START + timedelta(minutes=minutes), "actual_minutes": minutes,
        "planned_minutes": 60, "confirmation": "elder_code", "location_verified": True})


@pytest.fixture
async def bank(persistence: dict[str, str]) -> AsyncIterator[
        tuple[TimebankApplication, FastAPI, httpx.AsyncClient]]:
    """Volunteers V-1 and V-2 in bank A; V-1 earned credits for visit VV-1 (through the
    consumer, as over Kafka)."""
    app = TimebankApplication(env=persistence, rules=TimebankRules(
        banks_by_area={AREA: BANK},
        caps=EarningCaps(per_day_minutes=None, balance_cap_minutes=None)))
    app.join("V-1", BANK)
    app.join("V-2", BANK)
    consumer = IdempotentConsumer(app, "homecare-timebank", {"VisitVerified": app.policy},
                                  NoDeadLetters(), backoff_s=0.01, max_attempts=1)
    event = verified("VV-1", "V-1", 90)
    outcome = await consumer.consume(ConsumedMessage(
        topic=event.topic, partition=0, offset=0, key=event.key(), value=event.to_bytes()))
    assert outcome is Outcome.PROCESSED
    assert app.balance("V-1").available_minutes > 0
    api = FastAPI()
    api.include_router(build_router(app))
    install_error_handlers(api, not_found=(NotFound,), conflict=())
    install_test_auth(api)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=api),
                                 base_url="http://t") as client:
        yield app, api, client
    app.close()


async def test_a_volunteer_sees_only_their_own_account(bank) -> None:
    """V-1 reads their account, history and tasks, not V-2's (nor an unknown person's); a
    dispatcher reads both."""
    _, _, client = bank
    for url in ("/timebank/accounts/{}", "/timebank/accounts/{}/history",
                "/timebank/volunteers/{}/tasks"):
        assert (await client.get(url.format("V-1"), headers=LI)).status_code == 200, url
        assert (await client.get(url.format("V-2"), headers=LI)).status_code == 403, url
        assert (await client.get(url.format("X-9"), headers=LI)).status_code == 403, url
        dispatcher = bearer("dispatcher", service_areas=[AREA])
        assert (await client.get(url.format("V-2"), headers=dispatcher)).status_code == 200
    r = await client.get("/timebank/accounts/V-1", headers=LI)
    assert r.json()["volunteer_id"] == "V-1" and r.json()["available_minutes"] > 0


async def test_a_volunteer_gives_only_from_their_own_account(bank) -> None:
    """V-2 cannot give V-1's credits to themselves (403, V-1's balance unchanged); V-1 can."""
    app, _, client = bank
    before = app.balance("V-1").available_minutes
    theft = {"from_person": "V-1", "to_person": "V-2", "minutes": 30, "gift_id": "G-1"}
    assert (await client.post("/timebank/gifts", json=theft, headers=WANG)).status_code == 403
    assert app.balance("V-1").available_minutes == before
    assert app.balance("V-2").available_minutes == 0
    r = await client.post("/timebank/gifts", json=theft, headers=LI)
    assert r.status_code == 201, r.text
    assert app.balance("V-2").available_minutes == 30


async def test_a_volunteer_redeems_and_withdraws_only_with_their_own_credits(bank) -> None:
    """A redemption paid from someone else's account is refused; only the redeemer may
    withdraw their redemption (an unknown one is nobody's)."""
    app, _, client = bank
    order = {"redeemer_id": "V-1", "elder_id": "E-7", "minutes": 30,
             "requested_date": (date.today() + timedelta(days=2)).isoformat(),
             "service_area_id": AREA, "beneficiary_birth_date": "1940-03-01",
             "redemption_id": "R-1"}
    assert (await client.post("/timebank/redemptions", json=order,
                              headers=WANG)).status_code == 403
    with pytest.raises(NotFound):
        app.redemption("R-1")
    r = await client.post("/timebank/redemptions", json=order, headers=LI)
    assert r.status_code == 201, r.text
    cancel = {"reason": "no longer needed", "by": "V-2"}
    for url in ("/timebank/redemptions/R-1/cancel", "/timebank/redemptions/R-404/cancel"):
        assert (await client.post(url, json=cancel, headers=WANG)).status_code == 403, url
    assert app.redemption("R-1").state == "placed"
    r = await client.post("/timebank/redemptions/R-1/cancel",
                          json={"reason": "no longer needed", "by": "V-1"}, headers=LI)
    assert r.status_code == 200 and r.json()["state"] != "placed", r.text


async def test_who_withdrew_a_redemption_is_the_caller_of_the_token(bank) -> None:
    """The withdrawal records the token's caller (role:subject), whatever name the body gives
    (and the body may give none)."""
    app, _, client = bank
    order = {"redeemer_id": "V-1", "elder_id": "E-7", "minutes": 30,
             "requested_date": (date.today() + timedelta(days=2)).isoformat(),
             "service_area_id": AREA, "beneficiary_birth_date": "1940-03-01",
             "redemption_id": "R-2"}
    li = bearer("volunteer", "li", volunteer_id="V-1", caregiver_id="V-1")
    assert (await client.post("/timebank/redemptions", json=order, headers=li)).status_code == 201
    r = await client.post("/timebank/redemptions/R-2/cancel", headers=li,
                          json={"reason": "no longer needed", "by": "the bank manager"})
    assert r.status_code == 200, r.text
    assert app.redemption("R-2").cancelled_by == "volunteer:li"


async def test_a_volunteer_reads_what_their_own_visits_earned(bank) -> None:
    """The earning of V-1's visit is V-1's (by time-bank person or by caregiver id), not V-2's;
    an unknown visit is nobody's; volunteers cannot read holds or the banks."""
    _, _, client = bank
    r = await client.get("/timebank/visits/VV-1/earning", headers=LI)
    assert r.status_code == 200 and r.json()["volunteer_id"] == "V-1"
    by_caregiver = bearer("volunteer", volunteer_id="P-77", caregiver_id="V-1")
    assert (await client.get("/timebank/visits/VV-1/earning",
                             headers=by_caregiver)).status_code == 200
    assert (await client.get("/timebank/visits/VV-1/earning", headers=WANG)).status_code == 403
    assert (await client.get("/timebank/visits/VV-9/earning", headers=LI)).status_code == 403
    assert (await client.get("/timebank/visits/VV-9/earning",
                             headers=AUDITOR)).status_code == 404
    for url in ("/timebank/visits/VV-1/hold", f"/timebank/banks/{BANK}/liability",
                "/timebank/totals"):
        assert (await client.get(url, headers=LI)).status_code == 403, url


def _url(path: str) -> str:
    values = {"person_id": "V-1", "visit_id": "VV-1", "redemption_id": "R-1", "bank_id": BANK}
    return re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], path)


async def test_the_auditor_reads_everything_and_writes_nothing(bank) -> None:
    """Every time-bank GET lets the auditor through; every write refuses them, and the
    balances are the same afterwards."""
    app, api, client = bank
    routes = [e for e in endpoints(api) if not is_public(e) and e.path.startswith("/timebank")]
    assert routes and check_every_route_guarded(api) == []
    before = (app.balance("V-1"), app.trial_balance(), app.credit_totals())
    for e in routes:
        r = await client.request(e.method, _url(e.path), headers=AUDITOR, json={})
        if e.method == "GET":
            assert r.status_code not in (401, 403), (e.method, e.path, r.text)
        else:
            assert r.status_code == 403, (e.method, e.path, r.text)
    assert (app.balance("V-1"), app.trial_balance(), app.credit_totals()) == before


async def test_finance_reads_the_banks_and_nothing_for_caregivers_or_elders(bank) -> None:
    """Finance reads liability, positions and totals but no one's account; caregiver tokens,
    and an elder's token for someone else's records, open no time-bank endpoint; no token
    gets 401."""
    _, api, client = bank
    finance = bearer("finance", service_areas=[AREA])
    for url in (f"/timebank/banks/{BANK}/liability", "/timebank/federation/positions",
                "/timebank/totals"):
        assert (await client.get(url, headers=finance)).status_code == 200, url
    assert (await client.get("/timebank/accounts/V-1", headers=finance)).status_code == 403
    refused = (bearer("caregiver", caregiver_id="V-1"), bearer("elder", elder_ids=["E-7"]))
    for e in endpoints(api):
        if is_public(e) or not e.path.startswith("/timebank"):
            continue
        for headers in refused:
            r = await client.request(e.method, _url(e.path), headers=headers, json={})
            assert r.status_code == 403, (e.method, e.path)
        assert (await client.request(e.method, _url(e.path), json={})).status_code == 401


async def test_an_elder_member_reads_and_redeems_only_their_own_credits(bank) -> None:
    """An elder who is a time-bank member (their person id among the token's elder_ids) reads
    their own account and history, redeems their own credits and withdraws that redemption;
    another member's account, credits and redemptions, and the volunteers' task lists, stay
    closed to them."""
    app, _, client = bank
    app.join("E-5", BANK, birth_date=date(1940, 3, 1))
    app.give("V-1", 60, "E-5")
    elder = bearer("elder", "E-5", elder_ids=["E-5"])
    for url in ("/timebank/accounts/{}", "/timebank/accounts/{}/history"):
        assert (await client.get(url.format("E-5"), headers=elder)).status_code == 200, url
        assert (await client.get(url.format("V-1"), headers=elder)).status_code == 403, url
    assert (await client.get("/timebank/volunteers/E-5/tasks",
                             headers=elder)).status_code == 403
    order = {"elder_id": "E-5", "minutes": 30,
             "requested_date": (date.today() + timedelta(days=2)).isoformat(),
             "service_area_id": AREA, "beneficiary_birth_date": "1940-03-01"}
    theft = {**order, "redeemer_id": "V-1", "redemption_id": "R-E1"}
    assert (await client.post("/timebank/redemptions", json=theft,
                              headers=elder)).status_code == 403
    with pytest.raises(NotFound):
        app.redemption("R-E1")
    own_credits = {**order, "redeemer_id": "E-5", "redemption_id": "R-E5"}
    r = await client.post("/timebank/redemptions", json=own_credits, headers=elder)
    assert r.status_code == 201, r.text
    app.redeem("V-1", "E-5", "companionship", 15, date.today() + timedelta(days=2), AREA,
               redemption_id="R-V1", beneficiary_birth_date=date(1940, 3, 1))
    assert (await client.post("/timebank/redemptions/R-V1/cancel", json={"reason": "x"},
                              headers=elder)).status_code == 403
    assert app.redemption("R-V1").state == "placed"
    r = await client.post("/timebank/redemptions/R-E5/cancel", json={"reason": "in hospital"},
                          headers=elder)
    assert r.status_code == 200, r.text
    assert app.redemption("R-E5").cancelled_by == "elder:E-5"


async def test_only_an_administrator_erases_a_member_and_the_account_stays(bank) -> None:
    """POST /members/{id}/erasure: refused to the member themself and to the auditor (403);
    an administrator's erases the details (name read as "[erased]", the person's key gone, no
    new details accepted), says who and when, keeps the account and its credits, and may be
    repeated; an unknown person is 404."""
    app, _, client = bank
    app.join("V-3", BANK, birth_date=date(1958, 3, 1), hardship=True, display_name="李明")
    before = app.balance("V-1").available_minutes
    for who in (LI, AUDITOR, bearer("volunteer", volunteer_id="V-3", caregiver_id="V-3")):
        assert (await client.post("/timebank/members/V-3/erasure",
                                  headers=who)).status_code == 403
    assert app.subject_keys.key("person:V-3") is not None
    admin = bearer("admin")
    r = await client.post("/timebank/members/V-3/erasure", headers=admin)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["display_name"] == "[erased]" and body["erased_by"] and body["erased_at"]
    assert app.subject_keys.key("person:V-3") is None
    member = app.member("V-3")
    assert (member.birth_date, member.hardship) == (None, False)
    again = await client.post("/timebank/members/V-3/erasure", headers=admin)
    assert again.status_code == 200 and again.json()["erased_at"] == body["erased_at"]
    assert (await client.get("/timebank/accounts/V-3", headers=admin)).status_code == 200
    assert app.balance("V-1").available_minutes == before
    with pytest.raises(RuleError):
        app.join("V-3", BANK, display_name="李明")
    assert (await client.post("/timebank/members/X-9/erasure",
                              headers=admin)).status_code == 404
