"""Personal data at rest (issue #8): nothing readable in the stores, erasure by crypto-shredding.

Elders are registered through the real dispatch application on SQLite and on PostgreSQL, with the
event-store encryption the services run with; then the raw SQLite file and every table of the
PostgreSQL schema are read directly, looking for the elders' names, addresses and ID numbers.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from services.dispatch.api import elder_view
from services.dispatch.application import DispatchApplication
from services.dispatch.domain.alerts import AlertKind
from services.ledger.application import LedgerApplication
from services.ledger.domain.entitlement import ElderFacts
from services.runtime.cipher import cipher_env
from services.runtime.personal import ERASED
from services.runtime.settings import SharedSettings
from tests.integration.ledger.conftest import AREA, LedgerHarness, scheduled, verified

pytestmark = pytest.mark.integration

ELDERS = [
    {"elder_id": "E-1", "name": "王秀英", "address": "浙江省义乌市稠城街道宾王路88号",
     "id_number": "33078219400101123X", "phone": "13800001111", "family_phone": "13900002222"},
    {"elder_id": "E-2", "name": "Li Jianguo", "address": "12 Binwang Road, Yiwu",
     "id_number": "330782193805057654", "phone": "13800003333", "family_phone": "13900004444"},
]
SECRETS = [e[k] for e in ELDERS for k in ("name", "address", "id_number", "phone",
                                           "family_phone")]


@pytest.fixture
def env(persistence: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """The test's store plus the cipher settings every service gets from event_store_env."""
    return {**persistence, **cipher_env(SharedSettings(data_dir=tmp_path))}


@pytest.fixture
def dispatch(env: dict[str, str]) -> Iterator[DispatchApplication]:
    app = DispatchApplication(env)
    app.clock = lambda: datetime(2026, 11, 24, 2, 0, tzinfo=UTC)
    for elder in ELDERS:
        app.register_elder(**elder, service_area_id=AREA, lat=29.306, lon=120.075,
                           confirmation_code="4321")
    # An alert about an elder names them (its message is personal too), as the welfare check's
    # escalation does.
    app.save(*app._alert(AlertKind.WELFARE_ESCALATION, "E-1/test", AREA,
                         f"welfare check: {ELDERS[0]['name']} not at home; call "
                         f"{ELDERS[0]['family_phone']}", app.clock(), elder_id="E-1"))
    yield app
    app.close()


def raw_sqlite(path: str) -> bytes:
    """The database file and its write-ahead log, as bytes on disk."""
    data = Path(path).read_bytes()
    for suffix in ("-wal", "-journal"):
        side = Path(path + suffix)
        if side.exists():
            data += side.read_bytes()
    return data


def connect(env: dict[str, str]) -> psycopg.Connection:
    return psycopg.connect(host=env["POSTGRES_HOST"], port=env["POSTGRES_PORT"],
                           user=env["POSTGRES_USER"], password=env["POSTGRES_PASSWORD"] or None,
                           dbname=env["POSTGRES_DBNAME"], autocommit=True)


def raw_postgres(env: dict[str, str]) -> tuple[str, set[str]]:
    """Every row of every table in the schema, cast to text (bytea comes out as hex)."""
    schema = env["POSTGRES_SCHEMA"]
    with connect(env) as conn:
        tables = {r[0] for r in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
            (schema,))}
        text = "\n".join(
            str(row[0]) for table in sorted(tables) for row in conn.execute(
                sql.SQL("SELECT t::text FROM {} AS t").format(sql.Identifier(schema, table))))
    return text, tables


def assert_nothing_readable(env: dict[str, str]) -> None:
    if env["PERSISTENCE_MODULE"] == "eventsourcing.sqlite":
        raw = raw_sqlite(env["SQLITE_DBNAME"])
        assert len(raw) > 10_000
        for secret in SECRETS:
            assert secret.encode("utf-8") not in raw, secret
            assert secret.encode("utf-16-le") not in raw, secret
    else:
        text, tables = raw_postgres(env)
        assert {"dispatch_events", "dispatch_subject_keys"} <= tables, tables
        assert text.count("\n") >= len(ELDERS) + 1
        for secret in SECRETS:
            assert secret not in text, secret
            assert secret.encode("utf-8").hex() not in text.lower(), secret


