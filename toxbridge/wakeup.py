"""The tox thread's alarm clock: a flag the trio side sets, waited on in poll() together
with toxcore's UDP socket, so the thread sleeps as long as toxcore allows and still wakes
at once for a frame to send or a packet that arrived."""

from __future__ import annotations

import math
import os
import select


class Wakeup:
    """Like ``threading.Event`` (``set``/``clear``/``wait``), over an eventfd; ``watch``
    adds a descriptor whose readability also ends a wait."""

    def __init__(self) -> None:
        self._fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._poll = select.poll()  # the eventfd and the watched descriptors
        self._poll.register(self._fd, select.POLLIN)
        self._poll_self = select.poll()  # the eventfd alone
        self._poll_self.register(self._fd, select.POLLIN)
        self._watched: set[int] = set()
        # Read without a lock: a set() that sees True skips its write, and the pending
        # wake is cleared (by the waiter) only before the waiter looks at the queues again.
        self._flag = False

    def set(self) -> None:
        """Any thread."""
        if not self._flag:
            self._flag = True
            os.eventfd_write(self._fd, 1)

    def is_set(self) -> bool:
        return self._flag

    def clear(self) -> None:
        self._flag = False
        try:
            os.eventfd_read(self._fd)
        except BlockingIOError:
            pass

    def watch(self, fd: int) -> None:
        if fd not in self._watched:
            self._watched.add(fd)
            self._poll.register(fd, select.POLLIN)

    def unwatch(self, fd: int) -> None:
        if fd in self._watched:
            self._watched.discard(fd)
            self._poll.unregister(fd)

    def wait(self, timeout: float, *, watched: bool = True) -> bool:
        """Until set, a watched descriptor is readable (unless ``watched`` is False), or
        ``timeout`` s; True if set."""
        if not self._flag:
            poll = self._poll if watched else self._poll_self
            for fd, _ in poll.poll(max(0, math.ceil(timeout * 1000))):
                if fd == self._fd:
                    # Written but the flag reads False: a clear() ran between a set()'s
                    # flag and its write. Report it, so that the caller's clear() reads
                    # the count; else the readable eventfd would end every later wait.
                    return True
        return self._flag

    def __del__(self) -> None:  # nobody can set() it any more
        os.close(self._fd)
