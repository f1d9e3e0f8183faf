"""The direct path to Redis: its reply reader, and connections kept between
decisions that stay correct when the server closes them or the process forks."""

from __future__ import annotations

import os
import select
import signal
import socket
import threading
import time
from typing import Any

import pytest
import redis

from flask_lockout import LockoutConfig, RedisStorage, StorageUnavailable
from flask_lockout.limits import as_limits
from flask_lockout.policy import reservation_token
from flask_lockout.storage.wire import (
    DirectWire,
    ErrorReply,
    Incomplete,
    PushReply,
    command,
    parse,
)

from .redis_proc import private_redis

POLICY = LockoutConfig(max_failures=10**6)
#: Decisions each process makes at once in the fork test.
N = 1000

REPLIES = [
    (b":42\r\n", 42),
    (b":-7\r\n", -7),
    (b"$5\r\nhe\r\nl\r\n", b"he\r\nl"),
    (b"$0\r\n\r\n", b""),
    (b"$-1\r\n", None),
    (b"*-1\r\n", None),
    (b"_\r\n", None),
    (b"#t\r\n", True),
    (b"+OK\r\n", b"OK"),
    (b"*3\r\n:1\r\n*2\r\n$1\r\na\r\n_\r\n$2\r\nbc\r\n", [1, [b"a", None], b"bc"]),
    (b"~2\r\n:1\r\n:2\r\n", [1, 2]),
]


@pytest.mark.parametrize(("wire", "value"), REPLIES)
def test_a_reply_is_read_whole_and_never_before_it_is_all_there(
    wire: bytes, value: Any
) -> None:
    assert parse(wire, 0) == (value, len(wire))
    for cut in range(len(wire)):
        with pytest.raises(Incomplete):
            parse(wire[:cut], 0)


def test_errors_and_pushes_are_told_apart_from_answers() -> None:
    error, _ = parse(b"-NOSCRIPT No matching script\r\n", 0)
    assert isinstance(error, ErrorReply) and error.text.startswith("NOSCRIPT")
    buffer = b">2\r\n$7\r\nmessage\r\n:1\r\n:5\r\n"
    push, end = parse(buffer, 0)
    assert isinstance(push, PushReply)
    assert parse(buffer, end) == (5, len(buffer))
    with pytest.raises(ValueError, match="unexpected"):
        parse(b"%1\r\n:1\r\n:2\r\n", 0)


def test_commands_are_written_in_the_redis_protocol() -> None:
    assert command(b"EVALSHA", "é", 3) == (
        b"*3\r\n$7\r\nEVALSHA\r\n$2\r\n\xc3\xa9\r\n$1\r\n3\r\n"
    )
    # Encoded integers and bytes are reused; equal values of other types
    # still go out as their own text, every time.
    for _ in range(2):
        assert command(1, b"1", True, 1.0, "1", -7) == (
            b"*6\r\n$1\r\n1\r\n$1\r\n1\r\n$4\r\nTrue\r\n$3\r\n1.0\r\n"
            b"$1\r\n1\r\n$2\r\n-7\r\n"
        )


class TrickleSocket:
    """Hands a recorded answer back ``chunk`` bytes per ``recv``."""

    def __init__(self, answer: bytes, chunk: int = 1) -> None:
        self.answer, self.chunk = answer, chunk

    def sendall(self, data: bytes) -> None:
        pass

    def gettimeout(self) -> float | None:
        return None

    def recv(self, size: int) -> bytes:
        part, self.answer = self.answer[: self.chunk], self.answer[self.chunk :]
        return part


class TrickleConnection:
    def __init__(self, answer: bytes, chunk: int = 1) -> None:
        self._sock = TrickleSocket(answer, chunk)
        self.disconnected = False

    def disconnect(self) -> None:
        self.disconnected = True


def test_replies_cut_anywhere_by_the_network_are_read_whole() -> None:
    wire = DirectWire(None, (ConnectionError, TimeoutError))
    answer = b"*2\r\n:1\r\n$3\r\nabc\r\n>1\r\n$4\r\ninfo\r\n:9\r\n"
    connection = TrickleConnection(answer)
    assert wire._exchange(connection, b"", 2) == ([[1, b"abc"], 9], True)


