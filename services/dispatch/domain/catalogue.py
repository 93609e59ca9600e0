"""The service catalogue (服务项目): default duration, skills, staff count, priority and tasks.

Configuration, not constants: an area may override any entry through the API (stored as events
of the area's ServiceArea aggregate). These defaults follow common practice in the policy documents
of DOMAIN.md. Task names are what the caregiver ticks on the phone (zh-CN first).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from contracts.values import Priority, ServiceType


@dataclass(frozen=True)
class CatalogueEntry:
    service_type: ServiceType
    default_minutes: int
    skills: frozenset[str] = field(default_factory=frozenset)
    staff_count: int = 1
    priority: Priority = Priority.ENTITLED_CARE
    volunteer_allowed: bool = False  # mutual-aid tasks and welfare checks only
    tasks: tuple[str, ...] = ()
    # The elder (or family) confirms with the code on the elder's card or a signature.
    needs_confirmation: bool = True
    # Personal care for a severely dependent elder needs a higher certificate level.
    personal_care: bool = False

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["skills"] = sorted(self.skills)
        data["tasks"] = list(self.tasks)
        return data

    def changed(self, **changes: Any) -> CatalogueEntry:
        if "skills" in changes:
            changes["skills"] = frozenset(changes["skills"])
        if "tasks" in changes:
            changes["tasks"] = tuple(changes["tasks"])
        if "priority" in changes:
            changes["priority"] = Priority(changes["priority"])
        return replace(self, **changes)


def _entry(service: ServiceType, minutes: int, *skills: str, tasks: tuple[str, ...] = (),
           staff: int = 1, priority: Priority = Priority.ENTITLED_CARE, volunteer: bool = False,
           confirm: bool = True, personal: bool = False) -> CatalogueEntry:
    return CatalogueEntry(service, minutes, frozenset(skills), staff, priority, volunteer, tasks,
                          confirm, personal)


DEFAULT_CATALOGUE: dict[ServiceType, CatalogueEntry] = {
    e.service_type: e
    for e in (
        _entry(ServiceType.MEAL_HELP, 30, "meal", tasks=("备餐", "协助进食", "清洗餐具")),
        _entry(ServiceType.MEAL_DELIVERY, 10, "meal", tasks=("送达餐食",), volunteer=True,
               confirm=False),
        _entry(ServiceType.CLEANING, 60, "cleaning",
               tasks=("扫地拖地", "擦拭家具", "清理厨房", "清理卫生间", "倒垃圾")),
        _entry(ServiceType.BATHING, 60, "bathing", tasks=("准备浴具", "协助洗浴", "更换衣物"),
               personal=True),
        _entry(ServiceType.MOBILITY, 30, "mobility", tasks=("协助行走", "协助上下床"),
               personal=True),
        _entry(ServiceType.SHOPPING, 45, tasks=("代购物品", "核对小票"), volunteer=True),
        _entry(ServiceType.HOUSEWORK, 60, "cleaning", tasks=("洗衣", "整理房间")),
        _entry(ServiceType.BED_MAKING, 20, "cleaning", tasks=("整理床铺", "更换床单")),
        _entry(ServiceType.DRESSING, 20, "personal_care", tasks=("协助穿衣", "整理仪容"),
               personal=True),
        _entry(ServiceType.REHABILITATION_NURSING, 60, "nursing",
               tasks=("测量血压", "康复训练", "记录体征"), personal=True),
        _entry(ServiceType.MEDICATION_REMINDER, 15, tasks=("提醒服药", "核对药量"),
               volunteer=True),
        _entry(ServiceType.MEDICAL_ESCORT, 180, "escort", tasks=("陪同就医", "取药", "送回家中"),
               priority=Priority.MEDICAL_ESCORT),
        _entry(ServiceType.COMPANIONSHIP, 60, tasks=("聊天陪伴", "读报"), volunteer=True),
        _entry(ServiceType.EQUIPMENT_RENTAL_DELIVERY, 30, "equipment",
               tasks=("送达器具", "安装调试", "使用讲解")),
        _entry(ServiceType.WELFARE_CHECK, 20, tasks=("确认安全", "查看居住环境", "了解需求"),
               volunteer=True),
        _entry(ServiceType.EMERGENCY, 60, tasks=("现场处置", "联系家属"),
               priority=Priority.EMERGENCY, confirm=False),
    )
}


def catalogue_entry(service_type: ServiceType,
                    overrides: dict[ServiceType, CatalogueEntry] | None = None) -> CatalogueEntry:
    if overrides and service_type in overrides:
        return overrides[service_type]
    return DEFAULT_CATALOGUE[service_type]
