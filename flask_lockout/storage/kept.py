"""A few connections of a plain client's pool, kept between decisions.

Decisions go out through redis-py's own public connection methods
(``pack_commands``, ``send_packed_command``, ``read_response``), so the
client's retry policy, health checks, RESP3 push handling and parser (hiredis
when installed) all apply. What is saved is the pool's checkout and a
``Pipeline`` object per decision.
"""

from __future__ import annotations

import inspect
import os
import threading
import time
from collections.abc import Sequence
from typing import Any

from .scripts import is_noscript

#: Connections kept between decisions, at most: about one per thread that
#: decides at once. More go back to the pool.
MAX_KEPT = 8
#: A kept connection idle longer than this is checked before use, as the
#: pool checks on checkout; one used more recently is sent to at once (the
#: client's retry policy covers a server that closed it meanwhile).
CHECK_AFTER_SECONDS = 1.0


class KeptConnections:
    """Run commands on connections of ``pool`` kept between calls.

    :param response_error: the client package's ``ResponseError``: an error
        reply is returned in the command's place, as a pipeline does with
        ``raise_on_error=False``; the connection stays in step.
    """

    def __init__(self, pool: Any, response_error: type[Exception]) -> None:
        self.pool = pool
        self._response_error = response_error
        #: (connection, when it was last used)
        self._kept: list[tuple[Any, float]] = []
        self._pid = os.getpid()
        self._lock = threading.Lock()
        # A pool the app bounds and shares: keep at most a quarter of it, so
        # the app's own commands still find a connection.
        bound = getattr(pool, "max_connections", None)
        self._most = (
            MAX_KEPT if not isinstance(bound, int) else min(MAX_KEPT, bound // 4)
        )
        # valkey's pool (and redis-py's before 5.3) wants a command name.
        command_name = inspect.signature(pool.get_connection).parameters.get(
            "command_name"
        )
        self._checkout_args: tuple[str, ...] = (
            ("EVALSHA",)
            if command_name is not None and command_name.default is command_name.empty
            else ()
        )

    def call(
        self, commands: Sequence[tuple[object, ...]], replayable: bool = True
    ) -> list[Any]:
        """Send ``commands`` in one write and read a reply for each.

        :param replayable: False for commands that must never run twice (a
            give-back): the client's retry policy is not applied to them, as
            a retry after a lost reply would send them again.
        """
        connection = self._take(check=not replayable)
        replies: list[Any]
        try:
            if replayable:
                replies = connection.retry.call_with_retry(
                    lambda: self._exchange(connection, commands),
                    lambda error: connection.disconnect(),
                )
            else:
                replies = self._exchange(connection, commands)
        except BaseException:
            connection.disconnect()  # out of step: never reused as it is
            self.pool.release(connection)
            raise
        if any(
            isinstance(reply, self._response_error) and not is_noscript(reply)
            for reply in replies
        ):
            # READONLY after a failover, LOADING, ...: the next decision
            # starts from a fresh connection.
            connection.disconnect()
        self._keep(connection)
        return replies

    def _exchange(
        self, connection: Any, commands: Sequence[tuple[object, ...]]
    ) -> list[Any]:
        connection.send_packed_command(connection.pack_commands(commands))
        replies: list[Any] = []
        for _ in commands:
            try:
                replies.append(connection.read_response())
            except self._response_error as error:
                replies.append(error)
        return replies

    def _take(self, check: bool) -> Any:
        if self._pid != os.getpid():
            # A forked child (also where no fork hooks run, as under uWSGI):
            # the parent's sockets are not ours to use.
            with self._lock:
                self._kept, self._pid = [], os.getpid()
        try:
            connection, used = self._kept.pop()
        except IndexError:
            return self.pool.get_connection(*self._checkout_args)
        if not check and time.monotonic() - used < CHECK_AFTER_SECONDS:
            return connection
        # As the pool checks on checkout: a socket the server closed while
        # it was kept (a restart, an idle timeout) reads as ready.
        try:
            ready = connection.can_read()
        except Exception:
            ready = True
        if ready:
            connection.disconnect()  # the next write connects it afresh
        return connection

    def _keep(self, connection: Any) -> None:
        if len(self._kept) < self._most and self._pid == os.getpid():
            self._kept.append((connection, time.monotonic()))
        else:
            self.pool.release(connection)

    def close(self) -> None:
        """Give every kept connection back to the pool, disconnected."""
        with self._lock:
            kept, self._kept = self._kept, []
        for connection, _ in kept:
            connection.disconnect()
            self.pool.release(connection)
