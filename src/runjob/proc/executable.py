"""What exec will make of a job's argv[0]: the one check both the run and `--dry-run` use.

The program is looked up as execve(2) would (a name with a slash relative to the job's
cwd, else on the child's PATH), must be a file with its exec bit, and, if it is a script,
the interpreter of its `#!` line must exist: a script saved with CRLF line endings names
`/bin/sh\\r`, and the kernel's ENOENT for that would otherwise read "command not found"
for a file that is right there.
"""

from __future__ import annotations

import os
import sys

from runjob.errors import EXIT_NOT_EXECUTABLE, EXIT_NOT_FOUND, one_line

SHEBANG_MAX = 256  # the kernel reads at most this much of a #! line (BINPRM_BUF_SIZE)


class Problem(Exception):
    """argv[0] cannot be executed: `exit_code` 126 or 127 and a message naming the cause."""

    def __init__(self, exit_code: int, message: str, path: str | None) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.path = path


def resolve(program: str, cwd: str, env: dict[str, str]) -> str:
    """The path exec would run for `program`; Problem if it would fail, saying why."""
    if not os.path.isdir(cwd):
        raise Problem(EXIT_NOT_FOUND, f"working directory not found: {cwd}", None)
    path = os.path.join(cwd, program) if "/" in program else _on_path(program, env)
    if path is None or not os.path.exists(path):
        raise Problem(EXIT_NOT_FOUND, f"command not found: {one_line(program)}", path)
    if os.path.isdir(path) or not os.access(path, os.X_OK):
        raise Problem(EXIT_NOT_EXECUTABLE, f"command not executable: {one_line(path)}", path)
    _check_interpreter(program, path)
    return path


def _on_path(name: str, env: dict[str, str]) -> str | None:
    """The first executable `name` on the child's PATH (not runjob's), as execvp finds it;
    a non-executable match if that is all there is (so the problem says "not executable")."""
    denied = None
    # os.get_exec_path(env) without its import of `warnings` (a bytes PATH key, which it
    # warns about, cannot occur: the child's env is built from str keys)
    for directory in env.get("PATH", os.defpath).split(os.pathsep):
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            if os.access(path, os.X_OK):
                return path
            denied = denied or path
    return denied


def _check_interpreter(program: str, path: str) -> None:
    """For a script, Problem if its #! interpreter is missing or not executable."""
    try:
        with open(path, "rb") as f:
            head = f.read(SHEBANG_MAX)
    except OSError:
        return  # execute-only or unreadable for us: exec will tell
    if not head.startswith(b"#!"):
        return
    line = head[2:].split(b"\n", 1)[0].lstrip(b" \t")
    interpreter = line.split(b" ", 1)[0].split(b"\t", 1)[0]  # the kernel splits on space and tab only
    if not interpreter:
        raise Problem(
            EXIT_NOT_EXECUTABLE, f"cannot execute {one_line(program)}: its #! line names no interpreter", path
        )
    name = one_line(os.fsdecode(interpreter))
    where = f"named in the #! line of {one_line(program)}"
    if not os.path.exists(interpreter):
        crlf = interpreter.endswith(b"\r")
        hint = " (the file has CRLF line endings: convert it, e.g. with dos2unix)" if crlf else ""
        raise Problem(EXIT_NOT_FOUND, f'interpreter not found: "{name}" {where}{hint}', path)
    if os.path.isdir(interpreter) or not os.access(interpreter, os.X_OK):
        raise Problem(EXIT_NOT_EXECUTABLE, f'interpreter not executable: "{name}" {where}', path)


def runjob_argv() -> list[str]:
    """How to start runjob again: this entry point, else this interpreter's `-m runjob`."""
    me = os.path.abspath(sys.argv[0])
    if os.path.isfile(me) and os.access(me, os.X_OK):
        return [me]
    return [sys.executable, "-m", "runjob"]
