"""What-if replays of a recorded day: more caregivers never lower the on-time rate of the same
seeded day; the report is written as JSON and self-contained HTML."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from services.simulation.district import generate
from services.simulation.run import yesterday
from services.simulation.whatif import compare_runs

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("whatif")
    day = generate(4, "small", yesterday())
    (run_dir / "district.json").write_text(json.dumps(day.to_json(), ensure_ascii=False),
                                           encoding="utf-8")
    return asyncio.run(compare_runs(run_dir, ["baseline", "two_more_caregivers"],
                                    dispatch_only=True, progress=lambda _: None,
                                    plan_time_limit_s=1.0))


def test_more_caregivers_never_lower_the_on_time_rate(report):
    """The same day with two more caregivers is on time at least as often, and every visit
    still ends done, cancelled or missed."""
    base, more = report["summaries"]["baseline"], report["summaries"]["two_more_caregivers"]
    assert more["caregivers"] == base["caregivers"] + 2
    assert more["on_time_rate"] >= base["on_time_rate"]
    assert more["unassigned_orders"] <= base["unassigned_orders"]
    for s in (base, more):
        assert s["invariants"]["done + cancelled + missed = planned"]
        assert s["visits"]["planned"] > 5


def test_report_files_are_self_contained(report):
    """report.json holds the KPI table; report.html has inline SVG charts and no external
    assets (no CDN)."""
    data = json.loads(Path(report["json"]).read_text("utf-8"))
    assert {r["kpi"] for r in data["kpis"]} >= {"on-time rate", "visits done"}
    page = Path(report["html"]).read_text("utf-8")
    assert page.count("<svg") == len(data["kpis"])
    assert "src=" not in page and "href=" not in page and "two_more_caregivers" in page
