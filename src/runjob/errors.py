"""One error family; each error carries the exit code the spec gives it (SPEC section 3)."""

from __future__ import annotations

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_BUSY = 75
EXIT_CONFIG = 78
EXIT_TIMEOUT = 124
EXIT_INTERNAL = 125
EXIT_NOT_EXECUTABLE = 126
EXIT_NOT_FOUND = 127


# Control characters as escapes, so an error message (which may quote a user's value)
# always stays one line.
_ESCAPES = {c: f"\\x{c:02x}" for c in range(32)} | {10: "\\n", 13: "\\r", 9: "\\t", 127: "\\x7f"}


def one_line(text: str) -> str:
    return text.translate(_ESCAPES)


class RunjobError(Exception):
    """An expected failure: printed as one line, mapped to its exit code."""

    exit_code = EXIT_INTERNAL


class UsageError(RunjobError):
    """Unknown job, bad or missing param, bad flag."""

    exit_code = EXIT_USAGE


class ConfigError(RunjobError):
    """The registry is wrong. `errors` holds one line per problem, each with its key path."""

    exit_code = EXIT_CONFIG

    def __init__(self, errors: list[str], path: str = "") -> None:
        self.errors = [one_line(e) for e in errors]
        self.path = path
        super().__init__("; ".join(errors))

    def lines(self) -> list[str]:
        prefix = f"{self.path}: " if self.path else ""
        return [prefix + e for e in self.errors]


class BusyError(RunjobError):
    """The lock is held and on_busy says fail (or wait ran out)."""

    exit_code = EXIT_BUSY


class InternalError(RunjobError):
    """runjob itself cannot do its job (state dir unwritable, history store broken...)."""

    exit_code = EXIT_INTERNAL
