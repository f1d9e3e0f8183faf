from __future__ import annotations

import importlib.util
import pathlib
from types import ModuleType

EXAMPLES = pathlib.Path(__file__).parent.parent / "examples"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_login_app_locks_after_five_wrong_passwords() -> None:
    client = load("login_app").create_app("memory://").test_client()
    assert client.get("/login").status_code == 200
    wrong = {"email": "Alice@Example.com ", "password": "guess"}
    assert [client.post("/login", data=wrong).status_code for _ in range(5)] == [
        401
    ] * 5
    locked = client.post(
        "/login",
        data={"email": "alice@example.com", "password": "correct horse battery staple"},
    )
    assert locked.status_code == 429
    assert locked.headers["Retry-After"] == "60"


def test_login_app_signs_in() -> None:
    client = load("login_app").create_app("memory://").test_client()
    right = {"email": "alice@example.com", "password": "correct horse battery staple"}
    response = client.post("/login", data=right)
    assert response.status_code == 200
    assert b"Welcome, alice@example.com." in response.data
