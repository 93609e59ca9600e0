"""Personal fields of events encrypted per person, at the persistence boundary.

A service names the events that carry personal data and which of their attributes are personal
(``personal_data`` on its :class:`~services.runtime.eventstore.ServiceApplication`). Before such
an event is stored, each of those attributes is replaced by ``{"_pii": <base64 AES-GCM>}``
sealed with the data key of the person the event is about (see keystore.py); when it is read
back, the attribute is opened again — or, once the person's key is deleted, reads as
``[erased]``. The domain classes never see any of this. The whole event is then compressed and
encrypted with the event-store key as usual (cipher.py).
"""

from __future__ import annotations

import logging
from base64 import b64decode, b64encode
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from eventsourcing.persistence import (
    Cipher,
    Compressor,
    Mapper,
    StoredEvent,
    Transcoder,
)
from eventsourcing.utils import get_topic

from services.runtime.cipher import seal, unseal
from services.runtime.keystore import SubjectErased, SubjectKeys

log = logging.getLogger(__name__)
ERASED = "[erased]"
MARK = "_pii"


@dataclass(frozen=True)
class PersonalFields:
    """Which attributes of an event are personal, and whose.

    The subject is ``f"{kind}:{event.<subject_field>}"``; an event whose subject field is None
    (e.g. an alert about no one in particular) is stored without field encryption.
    """

    subject_field: str
    fields: tuple[str, ...]
    kind: str = "person"
    erased: Any = ERASED  # what an attribute reads as after erasure
    # Attributes that read as something else after erasure, e.g. ``(("hardship", False),)``: a
    # flag or a date the domain reads must not become the truthy text "[erased]".
    erased_as: tuple[tuple[str, Any], ...] = ()

    def subject(self, state: Mapping[str, Any]) -> str | None:
        value = state.get(self.subject_field)
        return None if value is None else f"{self.kind}:{value}"

    def erased_value(self, field: str) -> Any:
        """What ``field`` reads as once the subject's key is deleted."""
        return dict(self.erased_as).get(field, self.erased)


def is_sealed(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {MARK}


class PersonalDataMapper(Mapper):  # type: ignore[type-arg]
    """eventsourcing's Mapper, plus per-subject encryption of the named attributes."""

    def __init__(
        self,
        transcoder: Transcoder,
        compressor: Compressor | None = None,
        cipher: Cipher | None = None,
        *,
        personal: Mapping[type | str, PersonalFields] | None = None,
        keys: SubjectKeys,
    ) -> None:
        super().__init__(transcoder=transcoder, compressor=compressor, cipher=cipher)
        self.personal = {(t if isinstance(t, str) else get_topic(t)): spec
                         for t, spec in (personal or {}).items()}
        self.keys = keys

    def _aad(self, subject: str, field: str) -> bytes:
        # Binds a sealed value to its person and attribute: it cannot be moved to another.
        return f"{subject}/{field}".encode()

    def seal_value(self, subject: str, field: str, value: Any) -> dict[str, str]:
        key = self.keys.key_or_create(subject)
        sealed = seal(key, self.transcoder.encode(value), self._aad(subject, field))
        return {MARK: b64encode(sealed).decode("ascii")}

    def open_value(self, subject: str, field: str, value: dict[str, str],
                   erased: Any = ERASED) -> Any:
        key = self.keys.key(subject)
        if key is None:
            return erased
        try:
            opened = unseal(key, b64decode(value[MARK]), self._aad(subject, field))
        except InvalidTag:
            # Sealed with a key this subject no longer has (a key store restored from another
            # backup, say): unreadable, as if erased, and said loudly, never a failed request.
            log.error("a sealed %s of %s does not open with its key: read as erased",
                      field, subject)
            return erased
        return self.transcoder.decode(opened)

    def to_stored_event(self, domain_event: Any) -> StoredEvent:
        spec = self.personal.get(get_topic(type(domain_event)))
        state = vars(domain_event)
        subject = spec.subject(state) if spec else None
        if spec is None or subject is None:
            return super().to_stored_event(domain_event)
        sealed = dict(state)
        for name in spec.fields:
            if sealed.get(name) is not None:
                try:
                    sealed[name] = self.seal_value(subject, name, sealed[name])
                except SubjectErased:
                    # A later event about a person who asked to be forgotten (an alert naming
                    # an erased elder, say) keeps nothing personal of them.
                    sealed[name] = spec.erased_value(name)
        # A copy carries the sealed values; the event the application holds is left as it was.
        copy = object.__new__(type(domain_event))
        object.__setattr__(copy, "__dict__", sealed)
        return super().to_stored_event(copy)

    def to_domain_event(self, stored_event: StoredEvent) -> Any:
        domain_event = super().to_domain_event(stored_event)
        spec = self.personal.get(stored_event.topic)
        if spec is None:
            return domain_event
        state = domain_event.__dict__
        subject = spec.subject(state)
        if subject is None:
            return domain_event
        for name in spec.fields:
            if is_sealed(state.get(name)):
                state[name] = self.open_value(subject, name, state[name],
                                              spec.erased_value(name))
        return domain_event
