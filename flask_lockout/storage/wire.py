"""Script calls written straight to a connection of a plain ``redis.Redis``
or ``valkey.Valkey``, for the decision path.

Most of a decision's time went to the client, not the round trip: the
pipeline, the pool's checkout (a lock, metrics hooks and a ``poll`` of the
socket, about 20 µs) and a general reply parser (about 30 µs). Here the
commands go out in one write, the replies come back through a reader that
knows only the few reply types the scripts give, and a few connections stay
with the store between decisions instead of going back to the pool.
"""

from __future__ import annotations

import os
import select
import threading
import time
from collections.abc import Sequence
from typing import Any

from .socket_io import (
    deadline_for,
    is_plain,
    keeps_deadline,
    pollable,
    receive,
    send_now,
)

#: Connections kept between decisions, at most: about one per thread that
#: decides at once. More go back to the pool.
MAX_KEPT = 8
#: The scripts answer a few hundred bytes, at most one array deep: anything
#: far past that is not an answer to them (a faulty proxy or server).
MAX_REPLY_BYTES = 1 << 20
MAX_DEPTH = 8


class Incomplete(Exception):
    """The buffer ends inside a reply: read more."""


#: Encoded integers and bytes (counts, policy values): the same few come in
#: every command. Bounded; a request's text (keys, tokens, receipts) is str.
_FRAGMENTS: dict[int | bytes, bytes] = {}
_MAX_FRAGMENTS = 256


def command(*parts: object) -> bytes:
    """One command in the Redis protocol (text as UTF-8)."""
    out = [b"*%d\r\n" % len(parts)]
    append = out.append
    for part in parts:
        if type(part) is int or type(part) is bytes:  # not bool: "True"
            value = part
            fragment = _FRAGMENTS.get(value)
            if fragment is None:
                data = value if isinstance(value, bytes) else b"%d" % value
                fragment = b"$%d\r\n%b\r\n" % (len(data), data)
                if len(_FRAGMENTS) < _MAX_FRAGMENTS:
                    _FRAGMENTS[value] = fragment
            append(fragment)
            continue
        text = part if type(part) is str else str(part)
        data = text.encode("utf-8", "surrogatepass")
        append(b"$%d\r\n%b\r\n" % (len(data), data))
    return b"".join(out)


class ErrorReply:
    """An error the server answered: the connection is still in step."""

    def __init__(self, text: str) -> None:
        self.text = text


class PushReply:
    """A message the server pushed on its own (RESP3): not an answer."""


def parse(buffer: bytes, pos: int, depth: int = 0) -> tuple[Any, int]:
    """The reply at ``pos`` and the position after it.

    Integers, bulk and simple strings (as bytes), arrays, nulls and error
    replies, in RESP2 and RESP3; anything else is a protocol error.

    :raises Incomplete: when the reply is not all in ``buffer`` yet.
    """
    end = buffer.find(b"\r\n", pos)
    if end < 0:
        raise Incomplete
    kind, line, after = buffer[pos], buffer[pos + 1 : end], end + 2
    if kind == 58:  # ':'
        return int(line), after
    if kind == 36:  # '$'
        size = int(line)
        if size < 0:
            return None, after
        if len(buffer) < after + size + 2:
            raise Incomplete
        return buffer[after : after + size], after + size + 2
    if kind in (42, 126, 62):  # '*', '~' (set), '>' (push)
        size = int(line)
        if size < 0:
            return None, after
        if depth >= MAX_DEPTH:
            raise ValueError("Redis reply nested too deep")
        items = []
        for _ in range(size):
            item, after = parse(buffer, after, depth + 1)
            items.append(item)
        return (PushReply() if kind == 62 else items), after
    if kind == 43:  # '+'
        return line, after
    if kind == 45:  # '-'
        return ErrorReply(line.decode("utf-8", "replace")), after
    if kind == 95:  # '_' (RESP3 null)
        return None, after
    if kind == 35:  # '#' (RESP3 boolean)
        return line == b"t", after
    raise ValueError(f"unexpected Redis reply type {chr(kind)!r}")


