"""Elders and caregivers as dispatch knows them."""

from __future__ import annotations

from datetime import date
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from contracts.values import CaregiverKind
from services.runtime.eventstore import stable_id


class Elder(Aggregate):
    """An elder living at home who receives visits; the id is derived from the elder's number."""

    @staticmethod
    def create_id(elder_id: str, **_: object) -> UUID:  # type: ignore[override]
        return stable_id("elder", elder_id)

    @event("Registered")
    def __init__(
        self,
        elder_id: str,
        name: str,
        service_area_id: str,
        lat: float,
        lon: float,
        confirmation_code: str,
        address: str = "",
        phone: str = "",
        gender: str | None = None,
    ) -> None:
        self.elder_id = elder_id
        self.name = name
        self.service_area_id = service_area_id
        self.lat = lat
        self.lon = lon
        # The code the elder (or family proxy) tells the caregiver to confirm a visit took place.
        self.confirmation_code = confirmation_code
        self.address = address
        self.phone = phone
        self.gender = gender


class Caregiver(Aggregate):
    """A caregiver (护理员) of a provider organisation, or a volunteer (志愿者)."""

    @staticmethod
    def create_id(caregiver_id: str, **_: object) -> UUID:  # type: ignore[override]
        return stable_id("caregiver", caregiver_id)

    @event("Registered")
    def __init__(
        self,
        caregiver_id: str,
        name: str,
        kind: CaregiverKind,
        service_area_id: str,
        skills: list[str],
        station_lat: float,
        station_lon: float,
        provider_id: str | None = None,
        certificate_expires: date | None = None,
        gender: str | None = None,
    ) -> None:
        self.caregiver_id = caregiver_id
        self.name = name
        self.kind = CaregiverKind(kind)
        self.service_area_id = service_area_id
        self.skills = sorted(set(skills))
        self.station_lat = station_lat
        self.station_lon = station_lon
        self.provider_id = provider_id
        self.certificate_expires = certificate_expires
        self.gender = gender

    def is_certified_on(self, day: date) -> bool:
        """Employees must hold a valid certificate (持证上岗); volunteers do mutual-aid only."""
        if self.kind is CaregiverKind.VOLUNTEER:
            return True
        return self.certificate_expires is not None and self.certificate_expires >= day
