"""The dashboard in a real browser: headless Chromium driven by Selenium,
against the app served by a real threaded server on loopback.

Locally these skip when Chromium, chromedriver or selenium is missing; with
LOCKOUT_REQUIRE_BROWSER=1 (CI) they fail instead. Screenshots of every page
land in build/screenshots/.
"""

from __future__ import annotations

import http.client
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, redirect, request, session

from flask_lockout import Lockout
from flask_lockout.dashboard import dashboard_blueprint
from flask_lockout.events import EventLog

from .test_http import serving

ROOT = Path(__file__).parent.parent
SHOTS = ROOT / "build" / "screenshots"
CHROMEDRIVER = "/usr/bin/chromedriver"
HOWTO = (
    "install them to run the browser tests: apt-get install chromium"
    " chromium-driver && pip install selenium"
)

ALICE = "login:email:alice@example.com"
LOCKED = [ALICE, "login:ip:203.0.113.7", "otp:user_id:1042"]
FAILING = {"login:email:bob@example.com": 2, "login:ip:198.51.100.23": 3}
SCRIPT_KEY = "login:email:<script>alert(1)</script>"


def _missing(why: str) -> None:
    if os.environ.get("LOCKOUT_REQUIRE_BROWSER") == "1":
        pytest.fail(f"A browser is required (LOCKOUT_REQUIRE_BROWSER=1) but {why}")
    pytest.skip(f"{why}; {HOWTO}")


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _lockout(app: Flask) -> Lockout:
    extension: Lockout = app.extensions["lockout"].extension
    return extension


def _events(app: Flask) -> EventLog:
    state = app.extensions["lockout"]
    if getattr(state, "events", None) is None:
        # Until init_app builds the log from LOCKOUT_EVENTS_MAX itself.
        state.events = EventLog(state.storage, state.settings.events_max)
    log: EventLog = state.events
    return log


def lock(app: Flask, key: str, failures: int | None = None) -> None:
    with app.app_context():
        lockout = _lockout(app)
        count = (
            failures or app.extensions["lockout"].settings.policy_of(key).max_failures
        )
        for _ in range(count):
            locked, retry_after = lockout.record_failure(key)
        log = _events(app)
        if locked and not any(
            e["kind"] == "locked" and e["key"] == key for e in log.recent(50)
        ):
            # Until the extension logs its own locks.
            log.record(
                "locked",
                key,
                endpoint=key.split(":")[0],
                client_ip="203.0.113.7",
                retry_after=retry_after,
            )


def make_app() -> Flask:
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY="browser-test",
        LOCKOUT_MAX_FAILURES=5,
        LOCKOUT_IP_MAX_FAILURES=5,
        # Ten minutes: "locked for 10 minutes more" holds for the whole run.
        LOCKOUT_BASE_LOCK_SECONDS=600,
    )
    Lockout(app)
    _events(app)

    @app.get("/signin")
    def signin() -> Any:
        # A stand-in for a real login: ?as=admin or ?as=user.
        session["role"] = request.args.get("as", "")
        return redirect("/lockout/")

    app.register_blueprint(dashboard_blueprint(lambda: session.get("role") == "admin"))
    return app


@pytest.fixture(scope="module")
def app() -> Flask:
    app = make_app()
    for key in LOCKED:
        lock(app, key)
    for key, count in FAILING.items():
        lock(app, key, count)
    return app


@pytest.fixture(scope="module")
def base_url(app: Flask) -> Iterator[str]:
    with serving(app) as port:
        yield f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def driver() -> Iterator[Any]:
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _missing("selenium is not installed")
    chromium = _chromium()
    if chromium is None:
        _missing("Chromium is not installed")
    if not os.access(CHROMEDRIVER, os.X_OK):
        _missing(f"chromedriver is not at {CHROMEDRIVER}")
    options = webdriver.ChromeOptions()
    options.binary_location = str(chromium)
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,900",
        "--force-prefers-reduced-motion",
    ):
        options.add_argument(argument)
    # The pages need no JavaScript: run them with it off, as some admins do.
    options.add_experimental_option(
        "prefs", {"profile.managed_default_content_settings.javascript": 2}
    )
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    browser = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    browser.set_page_load_timeout(20)
    SHOTS.mkdir(parents=True, exist_ok=True)
    try:
        yield browser
    finally:
        browser.quit()


