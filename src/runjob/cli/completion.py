"""`runjob --install-completion [SHELL]` and `--show-completion [SHELL]`.

typer's own flags take no shell name and guess the shell from the process's ancestors,
which fails (with a traceback) when no shell is among them: run from cron, a CI job or a
detached session. Here a named shell wins, then the guess, then $SHELL; none of them is a
one-line usage error.
"""

from __future__ import annotations

import os

from runjob.errors import UsageError

SHELLS = ("bash", "zsh", "fish", "powershell", "pwsh")
FLAGS = ("--install-completion", "--show-completion")


def completion(args: list[str]) -> int:
    from typer import _completion_shared as shared

    flag, rest = args[0], args[1:]
    if len(rest) > 1 or (rest and rest[0] not in SHELLS):
        raise UsageError(f"{flag} takes at most a shell name, one of {', '.join(SHELLS)}; got {' '.join(rest)!r}")
    shell = rest[0] if rest else _detect()
    names = {"prog_name": "runjob", "complete_var": "_RUNJOB_COMPLETE", "shell": shell}
    if flag == "--show-completion":
        print(shared.get_completion_script(**names))
        return 0
    install = {"bash": shared.install_bash, "zsh": shared.install_zsh, "fish": shared.install_fish}
    path = install.get(shell, shared.install_powershell)(**names)  # powershell, pwsh
    print(f"{shell} completion installed in {path}\nCompletion will take effect once you restart the terminal")
    return 0


def _detect() -> str:
    guesses = [os.path.basename(os.environ.get("SHELL", ""))]
    try:
        import shellingham

        guesses.insert(0, str(shellingham.detect_shell()[0]))
    except Exception:  # shellingham's own ShellDetectionFailure, or no /proc to look in
        pass
    for shell in guesses:
        if shell in SHELLS:
            return shell
    raise UsageError("cannot tell which shell this is: name it, e.g. runjob --install-completion bash")
