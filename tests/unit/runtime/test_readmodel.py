"""Read models that follow a service's own log (services/runtime/readmodel.py): which events
they are given, and that each service's read model is given every event it acts on."""

from __future__ import annotations

import inspect
import re

import pytest
from eventsourcing.domain import Aggregate, event

from services.dispatch import application as dispatch
from services.ledger import application as ledger
from services.runtime.eventstore import ServiceApplication
from services.runtime.readmodel import FollowingReadModel
from services.timebank import application as timebank


class Lamp(Aggregate):
    @event("Installed")
    def __init__(self, room: str) -> None:
        self.room = room
        self.on = False

    @event("Switched")
    def switch(self) -> None:
        self.on = not self.on


class Lamps(ServiceApplication):
    name = "Lamps"


def test_a_read_model_is_given_only_the_events_it_acts_on_and_still_reaches_the_end(
        tmp_path) -> None:
    """With applies_to, events of other classes are passed over undecoded, and the position
    still moves to the end of the log; without it, every event is given."""
    app = Lamps(env={"PERSISTENCE_MODULE": "eventsourcing.sqlite",
                     "SQLITE_DBNAME": str(tmp_path / "lamps.sqlite")})
    lamp = Lamp(room="kitchen")
    lamp.switch()
    lamp.switch()
    app.save(lamp, Lamp(room="hall"))
    given: list[str] = []
    every: list[str] = []
    switches = FollowingReadModel(app, lambda e: given.append(type(e).__qualname__),
                                  applies_to={"Lamp.Switched"})
    whole = FollowingReadModel(app, lambda e: every.append(type(e).__qualname__))
    assert switches.catch_up() == whole.catch_up() == 4
    assert given == ["Lamp.Switched", "Lamp.Switched"]
    assert sorted(every) == ["Lamp.Installed", "Lamp.Installed", "Lamp.Switched",
                             "Lamp.Switched"]
    assert switches.position == whole.position == app.recorder.max_notification_id()


@pytest.mark.parametrize("module, app_class", [
    (dispatch, dispatch.DispatchApplication),
    (ledger, ledger.LedgerApplication),
    (timebank, timebank.TimebankApplication),
], ids=["dispatch", "ledger", "timebank"])
def test_each_service_s_read_model_is_given_every_event_its_index_names(module, app_class
                                                                         ) -> None:
    """Every event class that a service's _index compares the event's name with (and, in
    dispatch, every state change it follows) is in INDEXED_EVENTS: an event left out would
    silently never reach the read model."""
    source = inspect.getsource(app_class._index)
    named = set(re.findall(r'"([A-Z]\w*\.[A-Z]\w*)"', source))
    if "STATE_AFTER" in source:
        named |= set(module.STATE_AFTER)
    assert named and named <= module.INDEXED_EVENTS, named - module.INDEXED_EVENTS