def test_a_push_read_with_the_last_answer_is_not_an_extra_answer() -> None:
    # RESP3 maintenance notices may follow an answer in the same read.
    wire = DirectWire(None, (ConnectionError, TimeoutError))
    answer = b":1\r\n>2\r\n$7\r\nmessage\r\n:1\r\n"
    assert wire._exchange(TrickleConnection(answer, 1024), b"", 1) == ([1], True)
    with pytest.raises(ConnectionError, match="more than was asked"):
        wire._exchange(TrickleConnection(b":1\r\n:2\r\n", 1024), b"", 1)


def test_a_connection_closed_mid_reply_is_an_error() -> None:
    wire = DirectWire(None, (ConnectionError, TimeoutError))
    with pytest.raises(ConnectionError, match="closed"):
        wire._exchange(TrickleConnection(b"*2\r\n:1\r\n"), b"", 1)


def test_a_reply_that_is_not_the_redis_protocol_is_a_connection_error() -> None:
    # From a faulty proxy, say: an error the store turns into an outage,
    # never an exception the app answers with a 500.
    wire = DirectWire(None, (ConnectionError, TimeoutError))
    with pytest.raises(ConnectionError, match="Unreadable"):
        wire._exchange(TrickleConnection(b"!garbage\r\n"), b"", 1)


class SocketConnection:
    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock


class GreenSocket(socket.socket):
    """Stands for gevent's and eventlet's sockets, which read through their
    own ``recv`` and time each read out on its own."""


