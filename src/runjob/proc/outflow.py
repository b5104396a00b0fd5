"""Backpressure between the child's pipes and a slow reader of runjob's stdout."""

from __future__ import annotations

import select

from runjob.records.sink import PENDING_MAX

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class Outflow:
    """Records waiting for a slow reader of runjob's stdout (sink.JsonSink.pending) go out
    when the pipe has room; while they are over PENDING_MAX the child's pipes are not read,
    so the child waits on its own writes and runjob's memory stays bounded. Nothing here
    blocks: the timeout and signals are enforced whatever the reader does."""

    def __init__(self, sink: Any, poller: select.poll, pipes: Any) -> None:
        self.sink = sink if getattr(sink, "nonblocking", False) else None
        self.poller = poller
        self.pipes = pipes  # the open pipes' fds (a dict or set the caller keeps current)
        self.watching = False  # POLLOUT registered on the sink's fd
        self.paused = False  # the pipes unregistered

    def add(self, fd: int) -> None:
        """A new pipe to read (the supervisor's instances come and go)."""
        self.pipes.add(fd)
        if not self.paused:
            self.poller.register(fd, select.POLLIN)

    def drop(self, fd: int) -> None:
        self.pipes.discard(fd)
        if not self.paused:
            self.poller.unregister(fd)

    def update(self) -> None:
        if self.sink is None:
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