def shot(driver: Any, name: str) -> None:
    """Save the whole page, no more: the window sized to the content."""
    height, chrome = driver.execute_script(
        "return [document.body.scrollHeight, window.outerHeight - window.innerHeight]"
    )
    width = driver.get_window_size()["width"]
    driver.set_window_size(width, max(200, min(int(height) + int(chrome), 4000)))
    driver.save_screenshot(str(SHOTS / f"{name}.png"))


def follow(driver: Any, element: Any) -> None:
    """Click a link or a button and wait for the next page to load."""
    from selenium.webdriver.common.by import By

    page = driver.find_element(By.TAG_NAME, "html")
    element.click()
    wait_replaced(driver, page)


def wait_replaced(driver: Any, page: Any) -> None:
    """Wait until ``page`` (the old ``<html>``) is gone. Chromium reports a
    node of a document being replaced either as stale or, mid-navigation, as
    one that "does not belong to the document": both mean it is gone."""
    from selenium.common.exceptions import (
        StaleElementReferenceException,
        WebDriverException,
    )
    from selenium.webdriver.support.wait import WebDriverWait

    def gone(_: Any) -> bool:
        try:
            page.is_enabled()
        except StaleElementReferenceException:
            return True
        except WebDriverException as exc:
            if "does not belong to the document" in str(exc):
                return True
            raise
        return False

    WebDriverWait(driver, 10, poll_frequency=0.05).until(gone)


def sign_in(driver: Any, base_url: str, role: str) -> None:
    driver.delete_all_cookies()
    driver.get(f"{base_url}/signin?as={role}")


def text(driver: Any) -> str:
    from selenium.webdriver.common.by import By

    return str(driver.find_element(By.TAG_NAME, "body").text)


def test_admin_finds_a_locked_key_and_unlocks_it(
    driver: Any, app: Flask, base_url: str
) -> None:
    from selenium.webdriver.common.by import By

    driver.set_window_size(1280, 900)
    sign_in(driver, base_url, "admin")
    assert driver.current_url == f"{base_url}/lockout/"
    cards = driver.find_elements(By.CSS_SELECTOR, ".card .number")
    assert [c.text for c in cards] == ["3", "2", "0"]  # locked, failing, probation
    assert "A key locks after 5 failures within 15 minutes." in text(driver)
    # The inline stylesheet ran under the CSP: its nonce matched.
    background = driver.execute_script(
        "return getComputedStyle(document.body).backgroundColor"
    )
    assert background in ("rgb(246, 247, 249)", "rgb(20, 23, 28)")
    shot(driver, "overview")

    follow(driver, driver.find_element(By.LINK_TEXT, "Keys"))
    keys = [a.text for a in driver.find_elements(By.CSS_SELECTOR, "td a.key")]
    assert set(keys) == set(LOCKED) | set(FAILING)
    assert keys[:3] != list(FAILING)  # locked keys come first
    assert "locked for 10 minutes more" in text(driver)
    shot(driver, "keys")

    box = driver.find_element(By.NAME, "q")
    box.clear()
    box.send_keys("Alice@Example.com")
    follow(driver, driver.find_element(By.CSS_SELECTOR, "form.search button"))
    found = [a.text for a in driver.find_elements(By.CSS_SELECTOR, "td a.key")]
    assert found == [ALICE]
    shot(driver, "search")

    follow(driver, driver.find_element(By.LINK_TEXT, ALICE))
    assert "Locked for 10 minutes more (lock 1)." in text(driver)
    shot(driver, "key")

    follow(driver, driver.find_element(By.CSS_SELECTOR, "button.danger"))
    assert driver.current_url.endswith("?unlocked=1")
    assert "Unlocked." in text(driver)
    assert "No failures and no lock." in text(driver)
    shot(driver, "unlocked")
    with app.app_context():
        assert _lockout(app).is_locked(ALICE) == (False, 0)

    follow(driver, driver.find_element(By.LINK_TEXT, "Events"))
    first = driver.find_element(By.CSS_SELECTOR, "tbody tr")
    assert "unlocked" in first.text and ALICE in first.text
    shot(driver, "events")

    # A phone: nothing wider than the screen, tables stacked into cards.
    driver.set_window_size(390, 844)
    phone_pages = [("/lockout/", "overview-phone"), ("/lockout/keys", "keys-phone")]
    phone_pages.append((f"/lockout/key/{LOCKED[1]}", "key-phone"))
    for page, name in phone_pages:
        driver.get(base_url + page)
        overflow = driver.execute_script(
            "return document.documentElement.scrollWidth - window.innerWidth"
        )
        assert overflow <= 0, f"{page} scrolls sideways by {overflow}px"
        shot(driver, name)
    driver.set_window_size(1280, 900)
    # Dark mode follows the system setting.
    driver.execute_cdp_cmd(
        "Emulation.setEmulatedMedia",
        {"features": [{"name": "prefers-color-scheme", "value": "dark"}]},
    )
    driver.get(f"{base_url}/lockout/key/{LOCKED[1]}")
    shot(driver, "key-dark")
    driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})
    problems = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert not [e for e in problems if "favicon" not in e["message"]], problems


