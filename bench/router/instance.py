"""Solomon VRPTW instances (LKH-3 CVRPTW text format) and their best-known solutions.

Everything is kept in the DIMACS integer convention: distances and travel times are
floor(10 * euclid), and time windows and service times are multiplied by 10, so every solver
sees exactly the same integer data and the scorer can recompute routes without rounding noise.
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path

SCALE = 10  # DIMACS: one decimal of distance, so x10 keeps integers exact
SOLOMON_FLEET = 25  # the original Solomon fleet; the file's VEHICLES field is the BKS count


def default_data_dir() -> Path:
    """../shared/bench/solomon next to the repository, or SOLOMON_DIR when set."""
    env = os.environ.get("SOLOMON_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2].parent / "shared/bench/solomon"


def dimacs_distance10(x1: float, y1: float, x2: float, y2: float) -> int:
    """floor(10 * euclid), exact for integer coordinates (isqrt avoids float rounding)."""
    dx, dy = x1 - x2, y1 - y2
    if all(float(v).is_integer() for v in (x1, y1, x2, y2)):
        return math.isqrt(int(100 * (dx * dx + dy * dy)))
    return math.floor(10 * math.hypot(dx, dy))


@dataclass(frozen=True)
class Instance:
    """One VRPTW instance; node 0 is the depot, nodes 1..n the customers (file ids minus one)."""

    name: str
    capacity: int
    x: tuple[float, ...]
    y: tuple[float, ...]
    demand: tuple[int, ...]
    ready: tuple[int, ...]  # file units (not scaled)
    due: tuple[int, ...]
    service: tuple[int, ...]
    fleet: int = SOLOMON_FLEET
    bks_distance: float | None = None  # DIMACS convention
    bks_vehicles: int | None = None
    meta: dict[str, str] = field(default_factory=dict, compare=False)

    @property
    def n_customers(self) -> int:
        return len(self.x) - 1

    @property
    def family(self) -> str:
        """C1, C2, R1, R2, RC1 or RC2: the letters plus the first digit of the number."""
        letters = self.name.rstrip("0123456789")
        return letters + self.name[len(letters)]

    @cached_property
    def dist10(self) -> list[list[int]]:
        """Integer distance (= travel time) matrix in tenths, DIMACS convention."""
        n = len(self.x)
        return [
            [dimacs_distance10(self.x[i], self.y[i], self.x[j], self.y[j]) for j in range(n)]
            for i in range(n)
        ]

    def ready10(self, i: int) -> int:
        return self.ready[i] * SCALE

    def due10(self, i: int) -> int:
        return self.due[i] * SCALE

    def service10(self, i: int) -> int:
        return self.service[i] * SCALE


def _header_value(line: str) -> tuple[str, str] | None:
    if ":" not in line:
        return None
    key, _, value = line.partition(":")
    return key.strip().upper(), value.strip()


def parse_vrptw(text: str, name: str | None = None) -> Instance:
    """Parse one LKH-3 CVRPTW file (NODE_COORD, DEMAND, TIME_WINDOW sections, depot = node 1)."""
    header: dict[str, str] = {}
    sections: dict[str, list[list[str]]] = {}
    current: str | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line == "EOF":
            continue
        if line.endswith("_SECTION"):
            current = line
            sections[current] = []
            continue
        if current is None:
            kv = _header_value(line)
            if kv:
                header[kv[0]] = kv[1]
            continue
        sections[current].append(line.split())

    coords = {int(r[0]): (float(r[1]), float(r[2])) for r in sections["NODE_COORD_SECTION"]}
    demands = {int(r[0]): int(r[1]) for r in sections.get("DEMAND_SECTION", [])}
    windows = {int(r[0]): (int(r[1]), int(r[2])) for r in sections["TIME_WINDOW_SECTION"]}
    depots = [int(r[0]) for r in sections.get("DEPOT_SECTION", [["1"]]) if int(r[0]) > 0]
    if depots != [1]:
        raise ValueError(f"expected node 1 as the only depot, got {depots}")
    ids = sorted(coords)
    if (
        ids != list(range(1, len(ids) + 1))
        or "DIMENSION" in header
        and int(header["DIMENSION"]) != len(ids)
    ):
        raise ValueError("node ids are not 1..DIMENSION")

    default_service = int(float(header.get("SERVICE_TIME", "0")))
    if "SERVICE_TIME_SECTION" in sections:
        services = {int(r[0]): int(float(r[1])) for r in sections["SERVICE_TIME_SECTION"]}
    else:
        services = {i: (0 if i == 1 else default_service) for i in ids}

    return Instance(
        name=name or header.get("NAME", "?"),
        capacity=int(header["CAPACITY"]),
        x=tuple(coords[i][0] for i in ids),
        y=tuple(coords[i][1] for i in ids),
        demand=tuple(demands.get(i, 0) for i in ids),
        ready=tuple(windows[i][0] for i in ids),
        due=tuple(windows[i][1] for i in ids),
        service=tuple(services[i] for i in ids),
        meta=header,
    )


def read_bks(path: Path) -> dict[str, tuple[int, float]]:
    """instance -> (vehicles, distance) under the DIMACS convention."""
    with path.open(newline="") as f:
        return {
            row["instance"]: (int(row["bks_vehicles_dimacs"]), float(row["bks_distance_dimacs"]))
            for row in csv.DictReader(f)
        }


def load_instances(data_dir: Path | None = None, names: list[str] | None = None) -> list[Instance]:
    """All *.vrptw files (or the named ones) in file-name order, with their BKS attached."""
    data_dir = data_dir or default_data_dir()
    bks_path = data_dir / "bks.csv"
    bks = read_bks(bks_path) if bks_path.exists() else {}
    files = {p.name.split(".")[0]: p for p in sorted(data_dir.glob("*.vrptw"))}
    if names:
        missing = [n for n in names if n not in files]
        if missing:
            raise SystemExit(f"unknown instances: {', '.join(missing)} (data: {data_dir})")
        chosen = [files[n] for n in names]
    else:
        chosen = list(files.values())
    out = []
    for path in chosen:
        inst = parse_vrptw(path.read_text(), name=path.name.split(".")[0])
        vehicles, distance = bks.get(inst.name, (None, None))
        out.append(replace(inst, bks_distance=distance, bks_vehicles=vehicles))
    return out
