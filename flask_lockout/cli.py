"""``flask lockout``: status, reset, list, policy and check."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable

import click
from flask.cli import AppGroup

from .errors import StorageError
from .events import event_line
from .keys import canonical_key, named_scope
from .limits import Limit
from .lockout import LoginLockout
from .policy import BACKOFF_SCHEDULE_LENGTH, LockoutConfig, LockState, whole_seconds
from .state import AppState, current_state
from .storage.memory import MemoryStorage

cli = AppGroup("lockout", help="Inspect and reset Flask-Lockout state.")


def _logical_key(text: str) -> str:
    """Check a ``<scope>:<type>:<value>`` key and fold its value like requests do."""
    key = canonical_key(text)
    if key is None:
        raise click.UsageError(
            f"{text!r} is not a logical key: expected <scope>:<type>:<value>,"
            " for example login:email:alice@example.com"
        )
    return key


def _shared_state() -> AppState:
    """The state, when this command can see what the server sees."""
    state = current_state()
    if isinstance(state.storage, MemoryStorage):
        click.echo(
            "LOCKOUT_STORAGE_URI is memory://: the state lives inside each running"
            " server process, and this command cannot see it. Use Redis"
            " (LOCKOUT_STORAGE_URI=redis://...) to inspect and reset keys from"
            " the command line, or Lockout.reset() inside the app.",
            err=True,
        )
        sys.exit(1)
    return state


def _storage_failed(exc: StorageError) -> click.ClickException:
    return click.ClickException(f"Storage failed: {exc}")


#: The first line of ``check`` and ``policy`` when enforcement is off.
DISABLED = (
    "ENFORCEMENT IS OFF: LOCKOUT_ENABLED = False, so every decorator lets"
    " requests through and nothing below is applied."
)


def _say_if_disabled(state: AppState) -> None:
    # First, so nobody reads a healthy report as protection.
    if not state.settings.enabled:
        click.echo(DISABLED)


def _failures_in_words(found: LockState, policy: LockoutConfig) -> str:
    """What the failure count of ``lockout_status`` means for this key."""
    if found.locked or found.lock_number:
        return f"{found.failures} (a lock starts the count again)"
    return f"{found.failures} of {policy.max_failures}, counted toward the next lock"


def _locked_by(found: LockState, policy: LockoutConfig) -> str:
    """The failures that led to the current lock, from the policy."""
    if policy.window_from_last_failure:
        first = (
            f"{policy.max_failures} failures, each within"
            f" {policy.window_seconds:g} s of the one before"
        )
    else:
        first = f"{policy.max_failures} failures within {policy.window_seconds:g} s"
    if found.lock_number <= 1:
        return first
    later = found.lock_number - 1
    return (
        f"{policy.max_failures + later} failures since the key was clean:"
        f" {first}, then {later} on probation, each locking it again"
    )


@cli.command("status")
@click.argument("key")
def status(key: str) -> None:
    """Show whether KEY is locked, its failures and its lock number."""
    key = _logical_key(key)
    state = _shared_state()
    try:
        found = state.storage.lockout_status(key, state.settings.policy_of(key))
    except StorageError as exc:
        raise _storage_failed(exc) from exc
    if found.locked:
        verdict = f"locked, retry after {found.retry_after} s"
    elif found.lock_number:
        verdict = "on probation: the next failure locks it"
    else:
        verdict = "not locked"
    policy = state.settings.policy_of(key)
    click.echo(f"{key}: {verdict}")
    if found.locked:
        click.echo(f"  locked by:          {_locked_by(found, policy)}")
    click.echo(f"  failures in window: {_failures_in_words(found, policy)}")
    click.echo(f"  locks since clean:  {found.lock_number}")


@cli.command("reset")
@click.argument("key", required=False)
@click.option("--all", "everything", is_flag=True, help="Forget every key.")
@click.option(
    "--yes", "-y", "assume_yes", is_flag=True, help="Do not ask first (for scripts)."
)
def reset(key: str | None, everything: bool, assume_yes: bool) -> None:
    """Forget KEY (lock, failures, rate limits), or everything with --all."""
    if everything == (key is not None):
        raise click.UsageError("Give exactly one of KEY or --all.")
    logical = _logical_key(key) if key is not None else ""
    state = _shared_state()
    try:
        if everything:
            if not assume_yes:
                click.confirm(
                    f"Forget every lock, failure and rate limit under prefix"
                    f" {state.storage.prefix!r}?",
                    abort=True,
                )
            state.extension.reset()
            click.echo("All lockout state cleared.")
            return
        state.extension.reset(logical)
    except StorageError as exc:
        raise _storage_failed(exc) from exc
    click.echo(f"{logical}: reset.")


@cli.command("list")
def list_keys() -> None:
    """List keys that are failing or locked."""
    state = _shared_state()
    rows = []
    try:
        for key in state.storage.lockout_keys():
            found = state.storage.lockout_status(key, state.settings.policy_of(key))
            if found.locked or found.failures or found.lock_number:
                rows.append((key, found))
    except StorageError as exc:
        raise _storage_failed(exc) from exc
    if not rows:
        click.echo("No key is failing or locked.")
        return
    width = max(len(key) for key, _ in rows)
    click.echo(f"{'KEY':<{width}}  FAILURES  LOCKS  RETRY-AFTER")
    for key, found in sorted(rows, key=lambda row: (-row[1].retry_after, row[0])):
        retry = f"{found.retry_after} s" if found.locked else "-"
        # A lock starts the window's count again: 0 would read as "none".
        failures = "-" if found.locked else str(found.failures)
        click.echo(
            f"{key:<{width}}  {failures:>8}  {found.lock_number:>5}  {retry:>11}"
        )
    policy = state.settings.policy
    click.echo(
        f"FAILURES: failures in the current window, toward the next lock ("
        f"{policy.max_failures} lock a key; '-' while locked, as a lock starts"
        " the count again). LOCKS: locks since the key was last clean; after"
        " the first, each failure on probation locks again."
    )


def simulate_attacker(
    policy: LockoutConfig, horizon: float, *, patient: bool = False
) -> int:
    """Guesses one key gets in ``horizon`` seconds against the real engine.

    The greedy attacker guesses again the moment each lock ends. The patient
    one never locks the key: one guess short of the limit, then a wait until
    the failure window has passed.
    """
    now = [0.0]
    engine = LoginLockout(policy, storage=MemoryStorage(clock=lambda: now[0]))
    guesses = 0
    while now[0] < horizon:
        if patient:
            for _ in range(policy.max_failures - 1):
                engine.record_failure("k")
                guesses += 1
            now[0] += policy.window_seconds
            continue
        locked, retry_after = engine.is_locked("k")
        if locked:
            now[0] += retry_after
            continue
        engine.record_failure("k")
        guesses += 1
    return guesses


def _limits_in_words(limits: tuple[Limit, ...]) -> str:
    """What a sliding window admits: on average a limit's count per period; a
    burst that straddles a window edge, up to twice the count in one period."""
    day = min(lim.count * math.ceil(86400 / lim.period_seconds) for lim in limits)
    hour = min(lim.count * math.ceil(3600 / lim.period_seconds) for lim in limits)
    burst_hour = min(
        lim.count * (math.ceil(3600 / lim.period_seconds) + 1) for lim in limits
    )
    return (
        f"on average at most {hour} per hour and {day} per day. A sliding window"
        " lets a burst that straddles a window edge reach twice a limit's count"
        f" within one period, so in the worst case {burst_hour} fit in one hour."
    )


@cli.command("policy")
def policy() -> None:
    """Print the lock schedule and the most guesses an attacker gets."""
    state = current_state()
    _say_if_disabled(state)
    settings = state.settings
    config = settings.policy
    account, address = settings.account_policy, settings.ip_policy
    click.echo(
        f"Account keys lock after {account.max_failures} failures, each within"
        f" {account.window_seconds:g} s of the one before; ip keys after"
        f" {address.max_failures} failures within {address.window_seconds:g} s."
        f" Clean after {config.reset_after_seconds:g} s without a failure."
    )
    click.echo("Lock schedule (each further failure on probation locks again):")
    for number in range(1, BACKOFF_SCHEDULE_LENGTH + 1):
        seconds = config.lock_seconds(number)
        later = range(number, BACKOFF_SCHEDULE_LENGTH + 2)
        if all(config.lock_seconds(n) == seconds for n in later):
            click.echo(f"  lock {number} and later: {seconds:g} s")
            break
        click.echo(f"  lock {number}: {seconds:g} s")
    click.echo("Most guesses per key (each account and each IP, counted apart):")
    for name, keys in (("each account", account), ("each ip", address)):
        for label, patient in (
            ("guessing again as each lock ends", False),
            (
                f"staying under the limit ({keys.max_failures - 1} per"
                f" {keys.window_seconds:g} s)",
                True,
            ),
        ):
            hour = simulate_attacker(keys, 3600, patient=patient)
            day = simulate_attacker(keys, 86400, patient=patient)
            click.echo(f"  {name}, {label}: {hour} per hour, {day} per day")
    surge = settings.surge
    if surge.enabled:
        click.echo(
            f"Surges: more than {surge.min_failures} failures a minute, and"
            f" {surge.factor:g} x the scope's usual rate; then devices without"
            f" a cookie get {';'.join(map(str, surge.limits))} per address,"
            f" {';'.join(map(str, surge.network_limits))} per network and the"
            " scope's allowance (twice its usual new-device successes a minute,"
            " at least 10)."
        )
    else:
        click.echo("Surges: off (LOCKOUT_SURGE = False).")
    limits = settings.default_limits
    click.echo(
        f"LOCKOUT_DEFAULT_LIMITS {';'.join(str(lim) for lim in limits)} on"
        f" @throttled() routes: {_limits_in_words(limits)}"
    )


@cli.command("check")
def check() -> None:
    """Connect to the storage and report what a deployment needs to know."""
    state = current_state()
    _say_if_disabled(state)
    storage = state.storage
    primary = getattr(storage, "primary", storage)
    try:
        report = primary.describe(deep=True) if hasattr(primary, "ping") else {}
    except StorageError as exc:
        click.echo(f"storage: {state.settings.storage_uri}")
        click.echo(f"FAILED: {exc}", err=True)
        sys.exit(1)
    click.echo(f"storage: {state.settings.storage_uri}")
    warnings = report.pop("warnings", [])
    for name, value in report.items():
        click.echo(f"  {name}: {value}")
    click.echo(f"  fail mode: {state.settings.fail_mode}")
    for warning in warnings if isinstance(warnings, list) else []:
        click.echo(f"WARNING: {warning}", err=True)
    if not state.settings.surge.enabled:
        click.echo("surges: off (LOCKOUT_SURGE = False)")
        return
    try:
        active = state.extension.surges()
    except StorageError as exc:
        click.echo(f"FAILED to read surges: {exc}", err=True)
        sys.exit(1)
    if not active:
        click.echo("surges: none active")
    for scope, seen in active:
        click.echo(
            f"SURGE: scope {scope!r}, {seen.failures} failures this minute"
            f" (threshold {seen.threshold}), at least"
            f" {whole_seconds(seen.seconds_left)} s more"
        )


@cli.command("events")
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    help="How many events to show.",
)
def events(limit: int) -> None:
    """Show the recent events (locks, resets, unlocks, outages), newest first."""
    state = current_state()
    log = state.events
    if not log.shared:
        click.echo(
            "LOCKOUT_STORAGE_URI is memory://: events live inside each running"
            " server process, and this command cannot see them. Use Redis"
            " (LOCKOUT_STORAGE_URI=redis://...) to share them, or open the"
            " dashboard of a running server.",
            err=True,
        )
        sys.exit(1)
    found, partial = log.read(limit)
    if partial:
        click.echo("Storage is unreachable: no events can be read.", err=True)
        sys.exit(1)
    if not found:
        click.echo("No events yet.")
        return
    now = time.time()
    for event in found:
        click.echo(event_line(event, now))


@cli.group("surge")
def surge() -> None:
    """Start or end a scope's surge by hand (see the credential-stuffing docs)."""


