"""The visit's state machine and its verification rule (the six EVV elements + confirmation)."""

from datetime import UTC, datetime, timedelta

import pytest

from contracts.values import CaregiverKind, ConfirmationMethod, ServiceType
from services.dispatch.domain.visits import DispatchError, IllegalTransition, Visit, VisitState

HOME = (29.3069, 120.0760)
T0 = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)


def _visit() -> Visit:
    return Visit(visit_id="V-1", order_id="O-1", elder_id="E-1", service_area_id="A",
                 caregiver_id="C-1", caregiver_kind=CaregiverKind.EMPLOYEE, provider_id="P",
                 service_type=ServiceType.CLEANING, planned_start=T0,
                 planned_end=T0 + timedelta(minutes=60), home_lat=HOME[0], home_lon=HOME[1],
                 use_time_credits=False, time_credit_account_id=None,
                 out_of_pocket_agreed=False, correlation_id="c")


def _check_out(visit: Visit, minutes: int = 55, code: str | None = "1234", at_home=True):
    lat, lon = HOME if at_home else (29.40, 120.20)
    visit.check_out(at=T0 + timedelta(minutes=minutes), lat=lat, lon=lon, tasks_done=["mop"],
                    confirmation_code=code, family_proxy_confirmed=False, elder_code="1234")


def test_complete_confirmed_visit_verifies():
    """Check-in at the home, check-out with the elder's code: nothing keeps it from verification."""
    visit = _visit()
    visit.check_in(at=T0, lat=HOME[0] + 0.0005, lon=HOME[1], method="gps")
    assert visit.check_in_verified and visit.check_in_distance_m < 100
    _check_out(visit)
    assert visit.verification_gaps() == []
    assert visit.actual_minutes == 55 and visit.confirmation is ConfirmationMethod.ELDER_CODE
    visit.verify(by="automatic")
    assert visit.state is VisitState.VERIFIED


def test_far_away_and_unconfirmed_visit_is_not_verified_without_an_override():
    """A visit checked in and out far from home with a wrong code lists every gap; a dispatcher
    may verify it only with a reason."""
    visit = _visit()
    visit.check_in(at=T0, lat=29.40, lon=120.20, method="gps")
    _check_out(visit, code="9999", at_home=False)
    gaps = visit.verification_gaps()
    assert any("home" in g for g in gaps) and any("did not match" in g for g in gaps)
    with pytest.raises(DispatchError, match="cannot verify"):
        visit.verify(by="automatic")
    visit.verify(by="dispatcher-1", override_reason="elder confirmed by phone")
    assert visit.state is VisitState.VERIFIED and visit.verification_problems == gaps


@pytest.mark.parametrize("step", ["check_out", "verify"])
def test_steps_out_of_order_are_rejected_with_the_reason(step):
    """Checking out or verifying a visit that was never checked in is an illegal transition."""
    visit = _visit()
    with pytest.raises(IllegalTransition, match="scheduled"):
        if step == "check_out":
            _check_out(visit)
        else:
            visit.verify(by="x")


def test_cancelled_visit_cannot_be_checked_in_and_checked_in_visit_cannot_be_cancelled():
    """Cancellation is only possible before the caregiver arrives, and is final."""
    visit = _visit()
    visit.cancel(reason="elder in hospital", cancelled_by="family")
    with pytest.raises(IllegalTransition):
        visit.check_in(at=T0, lat=HOME[0], lon=HOME[1], method="gps")
    other = _visit()
    other.check_in(at=T0, lat=HOME[0], lon=HOME[1], method="gps")
    with pytest.raises(IllegalTransition):
        other.cancel(reason="x", cancelled_by="y")


def test_check_out_before_check_in_time_is_refused():
    """A check-out stamped before the check-in would give negative minutes: refused."""
    visit = _visit()
    visit.check_in(at=T0, lat=HOME[0], lon=HOME[1], method="gps")
    with pytest.raises(DispatchError, match="after check-in"):
        visit.check_out(at=T0 - timedelta(minutes=1), lat=HOME[0], lon=HOME[1], tasks_done=[],
                        confirmation_code="1234", family_proxy_confirmed=False, elder_code="1234")
