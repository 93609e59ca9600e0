"""Bad input over HTTP: each a 4xx with its reason in words, and nothing changes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from .conftest import AREA, HOME, seed

pytestmark = pytest.mark.integration

DAY = "2026-11-16"
T9 = datetime(2026, 11, 16, 1, 0, tzinfo=UTC)


@pytest.fixture
def visit(client, dispatch_app):
    dispatch_app.clock = lambda: T9 + timedelta(hours=8)
    seed(client)
    r = client.post("/dispatch/orders", json={
        "elder_id": "E-1", "service_type": "cleaning", "requested_date": DAY,
        "window_start": T9.isoformat()})
    return r.json()["visit"]


def _log_length(app) -> int:
    return app.process_recorder.max_notification_id() or 0


def _where(**extra):
    return {"caregiver_id": "C-1", "lat": HOME["E-1"][0], "lon": HOME["E-1"][1],
            "at": T9.isoformat(), **extra}


@pytest.mark.parametrize(("method", "path", "body", "status", "reason"), [
    ("post", "/dispatch/orders", {"elder_id": "E-404", "service_type": "cleaning",
                                  "requested_date": DAY}, 404, "no elder E-404"),
    ("post", "/dispatch/orders", {"elder_id": "E-1", "service_type": "gardening",
                                  "requested_date": DAY}, 422, "service_type"),
    ("post", "/dispatch/orders", {"elder_id": "E-1", "service_type": "cleaning",
                                  "requested_date": DAY,
                                  "window_start": "2026-11-16T10:00:00+08:00",
                                  "window_end": "2026-11-16T09:00:00+08:00"},
     422, "window_end must be after window_start"),
    ("post", "/dispatch/visits/{v}/check-in", _where(caregiver_id="C-2"), 409,
     "not assigned to C-2"),
    ("post", "/dispatch/visits/{v}/check-in", _where(caregiver_id="C-404"), 404,
     "no caregiver C-404"),
    ("post", "/dispatch/visits/{v}/check-out", _where(confirmation_code="1111"), 409,
     "cannot check out a visit that is scheduled"),
    ("post", "/dispatch/visits/{v}/check-in", _where(lat=91.5), 422, "lat"),
    ("post", "/dispatch/visits/{v}/check-in", _where(lon=-181), 422, "lon"),
    ("post", "/dispatch/visits/{v}/check-in", _where(at="2030-01-01T00:00:00+00:00"), 422,
     "in the future"),
    ("post", "/dispatch/visits/{v}/check-in", _where(at="2026-11-16T09:00:00"), 422,
     "timezone"),
    ("post", "/dispatch/visits/V-404/check-in", _where(), 404, "no visit V-404"),
    ("post", "/dispatch/visits/{v}/check-in", _where(at="2026-11-10T01:00:00+00:00"), 422,
     "not near the visit's day"),
    ("post", "/dispatch/visits/{v}/review", {"decision": "approve", "by": "x", "reason": "y"},
     409, "cannot verify a visit that is scheduled"),
    ("post", "/dispatch/visits/{v}/escalation", {"outcome": "reached", "by": "x"}, 409,
     "no open escalation"),
    ("patch", f"/dispatch/areas/{AREA}/settings", {"geofence_radius": 10}, 422,
     "geofence_radius"),
    ("patch", f"/dispatch/areas/{AREA}/settings", {"geofence_radius_m": -5}, 422,
     "greater than 0"),
    ("patch", f"/dispatch/areas/{AREA}/catalogue/gardening", {"default_minutes": 5}, 422,
     "service_type"),
    ("post", "/dispatch/care-plans", {"care_plan_id": "P", "elder_id": "E-1",
                                      "valid_from": DAY, "items": [
                                          {"service_type": "cleaning", "weekdays": [7]}]},
     422, "weekdays"),
    ("post", "/dispatch/care-plans", {"care_plan_id": "P", "elder_id": "E-1",
                                      "valid_from": DAY, "items": [
                                          {"service_type": "cleaning", "weekdays": [1],
                                           "window_start": "12:00", "window_end": "09:00"}]},
     422, "window must end after it starts"),
    ("post", "/dispatch/caregivers/C-404/sick", {"reason": "x"}, 404, "no caregiver C-404"),
    ("post", "/dispatch/proposals/R-404/accept", {"by": "x"}, 404, "no proposal R-404"),
    ("post", "/dispatch/alerts/nope:1/acknowledge", {"by": "x"}, 404, "no alert nope:1"),
    ("put", "/dispatch/elders/E-1/preferences", {"preferred_caregiver_ids": ["C-1"],
                                                 "excluded_caregiver_ids": ["C-1"]}, 422,
     "both preferred and excluded"),
])
def test_bad_input_is_refused_with_its_reason_and_changes_nothing(
        client, dispatch_app, visit, method, path, body, status, reason):
    """Unknown elder or caregiver, a caregiver not assigned, check-out before check-in,
    coordinates out of range, a time in the future or without offset, illegal review or
    escalation, bad settings and care plans: a 4xx naming the problem, the log unchanged."""
    before = _log_length(dispatch_app)
    r = getattr(client, method)(path.format(v=visit["visit_id"]), json=body)
    assert r.status_code == status, r.text
    assert reason in r.text
    assert _log_length(dispatch_app) == before
    assert client.get(f"/dispatch/visits/{visit['visit_id']}").json()["state"] == "scheduled"


def test_check_out_before_the_check_in_time_is_refused(client, dispatch_app, visit):
    """A check-out stamped before its check-in would give negative minutes: 422, still
    checked in."""
    assert client.post(f"/dispatch/visits/{visit['visit_id']}/check-in",
                       json=_where()).status_code == 200
    before = _log_length(dispatch_app)
    r = client.post(f"/dispatch/visits/{visit['visit_id']}/check-out",
                    json=_where(at=(T9 - timedelta(minutes=5)).isoformat()))
    assert r.status_code == 422 and "after check-in" in r.json()["detail"]
    assert _log_length(dispatch_app) == before
    assert client.get(f"/dispatch/visits/{visit['visit_id']}").json()["state"] == "checked_in"


def test_an_idempotency_key_cannot_be_reused_for_another_step(client, visit):
    """A key that checked in cannot check out: 409, still checked in."""
    client.post(f"/dispatch/visits/{visit['visit_id']}/check-in",
                json=_where(idempotency_key="k"))
    r = client.post(f"/dispatch/visits/{visit['visit_id']}/check-out",
                    json=_where(idempotency_key="k",
                                at=(T9 + timedelta(minutes=50)).isoformat()))
    assert r.status_code == 409 and "already used for check in" in r.json()["detail"]
    assert client.get(f"/dispatch/visits/{visit['visit_id']}").json()["state"] == "checked_in"
