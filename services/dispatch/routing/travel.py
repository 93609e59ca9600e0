"""Travel-time providers: integer minute matrices over a list of points, per travel mode."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import httpx

from .problem import TravelMode


@dataclass(frozen=True, slots=True)
class LatLon:
    lat: float
    lon: float


class TravelTimeProvider(Protocol):
    def matrix(self, points: Sequence[LatLon], mode: str) -> list[list[int]]:
        """Whole-minute travel times (rounded up) from every point to every point."""
        ...


def travel_times_for(provider: TravelTimeProvider, points: Sequence[LatLon],
                     modes: Iterable[str]) -> dict[str, list[list[int]]]:
    """The per-mode matrices for ``Problem(travel_times=...)``."""
    return {m: provider.matrix(points, m) for m in dict.fromkeys(modes)}


EARTH_RADIUS_KM = 6371.0088

DEFAULT_SPEEDS_KMH: Mapping[str, float] = {
    TravelMode.WALK: 4.5,
    TravelMode.BICYCLE: 12.0,
    TravelMode.EBIKE: 18.0,
    TravelMode.CAR: 30.0,  # town and village roads, not highway
}


def haversine_km(a: LatLon, b: LatLon) -> float:
    p1, p2 = math.radians(a.lat), math.radians(b.lat)
    dp, dl = p2 - p1, math.radians(b.lon - a.lon)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


@dataclass(frozen=True)
class HaversineProvider:
    """Great-circle distance x road factor / mode speed, in minutes rounded up (0 to itself)."""

    road_factor: float = 1.3
    speeds_kmh: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_SPEEDS_KMH))

    def minutes(self, a: LatLon, b: LatLon, mode: str) -> int:
        km = haversine_km(a, b) * self.road_factor
        # Round after a tiny epsilon so exact multiples do not become one minute more.
        return math.ceil(km / self.speeds_kmh[mode] * 60.0 - 1e-6)

    def matrix(self, points: Sequence[LatLon], mode: str) -> list[list[int]]:
        if mode not in self.speeds_kmh:
            raise ValueError(f"no speed for travel mode {mode!r}")
        return [[0 if i == j else self.minutes(a, b, mode) for j, b in enumerate(points)]
                for i, a in enumerate(points)]


class OsrmError(RuntimeError):
    """The OSRM table service failed or answered with an error code."""


DEFAULT_OSRM_PROFILES: Mapping[str, str] = {
    TravelMode.WALK: "foot",
    TravelMode.BICYCLE: "bike",
    TravelMode.EBIKE: "bike",
    TravelMode.CAR: "car",
}


@dataclass
class OsrmTableProvider:
    """Road travel times from an OSRM server's /table/v1 API (durations in seconds -> minutes up).

    ``client`` may be passed in (tests pass one with an httpx.MockTransport).
    """

    base_url: str
    profiles: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_OSRM_PROFILES))
    timeout_s: float = 10.0
    client: httpx.Client | None = None

    def matrix(self, points: Sequence[LatLon], mode: str) -> list[list[int]]:
        if mode not in self.profiles:
            raise ValueError(f"no OSRM profile for travel mode {mode!r}")
        if not points:
            return []
        coords = ";".join(f"{p.lon:.6f},{p.lat:.6f}" for p in points)
        url = f"{self.base_url.rstrip('/')}/table/v1/{self.profiles[mode]}/{coords}"
        client = self.client or httpx.Client(timeout=self.timeout_s)
        try:
            resp = client.get(url, params={"annotations": "duration"}, timeout=self.timeout_s)
        except httpx.TimeoutException as e:
            raise OsrmError(f"OSRM table request timed out after {self.timeout_s} s") from e
        except httpx.HTTPError as e:
            raise OsrmError(f"OSRM table request failed: {e}") from e
        finally:
            if self.client is None:
                client.close()
        try:
            body = resp.json()
        except ValueError as e:
            raise OsrmError(f"OSRM answered HTTP {resp.status_code} with non-JSON body") from e
        if resp.status_code != 200 or body.get("code") != "Ok":
            raise OsrmError(f"OSRM answered HTTP {resp.status_code}, code {body.get('code')!r}: "
                            f"{body.get('message', '')}")
        durations = body.get("durations")
        if not isinstance(durations, list) or len(durations) != len(points):
            raise OsrmError("OSRM answer has no duration matrix of the right size")
        out: list[list[int]] = []
        for i, row in enumerate(durations):
            if len(row) != len(points):
                raise OsrmError("OSRM answer has no duration matrix of the right size")
            cells = []
            for j, sec in enumerate(row):
                if sec is None:
                    raise OsrmError(f"OSRM finds no route from point {i} to point {j}")
                cells.append(math.ceil(float(sec) / 60.0 - 1e-6))
            out.append(cells)
        return out
