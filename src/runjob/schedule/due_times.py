"""The next fire times of cron schedules, kept between `status` and `list` calls.

Working out when `*/5 * * * *` fires next loads cronsim (with `re`, `enum`, `typing`,
`calendar`), zoneinfo and datetime: about half of what `status` cost. The answer only
changes when the schedule or its zone does, so each (expression, zone) keeps the instants
it fires at after the moment they were computed, up to WANT of them. Seen from a later
moment, the next fire times are the kept ones after it, as long as enough remain: the
kept list holds every fire time in its span, so that answer is exact.

The zone is part of the key: a job's `timezone`, or the host's (`TZ` as set, else the
identity of /etc/localtime, so pointing it at another zone starts afresh). An entry is
also used for at most MAX_AGE_S after it was computed, which bounds how long a changed
tzdata file can go unnoticed. `@every` and `@at` are not cached: they depend on the runs.
`--at` answers are not kept (they would replace the entries for now).

Kept in the state dir as a marshal file (0600, through safefs: never a symlink), read
and written only when the state dir is one runjob trusts (safefs.ensure_dir: ours or
root's, no write access for others) and the file is ours with no write access for
others. Any problem reading or writing it means computing, never an error.
"""

from __future__ import annotations

import marshal
import os
from bisect import bisect_right

from runjob import __version__, safefs
from runjob.errors import RunjobError
from runjob.triggers import timers

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from runjob.registry.config import Job

FILENAME = "next-due.cache"
FORMAT = 1
WANT = 16  # fire times worked out at a miss: `*/5` lasts 80 minutes, a daily job 16 days ...
MAX_AGE_S = 86400.0  # ... but never more than a day

Entry = tuple[float, tuple[float, ...], bool]  # (computed at, fire times after it, no more to come)


class DueTimes:
    """The next due times of the jobs of one state dir; `keep=False` computes without keeping."""

    def __init__(self, state_dir: str, keep: bool = True) -> None:
        self.state_dir = state_dir
        self.keep = keep
        self.path = os.path.join(state_dir, FILENAME)
        self.entries = _read(self.path) if _trusted(state_dir) else {}
        self.used: dict[Any, Entry] = {}
        self.zones: dict[str | None, Any] = {}
        self.changed = False

    def next(self, job: Job, after: float, count: int) -> list[float]:
        """The job's next `count` due times after `after` (a Unix time), as `scheduled.next_times` gives them."""
        words = (job.schedule or "").split()
        what = timers.kind(job.schedule) if words else None
        if what in (None, timers.MANUAL) or not job.enabled:
            return []  # never due (scheduled.next_times says the same)
        if what != timers.CRON:  # @every and @at depend on the runs: never kept
            return self._compute(job, after, count)
        if job.timezone not in self.zones:  # one stat of /etc/localtime per call, not per job
            self.zones[job.timezone] = _zone_key(job.timezone)
        key = (" ".join(words), self.zones[job.timezone])
        kept = self._kept(key, after, count)
        if kept is not None:
            return kept
        want = max(count, WANT)
        fires = self._compute(job, after, want)
        if self.keep:
            self.used[key] = (after, tuple(fires), len(fires) < want)
            self.changed = True
        return fires[:count]

    def _kept(self, key: Any, after: float, count: int) -> list[float] | None:
        """The next `count` fire times after `after` from a kept entry, or None if it cannot tell."""
        entry = self.used.get(key) or self.entries.get(key)
        if entry is None or not entry[0] <= after <= entry[0] + MAX_AGE_S:
            return None
        computed_at, fires, complete = entry
        first = bisect_right(fires, after)
        if not complete and len(fires) - first < count:
            return None
        self.used[key] = entry
        return list(fires[first : first + count])

    def _compute(self, job: Job, after: float, count: int) -> list[float]:
        from datetime import UTC, datetime

        from runjob.schedule.scheduled import next_times

        seen_from = datetime.fromtimestamp(after, UTC)
        return [t.timestamp() for t in next_times(job, seen_from, count, self.state_dir)]

    def save(self) -> None:
        """Keep the entries this call used (those of schedules gone from the registry go)."""
        if not (self.keep and self.changed) or not _trusted(self.state_dir):
            return
        try:
            safefs.replace(self.path, marshal.dumps((FORMAT, __version__, self.used)), keep_mode=False)
        except (OSError, ValueError, RunjobError):
            pass  # not kept: the next call computes again, which is correct, only slower


def _trusted(state_dir: str) -> bool:
    """Is the state dir there and one runjob keeps state in (ours or root's, not writable by
    others)? Never created here: `list` on a registry that never ran leaves no trace."""
    if not os.path.isdir(state_dir):
        return False
    try:
        safefs.ensure_dir(state_dir, top=True)
    except RunjobError:
        return False
    return True


def _read(path: str) -> dict[Any, Entry]:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return {}
    try:
        st = os.fstat(fd)
        if st.st_uid != os.geteuid() or st.st_mode & 0o022:
            return {}
        with open(fd, "rb", closefd=False) as f:
            fmt, version, entries = marshal.loads(f.read())
    except (OSError, ValueError, EOFError, TypeError):
        return {}
    finally:
        os.close(fd)
    return entries if (fmt, version) == (FORMAT, __version__) and isinstance(entries, dict) else {}


def _zone_key(name: str | None) -> Any:
    """What decides the zone a schedule fires in: the job's zone, else `TZ`, else /etc/localtime."""
    if name:
        return name
    tz = os.environ.get("TZ")
    if tz is not None:
        return ("TZ", tz, _identity(tz.lstrip(":")) if tz.lstrip(":").startswith("/") else None)
    return ("localtime", _identity("/etc/localtime"))


def _identity(path: str) -> tuple[int, ...] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
