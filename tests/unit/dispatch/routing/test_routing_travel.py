"""Travel-time providers: haversine numbers, and OSRM's table API replayed from a stored answer."""

from __future__ import annotations

import json
import math
from pathlib import Path

import httpx
import pytest

from services.dispatch.routing import (
    HaversineProvider,
    LatLon,
    OsrmError,
    OsrmTableProvider,
    travel_times_for,
)
from services.dispatch.routing.travel import EARTH_RADIUS_KM, haversine_km

DATA = Path(__file__).parent / "data"
POINTS = [LatLon(29.306, 120.075), LatLon(29.331, 120.052), LatLon(29.352, 120.118)]


def test_haversine_distance_of_one_degree_latitude():
    """One degree of latitude is about 111.2 km on the mean-radius sphere."""
    assert haversine_km(LatLon(29.0, 120.0), LatLon(30.0, 120.0)) == pytest.approx(111.19, 0.001)


def test_haversine_minutes_road_factor_speed_rounded_up():
    """10 km x road factor 1.5 at 30 km/h is exactly 30 minutes; a bit more rounds up to 31."""
    prov = HaversineProvider(road_factor=1.5, speeds_kmh={"car": 30.0})
    a = LatLon(29.0, 120.0)
    km_per_degree = EARTH_RADIUS_KM * math.pi / 180
    ten_km = LatLon(29.0 + 10.0 / km_per_degree, 120.0)
    assert prov.minutes(a, ten_km, "car") == 30
    assert prov.minutes(a, LatLon(29.0 + 10.1 / km_per_degree, 120.0), "car") == 31
    assert prov.matrix([a, ten_km], "car") == [[0, 30], [30, 0]]


def test_haversine_modes_differ_by_speed():
    """Walking takes longer than the e-bike, which takes longer than the car."""
    mats = travel_times_for(HaversineProvider(), POINTS, ["walk", "ebike", "car"])
    assert mats["walk"][0][1] > mats["ebike"][0][1] > mats["car"][0][1] > 0
    with pytest.raises(ValueError):
        HaversineProvider().matrix(POINTS, "helicopter")


def _replay(path: Path, seen: list[httpx.Request]) -> httpx.Client:
    body = json.loads(path.read_text())

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=body)

    return httpx.Client(transport=httpx.MockTransport(handler))


def test_osrm_table_recorded_response_to_minutes():
    """The table answer's seconds become whole minutes rounded up; the request is well formed."""
    seen: list[httpx.Request] = []
    prov = OsrmTableProvider("http://osrm.local:5000/",
                             client=_replay(DATA / "osrm_table_car_3points.json", seen))
    mat = prov.matrix(POINTS, "car")
    assert mat == [[0, 7, 16], [7, 0, 10], [16, 10, 0]]
    [req] = seen
    assert req.url.path == ("/table/v1/car/120.075000,29.306000;120.052000,29.331000;"
                            "120.118000,29.352000")
    assert req.url.params["annotations"] == "duration"


def test_osrm_error_code_raises_clearly():
    """An OSRM error answer (code != Ok) raises OsrmError with OSRM's message."""
    client = httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(
        400, json={"code": "InvalidQuery", "message": "Query string malformed"})))
    with pytest.raises(OsrmError, match="InvalidQuery.*malformed"):
        OsrmTableProvider("http://osrm.local", client=client).matrix(POINTS, "car")


def test_osrm_unroutable_pair_and_timeout_raise():
    """A null duration (no route) and a timeout both raise OsrmError."""
    body = {"code": "Ok", "durations": [[0, None], [5, 0]]}
    client = httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(200, json=body)))
    with pytest.raises(OsrmError, match="no route"):
        OsrmTableProvider("http://osrm.local", client=client).matrix(POINTS[:2], "car")

    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    client = httpx.Client(transport=httpx.MockTransport(slow))
    with pytest.raises(OsrmError, match="timed out"):
        OsrmTableProvider("http://osrm.local", client=client, timeout_s=2).matrix(POINTS, "car")
