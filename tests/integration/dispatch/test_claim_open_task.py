"""A volunteer takes an open mutual-aid task: scheduled to them under the usual rules, or
refused with the reason."""

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from contracts.values import ServiceType
from services.demo import SEEDERS
from services.dispatch.application import DispatchApplication, PlaceOrder
from services.dispatch.domain.visits import DispatchError

pytestmark = pytest.mark.integration


@pytest.fixture
def dispatch(persistence):
    app = DispatchApplication(env=persistence)
    SEEDERS["dispatch"](app)
    yield app
    app.close()


def _open(app: DispatchApplication, service: ServiceType, elder: str = "E-1002") -> str:
    today = datetime.now(ZoneInfo("Asia/Shanghai")).date()
    order, visit = app.place_order(PlaceOrder(elder_id=elder, service_type=service,
                                              requested_date=today, await_plan=True))
    assert visit is None and order.state == "placed"
    return order.order_id


def test_a_volunteer_takes_an_open_shopping_task(dispatch):
    """The open order is scheduled to the volunteer who took it; taking it twice is refused."""
    order_id = _open(dispatch, ServiceType.SHOPPING)
    order, visit = dispatch.claim_order(order_id, "V-301")
    assert (order.state, visit.caregiver_id, visit.caregiver_kind) == (
        "scheduled", "V-301", "volunteer")
    with pytest.raises(DispatchError, match="not open"):
        dispatch.claim_order(order_id, "V-301")


def test_paid_care_and_employees_cannot_claim(dispatch):
    """Bathing is not mutual aid: a volunteer cannot take it; employees are assigned, not
    self-serving. The order stays open."""
    bathing = _open(dispatch, ServiceType.BATHING)
    with pytest.raises(DispatchError, match="volunteers do not do bathing"):
        dispatch.claim_order(bathing, "V-301")
    shopping = _open(dispatch, ServiceType.SHOPPING, elder="E-1001")
    with pytest.raises(DispatchError, match="only volunteers"):
        dispatch.claim_order(shopping, "C-201")
    assert dispatch.get_order(bathing).state == "placed"
