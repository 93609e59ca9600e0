"""`make bench`: event-store appends, the pipeline, check-in load and memory, one table.

Each benchmark runs in its own process (python -m bench.perf.<name> --out ...), with modest
defaults so the whole suite takes about 10-15 minutes on 2 cores; the results are merged into
one JSON file (default bench/results/bench.json) and one Markdown table with the targets of
issue 9 beside the figures and the machine's load average during each part.
Run: `python -m bench.perf.suite [--only pipeline,memory] [--out bench/results/bench.json]`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.perf.common import LoadSampler, machine, markdown_table

# Each part: its module and the modest arguments `make bench` runs it with.
PARTS: dict[str, list[str]] = {
    "appends": ["--appends", "2000", "--writers", "4"],
    "pipeline": ["--latency-rate", "100", "--latency-seconds", "10",
                 "--throughput-visits", "1000", "--areas", "6"],
    "checkin_load": ["--rate", "300", "--seconds", "10"],  # issue 9's rate, local store
    "memory": ["--elders", "10000", "--caregivers", "500", "--days", "1",
               "--visits-per-caregiver-day", "2"],
}
PIPELINE_TARGET_RATE = 500  # visits/s sustained on 2 cores
PIPELINE_TARGET_P99_MS = 500  # check-out -> posting at 100 visits/s
MEMORY_TARGET_MB = 300  # per service, 10,000 elders, 500 caregivers, a month of events


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(PARTS),
                        help="comma-separated parts (default: all): " + ", ".join(PARTS))
    parser.add_argument("--out", default="bench/results/bench.json")
    args = parser.parse_args(argv)
    args.parts = [p.strip() for p in args.only.split(",") if p.strip()]
    unknown = sorted(set(args.parts) - set(PARTS))
    if unknown:
        parser.error(f"unknown parts {unknown}; choose from {', '.join(PARTS)}")
    return args


def summary_rows(results: dict[str, Any]) -> list[list[Any]]:
    """One row per figure: part, what, measured, target, load average (pure)."""
    rows: list[list[Any]] = []

    def load(doc: dict[str, Any]) -> str:
        lo = doc.get("loadavg_1min") or {}
        return f"{lo['min']:g}-{lo['max']:g}" if lo else "-"

    appends = results.get("appends")
    if appends:
        for r in appends["result"]:
            rows.append(["appends", f"{r.get('store')}, {r.get('writers')} writer(s)",
                         f"{r.get('appends_per_s')}/s (plain insert "
                         f"{r.get('plain_inserts_per_s')}/s)", "-", load(appends)])
    pipeline = results.get("pipeline")
    if pipeline:
        for p in pipeline["result"]["phases"]:
            e2e = p["check_out_to_posting_ms"]
            if p["offered_per_s"]:
                rows.append(["pipeline", f"check-out -> posting at {p['offered_per_s']:g}/s "
                             "offered, p50 / p95 / p99",
                             f"{e2e.get('p50_ms')} / {e2e.get('p95_ms')} / {e2e.get('p99_ms')} ms",
                             f"p99 <= {PIPELINE_TARGET_P99_MS} ms", p_load(p)])
            rows.append(["pipeline", f"sustained, {p['phase']}",
                         f"{p['sustained_per_s']} visits/s ({p['charged']} charged, "
                         f"{p['failures']} failed)",
                         f">= {PIPELINE_TARGET_RATE}/s" if not p["offered_per_s"] else "-",
                         p_load(p)])
    checkin = results.get("checkin_load")
    if checkin:
        r = checkin["result"]
        rows.append(["check-in API", f"{r['store']}, {r['target_rate']:g}/s offered",
                     f"{r['achieved_rate']}/s, p50 {r['p50_ms']} / p95 {r['p95_ms']} / "
                     f"p99 {r['p99_ms']} ms, {r['failures']} failed", "-", load(checkin)])
    memory = results.get("memory")
    if memory:
        m = memory["result"]
        size = m["size"]
        for r in m["services"]:
            rows.append(["memory", f"{r['service']}: {size['elders']} elders, "
                         f"{size['caregivers']} caregivers, {m['build']['visits']} visits "
                         f"({size['days']} days)",
                         f"RSS {r['rss_mb']} MB (peak {r['peak_mb']} MB)",
                         f"< {MEMORY_TARGET_MB} MB", load(m)])
    return rows


def p_load(phase: dict[str, Any]) -> str:
    lo = phase.get("loadavg_1min") or {}
    return f"{lo['min']:g}-{lo['max']:g}" if lo else "-"


def run_part(name: str, folder: Path) -> dict[str, Any]:
    out = folder / f"{name}.json"
    load = LoadSampler.start()
    started = time.monotonic()
    completed = subprocess.run([sys.executable, "-m", f"bench.perf.{name}", *PARTS[name],
                                "--out", str(out)], check=False)
    doc: dict[str, Any] = {"args": PARTS[name], "seconds": round(time.monotonic() - started),
                           "loadavg_1min": load.summary(), "exit_code": completed.returncode}
    if out.exists():
        doc["result"] = json.loads(out.read_text(encoding="utf-8"))
    return doc


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    results: dict[str, Any] = {"machine": machine(), "parts": {}}
    with tempfile.TemporaryDirectory(prefix="homecare-bench-") as folder:
        for name in args.parts:
            print(f"bench: {name} ...", flush=True)
            results["parts"][name] = run_part(name, Path(folder))
    parts = {k: v for k, v in results["parts"].items() if "result" in v}
    m = results["machine"]
    print(f"\nmachine: {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB, Python {m['python']}, "
          f"PostgreSQL {m.get('postgresql')}")
    print(markdown_table(["part", "what", "measured", "target", "load avg (1 min)"],
                         summary_rows(parts)))
    failed = [k for k, v in results["parts"].items() if v["exit_code"] != 0]
    if failed:
        print(f"bench: failed parts: {', '.join(failed)}", file=sys.stderr)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"bench: wrote {args.out}")
    return results


if __name__ == "__main__":
    main()