def test_no_name_address_or_id_number_in_the_raw_store(dispatch, env):
    """After registering elders (and an alert naming one), neither the SQLite file's bytes nor
    any PostgreSQL table's rows contain a name, address, ID number or phone number, as text or
    as UTF-8 bytes; the application still reads them back, also after a restart."""
    assert_nothing_readable(env)
    again = DispatchApplication(env)
    try:
        elder = again.get_elder("E-1")
        assert (elder.name, elder.address, elder.id_number) == (
            ELDERS[0]["name"], ELDERS[0]["address"], ELDERS[0]["id_number"])
        assert ELDERS[0]["name"] in again.get_alert("welfare_escalation:E-1/test").message
    finally:
        again.close()


async def test_erasure_makes_the_elder_unreadable_and_the_ledger_still_balances(
        dispatch, env, persistence, tmp_path):
    """Visits of E-1 charged in the ledger; then E-1 is erased: the dispatch event store has no
    key for E-1 any more, so name, address, phones, ID number and the alert naming E-1 read as
    "[erased]" (after a restart too) while E-2 is intact; views still render; the ledger's trial
    balance is the same as before and sums to zero."""
    # The ledger in a store of its own, as deployed (its own file, its own schema).
    ledger_env = dict(env)
    if persistence["PERSISTENCE_MODULE"] == "eventsourcing.sqlite":
        ledger_env["SQLITE_DBNAME"] = str(tmp_path / "ledger.sqlite")
    else:
        ledger_env["POSTGRES_SCHEMA"] = env["POSTGRES_SCHEMA"] + "_ledger"
        with connect(env) as conn:
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(
                sql.Identifier(ledger_env["POSTGRES_SCHEMA"])))
    ledger = LedgerApplication(env=ledger_env)
    try:
        ledger.register_elder("E-1", AREA, ElderFacts(birth_date=datetime(1930, 1, 1).date()))
        harness = LedgerHarness(ledger)
        for visit, minutes in (("V1", 60), ("V2", 45)):
            await harness.feed(scheduled(visit, 60))
            await harness.feed(verified(visit, minutes))
        before = ledger.trial_balance()
        assert before and sum(before.values()) == 0
        used = ledger.balance("E-1", "2026-11").used_minutes
        assert used == 105

        erased = dispatch.erase_elder("E-1", by="admin:zhang")
        assert (erased.erased_by, erased.name) == ("admin:zhang", ERASED)
        dispatch.erase_elder("E-1", by="admin:zhang")  # a second request is harmless
        assert "elder:E-1" not in dispatch.subject_keys.subjects()

        after = DispatchApplication(env)
        try:
            elder = after.get_elder("E-1")
            assert elder.erased and elder.erased_by == "admin:zhang"
            assert {getattr(elder, k) for k in ("name", "address", "phone", "family_phone",
                                               "id_number")} == {ERASED}
            registered = next(e for e in after.events.get(elder.id)
                              if type(e).__qualname__ == "Elder.Registered")
            assert registered.name == ERASED  # the stored event itself no longer opens
            assert after.get_alert("welfare_escalation:E-1/test").message == ERASED
            assert after.get_elder("E-2").name == ELDERS[1]["name"]
            view = elder_view(elder)
            assert view["name"] == ERASED and view["erased"] is True
            assert [e.name for e in after.list_elders(AREA)] == [ERASED, ELDERS[1]["name"]]
        finally:
            after.close()
        assert_nothing_readable(env)

        assert ledger.trial_balance() == before
        assert ledger.balance("E-1", "2026-11").used_minutes == used
    finally:
        ledger.close()


def test_an_erased_elder_stays_erased(dispatch, env):
    """Erasure is remembered in the key store (a tombstone, on either store): registering the
    elder again is refused (409 in the API), an alert naming her later keeps nothing personal,
    and her earlier events still read as erased — no fresh key makes them fail to open."""
    from services.dispatch.domain.visits import DispatchError

    dispatch.erase_elder("E-1", by="admin:test")
    with pytest.raises(DispatchError, match="new id"):
        dispatch.register_elder(**ELDERS[0], service_area_id=AREA, lat=29.306, lon=120.075,
                                confirmation_code="4321")
    dispatch.save(*dispatch._alert(AlertKind.WELFARE_ESCALATION, "E-1/after", AREA,
                                   f"welfare check: {ELDERS[0]['name']} not at home",
                                   dispatch.clock(), elder_id="E-1"))
    again = DispatchApplication(env)
    try:
        assert again.subject_keys.is_erased("elder:E-1")
        assert "elder:E-1" not in again.subject_keys.subjects()
        assert again.get_elder("E-1").name == ERASED
        assert again.get_alert("welfare_escalation:E-1/after").message == ERASED
        assert again.get_alert("welfare_escalation:E-1/test").message == ERASED
    finally:
        again.close()
    assert_nothing_readable(env)
