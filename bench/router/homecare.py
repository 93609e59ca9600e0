"""Home-care day benchmark: generated days solved by the router and checked; urgent insertion timed.

    python -m bench.router.homecare [--cases 300x40,1000x120] [--seed 1] [--time-limit S]
        [--urgent 200] [--out bench/results/homecare-<stamp>.json] [--markdown FILE]

For each case: generate the day (bench.router.homecare_gen, seeded), solve it with
services.dispatch.routing.solve, and report wall-clock solve time, violations found by
routing.check (must be 0), visits dropped by priority (with the router's reasons), travel minutes.
Then, on the first case's plan (300 visits by default), insert ``--urgent`` random emergency calls
one at a time, each into the same base plan at a random moment of the day, and report the latency
percentiles of insert_urgent, how many were placed, and check() violations of the results.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
import traceback
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from bench.router.homecare_gen import Day, emergency_visit, generate_day, h

RESULTS_DIR = Path(__file__).resolve().parents[1] / "results"
# default budget per case size; the target is a plan for 1,000 visits in at most 30 s
DEFAULT_LIMITS = {300: 10.0, 1000: 30.0}


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))  # ceil without floats drifting
    return ordered[int(rank) - 1]


def solve_case(day: Day, time_limit_s: float, seed: int) -> tuple[dict, object]:
    from services.dispatch.routing import check, solve

    problem = day.problem
    load = os.getloadavg()[0]
    t0, cpu0 = time.perf_counter(), time.process_time()
    plan = solve(problem, time_limit_s=time_limit_s, seed=seed)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    violations = check(problem, plan)
    dropped = Counter(u.priority.name for u in plan.unassigned)
    reasons = Counter(u.reason.value for u in plan.unassigned)
    used = [r for r in plan.routes if r.visit_ids]
    result = {
        "visits": len(problem.visits),
        "caregivers": len(problem.caregivers),
        "seed": day.seed,
        "time_limit_s": time_limit_s,
        "solve_seconds": round(seconds, 3),
        "solve_cpu_seconds": round(cpu, 3),  # < solve_seconds: the machine was busy
        "loadavg_1min": round(load, 2),
        "status": str(plan.status),
        "violations": len(violations),
        "violation_kinds": dict(Counter(str(v.kind) for v in violations)),
        "violation_examples": [v.message for v in violations[:10]],
        "assigned": len(plan.assigned_visit_ids),
        "dropped": len(plan.unassigned),
        "dropped_by_priority": {
            p: dropped.get(p, 0)
            for p in ("EMERGENCY", "MEDICAL_ESCORT", "ENTITLED_CARE", "PAID", "OPTIONAL")
        },
        "dropped_reasons": dict(reasons),
        "dropped_visits": [
            f"{u.visit_id} {u.priority.name}: {u.reason_text}" for u in plan.unassigned
        ][:60],
        "travel_minutes": plan.total_travel,
        "caregivers_used": len(used),
        "continuity_misses": plan.objective.continuity_misses,
        "workload_spread": plan.objective.workload_spread,
        "generator": day.stats,
    }
    return result, plan


def time_insertions(day: Day, plan, n: int, seed: int) -> dict:
    """insert_urgent latency over ``n`` emergencies, each into the same base plan."""
    from services.dispatch.routing import check, insert_urgent

    rng = random.Random(seed * 7919 + 17)
    problem = day.problem
    latencies: list[float] = []
    cpu_ms: list[float] = []
    placed = violating = errors = 0
    examples: list[str] = []
    warm = emergency_visit(rng, day, 0, h(9))
    insert_urgent(problem, plan, warm, h(9))  # first call pays imports and caches: not timed
    for k in range(1, n + 1):
        now = rng.randrange(h(8), h(15))
        visit = emergency_visit(rng, day, k, now)
        t0, cpu0 = time.perf_counter(), time.process_time()
        try:
            new_plan = insert_urgent(problem, plan, visit, now)
        except Exception:
            errors += 1
            if len(examples) < 3:
                examples.append(traceback.format_exc(limit=3))
            continue
        latencies.append((time.perf_counter() - t0) * 1000.0)
        cpu_ms.append((time.process_time() - cpu0) * 1000.0)
        if visit.id in new_plan.assigned_visit_ids:
            placed += 1
        bad = check(problem.with_visits(visit), new_plan)
        if bad:
            violating += 1
            if len(examples) < 3:
                examples.append(bad[0].message)
    out: dict = {
        "n": n,
        "placed": placed,
        "with_violations": violating,
        "errors": errors,
        "examples": examples,
    }
    if latencies:
        out.update(
            {
                "p50": round(percentile(latencies, 50), 3),
                "p95": round(percentile(latencies, 95), 3),
                "p99": round(percentile(latencies, 99), 3),
                "max": round(max(latencies), 3),
                "mean": round(statistics.fmean(latencies), 3),
                # CPU time of the same calls: what the latency would be on a quiet machine
                "cpu_p50": round(percentile(cpu_ms, 50), 3),
                "cpu_p95": round(percentile(cpu_ms, 95), 3),
                "cpu_p99": round(percentile(cpu_ms, 99), 3),
                "loadavg_1min": round(os.getloadavg()[0], 2),
            }
        )
    return out


def _git_commit() -> str | None:
    import subprocess

    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).parent,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def _parse_cases(text: str) -> list[tuple[int, int]]:
    out = []
    for part in text.split(","):
        v, _, c = part.strip().lower().partition("x")
        out.append((int(v), int(c)))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.router.homecare",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--cases", default="300x40,1000x120", help="visits x caregivers, comma list")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--time-limit",
        type=float,
        default=None,
        help="seconds per case (default 10 for 300 visits, 30 for 1,000)",
    )
    p.add_argument("--urgent", type=int, default=200, help="emergencies to insert (0: skip)")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--markdown", type=Path, default=None)
    p.add_argument(
        "--boost",
        action="store_true",
        help="raise this run's CPU priority (root; see bench/router/machine.py) on a busy machine",
    )
    args = p.parse_args(argv)
    boost = None
    if args.boost:
        from bench.router.machine import claim_cpu

        boost = claim_cpu()

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = args.out or RESULTS_DIR / f"homecare-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    cases = _parse_cases(args.cases)
    doc: dict = {
        "meta": {
            "started": stamp,
            "seed": args.seed,
            "cases": args.cases,
            "time_limit_s": args.time_limit or 0,
            "urgent": args.urgent,
            "cpu_priority": boost,
            "git_commit": _git_commit(),
        },
        "cases": [],
    }
    for i, (n_visits, n_caregivers) in enumerate(cases):
        limit = args.time_limit or DEFAULT_LIMITS.get(n_visits, 30.0)
        t0 = time.perf_counter()
        day = generate_day(n_visits, n_caregivers, seed=args.seed)
        gen_s = time.perf_counter() - t0
        print(
            f"{n_visits} visits / {n_caregivers} caregivers: generated in {gen_s:.1f} s "
            f"({day.stats['locations']} locations), solving with {limit:g} s ...",
            flush=True,
        )
        try:
            result, plan = solve_case(day, limit, args.seed)
        except Exception as exc:
            result, plan = (
                {
                    "visits": n_visits,
                    "caregivers": n_caregivers,
                    "seed": args.seed,
                    "time_limit_s": limit,
                    "error": repr(exc),
                    "traceback": traceback.format_exc(limit=5),
                },
                None,
            )
            print(f"  solve failed: {exc!r}", flush=True)
        else:
            print(
                f"  {result['solve_seconds']:.1f} s (cpu {result['solve_cpu_seconds']:.1f} s), "
                f"violations {result['violations']}, "
                f"dropped {result['dropped']} {result['dropped_by_priority']}, travel "
                f"{result['travel_minutes']} min, caregivers used {result['caregivers_used']}",
                flush=True,
            )
            if result["violations"]:
                print("  violations: " + "; ".join(result["violation_examples"][:3]), flush=True)
        if i == 0 and args.urgent and plan is not None:
            try:
                result["urgent_insertion_ms"] = time_insertions(day, plan, args.urgent, args.seed)
            except Exception as exc:
                result["urgent_insertion_ms"] = {"error": repr(exc)}
            u = result["urgent_insertion_ms"]
            print(
                f"  urgent insertion x{args.urgent}: "
                + ", ".join(
                    f"{k} {u[k]}"
                    for k in (
                        "p50",
                        "p95",
                        "p99",
                        "max",
                        "cpu_p99",
                        "placed",
                        "with_violations",
                        "errors",
                        "error",
                    )
                    if k in u
                )
                + " (ms)",
                flush=True,
            )
        result["generate_seconds"] = round(gen_s, 2)
        doc["cases"].append(result)
        out.write_text(json.dumps(doc, indent=1))
    if args.markdown:
        from bench.router.table import homecare_markdown

        args.markdown.write_text(homecare_markdown(doc))
    print(f"results -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
