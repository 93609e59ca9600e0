"""Import elders and caregivers from CSV or XLSX files (standard library only).

Elders file, one row per elder, a header row with these columns (extra columns are ignored;
`yes/no`, `true/false`, `1/0`, `是/否` for flags; dates ISO `1941-05-02`):

| column | required | meaning |
| --- | --- | --- |
| elder_id, name, birth_date, lat, lon | yes | the elder's number, name, birth date, home position |
| confirmation_code | no | the code on the elder's card (4-12 digits; generated if empty) |
| gender | no | female / male (女 / 男) |
| address, family_phone | no | |
| capability_level | no | 老年人能力评估 0 (intact) .. 4 (fully dependent), default 0 |
| household | no | alone / spouse / children (default children) |
| dibao, dibao_margin, disability_qualifies | no | facts of the Yiwu rule (低保, its margin, |
| children_cannot_support, no_spouse_no_children | no | disability grade, support, 孤寡) |
| local_registration, lives_locally | no | default yes |
| out_of_pocket_agreed | no | pays beyond the entitlement (default: yes if not entitled) |

Caregivers file:

| column | required | meaning |
| --- | --- | --- |
| caregiver_id, name | yes | |
| kind | no | employee (default) / volunteer |
| provider_id | employees | the provider organisation employing them |
| skills | no | separated by `;` e.g. `meal;cleaning;bathing` |
| certificate_expires, certificate_level | no | 养老护理员 certificate (level 1-3) |
| gender, shift_start, shift_end (HH:MM), travel_mode (walk/bicycle/ebike/car) | no | |
| station_lat, station_lon | yes | where the day starts and ends |

`import_district(elders_file, caregivers_file, day=...)` builds a District from them (care plans,
the day's orders and noise are generated from the imported people, seeded).
"""

from __future__ import annotations

import csv
import io
import random
import re
import zipfile
from datetime import date
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from services.ledger.domain.entitlement import ElderFacts, load_rule_book
from services.simulation.district import (
    AREA,
    CENTRE,
    CaregiverRecord,
    District,
    ElderRecord,
    Station,
    plan_demand,
)

TRUE = {"1", "yes", "y", "true", "t", "是", "x", "✓"}
NS = {"m": "http://schemas.openxmlformats.org/spreadsheetml/2006/main"}
FACT_FLAGS = ("dibao", "dibao_margin", "disability_qualifies", "children_cannot_support",
              "no_spouse_no_children")


class ImportProblem(ValueError):
    """A row that cannot be imported, with its line number."""


def read_rows(path: Path | str) -> list[dict[str, str]]:
    """The rows of a .csv (UTF-8, BOM allowed) or the first sheet of an .xlsx, keyed by the
    header row (names lower-cased and trimmed)."""
    path = Path(path)
    if path.suffix.lower() == ".xlsx":
        table = read_xlsx(path.read_bytes())
    else:
        table = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8-sig"))))
    return rows_of(table)


def rows_of(table: list[list[str]]) -> list[dict[str, str]]:
    table = [r for r in table if any(c.strip() for c in r)]
    if not table:
        return []
    header = [h.strip().lower() for h in table[0]]
    return [{h: (row[i].strip() if i < len(row) else "") for i, h in enumerate(header) if h}
            for row in table[1:]]


def read_xlsx(data: bytes) -> list[list[str]]:
    """The first worksheet as text cells (shared strings, inline strings and numbers)."""
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        shared: list[str] = []
        if "xl/sharedStrings.xml" in z.namelist():
            root = ElementTree.fromstring(z.read("xl/sharedStrings.xml"))
            shared = ["".join(t.text or "" for t in si.iter(f"{{{NS['m']}}}t"))
                      for si in root.findall("m:si", NS)]
        sheets = sorted(n for n in z.namelist() if re.match(r"xl/worksheets/sheet\d+\.xml$", n))
        if not sheets:
            raise ImportProblem("the workbook has no worksheet")
        first = min(sheets, key=lambda n: int(re.findall(r"\d+", n)[-1]))
        root = ElementTree.fromstring(z.read(first))
    table: list[list[str]] = []
    for row in root.iter(f"{{{NS['m']}}}row"):
        cells: dict[int, str] = {}
        for n, c in enumerate(row.findall("m:c", NS)):
            ref = c.get("r")
            col = _column_index(ref) if ref else n
            kind = c.get("t")
            if kind == "inlineStr":
                text = "".join(t.text or "" for t in c.iter(f"{{{NS['m']}}}t"))
            else:
                v = c.find("m:v", NS)
                text = v.text or "" if v is not None else ""
                if kind == "s" and text:
                    text = shared[int(text)]
                elif kind is None and text.endswith(".0"):
                    text = text[:-2]  # whole numbers written as floats
            cells[col] = text
        table.append([cells.get(i, "") for i in range(max(cells, default=-1) + 1)])
    return table


def _column_index(ref: str) -> int:
    letters = re.match(r"[A-Z]+", ref.upper())
    index = 0
    for ch in letters.group(0) if letters else "A":
        index = index * 26 + ord(ch) - 64
    return index - 1


def _flag(row: dict[str, str], name: str, default: bool = False) -> bool:
    value = row.get(name, "").strip().lower()
    return default if value == "" else value in TRUE


def _required(row: dict[str, str], names: tuple[str, ...], line: int) -> None:
    missing = [n for n in names if not row.get(n)]
    if missing:
        raise ImportProblem(f"line {line}: missing {', '.join(missing)}")