def _surge_scope(text: str) -> str:
    try:
        return named_scope(text)
    except ValueError as exc:
        raise click.UsageError(
            f"{exc} Give the scope of a @lockout_on_failure view."
        ) from exc


def _surge_command(scope: str, act: Callable[[AppState, str], None]) -> str:
    """Run ``act`` on a checked scope with the server's shared state."""
    scope = _surge_scope(scope)
    state = _shared_state()
    try:
        act(state, scope)
    except RuntimeError as exc:
        raise click.ClickException(str(exc)) from exc
    except StorageError as exc:
        raise _storage_failed(exc) from exc
    return scope


@surge.command("start")
@click.argument("scope")
@click.option(
    "--seconds",
    type=click.IntRange(min=1, max=30 * 86400),
    default=3600,
    show_default=True,
    help="How long the surge lasts if nothing keeps it on.",
)
def surge_start(scope: str, seconds: int) -> None:
    """Put SCOPE under a surge: devices without a cookie get the surge limits."""
    scope = _surge_command(
        scope, lambda state, name: state.extension.start_surge(name, seconds)
    )
    click.echo(f"Surge started on {scope!r} for {seconds} s.")


@surge.command("end")
@click.argument("scope")
def surge_end(scope: str) -> None:
    """End SCOPE's surge now (failures that go on start it again)."""
    scope = _surge_command(scope, lambda state, name: state.extension.end_surge(name))
    click.echo(f"Surge ended on {scope!r}.")
