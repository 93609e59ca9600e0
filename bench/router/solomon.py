"""Solomon VRPTW benchmark: this router, PyVRP and VROOM side by side, one scorer for all.

    python -m bench.router.solomon --time-limit 10 [--instances C101,R101]
        [--solvers ortools,pyvrp,vroom] [--out bench/results/solomon-<stamp>.json]

Instances run one after another and solvers one at a time (no two solvers timed at once), each
single-threaded. Every solver's routes go through bench.router.scoring (customers once, capacity,
windows with service times, DIMACS distance recomputed); gaps are to the DIMACS best-known solution.
The JSON is rewritten after every instance, so an interrupted run keeps what it measured.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from bench.router.instance import Instance, default_data_dir, load_instances
from bench.router.peers import SolverRun, solve_pyvrp, solve_vroom
from bench.router.scoring import score_routes

SolverFn = Callable[..., SolverRun]


def _ortools(inst: Instance, *, time_limit_s: float, seed: int) -> SolverRun:
    from bench.router.ours import solve_router

    return solve_router(inst, time_limit_s=time_limit_s, seed=seed)


SOLVERS: dict[str, SolverFn] = {"ortools": _ortools, "pyvrp": solve_pyvrp, "vroom": solve_vroom}
# the 10-instance subset measured in ../shared/bench/solomon/README.md
README_SUBSET = "C101,C201,R101,R105,R109,R201,R205,RC101,RC105,RC201"
RESULTS_DIR = Path(__file__).resolve().parents[1] / "results"


def run_one(name: str, inst: Instance, *, time_limit_s: float, seed: int, **extra) -> dict:
    """Run one solver on one instance and score its routes; errors are recorded, not raised.

    ``cpu_seconds`` is the process CPU time the run used: on a busy machine a wall-clock-limited
    solver gets less than its budget, and cpu / wall shows how much less.
    """
    cpu0 = time.process_time()
    try:
        run = SOLVERS[name](inst, time_limit_s=time_limit_s, seed=seed, **extra)
    except Exception as exc:  # a crashing solver is a result too
        return {
            "distance": None,
            "vehicles": None,
            "seconds": None,
            "gap_pct": None,
            "feasible": False,
            "violations": [f"solver error: {exc!r}"],
            "error": traceback.format_exc(limit=5),
        }
    cpu = time.process_time() - cpu0
    score = score_routes(inst, run.routes)
    gap = score.gap_pct(inst.bks_distance)
    return {
        "distance": None if math.isnan(score.distance) else round(score.distance, 1),
        "vehicles": score.vehicles,
        "seconds": round(run.seconds, 3),
        "cpu_seconds": round(cpu, 3),
        "gap_pct": None if gap is None or math.isnan(gap) else round(gap, 4),
        "feasible": score.feasible,
        "violations": score.violations[:20],
        "notes": run.notes,
        "routes": run.routes,
    }


def summarise(rows: list[dict], solvers: list[str], time_limit_s: float) -> dict:
    """Means per solver, overall and per family; gaps are averaged over feasible results only."""

    def block(subset: list[dict], solver: str) -> dict:
        res = [r["solvers"][solver] for r in subset if solver in r["solvers"]]
        feas = [x for x in res if x["feasible"] and x["gap_pct"] is not None]
        secs = [x["seconds"] for x in res if x["seconds"] is not None]
        return {
            "instances": len(res),
            "feasible": len(feas),
            "mean_gap_pct": round(statistics.fmean(x["gap_pct"] for x in feas), 4)
            if feas
            else None,
            "max_gap_pct": round(max(x["gap_pct"] for x in feas), 4) if feas else None,
            "mean_vehicles": round(statistics.fmean(x["vehicles"] for x in feas), 2)
            if feas
            else None,
            "mean_seconds": round(statistics.fmean(secs), 3) if secs else None,
            "max_seconds": round(max(secs), 3) if secs else None,
            # a hard budget is a promise: count runs more than 5 % (and 0.2 s) over it
            "overruns": sum(1 for s in secs if s > time_limit_s * 1.05 + 0.2),
            # share of the wall-clock time the solver actually had a CPU (1.0 on a quiet machine)
            "cpu_share": round(sum(x.get("cpu_seconds") or 0 for x in res) / sum(secs), 3)
            if secs and sum(secs) > 0
            else None,
        }

    families = sorted({r["family"] for r in rows}, key=lambda f: (len(f), f))
    # gaps on the instances every solver solved feasibly, so the means compare like with like
    common = [r for r in rows if all(r["solvers"].get(s, {}).get("feasible") for s in solvers)]
    return {
        "by_solver": {s: block(rows, s) for s in solvers},
        "by_family": {
            f: {s: block([r for r in rows if r["family"] == f], s) for s in solvers}
            for f in families
        },
        "common_feasible": {
            "instances": len(common),
            "mean_gap_pct": {
                s: round(statistics.fmean(r["solvers"][s]["gap_pct"] for r in common), 4)
                if common
                else None
                for s in solvers
            },
        },
    }


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in ("ortools", "pyvrp", "pyvroom"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "missing"
    return out


def _git_commit() -> str | None:
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


def _router_dirty() -> bool | None:
    """True when the measured router differs from the commit recorded (uncommitted edits)."""
    try:
        out = subprocess.run(
            ["git", "status", "--porcelain", "--", "services/dispatch/routing"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).resolve().parents[2],
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return bool(out.strip())


def _router_fingerprint() -> str | None:
    """sha256 (12 hex) of the routing sources as imported now, to tell runs of edited code apart."""
    import hashlib

    root = Path(__file__).resolve().parents[2] / "services/dispatch/routing"
    if not root.is_dir():
        return None
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def _fmt(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def print_row(row: dict, solvers: list[str]) -> None:
    cells = [f"{row['instance']:<6}", f"{_fmt(row['bks_distance'], '8.1f')}"]
    for s in solvers:
        r = row["solvers"][s]
        flag = "ok" if r["feasible"] else "INFEAS"
        cells.append(
            f"{_fmt(r['distance'], '8.1f')} {_fmt(r['vehicles'], '2d')}v "
            f"{_fmt(r['seconds'], '5.1f')}s {_fmt(r['gap_pct'], '6.2f')}% {flag:<6}"
        )
    print(" | ".join(cells), flush=True)
    for s in solvers:  # say why, right away, so a long run can be stopped early
        r = row["solvers"][s]
        if not r["feasible"]:
            print(f"    {s}: {'; '.join(r['violations'][:2])}", flush=True)


def print_summary(summary: dict, solvers: list[str]) -> None:
    print("\nmeans per solver (gap over feasible results)")
    for s in solvers:
        b = summary["by_solver"][s]
        print(
            f"  {s:<8} gap {_fmt(b['mean_gap_pct'], '6.2f')}%"
            f"  max {_fmt(b['max_gap_pct'], '6.2f')}%"
            f"  feasible {b['feasible']}/{b['instances']}"
            f"  vehicles {_fmt(b['mean_vehicles'], '5.2f')}"
            f"  seconds mean {_fmt(b['mean_seconds'], '5.2f')} max {_fmt(b['max_seconds'], '5.2f')}"
            f"  overruns {b['overruns']}  cpu share {_fmt(b['cpu_share'], '.2f')}"
        )
    print("\nmean gap % per family")
    print("  family " + " ".join(f"{s:>10}" for s in solvers))
    for fam, per in summary["by_family"].items():
        gaps = " ".join(f"{_fmt(per[s]['mean_gap_pct'], '10.2f')}" for s in solvers)
        print(f"  {fam:<6} {gaps}")
    c = summary["common_feasible"]
    print(
        f"\non the {c['instances']} instances every solver solved feasibly: "
        + ", ".join(f"{s} {_fmt(g, '.2f')}%" for s, g in c["mean_gap_pct"].items())
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.router.solomon",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--time-limit", type=float, default=10.0, help="seconds per solver and instance")
    p.add_argument("--instances", default="", help=f"comma list, or 'subset' ({README_SUBSET})")
    p.add_argument("--solvers", default="ortools,pyvrp,vroom")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--vroom-timeout",
        type=float,
        default=None,
        help="wall-clock cap for VROOM (default 3 x time limit: on a quiet machine exploration "
        "level 5 ends well inside the limit; a tight cap would cut it short under load)",
    )
    p.add_argument(
        "--data",
        type=Path,
        default=None,
        help="instance folder (default: SOLOMON_DIR or ../shared/bench/solomon)",
    )
    p.add_argument("--out", type=Path, default=None, help="JSON results path")
    p.add_argument("--markdown", type=Path, default=None, help="also write markdown tables here")
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

    solvers = [s.strip() for s in args.solvers.split(",") if s.strip()]
    unknown = [s for s in solvers if s not in SOLVERS]
    if unknown:
        p.error(f"unknown solvers {unknown}; choose from {sorted(SOLVERS)}")
    vroom_timeout = args.vroom_timeout or 3 * args.time_limit
    names_arg = README_SUBSET if args.instances == "subset" else args.instances
    names = [n.strip().upper() for n in names_arg.split(",") if n.strip()] or None
    if "ortools" in solvers:  # import the router now, so the fingerprint is of what runs
        import services.dispatch.routing  # noqa: F401
    data_dir = args.data or default_data_dir()
    instances = load_instances(data_dir, names)

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = args.out or RESULTS_DIR / f"solomon-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    doc: dict = {
        "meta": {
            "started": stamp,
            "time_limit_s": args.time_limit,
            "seed": args.seed,
            "vroom_timeout_s": vroom_timeout,
            "cpu_priority": boost,
            "solvers": solvers,
            "instances": [i.name for i in instances],
            "data": str(data_dir),
            "distance": "DIMACS: floor(10 * euclid) / 10, recomputed by bench.router.scoring",
            "fleet": instances[0].fleet if instances else None,
            "versions": _versions(),
            "git_commit": _git_commit(),
            "router_uncommitted_changes": _router_dirty(),
            "router_sources_sha256": _router_fingerprint(),
            "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        },
        "results": [],
    }
    print(
        f"{len(instances)} instances, {args.time_limit:g} s per solver, solvers {solvers}, "
        f"-> {out}",
        flush=True,
    )
    print(
        "inst   |      BKS | " + " | ".join(f"{s}: dist veh secs gap feasible" for s in solvers),
        flush=True,
    )
    t_start = time.perf_counter()
    for inst in instances:
        row = {
            "instance": inst.name,
            "family": inst.family,
            "bks_distance": inst.bks_distance,
            "bks_vehicles": inst.bks_vehicles,
            "solvers": {},
        }
        row["loadavg_1min"] = round(os.getloadavg()[0], 2)
        for s in solvers:  # strictly one after another: the machine has 2 cores
            extra = {"timeout_s": vroom_timeout} if s == "vroom" else {}
            row["solvers"][s] = run_one(
                s, inst, time_limit_s=args.time_limit, seed=args.seed, **extra
            )
        doc["results"].append(row)
        print_row(row, solvers)
        doc["summary"] = summarise(doc["results"], solvers, args.time_limit)
        doc["meta"]["wall_seconds"] = round(time.perf_counter() - t_start, 1)
        loads = [r["loadavg_1min"] for r in doc["results"]]
        doc["meta"]["loadavg_1min"] = {"min": min(loads), "max": max(loads)}
        tmp = out.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(doc, indent=1))
        tmp.replace(out)

    print_summary(doc["summary"], solvers)
    if args.markdown:
        from bench.router.table import solomon_markdown

        args.markdown.write_text(solomon_markdown(doc, per_instance=True))
        print(f"markdown -> {args.markdown}")
    print(f"results -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