@pytest.mark.parametrize("green", [False, True], ids=["plain", "green"])
def test_a_reply_trickled_byte_by_byte_times_out_once_for_the_whole_reply(
    green: bool,
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        client = socket.create_connection(server.getsockname())
        peer, _ = server.accept()
    if green:
        client = GreenSocket(fileno=client.detach())
    client.settimeout(0.3)
    answer = b"$20\r\n01234567890123456789\r\n"

    def trickle() -> None:
        for i in range(len(answer)):
            try:
                peer.sendall(answer[i : i + 1])
            except OSError:
                return
            time.sleep(0.05)

    sender = threading.Thread(target=trickle)
    sender.start()
    wire = DirectWire(None, (ConnectionError, TimeoutError))
    started = time.monotonic()
    try:
        with pytest.raises(TimeoutError):
            wire._exchange(SocketConnection(client), b"", 1)
        waited = time.monotonic() - started
    finally:
        client.close()
        peer.close()
        sender.join()
    # Each byte came within the timeout; the whole reply did not. A socket
    # that times each read out on its own may take one more read.
    assert 0.25 <= waited < 1.0


def test_a_reply_already_there_is_read_even_when_the_thread_resumes_late(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A thread starved of the GIL past the deadline, with the rest of the
    # reply waiting in the socket: an answer, not a timeout.
    from flask_lockout.storage import wire as wire_module

    with socket.create_server(("127.0.0.1", 0)) as server:
        client = socket.create_connection(server.getsockname())
        peer, _ = server.accept()
    client.settimeout(0.2)
    peer.sendall(b"$10\r\n01234")
    real_receive, calls = wire_module.receive, []

    def late(sock: socket.socket, deadline: float | None) -> bytes:
        data = real_receive(sock, deadline)
        calls.append(1)
        if len(calls) == 1:
            peer.sendall(b"56789\r\n")
            assert select.select([sock], [], [], 2.0)[0]
            time.sleep(0.3)  # past the deadline
        return data

    monkeypatch.setattr(wire_module, "receive", late)
    wire = DirectWire(None, (ConnectionError, TimeoutError))
    try:
        assert wire._exchange(SocketConnection(client), b"", 1) == (
            [b"0123456789"],
            False,
        )
    finally:
        client.close()
        peer.close()


def test_a_reply_far_longer_than_any_script_answer_is_a_connection_error() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        client = socket.create_connection(server.getsockname())
        peer, _ = server.accept()
    client.settimeout(2.0)
    flood = threading.Thread(
        target=lambda: _send_quietly(peer, b"$2000000000\r\n" + b"x" * (3 << 20))
    )
    flood.start()
    wire = DirectWire(None, (ConnectionError, TimeoutError))
    try:
        with pytest.raises(ConnectionError, match="far too long"):
            wire._exchange(SocketConnection(client), b"", 1)
    finally:
        client.close()
        peer.close()
        flood.join()


def _send_quietly(sock: socket.socket, data: bytes) -> None:
    try:
        sock.sendall(data)
    except OSError:
        pass  # the reader gave up and closed: what the test expects


def test_a_reply_nested_deeper_than_any_script_answer_is_unreadable() -> None:
    deep = b"*1\r\n" * 5000 + b":1\r\n"
    with pytest.raises(ValueError, match="too deep"):
        parse(deep, 0)
    wire = DirectWire(None, (ConnectionError, TimeoutError))
    with pytest.raises(ConnectionError, match="Unreadable"):
        wire._exchange(TrickleConnection(deep), b"", 1)


@pytest.mark.redis
def test_a_kept_connection_the_server_closed_costs_no_decision(
    need_redis_server_binary: None,
) -> None:
    with private_redis() as server:
        storage = RedisStorage.from_url(server.url)
        assert storage.lockout_failure("k", POLICY).failures == 1
        admin = redis.Redis.from_url(server.url)
        # Every other client: as a restart or an idle timeout would.
        assert admin.client_kill_filter(_type="normal", skipme=True) >= 1
        assert storage.lockout_failure("k", POLICY).failures == 2
        server.stop()
        with pytest.raises(StorageUnavailable):
            storage.lockout_failure("k", POLICY)
        server.start()
        assert storage.lockout_failure("k", POLICY).failures == 1


@pytest.mark.redis
@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs setitimer")
def test_a_frozen_server_times_out_even_while_signals_interrupt_the_wait(
    need_redis_server_binary: None,
) -> None:
    with private_redis() as server:
        storage = RedisStorage.from_url(server.url)  # socket timeout 0.5 s
        storage.lockout_failure("k", POLICY)  # a kept connection
        # A signal every 0.1 s, as a timer or a sampling profiler sends them:
        # each must not start the timeout over.
        previous = signal.signal(signal.SIGALRM, lambda *_: None)
        signal.setitimer(signal.ITIMER_REAL, 0.1, 0.1)
        server.pause()
        try:
            started = time.monotonic()
            with pytest.raises(StorageUnavailable):
                storage.lockout_failure("k", POLICY)
            waited = time.monotonic() - started
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
            server.resume()
    assert 0.4 <= waited < 1.5


def test_a_failed_retry_gives_the_closed_connection_back_once() -> None:
    released: list[object] = []

    class Pool:
        def release(self, connection: object) -> None:
            released.append(connection)

        def get_connection(self) -> object:
            raise ConnectionError("refused")

    wire = DirectWire(Pool(), (ConnectionError, TimeoutError))
    closed = TrickleConnection(b"")  # closed by the server while kept
    wire._kept = [closed]
    with pytest.raises(ConnectionError, match="refused"):
        wire.call(b"", 1)
    # Released twice, another thread could take it while it is in use.
    assert released == [closed] and closed.disconnected


def test_a_give_back_is_never_sent_again_on_a_fresh_connection() -> None:
    fresh: list[object] = []

    class Pool:
        def release(self, connection: object) -> None:
            pass

        def get_connection(self) -> object:
            fresh.append(object())
            return fresh[-1]

    wire = DirectWire(Pool(), (ConnectionError, TimeoutError))
    closed = TrickleConnection(b"")  # the server closed it after running it?
    wire._take = lambda **_: (closed, True)  # type: ignore[method-assign]
    with pytest.raises(ConnectionError, match="closed"):
        wire.call(b"", 1, replayable=False)
    assert fresh == []  # not sent twice: it may have run already


def test_a_forked_worker_drops_its_parents_connections_without_fork_hooks() -> None:
    fresh = object()
    pool = type("Pool", (), {"get_connection": lambda self: fresh})()
    wire = DirectWire(pool, (ConnectionError, TimeoutError))
    wire._kept = [object()]
    wire._pid = -1  # as in a child forked where no fork hooks ran (uWSGI)
    assert wire._take() == (fresh, False)
    assert wire._kept == []


def test_reservation_tokens_are_unique_across_forked_processes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first = reservation_token()
    prefix = first[:16]
    assert reservation_token()[:16] == prefix  # one process: one prefix
    monkeypatch.setattr(os, "getpid", lambda: -1)  # a child, no fork hooks
    assert reservation_token()[:16] != prefix


@pytest.mark.redis
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_worker_never_shares_its_parents_connection(
    redis_server: str, redis_prefix: str
) -> None:
    storage = RedisStorage.from_url(redis_server, prefix=redis_prefix)
    # The parent decides first, so that it keeps a connection across fork,
    # as a preloading server's master would.
    assert storage.lockout_failure("parent", POLICY).failures == 1
    ready_read, ready_write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its replies must be its own
        os.write(ready_write, b"x")
        try:
            counts = [
                storage.lockout_failure("child", POLICY).failures for _ in range(N)
            ]
            os._exit(0 if counts == list(range(1, N + 1)) else 1)
        finally:
            os._exit(2)  # never back into the test runner
    os.read(ready_read, 1)  # both loop at once from here
    counts = [storage.lockout_failure("parent", POLICY).failures for _ in range(N)]
    _, status = os.waitpid(pid, 0)
    assert counts == list(range(2, N + 2))
    assert os.waitstatus_to_exitcode(status) == 0


@pytest.mark.redis
@pytest.mark.parametrize("protocol", [2, 3])
@pytest.mark.parametrize("decode_responses", [False, True])
def test_an_apps_own_client_in_either_protocol_and_decoding(
    redis_server: str, redis_prefix: str, protocol: int, decode_responses: bool
) -> None:
    client = redis.Redis.from_url(
        redis_server, protocol=protocol, decode_responses=decode_responses
    )
    storage = RedisStorage(client, prefix=redis_prefix)
    assert [storage.lockout_failure("k", POLICY).failures for _ in range(3)] == [
        1,
        2,
        3,
    ]
    assert storage.rate_limit_hit_many(["r"], as_limits("2/minute")).remaining == 1
    assert storage.throttle_hit("t", 60).attempts == 1
    storage.token_put("hash", "login:email:alice@example.com", 60)
    assert storage.token_take("hash") == "login:email:alice@example.com"
    assert storage.token_take("hash") is None


def test_an_error_about_the_server_drops_the_connection() -> None:
    released: list[object] = []
    pool = type("Pool", (), {"release": lambda self, c: released.append(c)})()
    wire = DirectWire(pool, (ConnectionError, TimeoutError))
    wire._take = lambda **_: (connection, False)  # type: ignore[method-assign]
    # After a failover the old master answers READONLY: never keep talking to it.
    connection = TrickleConnection(b"-READONLY You can't write against a replica.\r\n")
    connection._parser = type("P", (), {"parse_error": lambda self, t: ValueError(t)})()
    [error] = wire.call(b"", 1)
    assert isinstance(error, ValueError) and connection.disconnected
    assert released == [connection] and wire._kept == []
    # A script missing from the cache is routine: the connection is kept.
    connection = TrickleConnection(b"-NOSCRIPT No matching script.\r\n")
    connection._parser = type("P", (), {"parse_error": lambda self, t: ValueError(t)})()
    wire.call(b"", 1)
    assert not connection.disconnected and wire._kept == [connection]


@pytest.mark.redis
def test_a_blocking_pool_keeps_the_clients_own_path(
    redis_server: str, redis_prefix: str
) -> None:
    pool = redis.BlockingConnectionPool.from_url(redis_server, max_connections=2)
    storage = RedisStorage(redis.Redis(connection_pool=pool), prefix=redis_prefix)
    assert [storage.lockout_failure("k", POLICY).failures for _ in range(3)] == [
        1,
        2,
        3,
    ]
    assert storage._wire(storage.client) is None