class DirectWire:
    """One store's path to the server through ``pool``.

    :param errors: the client's ``(ConnectionError, TimeoutError)`` classes,
        raised in place of socket errors, as the client itself would.

    Under load, every call that lets go of the GIL may hand it to another
    thread and wait to get it back, which costs more than the call itself.
    So a decision makes three system calls and lets go of the GIL in one:
    the command goes out in one ``send`` that cannot block, a ``poll`` waits
    for the reply (its deadline holds even when signals interrupt it), and
    a ``recv`` that cannot block reads it (see :mod:`.socket_io`). A kept
    connection is not polled before use either: one the server has closed
    shows as a reply that never began, and the command goes once more on a
    fresh connection; only a give-back, which must never run twice, polls
    first instead.
    """

    def __init__(self, pool: Any, errors: tuple[type[Exception], type[Exception]]):
        self.pool = pool
        self._connection_error, self._timeout_error = errors
        self._kept: list[Any] = []
        self._pid = os.getpid()
        self._lock = threading.Lock()

    def call(self, payload: bytes, count: int, replayable: bool = True) -> list[Any]:
        """Write ``payload`` and read ``count`` replies; an error reply comes
        back as the exception the client would raise for it.

        :param replayable: False for commands that must never run twice (a
            give-back): a kept connection is then checked before the write,
            and one the server closed is not written to again.
        """
        connection, kept = self._take(check=not replayable)
        try:
            replies, pushed = self._exchange(connection, payload, count)
        except _ClosedBeforeReply:
            self._drop(connection)
            if not kept or not replayable:
                raise self._connection_error("Redis closed the connection") from None
            # Closed while kept (a restart, an idle timeout, CLIENT KILL) and
            # no answer began: send it once more, on a fresh one. Had the
            # server run it before closing, it counts twice: the safe way.
            connection = self._fresh()
            try:
                replies, pushed = self._exchange(connection, payload, count)
            except _ClosedBeforeReply:
                self._drop(connection)
                raise self._connection_error("Redis closed the connection") from None
            except BaseException:
                self._drop(connection)
                raise
        except BaseException:
            self._drop(connection)  # out of step: never reused as it is
            raise
        if pushed or any(_server_state(reply) for reply in replies):
            # A maintenance notice, or a server that is no master now (a
            # failover): the next decision starts from a fresh connection.
            self._drop(connection)
        else:
            self._keep(connection)
        parser = connection._parser
        return [
            parser.parse_error(reply.text) if isinstance(reply, ErrorReply) else reply
            for reply in replies
        ]

    def _exchange(
        self, connection: Any, payload: bytes, count: int
    ) -> tuple[list[Any], bool]:
        sock = connection._sock
        if sock is None:
            connection.connect()
            sock = connection._sock
        buffer, pos, pushed = b"", 0, False
        replies: list[Any] = []
        # One deadline for the whole reply: a server (or a proxy) that
        # trickles it byte by byte does not get a timeout per byte.
        deadline = deadline_for(sock)
        # Sockets that time each read out on their own (TLS, gevent) are
        # held to it here, between reads.
        between_reads = None if keeps_deadline(sock) else deadline
        try:
            _send(sock, payload)
            while True:
                if pos < len(buffer):  # nothing unread: no parse to fail
                    try:
                        reply, after = parse(buffer, pos)
                    except Incomplete:
                        pass
                    else:
                        # Pushes may come before, between or after answers.
                        if isinstance(reply, PushReply):
                            pos, pushed = after, True
                            continue
                        if len(replies) < count:
                            pos = after
                            replies.append(reply)
                            continue
                if len(replies) == count:
                    break  # anything left unread is checked below
                if (
                    buffer
                    and between_reads is not None
                    and time.monotonic() >= between_reads
                ):
                    raise TimeoutError("the reply took too long")
                data = receive(sock, deadline)
                if not data:
                    if not buffer:
                        raise _ClosedBeforeReply from None
                    raise self._connection_error(
                        "Redis closed the connection"
                    ) from None
                buffer += data
                if len(buffer) > MAX_REPLY_BYTES:
                    raise ValueError("the reply is far too long")
        except (ConnectionResetError, BrokenPipeError) as exc:
            if not buffer:
                raise _ClosedBeforeReply from exc
            raise self._connection_error(f"Error reading from Redis: {exc}") from exc
        except TimeoutError as exc:
            raise self._timeout_error(f"Timeout reading from Redis: {exc}") from exc
        except ValueError as exc:  # not the Redis protocol: a proxy's garbage
            raise self._connection_error(f"Unreadable reply from Redis: {exc}") from exc
        except OSError as exc:
            raise self._connection_error(f"Error talking to Redis: {exc}") from exc
        if pos != len(buffer):
            raise self._connection_error("Redis sent more than was asked")
        return replies, pushed

    def _take(self, check: bool = False) -> tuple[Any, bool]:
        """A connection, and whether it was kept from an earlier decision;
        with ``check``, a kept one the server has closed is replaced first."""
        if self._pid != os.getpid():
            # A forked child (also where no fork hooks run, as under uWSGI):
            # the parent's sockets are not ours to use.
            with self._lock:
                self._kept, self._pid = [], os.getpid()
        try:
            connection = self._kept.pop()
        except IndexError:
            return self._fresh(), False
        if check and not _idle_and_open(connection):
            self._drop(connection)
            return self._fresh(), False
        return connection, True

    def _fresh(self) -> Any:
        try:
            return self.pool.get_connection()
        except TypeError:  # redis-py before 5.3 and valkey want a command name
            return self.pool.get_connection("EVALSHA")

    def _drop(self, connection: Any) -> None:
        connection.disconnect()
        self.pool.release(connection)

    def _keep(self, connection: Any) -> None:
        if len(self._kept) < MAX_KEPT:
            self._kept.append(connection)
        else:
            self.pool.release(connection)