def status_of(base_url: str, path: str, cookie: str = "") -> int:
    host, port = base_url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.request("GET", path, headers={"Cookie": cookie} if cookie else {})
        return connection.getresponse().status
    finally:
        connection.close()


def test_non_admin_gets_403(driver: Any, base_url: str) -> None:
    sign_in(driver, base_url, "user")
    assert "Forbidden" in text(driver)
    shot(driver, "forbidden")
    cookie = "; ".join(f"{c['name']}={c['value']}" for c in driver.get_cookies())
    for path in ("/lockout/", "/lockout/keys", f"/lockout/key/{ALICE}", "/lockout/x"):
        assert status_of(base_url, path, cookie) == 403, path
        assert status_of(base_url, path) == 403, path


def test_forged_unlock_posts_do_nothing(driver: Any, app: Flask, base_url: str) -> None:
    from selenium.webdriver.common.by import By

    victim, other = "login:email:victim@example.com", "login:email:other@example.com"
    lock(app, victim)
    lock(app, other)
    sign_in(driver, base_url, "admin")
    driver.get(f"{base_url}/lockout/key/{other}")
    other_token = driver.find_element(By.NAME, "csrf_token").get_attribute("value")

    for forgery in ("a word", "an edited signature", "another key's token"):
        driver.get(f"{base_url}/lockout/key/{victim}")
        # Edit the hidden field as a forger would, through DevTools.
        field = driver.find_element(By.NAME, "csrf_token")
        own = field.get_attribute("value")
        forged = {
            "a word": "forged",
            # Not the last character: its low bits may be padding.
            "an edited signature": own[:-5]
            + ("A" if own[-5] != "A" else "B")
            + own[-4:],
            "another key's token": other_token,
        }[forgery]
        driver.execute_script("arguments[0].value = arguments[1]", field, forged)
        follow(driver, driver.find_element(By.CSS_SELECTOR, "button.danger"))
        assert "Nothing was unlocked." in text(driver)
        with app.app_context():
            assert _lockout(app).is_locked(victim)[0], forgery
    shot(driver, "refused")

    # A form with no token at all, posted from the page itself.
    page = driver.find_element(By.TAG_NAME, "html")
    driver.execute_script(
        "var f = document.createElement('form'); f.method = 'post';"
        " f.action = arguments[0]; document.body.appendChild(f); f.submit();",
        f"/lockout/key/{victim}/unlock",
    )
    wait_replaced(driver, page)
    assert "Nothing was unlocked." in text(driver)
    with app.app_context():
        assert _lockout(app).is_locked(victim)[0]
        assert _lockout(app).is_locked(other)[0]


def test_a_key_made_of_markup_renders_as_text(
    driver: Any, app: Flask, base_url: str
) -> None:
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By

    lock(app, SCRIPT_KEY)
    sign_in(driver, base_url, "admin")
    for path in ("/lockout/", "/lockout/keys?q=script", "/lockout/events"):
        driver.get(base_url + path)
        assert not driver.find_elements(By.TAG_NAME, "script")
        with pytest.raises(NoAlertPresentException):
            driver.switch_to.alert.text  # noqa: B018
    assert SCRIPT_KEY in text(driver)
    follow(driver, driver.find_element(By.LINK_TEXT, SCRIPT_KEY))
    assert driver.find_element(By.CSS_SELECTOR, "h1.key").text == SCRIPT_KEY
