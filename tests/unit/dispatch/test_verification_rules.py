"""Pure rules of dispatch: the geofence with accuracy, duration bounds, overlap, confirmation
need, care plan recurrence and the routing problem built from a day."""

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from contracts.values import CaregiverKind, ServiceType
from services.dispatch.domain.areas import AreaRules, ServiceArea
from services.dispatch.domain.catalogue import DEFAULT_CATALOGUE
from services.dispatch.domain.people import Caregiver, Elder
from services.dispatch.domain.plans import CarePlan
from services.dispatch.domain.visits import Visit, locate
from services.dispatch.planning import DayProblem, Job

HOME = (29.3069, 120.0760)
T0 = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)
TZ = ZoneInfo("Asia/Shanghai")


def _visit(service: ServiceType = ServiceType.CLEANING, confirm: bool = True) -> Visit:
    return Visit(visit_id="V-1", order_id="O-1", elder_id="E-1", service_area_id="A",
                 caregiver_id="C-1", caregiver_kind=CaregiverKind.EMPLOYEE, provider_id="P",
                 service_type=service, planned_start=T0, planned_end=T0 + timedelta(minutes=60),
                 home_lat=HOME[0], home_lon=HOME[1], use_time_credits=False,
                 time_credit_account_id=None, out_of_pocket_agreed=False, correlation_id="c",
                 needs_confirmation=confirm)


def _served(visit: Visit, minutes: int, code: str | None = "1234") -> Visit:
    visit.check_in(at=T0, lat=HOME[0], lon=HOME[1], method="gps")
    visit.check_out(at=T0 + timedelta(minutes=minutes), lat=HOME[0], lon=HOME[1],
                    tasks_done=[], confirmation_code=code, family_proxy_confirmed=False,
                    elder_code="1234")
    return visit


def test_the_geofence_needs_an_accurate_position_inside_the_radius():
    """Inside the radius with good accuracy: verified; too far, too vague or no position:
    not verified, with the reason."""
    assert locate(HOME[0] + 0.001, HOME[1], 20, HOME, 200, 100)[:2] == (True, 111)
    ok, meters, why = locate(HOME[0] + 0.003, HOME[1], 20, HOME, 200, 100)
    assert not ok and meters == 334 and "geofence 200 m" in why
    assert "accurate to 150 m" in locate(*HOME, 150, HOME, 200, 100)[2]
    assert locate(None, None, None, HOME, 200, 100) == (False, None, "no position reported")


def test_durations_outside_the_areas_bounds_need_review():
    """Under half or over one and a half times the planned minutes is not verified
    automatically; the area may widen the bounds."""
    assert _served(_visit(), 29).verification_gaps() == [
        "lasted 29 min, under 50% of the planned 60 min"]
    assert _served(_visit(), 30).verification_gaps() == []
    assert "over 150%" in _served(_visit(), 91).verification_gaps()[0]
    assert _served(_visit(), 91).verification_gaps(AreaRules(max_duration_percent=200)) == []


def test_overlap_and_confirmation_rules():
    """An overlapping visit is a gap; a visit needing no confirmation (meal delivery) or an
    area not requiring it verifies without a code."""
    assert _served(_visit(), 50).verification_gaps(overlapping=["V-2"]) == [
        "overlaps visit V-2 of the same caregiver"]
    unconfirmed = _served(_visit(), 50, code=None)
    assert unconfirmed.verification_gaps() == ["no confirmation by the elder or a family proxy"]
    assert unconfirmed.verification_gaps(AreaRules(confirmation_required=False)) == []
    delivery = _served(_visit(ServiceType.MEAL_DELIVERY, confirm=False), 50, code=None)
    assert delivery.verification_gaps() == []


def test_area_rules_and_catalogue_changes_accumulate():
    """Settings and catalogue changes are events; later ones add to earlier ones."""
    area = ServiceArea(service_area_id="A")
    area.change_rules(changes={"geofence_radius_m": 300})
    area.change_rules(changes={"late_grace_minutes": [30, 10]})
    assert area.rules.geofence_radius_m == 300 and area.rules.late_grace_minutes == (10, 30)
    area.change_catalogue_entry(service_type="bathing", changes={"default_minutes": 45})
    area.change_catalogue_entry(service_type="bathing", changes={"staff_count": 2})
    bathing = area.catalogue()[ServiceType.BATHING]
    assert (bathing.default_minutes, bathing.staff_count) == (45, 2)
    assert DEFAULT_CATALOGUE[ServiceType.BATHING].default_minutes == 60


