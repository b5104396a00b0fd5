"""Files runjob keeps: never through a symlink, private modes, trusted directories (SPEC 12)."""

from __future__ import annotations

import fcntl
import json
import marshal
import os
import stat

import pytest
from conftest import py, q

from runjob import safefs

ROOT = os.geteuid() == 0


def mode(path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def quick_job(rj, extra: str = "") -> None:
    rj.write(f'[jobs.s]\ncommand = ["true"]\n{extra}\n')


def test_a_symlink_in_place_of_a_lock_file_is_refused(rj):
    victim = rj.dir / "victim"
    victim.write_text("precious")
    victim.chmod(0o644)
    quick_job(rj)
    (rj.state / "locks").mkdir(parents=True, mode=0o700)
    rj.state.chmod(0o700)
    (rj.state / "locks" / "s.lock").symlink_to(victim)
    r = rj.run("s")
    assert r.code == 125 and "s.lock is a symlink" in r.err and "Traceback" not in r.err
    assert victim.read_text() == "precious" and mode(victim) == 0o644
    assert not r.events("run.start")


def test_a_symlink_in_place_of_the_history_store_is_refused(rj):
    victim = rj.dir / "victim"
    victim.write_text("precious")
    quick_job(rj)
    rj.state.mkdir(mode=0o700)
    (rj.state / "history.sqlite3").symlink_to(victim)
    assert rj.run("s").code == 0  # a run writes the journal; the store is its readers'
    r = rj.run("history")
    assert r.code == 125 and "history.sqlite3 is a symlink" in r.err
    assert victim.read_text() == "precious"


@pytest.mark.parametrize("where", ["", "locks"])
def test_a_state_dir_others_can_write_is_refused(rj, where):
    quick_job(rj)
    target = rj.state / where if where else rj.state
    target.mkdir(parents=True)
    target.chmod(0o777)
    r = rj.run("s")
    assert r.code == 125 and str(target) in r.err and "writable by group or others" in r.err
    assert not r.events("run.start")


@pytest.mark.skipif(not ROOT, reason="needs root to give the state dir to another user")
def test_a_state_dir_owned_by_another_user_is_refused(rj):
    quick_job(rj)
    rj.state.mkdir(mode=0o700)
    os.chown(rj.state, 65534, 65534)
    r = rj.run("s")
    assert r.code == 125 and str(rj.state) in r.err and "owned by uid 65534" in r.err


def test_a_symlinked_locks_dir_is_refused(rj):
    quick_job(rj)
    elsewhere = rj.dir / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    rj.state.mkdir(mode=0o700)
    (rj.state / "locks").symlink_to(elsewhere)
    r = rj.run("s")
    assert r.code == 125 and "locks is a symlink" in r.err
    assert list(elsewhere.iterdir()) == []


def test_state_files_are_private(rj):
    log = rj.dir / "records.log"
    quick_job(rj, f"log_file = {q(str(log))}")
    r = rj.run("s", env={"XDG_STATE_HOME": str(rj.dir / "xdg")})
    assert r.code == 0, r.err
    assert rj.run("s").code == 0 and rj.run("history").code == 0  # the store, and a fold
    assert mode(rj.state) == 0o700 and mode(rj.state / "locks") == 0o700
    assert mode(rj.state / "locks" / "s.lock") == 0o600 and mode(rj.state / "history.journal") == 0o600
    names = ("history.sqlite3", "history.sqlite3-wal", "history.sqlite3-shm", "history.sqlite3.setup.lock")
    for name in (*names, "history.journal.fold"):
        if (rj.state / name).exists():
            assert mode(rj.state / name) == 0o600, name
    assert mode(log) == 0o640  # readable by the log shipper's group, never by others


def test_tick_state_is_private_and_a_held_tick_lock_is_a_bounded_clear_error(rj):
    rj.write('[jobs.s]\ncommand = ["true"]\nschedule = "0 0 1 1 *"\n')
    assert rj.run("tick").code == 0
    tick_lock = rj.state / "tick.lock"
    assert mode(tick_lock) == 0o600 and mode(rj.state / "tick.json") == 0o600
    with open(tick_lock, "rb") as f:  # another process holds tick's lock and never lets go
        fcntl.flock(f, fcntl.LOCK_EX)
        r = rj.run("tick")
    assert r.code == 125 and "tick.lock stayed locked" in r.err and "Traceback" not in r.err


def test_a_held_metrics_lock_does_not_freeze_the_run(rj):
    metrics = rj.dir / "metrics.prom"
    rj.write(f'[defaults]\nstate_dir = "state"\nmetrics_file = {q(str(metrics))}\n\n[jobs.s]\ncommand = ["true"]\n')
    assert rj.run("s").code == 0
    assert mode(str(metrics) + ".lock") == 0o600
    with open(str(metrics) + ".lock", "rb") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        r = rj.run("s")
    assert r.code == 0 and r.one("run.end")["status"] == "success"
    assert "stayed locked" in r.one("metrics.error")["message"]


def test_replace_uses_an_unpredictable_temp_name_and_never_follows_a_symlink(tmp_path):
    target, victim = tmp_path / "jobs.toml", tmp_path / "victim"
    victim.write_text("precious")
    target.write_text("old")
    for guess in (f"{target}.{os.getpid()}.tmp", f"{target}.tmp", f"{tmp_path}/.jobs.toml.tmp"):
        os.symlink(victim, guess)
    safefs.replace(str(target), b"new")
    assert target.read_text() == "new" and victim.read_text() == "precious"
    assert not any(p.name.endswith(".tmp") and not p.is_symlink() for p in tmp_path.iterdir())


def test_replace_creates_its_temp_file_with_the_final_mode(tmp_path, monkeypatch):
    target = tmp_path / "jobs.toml"
    target.write_text("old")
    target.chmod(0o600)
    seen: list[int] = []
    real_write = os.write

    def spy(fd: int, data) -> int:  # the mode the data lands under, at its first byte
        seen.append(stat.S_IMODE(os.fstat(fd).st_mode))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", spy)
    safefs.replace(str(target), b"secret = 1\n")
    monkeypatch.undo()
    assert seen and set(seen) == {0o600} and mode(target) == 0o600


def test_a_symlink_in_place_of_the_replaced_file_is_refused(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious")
    (tmp_path / "out").symlink_to(victim)
    with pytest.raises(Exception, match="is a symlink"):
        safefs.replace(str(tmp_path / "out"), b"x")
    assert (tmp_path / "out").is_symlink() and victim.read_text() == "precious"


def test_add_refuses_a_symlinked_registry_and_keeps_a_private_one_private(rj):
    real = rj.dir / "real.toml"
    real.write_text('[jobs.a]\ncommand = ["true"]\n')
    rj.config.symlink_to(real)
    r = rj.run("add", "b", "--command", "true")
    assert r.code == 125 and "is a symlink" in r.err and "--config" in r.err
    assert rj.config.is_symlink() and "jobs.b" not in real.read_text()
    real.chmod(0o600)
    r = rj.run("--config", str(real), "add", "b", "--command", "true")
    assert r.code == 0, r.err
    assert "[jobs.b]" in real.read_text() and mode(real) == 0o600


def cache_env(rj) -> dict[str, str]:
    return {"XDG_CACHE_HOME": str(rj.dir / "cache")}


def cache_files(rj) -> list:
    d = rj.dir / "cache" / "runjob"
    return sorted(d.iterdir()) if d.exists() else []


def test_the_registry_cache_is_private_and_a_dry_run_does_not_write_it(rj):
    quick_job(rj)
    assert rj.run("run", "s", "--dry-run", "--format", "json", env=cache_env(rj)).code == 0
    assert cache_files(rj) == []
    assert rj.run("s", env=cache_env(rj)).code == 0
    (entry,) = cache_files(rj)
    assert mode(entry.parent) == 0o700 and mode(entry) == 0o600


def poison(entry) -> None:
    """Rewrite a cache entry so that job `s` would run `touch pwned` (what an attacker would do)."""
    key, content, data = marshal.loads(entry.read_bytes())
    data["jobs"]["s"]["command"] = ["touch", str(entry.parent.parent.parent / "pwned")]
    entry.write_bytes(marshal.dumps((key, content, data)))


@pytest.mark.parametrize("how", ["others-can-write", "other-owner"])
def test_a_cache_in_a_directory_others_control_is_never_read(rj, how):
    if how == "other-owner" and not ROOT:
        pytest.skip("needs root to give the cache dir to another user")
    command = py("open('ran', 'w').write('real')")
    rj.write(f"[jobs.s]\ncommand = {command}\n")
    assert rj.run("s", env=cache_env(rj)).code == 0
    (entry,) = cache_files(rj)
    poison(entry)
    if how == "others-can-write":
        entry.parent.chmod(0o777)
    else:
        os.chown(entry.parent, 65534, 65534)
        os.chown(entry, 65534, 65534)
    (rj.dir / "ran").unlink()
    r = rj.run("s", env=cache_env(rj))
    assert r.code == 0 and (rj.dir / "ran").read_text() == "real"
    assert not (rj.dir / "pwned").exists()
    assert json.dumps(r.one("run.start")["command"]).count("touch") == 0


def test_validate_and_show_warn_about_a_state_dir_under_tmp(rj):
    rj.write('[defaults]\nstate_dir = "/var/tmp/runjob-state-test"\n\n[jobs.s]\ncommand = ["true"]\n')
    r = rj.run("validate", "--json")
    assert r.code == 0 and "/var/tmp" in json.loads(r.out)["warnings"][0]
    assert "warning" in r.err and "tmp cleaner" in r.err
    r = rj.run("show", "s", "--json")
    assert r.code == 0 and "tmp cleaner" in r.err
