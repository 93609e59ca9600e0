"""Value types shared by every integration event.

Ledgers count in integers only: labor time in minutes, money in fen (0.01 CNY). Those aliases are
strict so that a float or a numeric string can never slip into a posting.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, Strict

# Minutes of labor time (工时 are counted in minutes, never hours as floats).
Minutes = Annotated[int, Strict(), Field(ge=0)]
# Minutes that must be positive: durations, holds and transfers of nothing are meaningless.
PositiveMinutes = Annotated[int, Strict(), Field(gt=0)]
# Money in fen (0.01 CNY); may be negative only where a field says so (reversals are new postings).
Fen = Annotated[int, Strict()]
# Identifiers travel as non-empty strings: each service chooses its own id scheme.
Id = Annotated[str, Field(min_length=1)]


def _to_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00+14:00 is before the first UTC instant
        raise ValueError(f"{value.isoformat()} is out of range in UTC") from None


# An instant: must carry an offset, is normalised to UTC so that consumers never see local time.
UtcDateTime = Annotated[AwareDatetime, AfterValidator(_to_utc)]


class ServiceType(StrEnum):
    """Service items (服务项目) an elder can receive."""

    MEAL_HELP = "meal_help"  # 助餐
    MEAL_DELIVERY = "meal_delivery"  # 送餐
    CLEANING = "cleaning"  # 助洁
    BATHING = "bathing"  # 助浴
    MOBILITY = "mobility"  # 助行
    SHOPPING = "shopping"  # 助购
    HOUSEWORK = "housework"
    BED_MAKING = "bed_making"
    DRESSING = "dressing"
    REHABILITATION_NURSING = "rehabilitation_nursing"  # 康复护理
    MEDICATION_REMINDER = "medication_reminder"
    MEDICAL_ESCORT = "medical_escort"  # 陪同就医
    COMPANIONSHIP = "companionship"  # 精神慰藉
    EQUIPMENT_RENTAL_DELIVERY = "equipment_rental_delivery"  # 康复辅助器具租赁
    WELFARE_CHECK = "welfare_check"  # 探访关爱
    EMERGENCY = "emergency"  # 紧急救助


class Priority(StrEnum):
    """Dispatch priority, most urgent first."""

    EMERGENCY = "emergency"
    MEDICAL_ESCORT = "medical_escort"
    ENTITLED_CARE = "entitled_care"
    PAID = "paid"
    OPTIONAL = "optional"


class FundingSource(StrEnum):
    """Where a visit's minutes come from, in the fixed funding order (DESIGN.md, Reservations)."""

    ENTITLEMENT = "entitlement"  # subsidised monthly labor-hours
    TIME_CREDITS = "time_credits"  # the elder's time-bank credits
    FAMILY_PACKAGE = "family_package"  # hour package bought by the family
    OUT_OF_POCKET = "out_of_pocket"
    RESERVE = "reserve"  # the government-backed time-bank reserve (储备机制)


class CaregiverKind(StrEnum):
    EMPLOYEE = "employee"  # 护理员 employed by a provider
    VOLUNTEER = "volunteer"  # 志愿者, earns time credits


class OrderSource(StrEnum):
    HOTLINE = "hotline"  # 12349
    CARE_PLAN = "care_plan"  # proactive care: generated monthly
    APP = "app"
    WEARABLE_SOS = "wearable_sos"
    TIMEBANK_REDEMPTION = "timebank_redemption"
    DISPATCHER = "dispatcher"


class CheckMethod(StrEnum):
    """How a caregiver's check-in or check-out was captured."""

    GPS = "gps"
    QR_CODE = "qr_code"
    FACE = "face"
    MANUAL = "manual"


class ConfirmationMethod(StrEnum):
    """How the elder (or family) confirmed that the visit took place."""

    ELDER_CODE = "elder_code"
    FAMILY_PROXY = "family_proxy"
    SIGNATURE = "signature"
    NONE = "none"


class GeoPoint(BaseModel):
    """A WGS-84 position."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
