"""The performance benchmarks' pure parts: percentiles, summaries, tables, the open-loop
schedule, how visits are laid out, and argument checking (no services are started)."""

from __future__ import annotations

from datetime import date

import pytest

from bench.perf import memory, pipeline, suite
from bench.perf.common import (
    latency_summary,
    markdown_table,
    open_loop_schedule,
    percentile,
    positive,
)


def test_percentile_is_nearest_rank() -> None:
    """p-th percentile = the smallest value with at least p % of the values at or below it."""
    values = list(range(1, 101))  # 1..100
    assert percentile(values, 50) == 50
    assert percentile(values, 95) == 95
    assert percentile(values, 99) == 99
    assert percentile(values, 100) == 100
    assert percentile(values, 0) == 1
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0  # unsorted input


def test_percentile_refuses_nothing_and_out_of_range() -> None:
    """No values, or a percentile outside 0..100, is an error rather than a made-up figure."""
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_latency_summary_reports_milliseconds() -> None:
    """Latencies measured in seconds are reported in ms, with count, p50/p95/p99, mean, max."""
    summary = latency_summary([0.010] * 98 + [0.200, 0.400])
    assert summary == {"count": 100, "p50_ms": 10.0, "p95_ms": 10.0, "p99_ms": 200.0,
                       "mean_ms": 15.8, "max_ms": 400.0}
    assert latency_summary([]) == {"count": 0}


def test_markdown_table_formats_cells() -> None:
    """None shows as '-', pipes are escaped, large floats lose their decimals."""
    text = markdown_table(["a", "b"], [[None, "x|y"], [1234.56, 1.25]])
    assert text.splitlines() == ["| a | b |", "| --- | --- |", "| - | x\\|y |",
                                 "| 1235 | 1.2 |"]


def test_open_loop_schedule_is_fixed_rate() -> None:
    """Requests are spaced 1/rate apart from the start, whatever the answers do."""
    assert open_loop_schedule(4, 2.0) == [0.0, 0.5, 1.0, 1.5]
    with pytest.raises(ValueError):
        open_loop_schedule(3, 0)


def test_positive_argument() -> None:
    """Rates and durations must be above zero."""
    assert positive("2.5") == 2.5
    with pytest.raises(ValueError):
        positive("0")


def test_pipeline_plan_fills_past_area_days() -> None:
    """Orders fill one area-day after another, going back from yesterday, never today."""
    plan = pipeline.Plan(areas=2, caregivers_per_area=3, visits_per_caregiver_day=2, visits=15)
    assert plan.visits_per_area_day == 6
    assert plan.days == 2  # 12 fit in a day of both areas; 15 need a second day
    orders = plan.orders(date(2026, 12, 3))
    assert len(orders) == 15
    assert orders[0] == ("bench-00", date(2026, 12, 2), 0)
    assert orders[6] == ("bench-01", date(2026, 12, 2), 0)
    assert orders[12] == ("bench-00", date(2026, 12, 1), 0)
    assert len(set(orders)) == 15


def test_pipeline_arguments() -> None:
    """Defaults are the issue's latency rate (100/s); nonsense is refused."""
    args = pipeline.parse_args([])
    assert args.latency_rate == 100.0 and args.throughput_visits > 0
    with pytest.raises(SystemExit):
        pipeline.parse_args(["--latency-rate", "0"])
    with pytest.raises(SystemExit):
        pipeline.parse_args(["--concurrency", "0"])


def test_pipeline_phase_result_measures_from_send_to_posting() -> None:
    """Latency is posting time minus send time per visit; the sustained rate is visits
    charged over the time from the first send to the last posting; unposted visits count
    as not charged."""
    out = pipeline.CheckOuts(sent={"a": 100.0, "b": 100.5, "c": 101.0}, http_s=[0.05] * 3)
    charged = {"a": 100.2, "b": 101.5}
    result = pipeline.phase_result("x", out, charged, 2.0, {"min": 1.0, "max": 2.0})
    assert result["charged"] == 2
    assert result["check_out_to_posting_ms"]["p50_ms"] == 200.0
    assert result["check_out_to_posting_ms"]["max_ms"] == 1000.0
    assert result["sustained_per_s"] == round(2 / 1.5, 1)


def test_memory_city_spreads_people_over_areas() -> None:
    """Elders and caregivers are divided into contiguous, even areas."""
    city = memory.City(elders=10, caregivers=4, areas=2)
    assert [city.area_of(i, 10) for i in range(10)] == ["area-00"] * 5 + ["area-01"] * 5
    assert city.elder_ids("area-01") == [f"E{i:05d}" for i in range(5, 10)]
    assert city.area_of(3, 4) == "area-01"


