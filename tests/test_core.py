"""The typed core of a run: the plan, the effective timeout, lock keys, and the import graph."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from conftest import HOLD, finish, py, q, wait_for

from runjob.registry import lock_keys
from runjob.registry.validate import parse_string
from runjob.run import plan

SRC = Path(__file__).resolve().parent.parent / "src" / "runjob"


def registry(text: str):
    return parse_string(f'[defaults]\nstate_dir = "/tmp/x"\n{text}', "/tmp/x/jobs.toml")


def test_a_plan_declares_every_field_and_takes_no_other():
    reg = registry('[jobs.a]\ncommand = ["true"]\ntimeout = "5m"\n')
    built = plan.build(reg, "a", {})
    assert not hasattr(built, "__dict__")  # slots: a misspelt field is an error, not a new attribute
    with pytest.raises(AttributeError):
        built.timout = 3  # type: ignore[attr-defined]
    with pytest.raises(TypeError):
        plan.Plan(job=built.job, name="a")  # type: ignore[call-arg]  # every field must be given
    assert (built.timeout, built.lock_ttl) == (300.0, 300.0 + built.kill_grace + 60.0)


def test_timeout_override_reaches_the_child_deadline_and_the_lock_ttl():
    reg = registry('[jobs.a]\ncommand = ["true"]\ntimeout = "5m"\nkill_grace = "2s"\n')
    built = plan.build(reg, "a", {}, plan.Overrides(timeout=3600.0))
    assert built.timeout == 3600.0
    assert built.lock_ttl == 3600.0 + 2.0 + 60.0  # was 5m + 2s + 60s: the key could expire under the run
    pinned = registry('[jobs.a]\ncommand = ["true"]\nlock_ttl = "90s"\nlock_backend = "redis://localhost"\n')
    assert plan.build(pinned, "a", {}, plan.Overrides(timeout=3600.0)).lock_ttl == 90.0  # lock_ttl set: kept


@pytest.mark.redis
def test_a_redis_key_lives_as_long_as_the_overridden_timeout(redis_server, rj):
    """`--timeout` longer than the job's: the key's TTL follows it (it used the job's timeout)."""
    started, release = rj.dir / "started", rj.dir / "release"
    rj.write(
        f"[defaults]\nstate_dir = {q(str(rj.state))}\nlock_backend = {q(redis_server.url)}\n"
        f'[jobs.s]\ncommand = {py(HOLD, str(started), str(release))}\ntimeout = "20s"\nkill_grace = "1s"\n'
    )
    run = rj.popen("run", "s", "--timeout", "2h")
    try:
        assert wait_for(started.exists)
        ttl_ms = redis_server.client().pttl("runjob:lock:s")
        assert 7200_000 < ttl_ms <= (7200 + 1 + 60) * 1000, ttl_ms
    finally:
        release.write_text("go")
    assert finish(run).one("run.end")["status"] == "success"


def test_lock_keys_are_resolved_in_one_place_for_the_run_and_validate():
    text = (
        '[jobs.a]\ncommand = ["echo", "{x}"]\nlock_key = "{job}-{x}"\n'
        'params = { x = { pattern = "[a-z.]+", default = "b" } }\ninstances = [{ x = "c" }]\n'
    )
    reg = registry(text)
    assert plan.build(reg, "a", {"x": "q"}).lock_key == lock_keys.resolve("{job}-{x}", "a", {"x": "q"}) == "a-q"
    assert plan.build(reg, "a", {}).lock_file == "/tmp/x/locks/a-b.lock"
    from runjob.errors import ConfigError, UsageError

    with pytest.raises(UsageError, match="bad lock key"):
        plan.build(reg, "a", {"x": ".."})  # "a-.." : the run refuses it
    with pytest.raises(ConfigError, match="bad lock key"):
        registry(text.replace('x = "c"', 'x = ".."'))  # and validate, for an instance, by the same rule


def imports_of(path: Path) -> set[str]:
    """Every runjob module `path` imports, at the top, in functions or under TYPE_CHECKING."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("runjob"):
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("runjob")}
    return found


def module_graph() -> dict[str, set[str]]:
    modules = {
        "runjob." + ".".join(p.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__"): p
        for p in SRC.rglob("*.py")
    }
    return {name: imports_of(path) & set(modules) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def package_graph() -> dict[str, set[str]]:
    """The modules' imports drawn between packages (cli, run, ...; a top-level module is its own)."""

    def package(module: str) -> str:
        return ".".join(module.split(".")[:2])

    graph: dict[str, set[str]] = {}
    for module, imported in module_graph().items():
        graph.setdefault(package(module), set()).update(package(i) for i in imported if package(i) != package(module))
    return graph


def test_no_module_is_on_an_import_cycle():
    """Counting imports inside functions and under TYPE_CHECKING: a type-only import is an arrow too."""
    assert cycles(module_graph()) == []


def test_the_packages_import_each_other_one_way_only():
    """cli/ above queue/ above pipeline/ above run/ ... above records/: no arrow runs back up."""
    assert cycles(package_graph()) == []


def test_the_entry_point_is_on_no_import_cycle():
    """A forked queued run used to import main.py (main -> cli/app -> queue/worker -> queue/forked -> main)."""
    found = cycles(module_graph())
    assert not [group for group in found if "runjob.main" in group or "runjob.queue.forked" in group], found
    assert "runjob.main" not in imports_of(SRC / "queue" / "forked.py")


def test_the_crontab_form_loads_no_typing_machinery(rj):
    """`runjob NAME`: the Plan, the Status literal and the Lock protocol cost no import at run time."""
    rj.write('[jobs.t]\ncommand = ["true"]\n')
    assert rj.run("t").code == 0  # warm the registry cache
    modules, _ = rj.imported("t")
    assert not modules & {"typing", "dataclasses", "enum", "re", "inspect", "runjob.locks.protocol"}
    assert "runjob.run.plan" in modules  # the check looked at the run path


def test_the_status_literal_and_the_accepted_statuses_agree(rj):
    """`Status` exists for the type checker only; the tuple `history --status` checks against must say the same."""
    from runjob.run import model

    tree = ast.parse((SRC / "run" / "model.py").read_text())
    literals = {
        node.targets[0].id: [e.value for e in ast.walk(node.value) if isinstance(e, ast.Constant)]
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name) and "Status" in node.targets[0].id
    }
    assert literals["Status"] == list(model.STATUSES)
    assert set(literals["RowStatus"]) | set(model.STATUSES) == set(model.ROW_STATUSES)
    rj.write('[jobs.t]\ncommand = ["true"]\n')
    r = rj.run("history", "--status", "exploded")
    assert r.code == 2 and ", ".join(model.ROW_STATUSES) in r.err
