"""In Chromium: a locked account's page lists the address it was attacked
from, and its own unlock button frees it, JavaScript off."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask, redirect, request, session

from flask_lockout import Lockout

from .test_browser import base_url, driver, follow, shot, sign_in, text

__all__ = ["base_url", "driver"]  # fixtures, shared with the dashboard's tests

ALICE = "login:email:alice@example.com"
OFFICE = "203.0.113.7"
OFFICE_KEY = f"login:ip:{OFFICE}"
RIGHT = "correct horse battery staple"


@pytest.fixture(scope="module")
def app() -> Flask:
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY="browser-test",
        LOCKOUT_MAX_FAILURES=3,
        LOCKOUT_IP_MAX_FAILURES=3,
        LOCKOUT_BASE_LOCK_SECONDS=600,
        LOCKOUT_DEVICE_COOKIES=False,
    )
    lockout = Lockout(app)

    @app.post("/login")
    @lockout.lockout_on_failure(by=("ip", "form:email"), scope="login")
    def login() -> tuple[str, int]:
        if request.form.get("password") == RIGHT:
            lockout.succeeded()
            return "welcome", 200
        return "wrong", 401

    @app.get("/signin")
    def signin() -> Any:
        session["role"] = request.args.get("as", "")
        return redirect("/lockout/")

    app.register_blueprint(
        lockout.dashboard_blueprint(lambda: session.get("role") == "admin")
    )
    return app


def alice_logs_in(app: Flask, password: str = RIGHT) -> int:
    return (
        app.test_client()
        .post(
            "/login",
            data={"email": "alice@example.com", "password": password},
            environ_base={"REMOTE_ADDR": OFFICE},
        )
        .status_code
    )


def test_admin_unlocks_the_account_and_its_address(
    driver: Any, app: Flask, base_url: str
) -> None:
    from selenium.webdriver.common.by import By

    assert [alice_logs_in(app, "?") for _ in range(3)] == [401] * 3
    driver.set_window_size(1280, 900)
    sign_in(driver, base_url, "admin")
    driver.get(f"{base_url}/lockout/key/{ALICE}")
    rows = driver.find_elements(By.CSS_SELECTOR, "#related tbody tr")
    assert [row.find_element(By.CSS_SELECTOR, "a.key").text for row in rows] == [
        OFFICE_KEY
    ]
    shot(driver, "key-related")

    follow(driver, driver.find_element(By.CSS_SELECTOR, "button.danger"))
    assert driver.current_url.endswith("?unlocked=1")
    assert alice_logs_in(app) == 429  # the address is still locked

    button = driver.find_element(By.CSS_SELECTOR, "#related button.danger")
    assert button.text == f"Unlock {OFFICE}"
    follow(driver, button)
    assert f"/lockout/key/{ALICE}?released=" in driver.current_url
    assert f"Unlocked {OFFICE_KEY}." in text(driver)
    assert alice_logs_in(app) == 200

    driver.set_window_size(390, 844)
    driver.get(f"{base_url}/lockout/key/{OFFICE_KEY}")
    overflow = driver.execute_script(
        "return document.documentElement.scrollWidth - window.innerWidth"
    )
    assert overflow <= 0
    shot(driver, "key-related-phone")
    driver.set_window_size(1280, 900)