def test_memory_arguments() -> None:
    """The default size is the issue's: 10,000 elders, 500 caregivers, 30 days."""
    args = memory.parse_args([])
    assert (args.elders, args.caregivers, args.days) == (10_000, 500, 30)
    with pytest.raises(SystemExit):
        memory.parse_args(["--areas", "600"])  # more areas than caregivers


def test_suite_rows_put_targets_beside_figures() -> None:
    """The summary table shows each figure next to issue 9's target and the load average."""
    results = {
        "pipeline": {"result": {"phases": [
            {"phase": "open loop 100/s", "offered_per_s": 100.0, "charged": 10, "failures": 0,
             "sustained_per_s": 99.0, "loadavg_1min": {"min": 1.0, "max": 2.0},
             "check_out_to_posting_ms": {"p50_ms": 1.0, "p95_ms": 2.0, "p99_ms": 3.0}}]}},
        "memory": {"result": {"size": {"elders": 10, "caregivers": 2, "days": 1},
                              "build": {"visits": 4}, "loadavg_1min": {"min": 0.5, "max": 1},
                              "services": [{"service": "ledger", "rss_mb": 90,
                                            "peak_mb": 95}]}},
    }
    rows = suite.summary_rows(results)
    assert rows[0] == ["pipeline", "check-out -> posting at 100/s offered, p50 / p95 / p99",
                       "1.0 / 2.0 / 3.0 ms", "p99 <= 500 ms", "1-2"]
    assert rows[-1][0] == "memory" and rows[-1][3] == "< 300 MB" and rows[-1][4] == "0.5-1"
    assert suite.parse_args(["--only", "memory"]).parts == ["memory"]
    with pytest.raises(SystemExit):
        suite.parse_args(["--only", "nonsense"])


def test_cpu_meter_charges_a_process_its_own_work() -> None:
    """CpuMeter: the CPU a group spent since start(), per unit of work, with the total and the
    rate the machine's cores allow at that cost; a group that did nothing costs about 0."""
    import os
    import time

    from bench.perf.common import CpuMeter

    meter = CpuMeter.start({"me": [os.getpid()], "nobody": []})
    spent = time.process_time()
    while time.process_time() - spent < 0.3:  # about 0.3 s of this process's CPU
        pass
    per = meter.ms_per(10)
    assert 25 <= per["me"] <= 60  # 300 ms over 10 units, clock ticks allowing
    assert per["nobody"] == 0
    assert per["total"] == per["me"]
    assert per["cores_allow_per_s"] == pytest.approx(
        (os.cpu_count() or 1) * 10 / (per["total"] / 100), abs=0.2)


def test_cpu_meter_counts_nothing_for_a_process_that_exits_meanwhile() -> None:
    """A process of a group that has exited by the end (a PostgreSQL backend closing) takes
    its time with it: the group's figure is a floor, never below zero."""
    import subprocess
    import sys

    from bench.perf.common import CpuMeter

    busy = subprocess.Popen([sys.executable, "-c",
                             "import time\nt = time.process_time()\n"
                             "while time.process_time() - t < 0.3: pass\ninput()"],
                            stdin=subprocess.PIPE)
    try:
        while CpuMeter._measure([busy.pid])[busy.pid] < 0.25:
            pass
        meter = CpuMeter.start({"gone": [busy.pid]})
    finally:
        busy.communicate(b"\n", timeout=30)
    assert meter.ms_per(1)["gone"] == 0


def test_slowest_moments_show_whether_the_tail_is_bunched() -> None:
    """The check-in bench names the windows of sending time whose answers were slowest, in
    time order, with how many of each window's requests took over 50 ms."""
    from bench.perf.checkin_load import slowest_moments

    timeline = [(i * 0.01, 0.003) for i in range(100)]  # 1 s of quick answers
    timeline[42] = (0.42, 0.25)
    timeline[43] = (0.43, 0.06)
    timeline[71] = (0.71, 0.09)
    moments = slowest_moments(timeline, window_s=0.1, top=2)
    assert moments == [
        {"at_s": 0.4, "worst_ms": 250.0, "over_50ms": 2, "requests": 10},
        {"at_s": 0.7, "worst_ms": 90.0, "over_50ms": 1, "requests": 10}]
