"""The foundation's single-order assignment: who may do it, and when."""

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from contracts.values import CaregiverKind, ServiceType
from services.dispatch.domain.assignment import CandidateCaregiver, NoCaregiverAvailable, assign
from services.dispatch.domain.catalogue import DEFAULT_CATALOGUE

TZ = ZoneInfo("Asia/Shanghai")
DAY = date(2026, 11, 24)


def _c(cid, kind=CaregiverKind.EMPLOYEE, skills=("cleaning",), certified=True, booked=()):
    return CandidateCaregiver(cid, kind, frozenset(skills), certified, tuple(booked))


def test_picks_the_least_loaded_qualified_caregiver_after_their_visits():
    """The least-booked caregiver with the skill gets it; the start follows their last visit."""
    nine = datetime(2026, 11, 24, 9, 0, tzinfo=TZ)
    busy = _c("C-busy", booked=[(nine, nine + timedelta(hours=1)), (nine, nine)])
    light = _c("C-light", booked=[(nine - timedelta(hours=1), nine)])
    result = assign(DEFAULT_CATALOGUE[ServiceType.CLEANING], 60, DAY, None, None,
                    [busy, light], TZ)
    assert result.caregiver_id == "C-light"
    assert result.start == nine + timedelta(minutes=15)


def test_no_caregiver_fits_explains_each_refusal():
    """Volunteers may not bathe, expired certificates and missing skills are each named."""
    entry = DEFAULT_CATALOGUE[ServiceType.BATHING]
    candidates = [_c("V-1", kind=CaregiverKind.VOLUNTEER, skills=("bathing",)),
                  _c("C-old", skills=("bathing",), certified=False),
                  _c("C-skill", skills=("cleaning",))]
    with pytest.raises(NoCaregiverAvailable) as info:
        assign(entry, 60, DAY, None, None, candidates, TZ)
    text = str(info.value)
    assert "volunteers do not do bathing" in text
    assert "certificate" in text and "lacks bathing" in text


def test_window_too_small_after_bookings_is_refused():
    """If the caregiver's free time ends after the window, the order is not squeezed in."""
    start = datetime(2026, 11, 24, 11, 0, tzinfo=TZ)
    c = _c("C-1", skills=("meal",),
           booked=[(start - timedelta(hours=1), start + timedelta(minutes=20))])
    with pytest.raises(NoCaregiverAvailable, match="window"):
        assign(DEFAULT_CATALOGUE[ServiceType.MEAL_HELP], 30, DAY, start,
               start + timedelta(minutes=45), [c], TZ)


def test_mutual_aid_tasks_go_to_volunteers_first():
    """A welfare check goes to a free volunteer rather than an idle employee."""
    volunteer = _c("V-1", kind=CaregiverKind.VOLUNTEER, skills=(),
                   booked=[(datetime(2026, 11, 24, 8, 0, tzinfo=TZ),) * 2])
    employee = _c("C-1", skills=("cleaning",))
    result = assign(DEFAULT_CATALOGUE[ServiceType.WELFARE_CHECK], 20, DAY, None, None,
                    [employee, volunteer], TZ)
    assert result.caregiver_id == "V-1"
