"""The docs stay true: every Python block runs, every CLI line runs, the
configuration page matches the code, and every public name is documented."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import flask_lockout
from flask_lockout.config import DEFAULTS

ROOT = Path(__file__).parent.parent
DOCS = ROOT / "docs"
BLOCK = re.compile(r"^\.\. code-block:: (\w+)\n((?:\n|    .*\n)+)", re.MULTILINE)


def blocks(language: str) -> list[tuple[str, str]]:
    found = []
    for page in sorted(DOCS.glob("*.rst")):
        for match in BLOCK.finditer(page.read_text()):
            if match.group(1) == language:
                lines = [line[4:] for line in match.group(2).splitlines()]
                found.append((page.name, "\n".join(lines).strip() + "\n"))
    return found


PYTHON = blocks("python")


def test_the_docs_have_code() -> None:
    assert len(PYTHON) >= 20


@pytest.mark.parametrize(
    "page, code", PYTHON, ids=[f"{p}-{i}" for i, (p, _) in enumerate(PYTHON)]
)
def test_python_blocks_run(page: str, code: str, tmp_path: Path) -> None:
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        exec(compile(code, f"docs/{page}", "exec"), {"__name__": "docs_example"})
    finally:
        os.chdir(cwd)


def cli_lines() -> list[str]:
    lines = []
    for _page, text in blocks("console"):
        for line in text.splitlines():
            command = line.removeprefix("$ ").split("#")[0].strip()
            # Installs and servers are not run here; every other line is.
            if command.startswith("flask ") and not command.endswith(" run"):
                lines.append(command)
    return lines


@pytest.mark.redis
@pytest.mark.parametrize("command", cli_lines())
def test_console_lines_run(command: str, redis_server: str, redis_prefix: str) -> None:
    # The CLI sees a running server's state only through shared storage.
    flask = Path(sys.executable).with_name("flask")
    result = subprocess.run(
        [str(flask), *command.split()[1:]],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={
            **os.environ,
            "LOCKOUT_STORAGE_URI": redis_server,
            "FLASK_LOCKOUT_KEY_PREFIX": redis_prefix,
        },
    )
    assert result.returncode == 0, result.stderr


def test_policy_page_shows_the_real_output() -> None:
    [(_, shown)] = blocks("text")
    flask = Path(sys.executable).with_name("flask")
    result = subprocess.run(
        [str(flask), "--app", "examples/login_app.py", "lockout", "policy"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "LOCKOUT_STORAGE_URI": "memory://"},
    )
    assert result.stdout.startswith(shown)


def test_every_setting_is_documented_with_its_default() -> None:
    page = (DOCS / "configuration.rst").read_text()
    documented = re.findall(r"^\.\. data:: (LOCKOUT_\w+)$", page, re.MULTILINE)
    assert documented == list(DEFAULTS)
    for key, default in DEFAULTS.items():
        section = page.split(f".. data:: {key}\n", 1)[1].split(".. data::", 1)[0]
        assert f"Default: ``{default!r}``" in section, key


def test_every_public_name_is_in_the_api_reference() -> None:
    page = (DOCS / "api.rst").read_text()
    directives = set(re.findall(r"^\.\. (?:auto)?\w+:: (\w+)", page, re.MULTILINE))
    assert set(flask_lockout.__all__) <= directives


@pytest.mark.parametrize("name", flask_lockout.__all__)
def test_every_public_callable_has_a_docstring(name: str) -> None:
    obj = getattr(flask_lockout, name)
    if callable(obj) and not hasattr(obj, "receivers"):  # signals are data
        assert (obj.__doc__ or "").strip(), name


MODULES = sorted(
    name
    for name in (
        ".".join(path.relative_to(ROOT).with_suffix("").parts)
        for path in (ROOT / "flask_lockout").rglob("*.py")
    )
    if not name.endswith("__init__")
)


@pytest.mark.parametrize("module", MODULES)
def test_docstring_examples_run(module: str) -> None:
    import doctest
    import importlib

    result = doctest.testmod(
        importlib.import_module(module), optionflags=doctest.ELLIPSIS, verbose=False
    )
    assert result.failed == 0


@pytest.mark.parametrize("name", flask_lockout.__all__)
def test_every_public_callable_shows_an_example(name: str) -> None:
    obj = getattr(flask_lockout, name)
    if callable(obj) and not hasattr(obj, "receivers"):
        doc = obj.__doc__ or ""
        assert ">>>" in doc or "::" in doc, name
