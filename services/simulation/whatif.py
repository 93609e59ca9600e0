"""What-if: replay a recorded day under another policy and compare KPIs side by side.

The recorded day is the run directory's ``district.json``: the people, care plans, orders and the
day's noise (seeded, keyed by caregiver and visit so the same things go wrong in every replay).
Each policy replays it into a separate store (its own sub-directory, its own broker) through the
same API and simulator; the report is HTML (inline SVG bar charts, no external assets) and JSON.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from services.simulation.district import District
from services.simulation.loader import Progress
from services.simulation.run import Policy, simulate_day

POLICIES: dict[str, Policy] = {
    "baseline": Policy("baseline"),
    "entitlement_6h": Policy("entitlement_6h", entitlement_low_minutes=360,
                             notes=["the 4 h entitlement category gets 6 h a month"]),
    "two_more_caregivers": Policy("two_more_caregivers", extra_caregivers=2,
                                  notes=["two more caregivers, like the first two employed"]),
    "routing_budget_10s": Policy("routing_budget_10s", routing_time_limit_s=10.0,
                                 notes=["the daily plan may search 10 s instead of 2 s"]),
    "welfare_checks_by_staff": Policy("welfare_checks_by_staff",
                                      volunteers_do_welfare_checks=False,
                                      notes=["welfare checks by paid caregivers only"]),
}

# (label, path in the summary, unit, higher is better)
KPIS: list[tuple[str, tuple[str, ...], str, bool]] = [
    ("on-time rate", ("on_time_rate",), "%", True),
    ("visits done", ("visits", "done"), "", True),
    ("visits late", ("visits", "late"), "", False),
    ("missed / not at home", ("visits", "missed"), "", False),
    ("orders unassigned", ("unassigned_orders",), "", False),
    ("planned travel minutes", ("travel_minutes", "planned"), "min", False),
    ("actual travel minutes", ("travel_minutes", "actual"), "min", False),
    ("entitlement hours", ("ledger", "hours_by_source", "entitlement"), "h", True),
    ("time-credit hours", ("ledger", "hours_by_source", "time_credits"), "h", True),
    ("out-of-pocket hours", ("ledger", "hours_by_source", "out_of_pocket"), "h", False),
    ("unfunded minutes", ("ledger", "unfunded_minutes"), "min", False),
    ("credits earned (min)", ("timebank", "credited_minutes"), "min", True),
    ("alerts", ("alerts", "total"), "", False),
]


def kpi(summary: dict[str, Any], path: tuple[str, ...]) -> float | None:
    value: Any = summary
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key, 0 if key != path[0] and isinstance(value, dict) else None)
    return None if value is None else float(value)


def kpi_table(summaries: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for label, path, unit, better_high in KPIS:
        values = {name: kpi(s, path) for name, s in summaries.items()}
        if all(v is None for v in values.values()):
            continue
        rows.append({"kpi": label, "unit": unit, "higher_is_better": better_high,
                     "values": values})
    return rows


async def compare_runs(run_dir: Path, policy_names: list[str], out_dir: Path | None = None, *,
                       dispatch_only: bool = False, progress: Progress = print,
                       plan_time_limit_s: float = 2.0) -> dict[str, Any]:
    """Replay ``run_dir``'s day under each policy; write and return the comparison."""
    district = District.from_json(json.loads((run_dir / "district.json").read_text("utf-8")))
    out_dir = out_dir or run_dir / "whatif"
    out_dir.mkdir(parents=True, exist_ok=True)
    services = ("dispatch",) if dispatch_only else ("dispatch", "ledger", "timebank")
    summaries: dict[str, dict[str, Any]] = {}
    for name in policy_names:
        progress(f"what-if: replaying {district.day} under {name}")
        summaries[name] = await simulate_day(
            district, out_dir / name, policy=POLICIES[name], services=services,
            broker=not dispatch_only, progress=lambda _t: None,
            plan_time_limit_s=plan_time_limit_s)
    rows = kpi_table(summaries)
    report = {"date": district.day.isoformat(), "service_area_id": district.service_area_id,
              "seed": district.seed, "size": district.size, "policies": {
                  n: {"notes": POLICIES[n].notes, "invariants": summaries[n]["invariants"]}
                  for n in policy_names}, "kpis": rows, "summaries": summaries}
    json_path = out_dir / "report.json"
    html_path = out_dir / "report.html"
    json_path.write_text(json.dumps(report, ensure_ascii=False, indent=1), encoding="utf-8")
    html_path.write_text(render_html(report), encoding="utf-8")
    return {**report, "json": str(json_path), "html": str(html_path),
            "text": render_text(rows, policy_names)}


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "%":
        return f"{value:.0%}"
    return f"{value:g}"


