"""Monthly settlement: a statement per provider per sub-district, and the month's closing.

Amounts are in fen at the contracted rate per service type (fen per hour), rounded half up per
visit. A closed month is immutable: a visit verified late is carried by the next open month's
statement with a reference to the month it was served in.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from services.runtime.eventstore import stable_id


def amount_fen(minutes: int, rate_fen_per_hour: int) -> int:
    """Money for minutes at an hourly rate, in fen, rounded half up (integers only)."""
    return (minutes * rate_fen_per_hour + 30) // 60


@dataclass
class StatementLine:
    visit_id: str
    elder_id: str
    service_type: str
    service_month: str
    minutes: int
    amount_fen: int
    funding: str  # e.g. "entitlement 45 + out_of_pocket 15"
    kind: str = "visit"  # or "reversal"


@dataclass
class Statement:
    provider_id: str
    service_area_id: str
    month: str
    lines: list[StatementLine] = field(default_factory=list)

    @property
    def visits(self) -> int:
        return sum(1 for line in self.lines if line.kind == "visit")

    @property
    def minutes(self) -> int:
        return sum(line.minutes for line in self.lines)

    @property
    def amount_fen(self) -> int:
        return sum(line.amount_fen for line in self.lines)

    def by_service_type(self) -> dict[str, dict[str, int]]:
        totals: dict[str, dict[str, int]] = defaultdict(lambda: {"minutes": 0, "amount_fen": 0})
        for line in self.lines:
            totals[line.service_type]["minutes"] += line.minutes
            totals[line.service_type]["amount_fen"] += line.amount_fen
        return dict(sorted(totals.items()))

    def to_json(self) -> dict[str, Any]:
        return {
            "provider_id": self.provider_id, "service_area_id": self.service_area_id,
            "month": self.month, "visits": self.visits, "minutes": self.minutes,
            "amount_fen": self.amount_fen, "by_service_type": self.by_service_type(),
            "lines": [vars(line) for line in self.lines],
        }


def build_statements(charges: list[Any], month: str, area: str,
                     rate_of: Any) -> list[Statement]:
    """Statements of one month for one sub-district from its charges (and reversals).

    ``charges`` are Charge aggregates; those carried by ``month`` count as visits, those reversed
    in ``month`` add a negative line. ``rate_of(service_type)`` gives fen per hour.
    """
    statements: dict[str, Statement] = {}

    def statement(provider_id: str) -> Statement:
        if provider_id not in statements:
            statements[provider_id] = Statement(provider_id, area, month)
        return statements[provider_id]

    for charge in sorted(charges, key=lambda c: c.visit_id):
        if charge.service_area_id != area or charge.blocked:
            continue
        posted = sum(leg["minutes"] for leg in charge.legs)
        money = amount_fen(posted, rate_of(charge.service_type))
        funding = " + ".join(f"{leg['source']} {leg['minutes']}" for leg in charge.legs)
        if charge.charged_month == month:
            statement(charge.provider_id).lines.append(StatementLine(
                charge.visit_id, charge.elder_id, charge.service_type, charge.service_month,
                posted, money, funding))
        if charge.reversed and getattr(charge, "reversed_in_month", None) == month:
            statement(charge.provider_id).lines.append(StatementLine(
                charge.visit_id, charge.elder_id, charge.service_type, charge.service_month,
                -posted, -money, funding, kind="reversal"))
    return [statements[p] for p in sorted(statements)]


class MonthClose(Aggregate):
    """The closing of one month for one sub-district: its statements, fixed for good."""

    @staticmethod
    def create_id(service_area_id: str, month: str, **_: object) -> UUID:  # type: ignore[override]
        return stable_id("month-close", service_area_id, month)

    @event("Closed")
    def __init__(self, service_area_id: str, month: str, statements: list[dict[str, Any]],
                 summary: dict[str, Any], closed_by: str, lapsed_minutes: int) -> None:
        self.service_area_id = service_area_id
        self.month = month
        self.statements = statements
        self.summary = summary
        self.closed_by = closed_by
        self.lapsed_minutes = lapsed_minutes


STATEMENT_COLUMNS = ["provider_id", "month", "visit_id", "elder_id", "service_type",
                     "service_month", "kind", "minutes", "amount_fen", "funding"]


def statement_rows(statements: list[dict[str, Any]]) -> list[list[Any]]:
    rows: list[list[Any]] = [list(STATEMENT_COLUMNS)]
    for s in statements:
        for line in s["lines"]:
            rows.append([s["provider_id"], s["month"], line["visit_id"], line["elder_id"],
                         line["service_type"], line["service_month"], line["kind"],
                         line["minutes"], line["amount_fen"], line["funding"]])
        rows.append([s["provider_id"], s["month"], "TOTAL", "", "", "", "total", s["minutes"],
                     s["amount_fen"], f"{s['visits']} visits"])
    return rows
