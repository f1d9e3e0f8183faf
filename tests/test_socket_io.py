"""Socket calls of the decision path: they never block outside the wait for
the reply, that wait keeps its deadline through signals, and a connection's
end shows as the error a caller expects, with libc's calls and without."""

from __future__ import annotations

import errno
import os
import select
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from flask_lockout.storage import socket_io


@pytest.fixture(params=["libc", "plain"])
def io_mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run with libc's calls, and with the plain calls that stand in for
    them where ctypes cannot be had."""
    if request.param == "plain":
        monkeypatch.setattr(socket_io, "_libc", None)
    elif not socket_io.holds_gil():
        pytest.skip("libc's send and recv are not reachable through ctypes here")
    return str(request.param)


@pytest.fixture
def libc_only() -> None:
    if not socket_io.holds_gil():
        pytest.skip("libc's send and recv are not reachable through ctypes here")


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """A connected loopback TCP pair, as the Redis client's sockets are."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        client = socket.create_connection(server.getsockname())
        peer, _ = server.accept()
    yield client, peer
    client.close()
    peer.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")
def test_linux_keeps_the_gil_for_sends_and_receives() -> None:
    # Without it every decision hands the GIL to another thread twice more.
    assert socket_io.holds_gil()


def test_what_is_sent_is_received_whole(
    io_mode: str, pair: tuple[socket.socket, socket.socket]
) -> None:
    client, peer = pair
    client.settimeout(1.0)
    payload = os.urandom(3000)
    assert socket_io.send_now(client, payload) == len(payload)
    got = b""
    while len(got) < len(payload):
        got += peer.recv(65536)
    assert got == payload
    peer.sendall(b"+OK\r\n")
    assert socket_io.receive(client, socket_io.deadline_for(client)) == b"+OK\r\n"


def test_a_full_send_buffer_sends_part_and_never_waits(
    io_mode: str, pair: tuple[socket.socket, socket.socket]
) -> None:
    client, _ = pair
    client.settimeout(1.0)
    chunk = b"x" * 65536
    started = time.monotonic()
    for _ in range(1000):  # the peer reads nothing: the buffers fill up
        if socket_io.send_now(client, chunk) < len(chunk):
            break
    else:
        pytest.fail("the send buffer never filled")
    assert time.monotonic() - started < 0.9
    assert socket_io.send_now(client, chunk) == 0


def test_a_blocking_socket_never_blocks_a_send_holding_the_gil(
    libc_only: None, pair: tuple[socket.socket, socket.socket]
) -> None:
    # A client without a socket timeout (redis-py's default) has a blocking
    # socket: a send that waited with the GIL held would stop every thread.
    client, peer = pair
    assert client.gettimeout() is None
    sent: list[int] = []

    def fill() -> None:
        for _ in range(1000):
            sent.append(socket_io.send_now(client, b"x" * 65536))
            if sent[-1] < 65536:
                return

    filler = threading.Thread(target=fill, daemon=True)
    filler.start()
    filler.join(2.0)
    stuck = filler.is_alive()
    peer.close()  # unblocks a send that waited
    filler.join(2.0)
    assert not stuck and sent[-1] < 65536


def test_a_closed_connection_reads_as_nothing_and_a_reset_as_an_error(
    io_mode: str, pair: tuple[socket.socket, socket.socket]
) -> None:
    client, peer = pair
    client.settimeout(1.0)
    peer.close()
    assert socket_io.receive(client, socket_io.deadline_for(client)) == b""
    with socket.create_server(("127.0.0.1", 0)) as server:
        other = socket.create_connection(server.getsockname())
        accepted, _ = server.accept()
    other.settimeout(1.0)
    # Closing with a zero linger resets the connection.
    accepted.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    accepted.close()
    with pytest.raises(ConnectionResetError):
        socket_io.receive(other, socket_io.deadline_for(other))
    with pytest.raises((BrokenPipeError, ConnectionResetError)):
        socket_io.send_now(other, b"PING\r\n")
    other.close()


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs setitimer")
def test_a_silent_server_times_out_once_however_often_signals_come(
    io_mode: str, pair: tuple[socket.socket, socket.socket]
) -> None:
    client, _ = pair
    client.settimeout(0.4)
    previous = signal.signal(signal.SIGALRM, lambda *_: None)
    signal.setitimer(signal.ITIMER_REAL, 0.05, 0.05)
    try:
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            socket_io.receive(client, socket_io.deadline_for(client))
        waited = time.monotonic() - started
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert 0.35 <= waited < 1.2


