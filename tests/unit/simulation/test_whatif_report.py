"""What-if policies and the report: pure parts (no system started)."""

from __future__ import annotations

from datetime import date

from services.simulation.district import generate
from services.simulation.run import Policy
from services.simulation.whatif import bar_chart, kpi_table, render_html, render_text


def _summary(on_time: float, done: int, entitlement: float | None = None) -> dict:
    s = {"on_time_rate": on_time, "visits": {"done": done, "late": 1, "missed": 0},
         "unassigned_orders": 0, "travel_minutes": {"planned": 50, "actual": None},
         "alerts": {"total": 3}}
    if entitlement is not None:
        s["ledger"] = {"hours_by_source": {"entitlement": entitlement}, "unfunded_minutes": 0}
    return s


def test_more_caregivers_policy_adds_distinct_employees_and_keeps_the_original():
    """The policy adds two employees with new ids (of existing providers); the recorded
    district itself is not changed."""
    d = generate(1, "small", date(2026, 11, 23))
    before = d.to_json()
    more = Policy("more", extra_caregivers=2).apply(d)
    assert d.to_json() == before
    ids = [c.caregiver_id for c in more.caregivers]
    assert len(ids) == len(set(ids)) == len(d.caregivers) + 2
    added = [c for c in more.caregivers if c.caregiver_id.startswith("C-X")]
    assert all(c.kind == "employee" and c.provider_id for c in added)
    assert Policy().apply(d).to_json() == before


def test_kpi_table_leaves_out_kpis_no_run_has_and_marks_missing_ones():
    """A KPI absent from every run is left out; absent from one run it shows as None."""
    rows = kpi_table({"a": _summary(0.8, 10), "b": _summary(0.9, 11, entitlement=4.5)})
    names = [r["kpi"] for r in rows]
    assert "credits earned (min)" not in names
    ent = next(r for r in rows if r["kpi"] == "entitlement hours")
    assert ent["values"] == {"a": None, "b": 4.5}
    on_time = next(r for r in rows if r["kpi"] == "on-time rate")
    assert on_time["values"] == {"a": 0.8, "b": 0.9} and on_time["higher_is_better"]


def test_bar_chart_scales_bars_to_the_largest_value():
    """The largest value gets the full width; others in proportion."""
    svg = bar_chart({"kpi": "visits done", "unit": "", "values": {"a": 10.0, "b": 5.0}},
                    ["a", "b"])
    assert 'width="300"' in svg and 'width="150"' in svg and svg.startswith("<svg")


def test_html_marks_the_best_policy_and_text_lists_all():
    """The best value of a KPI is highlighted in the HTML table; the text table has a column
    per policy."""
    summaries = {"baseline": _summary(0.8, 10), "more": _summary(0.9, 11)}
    rows = kpi_table(summaries)
    report = {"date": "2026-11-23", "service_area_id": "yiwu-fotang", "seed": 1,
              "size": "small", "kpis": rows,
              "policies": {n: {"notes": [], "invariants": {"x": True}} for n in summaries}}
    page = render_html(report)
    assert '<td class="best">90%</td>' in page and '<td class="">80%</td>' in page
    text = render_text(rows, ["baseline", "more"])
    assert "baseline" in text.splitlines()[0] and "90%" in text
