"""`runjob import crontab FILE`: an existing crontab as jobs.toml entries, and what it could not convert."""

from __future__ import annotations

import tomllib

from conftest import PY, q

SHOP = """\
SHELL=/bin/sh
MAILTO=ops@example.com
APP_ENV="prod"
# Pull orders from every platform
*/5 * * * * /srv/shop/run_job.sh pull-orders /srv/shop/bin/console cron:platform:pull-orders --platform=all
0 3 * * * /srv/shop/run_job.sh cleanup find /tmp -name '*.tmp' -exec rm {} \\; >> /var/log/cleanup.log 2>&1
@reboot /srv/shop/bin/warmup --all
@daily /usr/bin/php /srv/shop/bin/console app:report
30 4 * * 1 mysqldump shop | gzip > /backup/shop-$(date +\\%F).sql.gz
15 * * * * echo hi | mail -s x root %body
CRON_TZ=Europe/Berlin
0 6 * * mon-fri /srv/shop/bin/console app:report
this is no job line
"""


def imported(rj, text: str):
    (rj.dir / "crontab.txt").write_text(text)
    r = rj.run("import", "crontab", str(rj.dir / "crontab.txt"))
    return r, tomllib.loads(r.out)


def test_a_shops_crontab_becomes_jobs_and_the_rest_is_reported(rj):
    r, doc = imported(rj, SHOP)
    jobs = doc["jobs"]
    assert r.code == 1  # some lines were not converted
    assert jobs["pull-orders"] == {
        "description": "Pull orders from every platform",
        "command": ["/srv/shop/bin/console", "cron:platform:pull-orders", "--platform=all"],
        "schedule": "*/5 * * * *",
        "env": {"APP_ENV": "prod"},
    }
    assert jobs["cleanup"]["shell"] is True and jobs["cleanup"]["schedule"] == "0 3 * * *"
    assert "schedule" not in jobs["warmup"]  # @reboot
    assert jobs["console-app-report"]["schedule"] == "@daily"
    assert jobs["console-app-report-2"]["timezone"] == "Europe/Berlin"
    assert jobs["mysqldump-shop"]["command"] == "mysqldump shop | gzip > /backup/shop-$(date +%F).sql.gz"
    err = r.err.splitlines()
    assert any("line 2: MAILTO" in e for e in err)
    assert any("line 7: @reboot" in e and '"warmup"' in e for e in err)
    assert any("line 10:" in e and "%" in e for e in err)
    assert any("line 13: not a job line" in e for e in err)
    assert len(err) == 4 and all(e.startswith("runjob: import: ") for e in err)
    assert r.out.count("# NOT CONVERTED: ") == 4  # and at the top of the output


def test_imported_registry_validates_and_runs_as_cron_would(rj, tmp_path):
    """The output is a registry runjob accepts; the shell job keeps its pipe and redirection."""
    out = tmp_path / "out.txt"
    r, _ = imported(
        rj,
        f"GREETING=hello\n* * * * * {PY} -c 'import os; print(os.environ[\"GREETING\"])' | tr a-z A-Z > {out}\n"
        "0 * * * * /bin/echo '{}' {x}\n",
    )
    assert r.code == 0, r.err
    rj.write(f"[defaults]\nstate_dir = {q(str(rj.state))}\n" + r.out)
    assert rj.run("validate").code == 0
    names = sorted(tomllib.loads(r.out)["jobs"])
    assert len(names) == 2
    for name in names:
        ran = rj.run(name)
        assert ran.code == 0, ran.err
    assert out.read_text() == "HELLO\n"
    echoed = [rec["line"] for name in names for rec in rj.run(name).events("run.output")]
    assert echoed == ["{} {x}"]  # braces stay literal, as cron passed them


def test_import_of_a_missing_file_or_another_kind_is_a_usage_error(rj):
    assert rj.run("import", "crontab", str(rj.dir / "nope")).code == 2
    r = rj.run("import", "fstab", str(rj.dir / "nope"))
    assert r.code == 2 and 'only "crontab"' in r.err and "Traceback" not in r.err