def render_text(rows: list[dict[str, Any]], names: list[str]) -> str:
    width = max(12, *(len(n) for n in names))
    lines = ["KPI".ljust(26) + "".join(n.rjust(width + 2) for n in names)]
    for row in rows:
        lines.append(row["kpi"].ljust(26) + "".join(
            _fmt(row["values"].get(n), row["unit"]).rjust(width + 2) for n in names))
    return "\n".join(lines)


COLOURS = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#b07aa1"]


def bar_chart(row: dict[str, Any], names: list[str]) -> str:
    """One KPI as horizontal bars, one per policy (inline SVG)."""
    values = [row["values"].get(n) for n in names]
    top = max((v for v in values if v is not None), default=0) or 1
    bar_h, gap, left, width = 18, 6, 190, 300
    height = len(names) * (bar_h + gap) + 8
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + width + 80}" '
             f'height="{height}" role="img" aria-label="{html.escape(row["kpi"])}">']
    for i, (name, value) in enumerate(zip(names, values, strict=True)):
        y = 4 + i * (bar_h + gap)
        w = 0 if value is None else max(1, round(width * value / top))
        parts.append(f'<text x="{left - 6}" y="{y + 13}" text-anchor="end" '
                     f'font-size="12">{html.escape(name)}</text>')
        parts.append(f'<rect x="{left}" y="{y}" width="{w}" height="{bar_h}" '
                     f'fill="{COLOURS[i % len(COLOURS)]}"/>')
        parts.append(f'<text x="{left + w + 4}" y="{y + 13}" font-size="12">'
                     f'{html.escape(_fmt(value, row["unit"]))}</text>')
    parts.append("</svg>")
    return "".join(parts)


def render_html(report: dict[str, Any]) -> str:
    names = list(report["policies"])
    head = "".join(f"<th>{html.escape(n)}</th>" for n in names)
    body = []
    for row in report["kpis"]:
        values = [row["values"].get(n) for n in names]
        known = [v for v in values if v is not None]
        best = (max(known) if row["higher_is_better"] else min(known)) if known else None
        cells = "".join(
            f'<td class="{"best" if v is not None and v == best and len(set(known)) > 1 else ""}'
            f'">{_fmt(v, row["unit"])}</td>' for v in values)
        body.append(f"<tr><th>{html.escape(row['kpi'])}</th>{cells}</tr>")
    charts = "".join(f"<figure><figcaption>{html.escape(r['kpi'])}</figcaption>"
                     f"{bar_chart(r, names)}</figure>" for r in report["kpis"])
    notes = "".join(f"<li><b>{html.escape(n)}</b>: "
                    f"{html.escape('; '.join(p['notes']) or 'the day as recorded')}"
                    + ("" if all(p["invariants"].values()) else " (an invariant broke)")
                    + "</li>" for n, p in report["policies"].items())
    return f"""<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8">
<title>What-if {html.escape(report['service_area_id'])} {report['date']}</title>
<style>
body {{ font-family: system-ui, "PingFang SC", "Noto Sans CJK SC", sans-serif; margin: 2rem;
       color: #222; }}
table {{ border-collapse: collapse; margin: 1rem 0; }}
th, td {{ border: 1px solid #ccc; padding: .3rem .6rem; text-align: right; }}
tbody th {{ text-align: left; font-weight: normal; }}
td.best {{ background: #e6f4ea; font-weight: bold; }}
figure {{ display: inline-block; margin: .5rem 1rem .5rem 0; }}
figcaption {{ font-weight: bold; margin-bottom: .2rem; }}
</style></head><body>
<h1>What-if 情景对比: {html.escape(report['service_area_id'])}, {report['date']}</h1>
<p>The same recorded day (seed {report['seed']}, {html.escape(str(report['size']))}: the same
people, orders and mishaps) replayed under each policy into its own store.</p>
<ul>{notes}</ul>
<table><thead><tr><th>KPI</th>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>
{charts}
</body></html>
"""
