"""An answer printed as JSON (off a terminal, or --json) or as cli/pretty.py renders it:
one place, so every command's JSON goes through the same encoder and rich stays unloaded
for JSON."""

from __future__ import annotations

from runjob.errors import EXIT_OK
from runjob.records import jsonout

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def show(value: Any, as_json: bool, render: str) -> int:
    """Print `value`: as JSON, or through `cli.pretty.<render>` (imported only then)."""
    if as_json:
        print(jsonout.dumps(value))
    else:
        from runjob.cli import pretty

        getattr(pretty, render)(value)
    return EXIT_OK