class _ReadyPoller:
    """A ``select.poll`` that says the socket is ready and first runs
    ``before`` (to act while the GIL would be away)."""

    def __init__(self, before: Callable[[], None] = lambda: None) -> None:
        self.before = before

    def register(self, fd: int, events: int) -> None:
        self.fd = fd

    def poll(self, timeout: float | None = None) -> list[tuple[int, int]]:
        self.before()
        return [(self.fd, select.POLLIN)]


def test_a_socket_closed_during_the_wait_never_reads_its_numbers_next_owner(
    libc_only: None,
    pair: tuple[socket.socket, socket.socket],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client, _ = pair
    client.settimeout(1.0)
    number = client.fileno()
    with socket.create_server(("127.0.0.1", 0)) as server:
        other = socket.create_connection(server.getsockname())
        other_peer, _ = server.accept()
    other_peer.sendall(b"+ANOTHER REQUEST'S REPLY\r\n")
    assert select.select([other], [], [], 2.0)[0]  # it has arrived

    def close_and_reuse() -> None:
        # Another thread closes the socket; a new connection gets its number.
        client.close()
        os.dup2(other.fileno(), number)

    monkeypatch.setattr(socket_io.select, "poll", lambda: _ReadyPoller(close_and_reuse))
    try:
        with pytest.raises(OSError) as raised:
            socket_io.receive(client, time.monotonic() + 1.0)
        assert raised.value.errno == errno.EBADF
    finally:
        os.close(number)
        other.close()
        other_peer.close()


def test_a_socket_that_is_ready_with_nothing_to_read_still_times_out(
    libc_only: None,
    pair: tuple[socket.socket, socket.socket],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client, _ = pair
    # An error queue entry keeps a socket "ready" while recv has no data.
    monkeypatch.setattr(socket_io.select, "poll", _ReadyPoller)
    outcome: list[BaseException] = []

    def wait() -> None:
        try:
            socket_io.receive(client, time.monotonic() + 0.2)
        except BaseException as exc:  # noqa: BLE001 - checked below
            outcome.append(exc)

    waiter = threading.Thread(target=wait, daemon=True)
    waiter.start()
    waiter.join(2.0)
    assert not waiter.is_alive(), "the wait never ended"
    assert len(outcome) == 1 and isinstance(outcome[0], TimeoutError)


def test_a_timeout_too_long_for_one_poll_still_reads(
    io_mode: str, pair: tuple[socket.socket, socket.socket]
) -> None:
    client, peer = pair
    client.settimeout(30 * 86400.0)  # past poll()'s INT_MAX milliseconds
    peer.sendall(b"+OK\r\n")
    assert socket_io.receive(client, socket_io.deadline_for(client)) == b"+OK\r\n"


def test_green_and_tls_sockets_and_a_missing_poll_use_the_sockets_own_calls(
    pair: tuple[socket.socket, socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    class Unreachable:
        def __getattr__(self, name: str) -> object:
            raise AssertionError(f"libc's {name} was used")

    monkeypatch.setattr(socket_io, "_libc", Unreachable())

    class GreenSocket(socket.socket):
        """Stands for gevent's and eventlet's sockets (another module)."""

    client, peer = pair
    green = GreenSocket(fileno=os.dup(client.fileno()))
    assert not socket_io.is_plain(green)
    peer.sendall(b"+GREEN\r\n")
    assert socket_io.receive(green, None) == b"+GREEN\r\n"
    assert socket_io.send_now(green, b"x") == 1
    green.close()
    # eventlet's monkey patching removes select.poll.
    monkeypatch.delattr(socket_io.select, "poll")
    peer.sendall(b"+NOPOLL\r\n")
    assert socket_io.receive(client, None) == b"+NOPOLL\r\n"
