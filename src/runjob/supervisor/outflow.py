"""Records for a slow reader of runjob's stdout, without ever blocking the supervise loop.

The sink is a non-blocking logs.JsonSink: what the pipe does not take waits in its
`pending` buffer and goes out when poll says the pipe has room. While more than
PENDING_MAX bytes wait, the instances' pipes are not read (they wait on their own
writes), so memory stays bounded, and stops, SIGKILLs and limits are enforced whatever
the reader does.
"""

from __future__ import annotations

import select

from runjob.logs import PENDING_MAX

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class Outflow:
    def __init__(self, sink: Any, poller: select.poll) -> None:
        self.sink = sink
        self.poller = poller
        self.pipes: set[int] = set()  # every open instance pipe
        self.watching = False  # POLLOUT registered on the sink's fd
        self.paused = False  # the pipes unregistered

    def add(self, fd: int) -> None:
        self.pipes.add(fd)
        if not self.paused:
            self.poller.register(fd, select.POLLIN)

    def drop(self, fd: int) -> None:
        self.pipes.discard(fd)
        if not self.paused:
            self.poller.unregister(fd)

    def update(self) -> None:
        if not getattr(self.sink, "nonblocking", False):
            return
        self.sink.flush()
        backlog = self.sink.backlog()
        if bool(backlog) != self.watching:
            self.watching = bool(backlog)
            if self.watching:
                self.poller.register(self.sink.fd, select.POLLOUT)
            else:
                self.poller.unregister(self.sink.fd)
        over = backlog > PENDING_MAX
        if over != self.paused:
            self.paused = over
            for fd in self.pipes:
                if over:
                    self.poller.unregister(fd)
                else:
                    self.poller.register(fd, select.POLLIN)
