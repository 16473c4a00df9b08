"""The `tidings` command as an operator meets it: bad input is one line and status 2,
`status` is a table (or JSON), `migrate` says what it did, and every process logs in
one format, Dramatiq's own lines included, saying at start what it serves and where."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from engine.catalog import categories, recipients
from engine.ops.cli import main
from engine.schemas.catalog import CategoryIn, RecipientIn
from engine.settings import Settings
from engine.store.db import Database
from engine.store.models import Notification
from tests.engine.conftest import ROOT, Processes, env_for, wait_for
from tests.support import free_port


def _tidings(settings: Settings, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine.ops.cli", *args],
        env={**env_for(settings), **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


BAD = [
    ("send", "--category", "order.delivered", "--to", "u-1", "--data", "{bad"),
    ("send", "--category", "order.delivered", "--to", "u-1", "--data", "[1, 2]"),
    ("send", "--category", "no.such", "--to", "u-1"),
    ("send", "--category", "order.delivered"),
    ("send", "--category", "x" * 500, "--to", "u-1"),
    ("keys", "create", "--name", "k", "--scopes", "everything"),
    ("keys", "revoke", "12345"),
    ("keys", "revoke", "one"),
    ("status", "--jsn"),
    ("up", "--port", "eighty"),
    ("launch",),
]


@pytest.mark.parametrize("args", BAD, ids=lambda a: " ".join(a)[:40])
def test_bad_input_is_one_line_and_status_2(settings: Settings, db: object, args) -> None:
    done = _tidings(settings, *args)
    assert done.returncode == 2, done
    assert done.stdout == ""
    assert len(done.stderr.splitlines()) == 1, done.stderr
    assert "Traceback" not in done.stderr and "error" in done.stderr


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("TIDINGS_METRICS_PORT", "ninety"),
        ("TIDINGS_LOG_FORMAT", "xml"),
        ("TIDINGS_DATABASE_URL", "x"),
        ("TIDINGS_DEFAULT_QUIET_START", "25:00"),
        ("TIDINGS_DEFAULT_QUIET_END", "8"),
        ("TIDINGS_DIGEST_AT", "xx"),
        ("TIDINGS_DEFAULT_TIMEZONE", "Mars/Base"),
        ("TIDINGS_DEFAULT_LOCALE", "??"),
    ],
)
def test_bad_settings_are_one_line_naming_the_variable(
    settings: Settings, variable: str, value: str
) -> None:
    done = _tidings(settings, "status", **{variable: value})
    assert done.returncode == 2, done
    assert done.stderr.count("\n") == 1 and variable in done.stderr, done.stderr


@hypothesis_settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.text(max_size=40), to=st.text(max_size=20), category=st.text(max_size=20))
def test_any_send_input_ends_in_a_line_not_a_traceback(
    settings: Settings, db: object, capsys, monkeypatch, data: str, to: str, category: str
) -> None:
    for name, value in env_for(settings).items():
        if name.startswith("TIDINGS_"):
            monkeypatch.setenv(name, value)
    from engine.settings import get_settings

    get_settings.cache_clear()
    monkeypatch.setattr("engine.ops.cli.configure", lambda *_: None)  # keep pytest's logging
    try:
        code = main(["send", "--category", category, "--to", to, "--data", data])
    except SystemExit as exc:  # argparse: an argument it cannot take
        code = int(exc.code or 0)
    finally:
        get_settings.cache_clear()
    out, err = capsys.readouterr()
    assert code == 2 or (code == 0 and json.loads(out)["id"]), (code, out, err)
    if code == 2:
        assert len(err.splitlines()) == 1 and "Traceback" not in err, err


def test_status_is_a_table_or_json(settings: Settings, db: object) -> None:
    table = _tidings(settings, "status")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert re.fullmatch(r"queue +waiting +delayed +in flight +dead", lines[0])
    queues = ["critical", "normal", "bulk", "events"]
    assert [line.split()[0] for line in lines[1:5]] == queues
    assert any(line.startswith("deliveries") for line in lines)
    machine = json.loads(_tidings(settings, "status", "--json").stdout)
    assert set(machine["queues"]) == set(queues)


def test_status_with_redis_down_says_so_and_exits_1(settings: Settings, db: object) -> None:
    down = f"redis://127.0.0.1:{free_port()}/0"
    for extra in ((), ("--json",)):
        done = _tidings(settings, "status", *extra, TIDINGS_REDIS_URL=down)
        assert done.returncode == 1, done
        assert "Connection refused" in done.stdout and "Traceback" not in done.stderr


def test_up_on_a_port_already_taken_stops_at_once(settings: Settings, db: object) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = _tidings(settings, "up", "--port", str(port))
    assert done.returncode == 2, done
    assert done.stderr.count("\n") == 1 and f"127.0.0.1:{port}" in done.stderr, done.stderr


def test_migrate_says_what_it_did(settings: Settings, tmp_path: Path) -> None:
    fresh = settings.model_copy(update={"database_url": f"sqlite:///{tmp_path / 'new.db'}"})
    first = _tidings(fresh, "migrate")
    assert first.returncode == 0, first.stderr
    assert (
        first.stdout.startswith("migrated sqlite:///") and "from an empty database" in first.stdout
    )
    assert "applied 0001: initial schema" in first.stdout
    again = _tidings(fresh, "migrate")
    assert "already at the latest schema" in again.stdout and "nothing to do" in again.stdout


TEXT_LINE = re.compile(
    r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (DEBUG|INFO|WARNING|ERROR|CRITICAL) [\w.]+ .*"
)


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_every_process_logs_in_one_format(
    settings: Settings, db: object, processes: Processes, fmt: str
) -> None:
    port = free_port()
    env = {"TIDINGS_LOG_FORMAT": fmt}
    processes.start("api", "api", "--port", str(port), env=env)
    processes.start("worker", "worker", "--processes", "1", env=env)
    processes.start("scheduler", "scheduler", env=env)
    starts = {
        "api": "Tidings API on",
        "worker": "Worker process is ready",
        "scheduler": "Tidings scheduler",
    }
    for name, text in starts.items():
        wait_for(lambda name=name, text=text: text in processes.log(name), timeout=60)
    processes.stop_all()  # Dramatiq logs its own shutdown
    loggers = set()
    for name in starts:
        for line in processes.log(name).splitlines():
            if fmt == "json":
                entry = json.loads(line)
                assert {"at", "level", "logger", "message"} <= set(entry), line
                loggers.add(entry["logger"])
            elif not line.startswith("    "):  # a traceback's lines are indented under it
                assert TEXT_LINE.fullmatch(line), f"{name}: {line!r}"
                loggers.add(line.split()[3])
    assert any(name.startswith("dramatiq") for name in loggers), loggers
    api = processes.log("api")
    assert f"http://127.0.0.1:{port}" in api and "links use" in api
    assert "metrics on http://127.0.0.1:" in processes.log("worker")


def test_send_with_the_broker_down_keeps_the_notification_for_the_scheduler(
    settings: Settings, db: Database
) -> None:
    with db.session() as session:
        categories.upsert(
            session,
            "order.shipped",
            CategoryIn(
                name="Shipped",
                kind="transactional",
                priority="high",
                channels=["inapp"],
                templates={"inapp": {"en": {"title": "Shipped", "body": "on its way"}}},
            ),
        )
        recipients.upsert(session, "u-1", RecipientIn())
    down = f"redis://127.0.0.1:{free_port()}/0"
    done = _tidings(
        settings, "send", "--category", "order.shipped", "--to", "u-1", TIDINGS_BROKER_URL=down
    )
    assert done.returncode == 0 and "Traceback" not in done.stderr, done
    answer = json.loads(done.stdout)
    assert answer == {"id": answer["id"], "status": "accepted", "recipients": 1}
    with db.session() as session:
        row = session.get(Notification, int(answer["id"]))
        assert row is not None and row.enqueued_at is None  # the scheduler enqueues it


def test_the_worker_supervisor_keeps_no_channel_client_nor_table_in_memory(
    settings: Settings, db: object
) -> None:
    # It only starts, watches and restarts worker processes: the HTTP and SMTP clients
    # and the SQL models are theirs, not its (they cost it ~20 MB).
    probe = (
        "import sys, engine.ops.cli as cli\n"
        "heavy = ('aiohttp', 'aiosmtplib', 'sqlmodel', 'engine.store.models')\n"
        "def run(self):\n"
        "    print('LOADED', [m for m in heavy if m in sys.modules])\n"
        "    return 0\n"
        "cli.Supervisor.run = run\n"
        "sys.exit(cli.main(['worker', '--processes', '1']))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        env={**env_for(settings), "TIDINGS_METRICS_PORT": str(free_port())},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "LOADED []" in done.stdout.splitlines()
