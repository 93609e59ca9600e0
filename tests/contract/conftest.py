"""A valid example of every integration event, for round trips and validation tests."""

from __future__ import annotations

from copy import deepcopy
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from contracts.envelope import IntegrationEvent
from contracts.registry import EVENT_TYPES

T0 = datetime(2026, 3, 2, 1, 30, tzinfo=UTC)  # 09:30 in Asia/Shanghai
T1 = T0 + timedelta(minutes=60)
LOCATION = {"lat": 29.3069, "lon": 120.0751}  # Yiwu
LEGS = [
    {"source": "entitlement", "account_id": "ent-e1-2026-03", "minutes": 45},
    {"source": "out_of_pocket", "account_id": "oop-e1", "minutes": 15, "amount_fen": 750},
]

SAMPLE_PAYLOADS: dict[str, dict[str, Any]] = {
    "OrderPlaced": {
        "order_id": "o1",
        "elder_id": "e1",
        "service_type": "bathing",
        "source": "hotline",
        "priority": "entitled_care",
        "emergency": False,
        "requested_date": date(2026, 3, 2).isoformat(),
        "window_start": T0.isoformat(),
        "window_end": T1.isoformat(),
        "duration_minutes": 60,
        "staff_count": 2,
        "location": LOCATION,
        "use_time_credits": True,
        "time_credit_account_id": "tc-e1",
        "out_of_pocket_agreed": True,
        "notes": "bed-bound, needs two caregivers",
        "placed_by": "dispatcher-7",
    },
    "OrderCancelled": {"order_id": "o1", "elder_id": "e1", "reason": "in hospital"},
    "VisitScheduled": {
        "visit_id": "v1",
        "order_id": "o1",
        "elder_id": "e1",
        "caregiver_id": "c1",
        "caregiver_kind": "employee",
        "provider_id": "p1",
        "service_type": "bathing",
        "planned_start": T0.isoformat(),
        "planned_end": T1.isoformat(),
        "planned_minutes": 60,
        "use_time_credits": False,
        "out_of_pocket_agreed": True,
    },
    "VisitRescheduled": {
        "visit_id": "v1",
        "order_id": "o1",
        "elder_id": "e1",
        "caregiver_id": "c2",
        "previous_caregiver_id": "c1",
        "planned_start": T0.isoformat(),
        "planned_end": T1.isoformat(),
        "planned_minutes": 60,
        "reason": "caregiver sick",
    },
    "VisitCancelled": {
        "visit_id": "v1",
        "order_id": "o1",
        "elder_id": "e1",
        "reason": "elder not at home",
        "cancelled_by": "dispatcher-7",
    },
    "VisitCheckedIn": {
        "visit_id": "v1",
        "elder_id": "e1",
        "caregiver_id": "c1",
        "at": T0.isoformat(),
        "location": LOCATION,
        "location_verified": True,
        "distance_m": 12,
        "method": "gps",
    },
    "VisitCheckedOut": {
        "visit_id": "v1",
        "elder_id": "e1",
        "caregiver_id": "c1",
        "at": T1.isoformat(),
        "location": LOCATION,
        "location_verified": True,
        "tasks_done": ["bathing", "bed_making"],
        "actual_minutes": 60,
    },
    "VisitVerified": {
        "visit_id": "v1",
        "order_id": "o1",
        "elder_id": "e1",
        "caregiver_id": "c1",
        "caregiver_kind": "employee",
        "provider_id": "p1",
        "service_type": "bathing",
        "started_at": T0.isoformat(),
        "ended_at": T1.isoformat(),
        "actual_minutes": 60,
        "planned_minutes": 60,
        "confirmation": "elder_code",
        "location_verified": True,
    },
    "VisitDisputed": {
        "visit_id": "v1",
        "elder_id": "e1",
        "caregiver_id": "c1",
        "reason": "caregiver left after 20 minutes",
        "raised_by": "family",
    },
    "ElderErased": {"elder_id": "e1", "erased_by": "admin:zhang", "erased_at": T0},
    "HoursReserved": {
        "reservation_id": "r1",
        "visit_id": "v1",
        "elder_id": "e1",
        "requested_minutes": 60,
        "legs": LEGS,
        "expires_at": (T1 + timedelta(days=2)).isoformat(),
    },
    "ReservationRejected": {
        "visit_id": "v1",
        "elder_id": "e1",
        "requested_minutes": 60,
        "available_minutes": 30,
        "reason": "entitlement used up and no out-of-pocket agreement",
    },
    "ReservationReleased": {
        "reservation_id": "r1",
        "visit_id": "v1",
        "elder_id": "e1",
        "released_minutes": 10,
        "reason": "verified_remainder",
    },
    "VisitCharged": {
        "visit_id": "v1",
        "elder_id": "e1",
        "provider_id": "p1",
        "charged_minutes": 60,
        "legs": LEGS,
        "posting_ids": ["post-1", "post-2"],
    },
    "EntitlementExhausted": {
        "elder_id": "e1",
        "month": "2026-03",
        "entitled_minutes": 480,
        "used_minutes": 480,
    },
    "CreditsEarned": {
        "account_id": "tc-vol1",
        "volunteer_id": "vol1",
        "visit_id": "v2",
        "served_minutes": 40,
        "credited_minutes": 60,
        "multiplier_permille": 1500,
        "balance_after_minutes": 600,
    },
    "CreditsHoldRequested": {
        "visit_id": "v3",
        "elder_id": "e1",
        "account_id": "tc-e1",
        "minutes": 30,
        "expires_at": (T1 + timedelta(days=2)).isoformat(),
    },
    "CreditsReserved": {
        "reservation_id": "cr1",
        "visit_id": "v3",
        "account_id": "tc-e1",
        "minutes": 30,
        "expires_at": (T1 + timedelta(days=2)).isoformat(),
    },
    "CreditsReservationRejected": {
        "visit_id": "v3",
        "account_id": "tc-e1",
        "requested_minutes": 30,
        "available_minutes": 0,
        "reason": "insufficient credits",
    },
    "CreditsReleased": {
        "reservation_id": "cr1",
        "visit_id": "v3",
        "account_id": "tc-e1",
        "minutes": 30,
        "reason": "visit cancelled",
    },
    "CreditsRedeemed": {
        "reservation_id": "cr1",
        "visit_id": "v3",
        "account_id": "tc-e1",
        "minutes": 30,
    },
    "CreditsGifted": {
        "gift_id": "g1",
        "from_account_id": "tc-vol1",
        "to_account_id": "tc-mother-of-vol1",
        "minutes": 120,
        "note": "for mum",
    },
    "CreditsSettled": {
        "settlement_id": "s1",
        "period": "2026-11",
        "payer_bank_id": "yiwu-choucheng",
        "payee_bank_id": "yiwu-beiyuan",
        "minutes": 90,
    },
}


