"""The operations dashboard: who is locked out, why, and a button to unlock.

Server-rendered pages with no JavaScript and no external assets, under a
strict Content-Security-Policy of their own. ``authorize()`` guards every
request; the unlock form carries a token signed with the app's secret and
bound to the key it unlocks.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Callable, Iterator
from itertools import islice
from typing import Any, NamedTuple
from urllib.parse import quote

from flask import (
    Blueprint,
    abort,
    current_app,
    g,
    redirect,
    render_template,
    request,
    url_for,
)
from flask.sansio.app import App
from flask.sansio.blueprints import BlueprintSetupState
from itsdangerous import BadData, URLSafeTimedSerializer
from werkzeug.routing import BaseConverter
from werkzeug.wrappers import Response

from .client_ip import ip_key
from .errors import StorageError
from .events import ago_in_words, utc_time
from .keys import canonical_key, fold, logical_key, split_key
from .policy import BACKOFF_SCHEDULE_LENGTH, LockoutConfig, LockState
from .responses import wait_in_words
from .state import AppState, current_state
from .storage.base import key_part

#: Rows per page of the key list.
PER_PAGE = 50
#: Keys examined per page view, at most: on Redis each costs a round trip,
#: so a huge store is sampled, not loaded.
SCAN_LIMIT = 2_000
#: Matching keys counted beyond the current page, at most.
COUNT_LIMIT = 1_000
#: Events on the overview and the events page.
OVERVIEW_EVENTS = 10
EVENTS_PAGE = 200
#: Other keys shown on a key's page, at most: each costs a storage read.
RELATED_MAX = 20
#: Two ``locked`` events this close, from one client and endpoint, are
#: taken as one request's.
SAME_REQUEST_SECONDS = 2.0

#: The unlock form's token: signed with SECRET_KEY under this salt, valid
#: this many seconds, bound to one key.
TOKEN_SALT = "flask-lockout.dashboard"
TOKEN_MAX_AGE = 3600

_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


class KeyConverter(BaseConverter):
    """A logical key as one URL segment. Its ``/`` are escaped, so a key
    such as ``login:email:a/../b`` holds no dot segment a browser would
    rewrite. Matches any text, slashes and newlines included."""

    regex = r"[\s\S]+?"
    part_isolating = False

    def to_url(self, value: Any) -> str:
        text = quote(str(value), safe=":@")
        # A whole segment of "." or ".." is a dot segment even escaped as
        # "%2E": browsers would drop it. No logical key is one (they hold
        # colons), but the manual API takes any string.
        return text.replace(".", "%2E") if text in (".", "..") else text


class Row(NamedTuple):
    """One key and what the store says about it."""

    key: str
    state: LockState

    @property
    def parts(self) -> tuple[str, str, str] | None:
        return split_key(self.key)

    @property
    def status(self) -> str:
        if self.state.locked:
            return "locked"
        if self.state.failures:
            return "failing"
        return "probation" if self.state.lock_number else "clean"

    @property
    def scope(self) -> str:
        return self.parts[0] if self.parts else "(hashed)"

    @property
    def key_type(self) -> str:
        return self.parts[1] if self.parts else "-"


class Scan(NamedTuple):
    """Active keys found by one bounded walk of the store."""

    rows: list[Row]
    examined: int
    complete: bool


def dashboard_blueprint(
    authorize: Callable[[], bool], *, url_prefix: str = "/lockout"
) -> Blueprint:
    """The dashboard as a blueprint to register on the app.

    :param authorize: called on every request of the dashboard; a false
        answer gives 403.
    :param url_prefix: where the pages live.
    :raises RuntimeError: at registration, when the app has no SECRET_KEY
        (the unlock form is signed with it).
    """
    if not callable(authorize):
        raise TypeError("authorize must be a callable returning True for admins.")
    bp = Blueprint(
        "lockout_dashboard",
        __name__,
        template_folder="templates",
        url_prefix=url_prefix,
    )
    names: set[str] = set()
    prefixes: set[str] = set()

    def mounted(setup: BlueprintSetupState) -> None:
        _require_secret(setup.app)
        # Before the routes are added: their rules use the converter.
        setup.app.url_map.converters.setdefault("lockout_key", KeyConverter)
        names.add(f"{setup.name_prefix}.{setup.name}".lstrip("."))
        prefixes.add((setup.url_prefix or "").rstrip("/"))

    bp.record(mounted)

    def ours() -> bool:
        if request.url_rule is not None:
            return request.blueprint in names
        # A 404 or 405 under the prefix is still the dashboard's to guard.
        path = request.path
        return any(path == p or path.startswith(p + "/") for p in prefixes)

    @bp.before_app_request
    def guard() -> None:
        if not ours():
            return
        g._lockout_dashboard_nonce = secrets.token_urlsafe(18)
        _require_secret(current_app)
        if not authorize():
            abort(403)

    @bp.after_app_request
    def stamp(response: Response) -> Response:
        nonce = g.get("_lockout_dashboard_nonce")
        if nonce is None:
            return response
        response.headers.update(_HEADERS)
        response.headers["Content-Security-Policy"] = (
            f"default-src 'none'; style-src 'nonce-{nonce}'; form-action 'self';"
            " frame-ancestors 'none'; base-uri 'none'"
        )
        return response

    @bp.context_processor
    def context() -> dict[str, Any]:
        return {
            "csp_nonce": g.get("_lockout_dashboard_nonce", ""),
            "in_words": wait_in_words,
            "utc_time": utc_time,
            "ago": ago_in_words,
            "fact": _fact,
            "q": request.args.get("q", ""),
            "enforcement_off": not current_state().settings.enabled,
        }

    @bp.get("/")
    def overview() -> str:
        state = current_state()
        error = None
        try:
            scan = _scan(state, None, SCAN_LIMIT)
        except StorageError as exc:
            scan, error = Scan([], 0, False), str(exc)
        groups: dict[tuple[str, str], dict[str, int]] = {}
        for row in scan.rows:
            counts = groups.setdefault((row.scope, row.key_type), {})
            counts[row.status] = counts.get(row.status, 0) + 1
        totals = {
            status: sum(1 for row in scan.rows if row.status == status)
            for status in ("locked", "failing", "probation")
        }
        surges = []
        if error is None:
            try:
                surges = state.extension.surges()
            except StorageError as exc:
                error = str(exc)
        return render_template(
            "lockout/dashboard/overview.html",
            surges=surges,
            scan=scan,
            groups=sorted(groups.items()),
            totals=totals,
            error=error,
            policy=_policy_words(state.settings.policy),
            storage=state.storage.describe(),
            memory_only=not hasattr(state.storage, "primary"),
            fallback_active=state.fallback_active,
            fail_mode=state.settings.fail_mode,
            events=state.events.read(OVERVIEW_EVENTS),
        )

    @bp.get("/keys")
    def keys() -> tuple[str, int]:
        state = current_state()
        q = request.args.get("q", "").strip()
        page = request.args.get("page", 1, type=int) or 1
        page = max(1, page)
        want = max(COUNT_LIMIT, page * PER_PAGE) + 1
        try:
            scan, error = _scan(state, _matcher(q), want), None
        except StorageError as exc:
            scan, error = Scan([], 0, False), str(exc)
        rows = scan.rows
        more = len(rows) >= want or not scan.complete
        if scan.complete:
            # Every match is here: show the most urgent first. A partial
            # walk keeps the store's order, so pages stay consistent.
            rows = sorted(rows, key=_urgency)
        shown = rows[(page - 1) * PER_PAGE : page * PER_PAGE]
        return render_template(
            "lockout/dashboard/keys.html",
            rows=shown,
            page=page,
            first=(page - 1) * PER_PAGE + 1,
            found=min(len(rows), want - 1),
            more=more,
            has_next=len(rows) > page * PER_PAGE,
            scan=scan,
            error=error,
            suggestion=_other_spelling(q),
            max_failures=state.settings.policy.max_failures,
        ), (503 if error else 200)

    @bp.get("/key/<lockout_key:key>")
    def key(key: str) -> tuple[str, int]:
        state = current_state()
        error = None
        try:
            row = Row(
                key, state.storage.lockout_status(key, state.settings.policy_of(key))
            )
        except StorageError as exc:
            row, error = Row(key, LockState(False, 0)), str(exc)
        page = state.events.read(state.events.max_events)
        serializer = _serializer()
        related: list[tuple[Row, str]] = []
        if error is None:
            names = _related_keys(key, page.events, state.settings.ipv6_prefix)
            try:
                for name in names[:RELATED_MAX]:
                    found = state.storage.lockout_status(
                        name, state.settings.policy_of(name)
                    )
                    related.append((Row(name, found), serializer.dumps(name)))
            except StorageError as exc:
                error = str(exc)
        released = request.args.get("released")
        return render_template(
            "lockout/dashboard/key.html",
            row=row,
            error=error,
            policy=state.settings.policy_of(key),
            next_lock=state.settings.policy_of(key).lock_seconds(
                row.state.lock_number + 1
            ),
            events=[e for e in page.events if e["key"] == key][:20],
            token=serializer.dumps(key),
            unlocked=request.args.get("unlocked") == "1",
            related=related,
            released=released if any(r.key == released for r, _ in related) else None,
            canonical=_other_spelling(key),
            cache_seconds=state.settings.local_cache_seconds,
        ), (503 if error else 200)

    @bp.post("/key/<lockout_key:key>/unlock")
    def unlock(key: str) -> Response | tuple[str, int]:
        state = current_state()
        if not _token_is_for(request.form.get("csrf_token", ""), key):
            return render_template("lockout/dashboard/refused.html", key=key), 400
        try:
            state.forget(key, "unlocked")
        except StorageError as exc:
            return render_template(
                "lockout/dashboard/refused.html", key=key, error=str(exc)
            ), 503
        back = request.form.get("back", "")
        if back and back != key and len(back) <= 4096:
            # Unlocked from another key's page (a related key): back there.
            return redirect(url_for(".key", key=back, released=key), 303)
        return redirect(url_for(".key", key=key, unlocked=1), 303)

    @bp.get("/events")
    def events() -> str:
        return render_template(
            "lockout/dashboard/events.html",
            events=current_state().events.read(EVENTS_PAGE),
        )

    return bp


def _require_secret(app: App) -> None:
    if not app.config.get("SECRET_KEY"):
        raise RuntimeError(
            "The Flask-Lockout dashboard needs the app's SECRET_KEY to sign its"
            " unlock forms: set app.config['SECRET_KEY'] before registering it."
        )


def _serializer() -> URLSafeTimedSerializer:
    config = current_app.config
    # Newest last, as itsdangerous and Flask's SECRET_KEY_FALLBACKS expect.
    keys = [*(config.get("SECRET_KEY_FALLBACKS") or ()), config["SECRET_KEY"]]
    return URLSafeTimedSerializer(keys, salt=TOKEN_SALT)


def _token_is_for(token: str, key: str) -> bool:
    """True when ``token`` is ours, recent, and was issued for ``key``."""
    if not token or len(token) > 4096:
        return False
    try:
        found = _serializer().loads(token, max_age=TOKEN_MAX_AGE)
    except BadData:
        return False
    return isinstance(found, str) and found == key


def _matcher(q: str) -> Callable[[str], bool] | None:
    """A key filter for search text: a substring of the key as stored, as
    typed or folded like requests fold values (``Alice@X.com`` finds
    ``login:email:alice@x.com``); a full logical key also finds its hashed
    form."""
    if not q:
        return None
    needles = {n for n in (q.casefold(), fold(q)) if n}
    canonical = canonical_key(q)
    exact = {key_part(canonical)} if canonical else set()
    return lambda key: key in exact or any(n in key.casefold() for n in needles)


def _other_spelling(text: str) -> str | None:
    """The key requests count for ``text``, when it is spelled otherwise."""
    canonical = canonical_key(text) if text else None
    return canonical if canonical and canonical != text else None


def _related_keys(
    key: str, events: list[dict[str, Any]], ipv6_prefix: int
) -> list[str]:
    """The other keys the attacks on ``key`` locked, most recent first.

    For each ``locked`` event of ``key``: the keys locked by the same
    request (one client and endpoint, within SAME_REQUEST_SECONDS), and,
    for an account, the ``ip`` key of the address it came from, whatever
    locked that; for an ``ip`` key, the keys its address locked in the
    same scope. Unlocking one of them alone leaves the others refusing.
    """
    parts = split_key(key)

    def address(client_ip: str) -> str | None:
        try:
            return ip_key(client_ip, ipv6_prefix)
        except ValueError:
            return None

    own = [e for e in events if e["kind"] == "locked" and e["key"] == key]
    found: dict[str, None] = {}
    if parts is not None and parts[1] != "ip":
        for event in own:
            value = event["client_ip"] and address(event["client_ip"])
            if value:
                found.setdefault(logical_key(parts[0], "ip", value), None)
    for event in events:
        other, client = event["key"], event["client_ip"]
        if event["kind"] != "locked" or not other or other == key or not client:
            continue
        same_request = any(
            client == mine["client_ip"]
            and event["endpoint"] == mine["endpoint"]
            and abs(event["time"] - mine["time"]) <= SAME_REQUEST_SECONDS
            for mine in own
        )
        other_parts = split_key(other)
        from_this_address = (
            parts is not None
            and parts[1] == "ip"
            and other_parts is not None
            and other_parts[0] == parts[0]
            and address(client) == parts[2]
        )
        if same_request or from_this_address:
            found.setdefault(other, None)
    found.pop(key, None)
    return list(found)


def _scan(state: AppState, match: Callable[[str], bool] | None, want: int) -> Scan:
    """Walk the store lazily: at most SCAN_LIMIT keys, stopping once ``want``
    active keys are found."""
    storage, settings = state.storage, state.settings
    rows: list[Row] = []
    examined = 0
    walk: Iterator[str] = storage.lockout_keys()
    for examined, found in enumerate(islice(walk, SCAN_LIMIT), start=1):  # noqa: B007
        if match is not None and not match(found):
            continue
        lock = storage.lockout_status(found, settings.policy_of(found))
        if lock.locked or lock.failures or lock.lock_number:
            rows.append(Row(found, lock))
            if len(rows) >= want:
                return Scan(rows, examined, False)
    complete = examined < SCAN_LIMIT or next(walk, None) is None
    return Scan(rows, examined, complete)


def _urgency(row: Row) -> tuple[int, int, int, str]:
    order = {"locked": 0, "failing": 1, "probation": 2}.get(row.status, 3)
    return order, -row.state.retry_after, -row.state.failures, row.key


def _policy_words(policy: LockoutConfig) -> dict[str, str]:
    """The policy as sentences a person reads."""

    def words(seconds: float) -> str:
        return wait_in_words(math.ceil(seconds))

    durations: list[str] = []
    previous = None
    for number in range(1, 9):
        seconds = policy.lock_seconds(number)
        if seconds == previous:
            break
        durations.append(words(seconds))
        previous = seconds
    if previous != policy.lock_seconds(BACKOFF_SCHEDULE_LENGTH):
        longest = words(policy.lock_seconds(BACKOFF_SCHEDULE_LENGTH))
        schedule = f"Locks last {', '.join(durations)} and so on, up to {longest}."
    elif len(durations) > 1:
        schedule = (
            f"Locks last {', '.join(durations[:-1])}, then {durations[-1]}"
            " for every later lock."
        )
    else:
        schedule = f"Every lock lasts {durations[0]}."
    return {
        "trigger": (
            f"A key locks after {policy.max_failures} failures within"
            f" {words(policy.window_seconds)}."
        ),
        "schedule": schedule,
        "probation": (
            "After a lock ends, the next failure locks again; a key is clean"
            f" after {words(policy.reset_after_seconds)} without a failure."
        ),
    }


def _fact(value: object) -> str:
    """A value of ``storage.describe()`` as a person reads it."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, list | tuple):
        return "; ".join(map(str, value)) or "none"
    return str(value)
