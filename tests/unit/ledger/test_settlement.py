"""Statements and their files: amounts at contracted rates, reversals, CSV and XLSX."""

import io
import zipfile
from types import SimpleNamespace

from services.ledger.domain.settlement import amount_fen, build_statements, statement_rows
from services.ledger.exports import to_csv, to_xlsx


def _charge(visit, provider, minutes, service="cleaning", month="2026-11", charged=None,
            reversed_in=None, blocked=False, area="A"):
    return SimpleNamespace(
        visit_id=visit, elder_id="E", provider_id=provider, service_area_id=area,
        service_type=service, service_month=month, charged_month=charged or month,
        legs=[{"source": "entitlement", "account_id": "x", "minutes": minutes}],
        reversed=reversed_in is not None, reversed_in_month=reversed_in, blocked=blocked)


def test_amounts_are_integer_fen_rounded_half_up():
    """45 minutes at 30 yuan an hour is 22.50 yuan; 1 minute at 45 yuan is 0.75 yuan."""
    assert amount_fen(45, 3000) == 2250
    assert amount_fen(1, 4500) == 75
    assert amount_fen(1, 3001) == 50  # 50.0166 fen -> 50


def test_statements_group_by_provider_and_carry_reversals_and_late_visits():
    """A provider's statement has its month's visits, a late October visit carried into
    November with its service month, and a reversal as a negative line; blocked charges and
    other areas are left out."""
    charges = [_charge("V1", "P1", 60), _charge("V2", "P1", 30, "bathing"),
               _charge("V3", "P2", 45),
               _charge("V4", "P1", 60, month="2026-10", charged="2026-11"),
               _charge("V5", "P1", 60, month="2026-10", reversed_in="2026-11"),
               _charge("V6", "P1", 60, blocked=True), _charge("V7", "P1", 60, area="B")]
    rates = {"cleaning": 3000, "bathing": 4500}
    statements = build_statements(charges, "2026-11", "A", rates.get)
    p1, p2 = statements
    assert (p1.provider_id, p1.visits, p1.minutes) == ("P1", 3, 60 + 30 + 60 - 60)
    assert p1.amount_fen == 3000 + 2250 + 3000 - 3000
    assert [line.kind for line in p1.lines] == ["visit", "visit", "visit", "reversal"]
    assert p1.lines[2].service_month == "2026-10"
    assert p1.by_service_type()["bathing"] == {"minutes": 30, "amount_fen": 2250}
    assert (p2.visits, p2.amount_fen) == (1, 2250)


def test_csv_and_xlsx_files_hold_the_rows():
    """The CSV opens as UTF-8 with a BOM; the XLSX is a workbook whose sheet has every cell."""
    statements = [s.to_json() for s in build_statements(
        [_charge("V1", "P1", 60)], "2026-11", "A", lambda _: 3000)]
    rows = statement_rows(statements)
    csv_text = to_csv(rows).decode("utf-8")
    assert csv_text.startswith("\ufeffprovider_id,month,visit_id")
    assert "V1" in csv_text and "TOTAL" in csv_text
    workbook = zipfile.ZipFile(io.BytesIO(to_xlsx({"statements": rows, "汇总": [["a", 1]]})))
    assert {"xl/workbook.xml", "xl/worksheets/sheet1.xml", "xl/worksheets/sheet2.xml"} <= set(
        workbook.namelist())
    sheet = workbook.read("xl/worksheets/sheet1.xml").decode()
    assert "<t>V1</t>" in sheet and "<v>3000</v>" in sheet
    assert "汇总" in workbook.read("xl/workbook.xml").decode()