def _gender(value: str) -> str:
    return {"女": "female", "f": "female", "男": "male", "m": "male"}.get(
        value.strip().lower(), value.strip().lower() or "female")


def elders_from_rows(rows: list[dict[str, str]], day: date,
                     seed: int = 1) -> list[ElderRecord]:
    rules = load_rule_book()
    rng = random.Random(f"import-{seed}")
    out = []
    for line, row in enumerate(rows, start=2):
        _required(row, ("elder_id", "name", "birth_date", "lat", "lon"), line)
        try:
            facts = ElderFacts(
                birth_date=date.fromisoformat(row["birth_date"]),
                local_registration=_flag(row, "local_registration", True),
                lives_locally=_flag(row, "lives_locally", True),
                **{f: _flag(row, f) for f in FACT_FLAGS})
            ent = rules.entitlement(facts, day.replace(day=1))
            out.append(ElderRecord(
                elder_id=row["elder_id"], name=row["name"], gender=_gender(row.get("gender", "")),
                birth_date=facts.birth_date, lat=float(row["lat"]), lon=float(row["lon"]),
                address=row.get("address", ""),
                confirmation_code=row.get("confirmation_code") or f"{rng.randint(0, 9999):04d}",
                capability_level=int(row.get("capability_level") or 0),
                household=row.get("household") or "children", facts=facts.to_json(),
                category=ent.category, entitled_minutes=ent.minutes,
                family_phone=row.get("family_phone", ""),
                out_of_pocket_agreed=_flag(row, "out_of_pocket_agreed", ent.minutes == 0)))
        except ValueError as error:
            raise ImportProblem(f"line {line}: {error}") from None
    return out


def caregivers_from_rows(rows: list[dict[str, str]]) -> list[CaregiverRecord]:
    out = []
    for line, row in enumerate(rows, start=2):
        _required(row, ("caregiver_id", "name", "station_lat", "station_lon"), line)
        kind = row.get("kind") or "employee"
        if kind not in ("employee", "volunteer"):
            raise ImportProblem(f"line {line}: kind must be employee or volunteer, not {kind!r}")
        if kind == "employee" and not row.get("provider_id"):
            raise ImportProblem(f"line {line}: an employee needs a provider_id")
        try:
            out.append(CaregiverRecord(
                caregiver_id=row["caregiver_id"], name=row["name"], kind=kind,
                gender=_gender(row.get("gender", "")),
                skills=[s.strip() for s in re.split(r"[;|]", row.get("skills", ""))
                        if s.strip()],
                provider_id=row.get("provider_id") or None,
                certificate_expires=(date.fromisoformat(row["certificate_expires"])
                                     if row.get("certificate_expires") else None),
                certificate_level=int(row.get("certificate_level") or
                                      (1 if kind == "employee" else 0)),
                shift_start=row.get("shift_start") or "08:00",
                shift_end=row.get("shift_end") or "17:00",
                station_lat=float(row["station_lat"]), station_lon=float(row["station_lon"]),
                travel_mode=row.get("travel_mode") or "ebike"))
        except ValueError as error:
            raise ImportProblem(f"line {line}: {error}") from None
    return out


def import_district(elders_file: Path | str, caregivers_file: Path | str, day: date,
                    seed: int = 1, service_area_id: str = AREA,
                    emergencies: int = 1) -> District:
    """A district of the imported people with generated care plans, orders and noise."""
    elders = elders_from_rows(read_rows(elders_file), day, seed)
    caregivers = caregivers_from_rows(read_rows(caregivers_file))
    if not elders or not caregivers:
        raise ImportProblem("need at least one elder and one caregiver")
    stations = sorted({(c.station_lat, c.station_lon) for c in caregivers})
    rng = random.Random(f"import-demand-{seed}")
    care_plans, orders, noise = plan_demand(rng, seed, day, elders, caregivers, emergencies)
    return District(
        seed=seed, size="imported", day=day, service_area_id=service_area_id,
        centre=stations[0] if stations else CENTRE,
        stations=[Station(f"S-{i + 1}", f"station {i + 1}", lat, lon)
                  for i, (lat, lon) in enumerate(stations)],
        elders=elders, caregivers=caregivers, care_plans=care_plans, orders=orders,
        noise=noise, population_shares={})


def export_rows(district: District) -> dict[str, list[list[Any]]]:
    """The district's people in the import format (to edit and import again)."""
    elder_cols = ["elder_id", "name", "gender", "birth_date", "lat", "lon", "address",
                  "confirmation_code", "capability_level", "household", *FACT_FLAGS,
                  "family_phone", "out_of_pocket_agreed"]
    elders = [elder_cols] + [[
        e.elder_id, e.name, e.gender, e.birth_date.isoformat(), e.lat, e.lon, e.address,
        e.confirmation_code, e.capability_level, e.household,
        *("yes" if e.facts.get(f) else "no" for f in FACT_FLAGS), e.family_phone,
        "yes" if e.out_of_pocket_agreed else "no"] for e in district.elders]
    carer_cols = ["caregiver_id", "name", "kind", "gender", "provider_id", "skills",
                  "certificate_expires", "certificate_level", "shift_start", "shift_end",
                  "station_lat", "station_lon", "travel_mode"]
    carers = [carer_cols] + [[
        c.caregiver_id, c.name, c.kind, c.gender, c.provider_id or "", ";".join(c.skills),
        c.certificate_expires.isoformat() if c.certificate_expires else "",
        c.certificate_level, c.shift_start, c.shift_end, c.station_lat, c.station_lon,
        c.travel_mode] for c in district.caregivers]
    return {"elders": elders, "caregivers": carers}
