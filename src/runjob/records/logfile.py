"""A log file (`log_file`, `--log-file`) that records can trust.

Opened with O_APPEND, so each write of whole records lands whole even when several
runs share the file; never through a symlink (O_NOFOLLOW), created 0640 with O_EXCL; a
FIFO, socket or directory is refused (a FIFO with no reader would hang the run; a
character device such as /dev/null is allowed).
A file that does not end with a newline (a record torn by a full disk) gets one before
our first record, so the next record is never glued to the torn one. That check holds an
exclusive flock on the file, and every write of records a shared one: a write still in
progress in another run (its last bytes not yet copied) is never taken for a torn record,
which would add an empty line. A file moved away
(logrotate's move-and-create) or deleted while the run goes on is noticed before each
run record and reopened at its path.
"""

from __future__ import annotations

import fcntl
import os
import stat

from runjob.errors import InternalError

FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK


class LogFile:
    def __init__(self, path: str) -> None:
        self.path = path
        self.fd = -1
        self.ino: tuple[int, int] = (0, 0)
        self._open()

    def _open(self) -> None:
        path = self.path
        try:
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            try:
                fd = os.open(path, FLAGS | os.O_CREAT | os.O_EXCL, 0o640)
            except FileExistsError:
                fd = os.open(path, FLAGS)
        except OSError as e:
            if e.errno == 6:  # ENXIO: a FIFO with no reader (O_NONBLOCK kept us from waiting for one)
                _refuse(path)
            what = "a symlink" if e.errno == 40 else e.strerror  # ELOOP: O_NOFOLLOW met a symlink
            raise InternalError(f"cannot open log file {path}: {what}") from None
        info = os.fstat(fd)
        if not (stat.S_ISREG(info.st_mode) or stat.S_ISCHR(info.st_mode)):  # /dev/null never holds a write
            os.close(fd)
            _refuse(path)
        os.set_blocking(fd, True)
        self.fd, self.ino = fd, (info.st_dev, info.st_ino)
        self._end_torn_line(info.st_size)

    def _end_torn_line(self, size: int) -> None:
        if size <= 0:
            return
        try:  # our fd is write-only: read the last byte through another
            fcntl.flock(self.fd, fcntl.LOCK_EX)  # no other run is between the bytes of a write now
            rd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
            try:
                size = os.fstat(rd).st_size
                last = os.pread(rd, 1, size - 1) if size > 0 else b"\n"
            finally:
                os.close(rd)
            if last and last != b"\n":
                os.write(self.fd, b"\n")
        except OSError:
            pass  # unreadable (or full again): the record is written anyway
        finally:
            self.done()

    def writing(self) -> None:
        """Before a write of whole records: a shared flock (see the module's docstring)."""
        try:
            fcntl.flock(self.fd, fcntl.LOCK_SH)
        except OSError:
            pass  # a file system without flock: the records are written all the same

    def done(self) -> None:
        try:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
        except OSError:
            pass

    def reopen_if_moved(self) -> int:
        """The fd to write to: ours, or a new one if the path now names another file or none."""
        try:
            info = os.stat(self.path, follow_symlinks=False)
            if (info.st_dev, info.st_ino) == self.ino:
                return self.fd
        except OSError:
            pass
        old = self.fd
        try:
            self._open()
        except InternalError:
            return old  # keep writing where we were rather than lose the records
        os.close(old)
        return self.fd

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _refuse(path: str) -> None:
    raise InternalError(f"log file {path} is not a regular file (a FIFO, socket or directory): not written to")
