"""Sending and receiving on a plain socket while letting go of the GIL only
to wait for the server.

Every Python call into the socket API lets go of the GIL, even one that
cannot block. Under load another thread takes it at once, and the caller
waits to get it back: a context switch or two, which cost a decision more
than its system calls do. Here a command goes out and a reply comes in
through libc's ``send`` and ``recv``, called through ``ctypes.PyDLL`` (which
keeps the GIL) with ``MSG_DONTWAIT``, so neither call can block; only the
``poll`` that waits for the reply lets go. Where ctypes or libc cannot be
had, the plain calls do the same work.
"""

from __future__ import annotations

import errno
import os
import select
import socket
import threading
import time
from collections.abc import Callable
from typing import Any, NamedTuple

#: Errors after which a call that may not block simply tries again later.
_NOT_NOW = frozenset({errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR})
_RECEIVE_SIZE = 65536
#: poll() takes at most INT_MAX ms; a longer timeout waits in several polls.
_LONGEST_POLL_MS = 2**31 - 1
#: Never block, and never raise SIGPIPE in an app that did not ignore it.
#: (Windows has neither, and no libc path: see _find_libc.)
_FLAGS = getattr(socket, "MSG_DONTWAIT", 0) | getattr(socket, "MSG_NOSIGNAL", 0)


class _Libc(NamedTuple):
    """libc's ``send`` and ``recv`` called with the GIL held, with the
    ctypes helpers they need."""

    send: Callable[[int, bytes, int, int], int]
    recv: Callable[[int, Any, int, int], int]
    get_errno: Callable[[], int]
    string_at: Callable[[Any, int], bytes]
    new_buffer: Callable[[int], Any]


def _find_libc() -> _Libc | None:
    """None where libc's calls cannot be had (not POSIX, no ctypes)."""
    if os.name != "posix" or not hasattr(socket, "MSG_DONTWAIT"):
        return None
    try:
        import ctypes

        libc = ctypes.PyDLL(None, use_errno=True)
        send, recv = libc.send, libc.recv
    except (ImportError, OSError, AttributeError):
        return None
    send.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_int]
    send.restype = ctypes.c_ssize_t
    recv.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    recv.restype = ctypes.c_ssize_t
    return _Libc(
        send, recv, ctypes.get_errno, ctypes.string_at, ctypes.create_string_buffer
    )


_libc = _find_libc()
_buffers = threading.local()


def holds_gil() -> bool:
    """True when sends and receives here keep the GIL."""
    return _libc is not None


def is_plain(sock: Any) -> bool:
    """True for the standard library's own socket class: not TLS, and not a
    green socket (gevent, eventlet), whose calls yield to an event loop."""
    return type(sock).__module__ == "socket"


def pollable(sock: Any) -> bool:
    """True for a plain socket while ``select.poll`` is there (eventlet's
    monkey patching removes it)."""
    return is_plain(sock) and hasattr(select, "poll")


def _held(sock: Any) -> _Libc | None:
    """libc's calls for a pollable socket, where there are any."""
    return _libc if pollable(sock) else None


def keeps_deadline(sock: Any) -> bool:
    """True when :func:`receive` holds a reply's deadline itself on ``sock``
    (and still reads bytes that are already there once it has passed)."""
    return _held(sock) is not None


def deadline_for(sock: Any) -> float | None:
    """When a wait that starts now must end: the socket's timeout from now."""
    timeout = sock.gettimeout()
    return None if timeout is None else time.monotonic() + timeout


def send_now(sock: Any, payload: bytes) -> int:
    """Send what a plain socket (:func:`is_plain`) takes now, without
    waiting; how many bytes went (the caller sends the rest as the socket
    says).

    :raises OSError: when the connection failed (reset, closed).
    """
    libc = _held(sock)
    if libc is None:
        try:
            return os.write(sock.fileno(), payload)
        except BlockingIOError:
            return 0
    sent = libc.send(sock.fileno(), payload, len(payload), _FLAGS)
    if sent >= 0:
        return sent
    code = libc.get_errno()
    if code in _NOT_NOW:
        return 0
    raise OSError(code, os.strerror(code))


def receive(sock: Any, deadline: float | None) -> bytes:
    """The bytes the server sends next, waiting until ``deadline``
    (``time.monotonic()``; None: no end) however often signals interrupt
    the wait; ``b""`` when it closed. Sockets that can't keep the GIL read
    through their own ``recv`` and timeout.

    :raises TimeoutError: when nothing came in time.
    :raises OSError: when the connection failed or was closed meanwhile.
    """
    libc = _held(sock)
    if libc is None:
        return bytes(sock.recv(_RECEIVE_SIZE))
    buffer = getattr(_buffers, "buffer", None)
    if buffer is None:
        buffer = _buffers.buffer = libc.new_buffer(_RECEIVE_SIZE)
    fd = sock.fileno()
    if fd < 0:
        raise OSError(errno.EBADF, "the socket is closed")
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    while True:
        wait = None
        if deadline is not None:
            wait = min(max(0.0, deadline - time.monotonic()) * 1000, _LONGEST_POLL_MS)
        # The one call that lets go of the GIL: PEP 475 retries it after a
        # signal, with the time left.
        if not poller.poll(wait):
            raise TimeoutError("timed out")
        # Another thread may have closed the socket while the GIL was away,
        # and its number may name another connection now: checked and read
        # in one hold of the GIL, as close() sets the number to -1 under it.
        if sock.fileno() != fd:
            raise OSError(errno.EBADF, "the socket was closed during the wait")
        got = libc.recv(fd, buffer, _RECEIVE_SIZE, _FLAGS)
        if got >= 0:
            return libc.string_at(buffer, got)
        code = libc.get_errno()
        if code not in _NOT_NOW:
            raise OSError(code, os.strerror(code))
        # poll said ready and recv had nothing (an error queue entry): the
        # deadline still holds.
        if deadline is not None and time.monotonic() >= deadline:
            raise TimeoutError("timed out")