def _idle_and_open(connection: Any) -> bool:
    """True when a kept connection's socket is open with nothing to read."""
    sock = connection._sock
    if sock is None:
        return True  # the next write connects it
    if not pollable(sock):
        # TLS may hold decrypted bytes itself; green sockets wait their way.
        return not connection.can_read(timeout=0)
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return not poller.poll(0)


class _ClosedBeforeReply(Exception):
    """The server closed the connection before answering a byte."""


def _send(sock: Any, payload: bytes) -> None:
    """Write ``payload``: on a plain socket in one call that does not wait,
    without the ``poll`` that ``sendall`` makes first on a socket with a
    timeout; the rest, if the send buffer was full, as the socket says."""
    if is_plain(sock):
        sent = send_now(sock, payload)
        if sent == len(payload):
            return
        payload = payload[sent:]
    sock.sendall(payload)


def _server_state(reply: Any) -> bool:
    """An error reply about the server rather than the call (READONLY,
    LOADING, MASTERDOWN, ...); a script missing from its cache is routine."""
    return isinstance(reply, ErrorReply) and not reply.text.startswith("NOSCRIPT")


def can_go_direct(pool: Any) -> bool:
    """True for a client's plain connection pool without client-side caching
    (which reads invalidations behind our back). Sentinel pools find their
    master per connection and blocking pools ration them: those keep the
    client's own path."""
    return (
        type(pool).__name__ == "ConnectionPool" and getattr(pool, "cache", None) is None
    )


def calls_payload(commands: Sequence[tuple[object, ...]]) -> bytes:
    """``EVALSHA`` commands in one write."""
    return b"".join(command(b"EVALSHA", *parts) for parts in commands)
