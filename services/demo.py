"""A few demo elders, caregivers and volunteers in one sub-district of Yiwu (稠城街道).

Loaded by `homecare up` unless --no-demo-data. Registration is idempotent, so loading twice
changes nothing.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from contracts.values import CaregiverKind
from services.ledger.domain.entitlement import ElderFacts

AREA = "yiwu-choucheng"

ELDERS: list[dict[str, Any]] = [
    {"elder_id": "E-1001", "name": "王秀英", "lat": 29.3069, "lon": 120.0760, "code": "4821",
     "gender": "female", "facts": {"birth_date": date(1931, 3, 2)}},  # 95: 4 h
    {"elder_id": "E-1002", "name": "陈国强", "lat": 29.3121, "lon": 120.0822, "code": "7315",
     "gender": "male", "facts": {"birth_date": date(1948, 7, 9), "dibao": True,
                                 "disability_qualifies": True}},  # 低保 + disability: 8 h
    {"elder_id": "E-1003", "name": "李桂兰", "lat": 29.2987, "lon": 120.0701, "code": "2290",
     "gender": "female", "facts": {"birth_date": date(1950, 1, 20),
                                   "no_spouse_no_children": True}},  # 孤寡: 4 h
    {"elder_id": "E-1004", "name": "张德明", "lat": 29.3155, "lon": 120.0655, "code": "9043",
     "gender": "male", "facts": {"birth_date": date(1956, 11, 1)}},  # 70, no category: 0 h
]

CAREGIVERS: list[dict[str, Any]] = [
    {"caregiver_id": "C-201", "name": "刘美华", "kind": CaregiverKind.EMPLOYEE,
     "skills": ["meal", "cleaning", "bathing", "personal_care", "mobility"],
     "provider_id": "P-yiwu-anle", "certificate_expires": date(2027, 12, 31), "gender": "female"},
    {"caregiver_id": "C-202", "name": "赵建军", "kind": CaregiverKind.EMPLOYEE,
     "skills": ["nursing", "escort", "mobility", "equipment", "cleaning"],
     "provider_id": "P-yiwu-kangning", "certificate_expires": date(2027, 6, 30), "gender": "male"},
    {"caregiver_id": "V-301", "name": "周丽（志愿者）", "kind": CaregiverKind.VOLUNTEER,
     "skills": ["meal"], "provider_id": None, "certificate_expires": None, "gender": "female"},
]

STATION = (29.3050, 120.0745)  # 稠城街道居家养老服务中心


def seed_dispatch(app: Any) -> None:
    app.register_provider(provider_id="P-yiwu-anle", name="义乌市安乐居家养老服务中心",
                          service_area_id=AREA)
    app.register_provider(provider_id="P-yiwu-kangning", name="义乌市康宁护理服务站",
                          service_area_id=AREA)
    addresses = {"E-1001": "稠城街道 绣湖社区 12幢 201", "E-1002": "稠城街道 宾王社区 5幢 102",
                 "E-1003": "稠城街道 西门社区 8号", "E-1004": "稠城街道 北门社区 3幢 301"}
    levels = {"E-1001": 2, "E-1002": 2, "E-1003": 1, "E-1004": 0}  # 能力评估 0..4
    for e in ELDERS:
        app.register_elder(elder_id=e["elder_id"], name=e["name"], service_area_id=AREA,
                           lat=e["lat"], lon=e["lon"], confirmation_code=e["code"],
                           gender=e["gender"], address=addresses[e["elder_id"]],
                           capability_level=levels[e["elder_id"]], family_phone="13800000000")
    for c in CAREGIVERS:
        app.register_caregiver(service_area_id=AREA, station_lat=STATION[0],
                               station_lon=STATION[1], **c)
    # 陈国强 (低保, disabled): bathing every Wednesday, cleaning every other Friday.
    app.create_care_plan(care_plan_id="CP-E-1002", elder_id="E-1002", valid_from=date(2026, 11, 2),
                         created_by="demo", items=[
                             {"service_type": "bathing", "weekdays": [2],
                              "window_start": "09:00", "window_end": "11:30"},
                             {"service_type": "cleaning", "weekdays": [4], "every_weeks": 2,
                              "window_start": "14:00", "window_end": "17:00"}])


def seed_ledger(app: Any) -> None:
    for e in ELDERS:
        app.register_elder(e["elder_id"], AREA, ElderFacts(**e["facts"]))


def seed_timebank(app: Any) -> None:
    for c in CAREGIVERS:
        if c["kind"] is CaregiverKind.VOLUNTEER:
            app.join(c["caregiver_id"], AREA, display_name=c["name"])  # one bank per district
    for e in ELDERS:  # elders may redeem credits gifted to them (age-gated on the birth date)
        app.join(e["elder_id"], AREA, birth_date=e["facts"]["birth_date"], display_name=e["name"])
    app.grant(AREA, 100 * 60, "demo-reserve-grant")


SEEDERS = {"dispatch": seed_dispatch, "ledger": seed_ledger, "timebank": seed_timebank}


# Who may log in to a demo system (local mode only): one user per role, all with the same
# password, printed at start. Never used outside `homecare up`/`homecare demo`.
DEMO_PASSWORD = "homecare-demo"


def demo_users(area: str = AREA, caregiver: str = "C-201", volunteer: str = "V-301",
               elder: str = "E-1001") -> dict[str, Any]:
    from services.runtime.auth import Principal

    areas = frozenset({area})
    return {
        "admin": Principal("admin", "admin", name="系统管理员"),
        "dispatcher": Principal("dispatcher", "dispatcher", service_areas=areas, name="调度员"),
        "caregiver": Principal("caregiver", "caregiver", caregiver_id=caregiver, name="护理员"),
        "volunteer": Principal("volunteer", "volunteer", caregiver_id=volunteer,
                               volunteer_id=volunteer, name="志愿者"),
        "family": Principal("family", "elder", elder_ids=frozenset({elder}), name="家属"),
        "finance": Principal("finance", "finance", service_areas=areas, name="街道财务"),
        "auditor": Principal("auditor", "auditor", name="民政审计"),
    }


def seed_demo_users(users: Any, **who: str) -> list[str]:
    """Add the demo users that do not exist yet; the names of those added."""
    existing = set(users.usernames())
    added = []
    for username, principal in demo_users(**who).items():
        if username not in existing:
            users.add(username, DEMO_PASSWORD, principal)
            added.append(username)
    return added
