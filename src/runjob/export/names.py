"""Object names for exported entries: valid for the target, and one per entry.

A name is the entry's slug (job name and param values joined by "-"). When making it
valid for the target loses anything (a character replaced, upper case lowered, the tail
cut), a short hash of the entry's exact words is appended, so `a b`, `a-b` and `a/b`, or
two long names with one prefix, stay apart; the suffix depends on the entry alone, so a
name does not change when other jobs come and go. Two entries whose names still meet
(job `a-b` and job `a` with param `b`) are refused, naming both.
"""

from __future__ import annotations

import hashlib
import re

from runjob.errors import ConfigError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from runjob.registry.config import Registry
    from runjob.schedule.entry import Entry

HASH_LEN = 8


def entry_hash(entry: Entry) -> str:
    """A stable short digest of what the entry runs (job name and params, NUL-separated)."""
    return hashlib.sha256("\0".join(entry.words).encode()).hexdigest()[:HASH_LEN]


def object_name(entry: Entry, prefix: str, allowed: str, limit: int, lower: bool = False) -> str:
    """`prefix` + the entry's slug with characters outside `allowed` (a regex class) as "-", within `limit`."""
    slug = entry.slug.lower() if lower else entry.slug
    safe = re.sub(f"[^{allowed}]", "-", slug)
    room = limit - len(prefix)
    if safe == entry.slug and len(safe) <= room and safe == safe.strip("-."):
        return prefix + safe
    return prefix + safe[: room - HASH_LEN - 1].strip("-.") + "-" + entry_hash(entry)


def check_unique(named: list[tuple[str, Entry]], target: str, registry: Registry) -> None:
    """ConfigError naming both entries of every pair that got one name."""
    seen: dict[str, Entry] = {}
    errors = []
    for name, entry in named:
        other = seen.setdefault(name, entry)
        if other is not entry:
            errors.append(
                f'jobs.{entry.job.name}: the {target} name "{name}" of `{" ".join(entry.words)}` '
                f"is also the name of `{' '.join(other.words)}`; rename one of the jobs"
            )
    if errors:
        raise ConfigError(errors, registry.path)