def test_a_fortnightly_care_plan_item_falls_on_every_other_week():
    """every_weeks 2 counts weeks from the plan's first Monday; versions apply from their
    date on."""
    monday = date(2026, 11, 16)
    plan = CarePlan(care_plan_id="P", elder_id="E", service_area_id="A", valid_from=monday,
                    created_by=None, items=[{"service_type": "cleaning", "weekdays": [2],
                                             "every_weeks": 2}])
    days = [monday + timedelta(days=d) for d in range(35)]
    assert [d.isoformat() for d in days if plan.items_on(d)] == [
        "2026-11-18", "2026-12-02", "2026-12-16"]
    plan.change(items=[{"service_type": "bathing", "weekdays": [4]}],
                effective_from=date(2026, 11, 30), by=None)
    due = {d.isoformat(): plan.items_on(d)[0][2]["service_type"] for d in days
           if plan.items_on(d)}
    assert due == {"2026-11-18": "cleaning", "2026-12-04": "bathing", "2026-12-11": "bathing",
                   "2026-12-18": "bathing"}
    assert plan.items_on(monday - timedelta(days=5)) == []


def test_the_day_problem_leaves_out_who_may_not_work_and_bars_what_they_may_not_do():
    """Expired certificates and days off are not in the problem; volunteers are barred from
    non-mutual-aid visits and a blacklisted provider's caregivers from subsidised ones."""
    day = date(2026, 11, 24)

    def caregiver(cid: str, kind=CaregiverKind.EMPLOYEE, provider="P", expires=date(2027, 1, 1),
                  **extra) -> Caregiver:
        return Caregiver(caregiver_id=cid, name=cid, kind=kind, service_area_id="A",
                         skills=["cleaning"], station_lat=29.3, station_lon=120.07,
                         provider_id=provider, certificate_expires=expires, **extra)

    off = caregiver("C-off")
    off.take_day_off(day=day, reason="leave")
    staff = [caregiver("C-ok"), caregiver("C-expired", expires=date(2026, 11, 1)), off,
             caregiver("C-black", provider="BAD"),
             caregiver("V-1", kind=CaregiverKind.VOLUNTEER, provider=None, expires=None)]
    elder = Elder(elder_id="E", name="E", service_area_id="A", lat=29.31, lon=120.08,
                  confirmation_code="1234")
    job = Job(visit_id="V-x", elder=elder, service_type=ServiceType.CLEANING,
              entry=DEFAULT_CATALOGUE[ServiceType.CLEANING], duration=60,
              priority="entitled_care", subsidised=True)
    problem = DayProblem(day, TZ, staff, [job], blacklisted_providers={"BAD"})
    assert [c.id for c in problem.problem.caregivers] == ["C-ok", "C-black", "V-1"]
    visit = problem.problem.visit("V-x")
    assert visit.excluded_caregiver_ids == {"C-black", "V-1"}
    assert visit.windows[0].start == 7 * 60 and visit.windows[0].end == 19 * 60 - 60
    plan = problem.solve(time_limit_s=1)
    assert plan.placements["V-x"].caregiver_id == "C-ok" and plan.violations == []


def test_the_catalogue_covers_every_service_type():
    """Every service type of DOMAIN.md has a default duration, tasks to tick and a staff
    count of one or two; only mutual-aid services and welfare checks are open to volunteers."""
    assert set(DEFAULT_CATALOGUE) == set(ServiceType)
    for service, entry in DEFAULT_CATALOGUE.items():
        assert entry.default_minutes > 0 and entry.tasks and entry.staff_count in (1, 2), service
    volunteer = {s for s, e in DEFAULT_CATALOGUE.items() if e.volunteer_allowed}
    assert ServiceType.WELFARE_CHECK in volunteer
    assert not volunteer & {ServiceType.BATHING, ServiceType.REHABILITATION_NURSING,
                            ServiceType.MEDICAL_ESCORT, ServiceType.EMERGENCY}
