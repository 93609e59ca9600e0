"""Logging in on the caregiver page for real: the form posts to /auth/token (a user with an
Argon2id password in the site's UserStore), the page takes the caregiver id from the token; a
token that expires on a long shift does not cost the phone its queued check-ins."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import pytest

from services.runtime.auth import Principal
from tests.browser.conftest import TOKEN_KEY, log_in_as
from tests.browser.dispatch.conftest import Site, seed_day
from tests.support.auth import principal, test_auth, token

pytestmark = pytest.mark.browser

PASSWORD = "秀英家-correct-horse"
UNCAUGHT: list[str] = []


@pytest.fixture(autouse=True)
def no_script_errors() -> Iterator[None]:
    UNCAUGHT.clear()
    yield
    assert UNCAUGHT == []


def claims_of(jwt: str | None) -> dict[str, object]:
    assert jwt, "no token stored"
    part = jwt.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def stored_token(page) -> str | None:  # type: ignore[no-untyped-def]
    return page.evaluate("key => localStorage.getItem(key)", TOKEN_KEY)


def test_caregiver_logs_in_through_the_form(page, site: Site) -> None:  # type: ignore[no-untyped-def]
    """With no token the page asks for user name and password first; a wrong password is
    refused with a message in Chinese and nothing stored; the right one stores the token, and
    the route of the caregiver it names is shown without typing a caregiver id. Signing out
    forgets the token and asks again."""
    day = seed_day(site.app, "login")
    site.users.add("liu.meihua", PASSWORD, Principal(
        subject="liu.meihua", role="caregiver", caregiver_id=day.caregiver_id, name="刘美华"))
    page.on("pageerror", lambda error: UNCAUGHT.append(str(error)))
    page.goto(f"{site.base_url}/dispatch/app/")
    page.wait_for_selector("#homecare-login form")
    assert "登录" in page.inner_text("#homecare-login h2")

    page.fill("#homecare-login [name=username]", "liu.meihua")
    page.fill("#homecare-login [name=password]", "wrong-password")
    page.click("#homecare-login .login-submit")
    page.wait_for_function("document.querySelector('#homecare-login .login-error')"
                           ".textContent.length > 0")
    assert "用户名或密码错误" in page.inner_text("#homecare-login .login-error")
    assert stored_token(page) is None
    assert page.locator(".visit").count() == 0

    page.fill("#homecare-login [name=password]", PASSWORD)
    page.click("#homecare-login .login-submit")
    page.wait_for_selector(f".visit[data-visit-id='{day.visit_ids[-1]}']")
    assert page.locator("#homecare-login").count() == 0
    assert page.locator("#signin").is_hidden()  # the id came with the log-in
    claims = claims_of(stored_token(page))
    assert (claims["sub"], claims["role"], claims["caregiver_id"]) == (
        "liu.meihua", "caregiver", day.caregiver_id)
    assert "刘美华" in page.inner_text("#who")

    page.click("#signout")
    page.wait_for_selector("#homecare-login form")
    assert stored_token(page) is None
    assert page.locator(".visit").count() == 0


def test_expired_token_keeps_the_queue_logs_in_and_resends(page, site: Site) -> None:  # type: ignore[no-untyped-def]
    """A check-in queued offline while the token runs out: back online the sync is answered
    401; the record stays queued (also when the caregiver puts the log-in off: the page says
    so); after logging in the same record is sent and applied, and nothing is left pending."""
    day = seed_day(site.app, "expiry")
    site.users.add("zhao.li", PASSWORD, Principal(
        subject="zhao.li", role="caregiver", caregiver_id=day.caregiver_id))
    page.on("pageerror", lambda error: UNCAUGHT.append(str(error)))
    page.context.grant_permissions(["geolocation"], origin=site.base_url)
    home = day.homes[0]
    page.context.set_geolocation({"latitude": home[2], "longitude": home[3], "accuracy": 15})
    log_in_as(page, token("caregiver", caregiver_id=day.caregiver_id))
    page.goto(f"{site.base_url}/dispatch/app/")
    first = f".visit[data-visit-id='{day.visit_ids[0]}']"
    page.wait_for_selector(first)
    page.wait_for_function("navigator.serviceWorker.controller !== null")

    page.context.set_offline(True)
    page.click(f"{first} .check-in")
    page.wait_for_selector("#pending[data-count='1']")
    # The shift runs long: the token the phone holds has expired by the time it is online.
    expired = test_auth().issuer.issue(  # type: ignore[union-attr]
        principal("caregiver", caregiver_id=day.caregiver_id), ttl_s=-3600)
    page.evaluate("([key, value]) => localStorage.setItem(key, value)", [TOKEN_KEY, expired])
    page.context.set_offline(False)

    page.wait_for_selector("#homecare-login form")
    assert "过期" in page.inner_text("#homecare-login .login-reason")
    page.click("#homecare-login .login-later")  # not now: the record must stay on the phone
    page.wait_for_function("document.querySelector('#notice').textContent.includes('重新登录')")
    assert page.get_attribute("#pending", "data-count") == "1"
    assert site.app.get_visit(day.visit_ids[0]).state == "scheduled"

    page.click("#sync-now")  # asked by hand: the form again
    page.fill("#homecare-login [name=username]", "zhao.li")
    page.fill("#homecare-login [name=password]", PASSWORD)
    page.click("#homecare-login .login-submit")
    page.wait_for_selector("#pending[data-count='0']")
    visit = site.app.get_visit(day.visit_ids[0])
    assert visit.state == "checked_in" and visit.location_verified
    assert claims_of(stored_token(page))["sub"] == "zhao.li"
