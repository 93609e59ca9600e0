"""The markdown writer the README's benchmark section is pasted from."""

from bench.router.solomon import summarise
from bench.router.table import solomon_markdown


def _row(name, family, bks, ours, peer):
    def res(distance, feasible):
        return {
            "distance": distance,
            "vehicles": 3,
            "seconds": 1.0,
            "feasible": feasible,
            "gap_pct": (distance / bks - 1) * 100 if feasible else None,
            "violations": [],
        }

    return {
        "instance": name,
        "family": family,
        "bks_distance": bks,
        "bks_vehicles": 3,
        "solvers": {"ortools": res(*ours), "pyvrp": res(*peer)},
    }


def test_summary_means_count_only_feasible_results_and_table_shows_them():
    """Gaps average over feasible runs; infeasible runs are counted and flagged, not averaged."""
    rows = [
        _row("C101", "C1", 100.0, (102.0, True), (100.0, True)),
        _row("C102", "C1", 100.0, (150.0, False), (101.0, True)),
        _row("R101", "R1", 200.0, (204.0, True), (200.0, True)),
    ]
    summary = summarise(rows, ["ortools", "pyvrp"], time_limit_s=1.0)
    ours = summary["by_solver"]["ortools"]
    assert ours["feasible"] == 2 and ours["instances"] == 3
    assert abs(ours["mean_gap_pct"] - 2.0) < 1e-9
    assert abs(summary["by_solver"]["pyvrp"]["mean_gap_pct"] - 1 / 3) < 1e-3  # rounded to 4 places
    assert summary["common_feasible"]["instances"] == 2
    doc = {
        "meta": {
            "solvers": ["ortools", "pyvrp"],
            "time_limit_s": 1.0,
            "seed": 1,
            "fleet": 25,
            "versions": {},
        },
        "results": rows,
        "summary": summary,
    }
    md = solomon_markdown(doc, per_instance=True)
    assert "| this router (OR-Tools) | 2.00 % |" in md
    assert "(1 infeasible)" in md
    assert "C102" in md and " !" in md