def sample_message(event_type: str, **envelope: Any) -> dict[str, Any]:
    """A valid message dict (as a producer would send it) of `event_type`."""
    return {
        "event_id": "0b7f3a52-6a0e-4c2c-9d59-1f4f0a3b2c11",
        "type": event_type,
        "schema_version": EVENT_TYPES[event_type].current_version(),
        "occurred_at": T1.isoformat(),
        "correlation_id": "5d1c0a7e-2f43-4a8e-9d0b-7b6a5c4d3e21",
        "causation_id": None,
        "service_area_id": "yiwu-choucheng",
        "payload": deepcopy(SAMPLE_PAYLOADS[event_type]),
        **envelope,
    }


def sample_event(event_type: str) -> IntegrationEvent:
    return EVENT_TYPES[event_type].model_validate(sample_message(event_type))


@pytest.fixture(params=sorted(SAMPLE_PAYLOADS))
def any_event(request: pytest.FixtureRequest) -> IntegrationEvent:
    """One valid event of each type in turn."""
    return sample_event(request.param)


@pytest.fixture
def message() -> Any:
    """`message(event_type, **envelope_overrides)` builds a valid message dict."""
    return sample_message


@pytest.fixture
def sampled_types() -> set[str]:
    """The event types that have an example here."""
    return set(SAMPLE_PAYLOADS)
