"""The district generator: seeded, realistic shares, consistent records; CSV/XLSX import."""

from __future__ import annotations

import json
from datetime import date

import pytest

from services.ledger.domain.entitlement import load_rule_book
from services.ledger.exports import to_csv, to_xlsx
from services.simulation.district import PAID_CARE, District, generate
from services.simulation.importer import (
    ImportProblem,
    export_rows,
    import_district,
    read_rows,
)

DAY = date(2026, 11, 23)


def test_same_seed_same_district_other_seed_other_district():
    """Generation is a pure function of seed, size and day."""
    a, b, c = generate(7, "small", DAY), generate(7, "small", DAY), generate(8, "small", DAY)
    assert a.to_json() == b.to_json()
    assert a.to_json() != c.to_json()


def test_round_trips_through_json():
    """A recorded district (what a what-if replays) reads back identical."""
    d = generate(2, "district", DAY)
    again = District.from_json(json.loads(json.dumps(d.to_json())))
    assert again.to_json() == d.to_json()


def test_population_has_the_yiwu_categories_in_realistic_shares():
    """Among all people 65+ most have no entitlement, a few percent 4 h, well under 1 % 8 h;
    among the centre's clients, entitled elders are a large minority."""
    d = generate(1, "county", DAY)
    pop = d.population_shares
    assert 0.90 < pop["none"] < 0.97
    assert 0.03 < pop["low"] < 0.09
    assert 0.001 < pop["high"] < 0.015
    clients = d.category_shares()
    assert 0.25 < clients["low"] + clients["high"] < 0.6


def test_categories_match_the_ledger_rule_for_each_elder():
    """Each elder's recorded category is what the ledger's Yiwu rule gives for the facts."""
    d = generate(4, "district", DAY)
    rules = load_rule_book()
    for e in d.elders:
        ent = rules.entitlement(e.elder_facts(), DAY.replace(day=1))
        assert (e.category, e.entitled_minutes) == (ent.category, ent.minutes)
        assert e.elder_facts().age_on(DAY) >= 65


def test_people_and_orders_are_consistent():
    """Ids are unique; orders and plans name known elders; care plans stay within the
    entitlement; employees have a provider and a certificate, volunteers neither; homes lie
    within ~10 km of the centre."""
    d = generate(5, "district", DAY)
    elders = {e.elder_id for e in d.elders}
    assert len(elders) == len(d.elders)
    assert len({c.caregiver_id for c in d.caregivers}) == len(d.caregivers)
    assert {o.elder_id for o in d.orders} <= elders
    assert len({o.order_id for o in d.orders}) == len(d.orders)
    assert sum(o.emergency for o in d.orders) == 2
    for p in d.care_plans:
        assert p.monthly_minutes == d.elder(p.elder_id).entitled_minutes > 0
    for c in d.caregivers:
        if c.kind == "employee":
            assert c.provider_id and c.certificate_expires and c.certificate_level >= 1
        else:
            assert c.provider_id is None and c.certificate_expires is None
    for e in d.elders:
        assert abs(e.lat - d.centre[0]) < 0.1 and abs(e.lon - d.centre[1]) < 0.1
    assert d.noise.sick_caregiver in {c.caregiver_id for c in d.caregivers}


def test_noise_is_stable_per_key():
    """The same visit gets the same traffic and length in every replay; long visits run over."""
    n = generate(3, "small", DAY).noise
    assert n.traffic("C-1", "V-1") == n.traffic("C-1", "V-1")
    lengths = [n.visit_length(60, f"V-{i}") for i in range(400)]
    assert max(lengths) > 75 and min(lengths) >= 54
    assert 0.05 < sum(x > 72 for x in lengths) / 400 < 0.2


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_import_of_exported_people_gives_the_same_people(tmp_path, fmt):
    """People exported in the documented format and imported again are the same people."""
    d = generate(6, "small", DAY)
    tables = export_rows(d)
    for name, rows in tables.items():
        data = to_csv(rows) if fmt == "csv" else to_xlsx({name: rows})
        (tmp_path / f"{name}.{fmt}").write_bytes(data)
    imported = import_district(tmp_path / f"elders.{fmt}", tmp_path / f"caregivers.{fmt}",
                               day=DAY, seed=6)
    assert [(e.elder_id, e.name, e.category, e.entitled_minutes, e.confirmation_code)
            for e in imported.elders] == [
        (e.elder_id, e.name, e.category, e.entitled_minutes, e.confirmation_code)
        for e in d.elders]
    assert [c.skills for c in imported.caregivers] == [c.skills for c in d.caregivers]
    assert imported.orders and imported.care_plans


def test_import_refuses_a_row_without_required_columns(tmp_path):
    """A missing required value is reported with its line."""
    path = tmp_path / "elders.csv"
    path.write_text("elder_id,name,birth_date,lat\nE-1,王秀英,1940-01-01,29.2\n",
                    encoding="utf-8")
    (tmp_path / "c.csv").write_text(
        "caregiver_id,name,provider_id,station_lat,station_lon\nC-1,刘,P-1,29.2,120.0\n",
        encoding="utf-8")
    with pytest.raises(ImportProblem, match="line 2: missing lon"):
        import_district(path, tmp_path / "c.csv", day=DAY)
    assert read_rows(tmp_path / "c.csv")[0]["provider_id"] == "P-1"


def test_one_parent_pays_with_credits_her_child_earned():
    """The credits gift goes from a volunteer to an elder without entitlement whose paid-care
    order of the day uses time credits, and it is earned by enough volunteer minutes."""
    d = generate(1, "small", DAY)
    (gift,) = d.credit_gifts
    assert gift["from"] in {v.caregiver_id for v in d.volunteers}
    assert d.elder(gift["to"]).entitled_minutes == 0
    (order,) = [o for o in d.orders if o.use_time_credits]
    assert order.elder_id == gift["to"] and order.service_type in PAID_CARE
    assert f"V-{order.order_id}" not in d.noise.not_home_visits
    assert sum(v["minutes"] for v in gift["earned_by"]) >= gift["minutes"]
    assert all(date.fromisoformat(v["day"]) < DAY for v in gift["earned_by"])
