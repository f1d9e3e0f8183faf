"""Signals, sent with the app as sender and keyword data.

Every signal carries ``endpoint``, ``key_type``, ``key`` (the logical key,
such as ``login:email:alice@example.com``) and ``client_ip``;
``rate_limited`` adds ``limit``, the others ``retry_after`` where it applies.
``storage_error`` carries ``error`` instead of a key;
``storage_recovered`` carries no key. ``surge_started`` and
``surge_ended`` carry ``scope``, ``failures_per_minute`` and ``threshold``;
``new_device_login`` carries ``key`` (the account), ``client_ip`` and
``user_agent`` (as the client sent it, up to 512 characters: escape it
before it reaches a page or an e-mail).
"""

from __future__ import annotations

from blinker import Namespace

_signals = Namespace()

#: A request was refused by ``@throttled``.
rate_limited = _signals.signal("rate-limited")
#: A request was refused because a key is locked, or a failure locked it.
locked_out = _signals.signal("locked-out")
#: ``@lockout_on_failure`` or ``record_failure`` counted a failure.
failure_recorded = _signals.signal("failure-recorded")
#: A key was reset by a success, the manual API or the CLI.
lockout_reset = _signals.signal("lockout-reset")
#: This process lost its shared storage (sent once per outage, with ``error``);
#: ``LOCKOUT_FAIL_MODE`` says what happens meanwhile.
storage_error = _signals.signal("storage-error")
#: This process has its shared storage back.
storage_recovered = _signals.signal("storage-recovered")
#: A scope is under a surge of failures (sent once, by the process whose
#: decision saw it start; also for an operator's surge).
surge_started = _signals.signal("surge-started")
#: A scope's surge has ended.
surge_ended = _signals.signal("surge-ended")
#: A login succeeded from a device without a valid device cookie for the
#: account: tell the owner.
new_device_login = _signals.signal("new-device-login")
