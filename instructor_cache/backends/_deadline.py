"""Sync redis-py connections whose timeout bounds a whole command, not each socket read.

redis-py applies ``socket_timeout`` to every ``recv``: a large reply over a
slow link that trickles in, each piece a little before the timeout, takes
many timeouts in all. A cache must give up on such a reply as it would on a
dead server. Here each command gets a deadline when it is sent: every read
and write of it waits at most until then, and a command that misses its
deadline raises ``TimeoutError``, on which redis-py disconnects the
connection, so no half-read reply goes back to the pool. (asyncio
connections need none of this: redis-py bounds a whole reply by one
timeout there.)
"""

from __future__ import annotations

import functools
import time
from typing import Any

import redis

__all__ = ["with_deadline"]

_SLACK = 0.01


class _DeadlineSocket:
    """A socket (plain, TLS or Unix) whose reads and writes wait no later than ``deadline``.

    redis-py sets timeouts of its own (0 to poll, its ``socket_timeout``):
    they are kept as what it asked for, and cut to the time left.
    """

    __slots__ = ("_applied", "_asked", "_sock", "deadline")

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self._asked: float | None = sock.gettimeout()
        self._applied = self._asked
        self.deadline: float | None = None

    # What redis-py calls on its sockets, passed on as they are. No __getattr__:
    # redis-py asks ``hasattr(sock, "pending")`` around every read, and a failed
    # lookup through __getattr__ costs more than the rest of this class.
    def fileno(self) -> int:
        fileno: int = self._sock.fileno()
        return fileno

    def shutdown(self, how: int) -> None:
        self._sock.shutdown(how)

    def close(self) -> None:
        self._sock.close()

    def setsockopt(self, *args: Any) -> None:
        self._sock.setsockopt(*args)

    def getsockopt(self, *args: Any) -> Any:
        return self._sock.getsockopt(*args)

    def getsockname(self) -> Any:
        return self._sock.getsockname()

    def getpeername(self) -> Any:
        return self._sock.getpeername()

    def settimeout(self, timeout: float | None) -> None:
        self._asked = timeout
        self._apply(timeout)

    def gettimeout(self) -> float | None:
        return self._asked

    # The arguments go on exactly as given: a TLS socket's defaults differ.
    def recv(self, *args: Any) -> bytes:
        self._cut()
        data: bytes = self._sock.recv(*args)
        return data

    def recv_into(self, *args: Any) -> int:
        self._cut()
        count: int = self._sock.recv_into(*args)
        return count

    def sendall(self, *args: Any) -> None:
        self._cut()
        self._sock.sendall(*args)

    def _cut(self) -> None:
        asked, deadline = self._asked, self.deadline
        if deadline is None or asked == 0:  # no command under way, or a poll
            return
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the command's deadline has passed")  # socket.timeout
        # Cut the wait only when the time left is clearly shorter than asked:
        # that saves a system call on almost every read, for an overrun of at
        # most _SLACK.
        self._apply(left if asked is None or left < asked - _SLACK else asked)

    def _apply(self, timeout: float | None) -> None:
        if timeout != self._applied:
            self._sock.settimeout(timeout)
            self._applied = timeout


class _DeadlineTLSSocket(_DeadlineSocket):
    """The same over TLS: redis-py asks a TLS socket for the bytes it has already decrypted."""

    __slots__ = ()

    def pending(self) -> int:
        pending: int = self._sock.pending()
        return pending


class _Deadline:
    """Mixed into a redis-py connection: a reply is due ``socket_timeout`` after its command."""

    socket_timeout: float | None
    _sock: Any

    def _connect(self) -> Any:
        sock = super()._connect()  # type: ignore[misc]
        return (_DeadlineTLSSocket if hasattr(sock, "pending") else _DeadlineSocket)(sock)

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        if not self._sock:
            self.connect()  # type: ignore[attr-defined]
        if self.socket_timeout and self._sock:  # the handshake above set deadlines of its own
            self._sock.deadline = time.monotonic() + self.socket_timeout
        super().send_packed_command(command, check_health)  # type: ignore[misc]


@functools.cache
def with_deadline(base: type[redis.connection.AbstractConnection]) -> type[Any]:
    """``base`` (plain, ``SSLConnection``, ``UnixDomainSocketConnection``) with deadlines."""
    return type(f"Deadline{base.__name__}", (_Deadline, base), {})
