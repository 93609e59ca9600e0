"""Markdown tables from the benchmark JSON, for pasting into the README.

python -m bench.router.table bench/results/solomon-<stamp>.json [--per-instance]
python -m bench.router.table bench/results/homecare-<stamp>.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

LABELS = {"ortools": "this router (OR-Tools)", "pyvrp": "PyVRP", "vroom": "VROOM"}


def _f(v: float | int | None, spec: str = ".2f", suffix: str = "") -> str:
    return "-" if v is None else format(v, spec) + suffix


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def solomon_markdown(doc: dict, *, per_instance: bool = False) -> str:
    meta, summary = doc["meta"], doc["summary"]
    solvers: list[str] = meta["solvers"]
    v = meta.get("versions", {})
    lines = [
        f"Solomon VRPTW, {len(doc['results'])} instances, {meta['time_limit_s']:g} s per instance, "
        f"single thread, seed {meta['seed']}, fleet {meta.get('fleet')}, DIMACS distances; "
        f"OR-Tools {v.get('ortools')}, PyVRP {v.get('pyvrp')}, pyvroom {v.get('pyvroom')}; "
        f"every solution re-scored by bench/router/scoring.py.",
    ]
    load = meta.get("loadavg_1min")
    if load:
        lines.append(
            f"Machine load average during the run: {load['min']:g}-{load['max']:g} on "
            f"{meta.get('machine', {}).get('cpus')} cores; CPU priority: "
            f"{meta.get('cpu_priority') or 'normal'} (cpu share = CPU seconds / wall seconds)."
        )
    lines.append("")
    rows = []
    for s in solvers:
        b = summary["by_solver"][s]
        rows.append(
            [
                LABELS.get(s, s),
                _f(b["mean_gap_pct"], ".2f", " %"),
                _f(b["max_gap_pct"], ".2f", " %"),
                f"{b['feasible']}/{b['instances']}",
                _f(b["mean_vehicles"], ".2f"),
                _f(b["mean_seconds"], ".1f", " s"),
                _f(b["max_seconds"], ".1f", " s"),
                _f(b.get("cpu_share"), ".2f"),
            ]
        )
    lines += _table(
        [
            "solver",
            "mean gap to BKS",
            "worst gap",
            "feasible",
            "mean vehicles",
            "mean time",
            "max time",
            "cpu share",
        ],
        rows,
    )
    lines += ["", "Mean gap to BKS per instance family (feasible results):", ""]
    lines += _table(
        ["family"] + [LABELS.get(s, s) for s in solvers],
        [
            [fam]
            + [
                _f(per[s]["mean_gap_pct"], ".2f", " %")
                + (
                    ""
                    if per[s]["feasible"] == per[s]["instances"]
                    else f" ({per[s]['instances'] - per[s]['feasible']} infeasible)"
                )
                for s in solvers
            ]
            for fam, per in summary["by_family"].items()
        ],
    )
    if per_instance:
        lines += ["", "Per instance (distance / vehicles / seconds / gap; ! = infeasible):", ""]
        rows = []
        for r in doc["results"]:
            cells = [r["instance"], _f(r["bks_distance"], ".1f")]
            for s in solvers:
                x = r["solvers"][s]
                mark = "" if x["feasible"] else " !"
                cells.append(
                    f"{_f(x['distance'], '.1f')} / {_f(x['vehicles'], 'd')} / "
                    f"{_f(x['seconds'], '.1f')} / {_f(x['gap_pct'], '.2f', ' %')}{mark}"
                )
            rows.append(cells)
        lines += _table(["instance", "BKS"] + [LABELS.get(s, s) for s in solvers], rows)
    return "\n".join(lines) + "\n"


def homecare_markdown(doc: dict) -> str:
    header = [
        "day",
        "budget",
        "solve time",
        "violations",
        "dropped visits",
        "travel minutes",
        "urgent insertion p50 / p95 / p99 ms (placed)",
    ]
    rows = []
    for c in doc["cases"]:
        lat = c.get("urgent_insertion_ms") or {}
        dropped = c.get("dropped_by_priority") or {}
        by_priority = ", ".join(f"{k} {n}" for k, n in dropped.items() if n)
        urgent = "-"
        if "p50" in lat:
            urgent = " / ".join(_f(lat[k], ".1f") for k in ("p50", "p95", "p99"))
            urgent += f" ({lat['placed']}/{lat['n']})"
        rows.append(
            [
                f"{c['visits']} visits / {c['caregivers']} caregivers (seed {c['seed']})",
                _f(c.get("time_limit_s"), "g", " s"),
                "error" if "error" in c else _f(c.get("solve_seconds"), ".1f", " s"),
                _f(c.get("violations"), "d"),
                _f(c.get("dropped"), "d") + (f" ({by_priority})" if by_priority else ""),
                _f(c.get("travel_minutes"), "d"),
                urgent,
            ]
        )
    head = (
        "Generated home-care days (bench/router/homecare_gen.py), solved single-threaded; "
        "violations from routing.check(); urgent insertion into the first day's plan."
    )
    return head + "\n\n" + "\n".join(_table(header, rows)) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.router.table",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("json", type=Path)
    p.add_argument("--per-instance", action="store_true")
    args = p.parse_args(argv)
    doc = json.loads(args.json.read_text())
    if "cases" in doc:
        sys.stdout.write(homecare_markdown(doc))
    else:
        sys.stdout.write(solomon_markdown(doc, per_instance=args.per_instance))
    return 0


if __name__ == "__main__":
    sys.exit(main())
