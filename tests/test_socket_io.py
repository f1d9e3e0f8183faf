"""Socket calls of the decision path: they never block outside the wait for
the reply, that wait keeps its deadline through signals, and a connection's
end shows as the error a caller expects, with libc's calls and without."""

from __future__ import annotations

import os
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import Iterator

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
    assert socket_io.receive(client) == b"+OK\r\n"


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
    pair: tuple[socket.socket, socket.socket],
) -> None:
    # A client without a socket timeout (redis-py's default) has a blocking
    # socket: a send that waited with the GIL held would stop every thread.
    if not socket_io.holds_gil():
        pytest.skip("libc's send and recv are not reachable through ctypes here")
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
    assert socket_io.receive(client) == b""
    with socket.create_server(("127.0.0.1", 0)) as server:
        other = socket.create_connection(server.getsockname())
        accepted, _ = server.accept()
    other.settimeout(1.0)
    # Closing with a zero linger resets the connection.
    accepted.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    accepted.close()
    with pytest.raises(ConnectionResetError):
        socket_io.receive(other)
    with pytest.raises((BrokenPipeError, ConnectionResetError)):
        for _ in range(3):
            socket_io.send_now(other, b"PING\r\n")
            time.sleep(0.05)
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
            socket_io.receive(client)
        waited = time.monotonic() - started
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert 0.35 <= waited < 1.2
