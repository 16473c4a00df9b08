"""`tidings`: the one console script (api, worker, scheduler, migrate, up, keys, send,
import, status)."""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, NoReturn

from engine.logs import configure
from engine.ops import exporter
from engine.ops.supervisor import Spec, Supervisor
from engine.settings import NoSecret, Settings, get_settings
from engine.store.redis_keys import BadDatabaseUrl, RedisKeys, counters_url, prefix_from_child

log = logging.getLogger("tidings.cli")


class BadInput(Exception):
    """Input a command cannot use: reported as one line, exit status 2."""


class Parser(argparse.ArgumentParser):
    """argparse whose errors are one line (no usage block) and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def listening_url(host: str, port: int) -> str:
    """The base URL of an API listening on `host`:`port`; a wildcard host (all
    interfaces) is reached on this machine as 127.0.0.1."""
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def with_public_url(settings: Settings, host: str, port: int) -> Settings:
    """`settings` whose links start with TIDINGS_PUBLIC_URL or, when it is not set, with
    the address the API listens on."""
    if "public_url" in settings.model_fields_set:
        return settings
    return settings.model_copy(update={"public_url": listening_url(host, port)})


def _api(args: argparse.Namespace, settings: Settings) -> int:
    from aiohttp import web

    from engine.api.app import create_app

    settings = with_public_url(settings, args.host, args.port)
    listening = listening_url(args.host, args.port)
    log.info(
        "Tidings API on %s (listening on %s:%d); links use %s",
        listening,
        args.host,
        args.port,
        settings.public_url,
        extra={"serves": "api", "url": listening, "public_url": settings.public_url},
    )
    app = create_app(settings)
    _settle_heap()
    web.run_app(app, host=args.host, port=args.port, print=None)
    return 0


def _settle_heap() -> None:
    """Keep the cyclic garbage collector to what can become garbage.

    What the process has built by now (modules, schemas, the app: ~180,000 objects) is
    frozen out of collection: each full collection spent ~100 ms scanning it, and a
    request importing a file of recipients allocates enough to run dozens of them. A
    higher first threshold, as the workers have, keeps young collections from running
    every 700 allocations.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)


def _queues(args: argparse.Namespace, settings: Settings) -> list[str]:
    return (args.queues or settings.worker_queues).replace(",", " ").split()


def worker_specs(
    args: argparse.Namespace, settings: Settings, env: dict[str, str], name: str = "worker"
) -> list[Spec]:
    """One supervised `engine.worker.process` process per `--processes`, for these flags."""
    queues = _queues(args, settings)
    argv = [
        sys.executable,
        "-m",
        "engine.worker.process",
        "--queues",
        *queues,
        "--threads",
        str(args.threads or settings.worker_threads),
    ]
    processes = args.processes or settings.worker_processes
    return [Spec(f"{name}-{i}", argv, env) for i in range(processes)]


# Settings a parent process may decide for its children (`up`: where links point, the
# demo's mail sink).
DECIDED = (
    "public_url",
    "smtp_host",
    "smtp_port",
    "brand_name",
    "brand_logo_url",
    "brand_color",
    "brand_support_url",
)


def link_env(settings: Settings) -> dict[str, str]:
    """The DECIDED settings that were set, as variables for a child process."""
    return {
        f"TIDINGS_{name.upper()}": str(getattr(settings, name))
        for name in DECIDED
        if name in settings.model_fields_set
    }


def worker_env(settings: Settings) -> dict[str, str]:
    """The environment of worker processes: where their metrics go, and where links point."""
    env = {**os.environ, **link_env(settings)}
    path = exporter.group_dir()
    env["PROMETHEUS_MULTIPROC_DIR"] = env["dramatiq_prom_db"] = str(path)
    return env


def _supervise(specs: list[Spec], role: str, settings: Settings) -> int:
    """Run `specs` under a supervisor that restarts any that die, serving the workers'
    metrics on `metrics_host`:`metrics_port` (or the next free port)."""
    import redis

    path = exporter.prepare_group_dir()
    url = exporter.serve_group(path, settings.metrics_host, settings.metrics_port)
    log.info(
        "Tidings %s: %d processes, metrics on %s, links use %s",
        role,
        len(specs),
        url or "(not served)",
        settings.public_url,
        extra={"serves": role, "metrics": url, "public_url": settings.public_url},
    )
    client = redis.Redis.from_url(counters_url(settings), socket_timeout=2)

    def dead(pid: int) -> None:
        exporter.mark_dead(path, pid)

    try:
        # The supervisor never touches SQL: it does not load SQLAlchemy to name its keys.
        keys = RedisKeys(prefix_from_child(settings))
        return Supervisor(specs, role=role, client=client, keys=keys, on_exit=dead).run()
    finally:
        client.close()


def _worker(args: argparse.Namespace, settings: Settings) -> int:
    return _supervise(worker_specs(args, settings, worker_env(settings)), "worker", settings)


def _scheduler(_: argparse.Namespace, settings: Settings) -> int:
    from engine.pipeline import scheduler
    from engine.worker.broker import make_broker
    from engine.worker.runtime import Runtime

    rt = Runtime(settings, make_broker(settings))
    where = _database(settings)
    log.info(
        "Tidings scheduler: releasing due and stalled work from %s every %ss while busy, "
        "at most every %ss while idle",
        where,
        settings.scheduler_interval,
        settings.scheduler_idle_interval,
        extra={"serves": "scheduler", "database": where},
    )
    try:
        scheduler.run(rt)
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        rt.close()
    return 0


def _database(settings: Settings) -> str:
    """The database URL without its password."""
    from sqlalchemy.engine import make_url

    return make_url(settings.database_url).render_as_string(hide_password=True)


def _migrate(_: argparse.Namespace, settings: Settings) -> int:
    from engine.store.db import migrate, revisions_between, schema_revision

    where = _database(settings)
    before = schema_revision(settings)
    migrate(settings)
    after = schema_revision(settings)
    steps = revisions_between(before, after)
    if not steps:
        print(f"{where} is already at the latest schema ({after}); nothing to do")
        return 0
    print(f"migrated {where} from {before or 'an empty database'} to the latest schema ({after}):")
    for revision, message in steps:
        print(f"  applied {revision}: {message}")
    return 0


def _port_is_free(host: str, port: int) -> None:
    """Refuse at once a port another process holds, rather than restarting the API on it."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise BadInput(f"cannot listen on {host}:{port}: {exc.strerror}") from None


def _up(args: argparse.Namespace, settings: Settings) -> int:
    """API, workers and scheduler on one machine, each restarted if it dies, stopped
    together."""
    from engine.store.db import migrate

    _port_is_free(args.host, args.port)
    migrate(settings)
    # Links minted anywhere (the API, the workers' List-Unsubscribe) start where the API
    # listens unless TIDINGS_PUBLIC_URL says otherwise.
    settings = with_public_url(settings, args.host, args.port)
    sink = None
    if args.demo:
        from engine.ops.demo import BRAND
        from engine.ops.demo import load as load_demo

        # The demo platform's face (its mascot 卡卡), unless the operator set their own.
        brand = {k: v for k, v in BRAND.items() if k not in settings.model_fields_set}
        settings = settings.model_copy(update=brand)
        load_demo(settings, port=args.port)
        if not {"smtp_host", "smtp_port"} & settings.model_fields_set:
            from engine.ops.demo_mail import FOLDER, MailSink

            sink = MailSink(Path(FOLDER)).start()
            settings = settings.model_copy(
                update={"smtp_host": "127.0.0.1", "smtp_port": sink.port}
            )
            print(
                f"Demo email goes to an SMTP sink on 127.0.0.1:{sink.port} and lands in "
                f"{sink.folder}/new (a Maildir: one file per message, as sent).\n",
                flush=True,
            )
    me = [sys.executable, "-m", "engine.ops.cli"]
    # Critical work gets a worker of its own, so a broadcast never keeps it waiting.
    # Two threads: an order notification gets through while another waits on a provider.
    critical = argparse.Namespace(queues="critical", processes=1, threads=2)
    general = argparse.Namespace(
        queues="normal,bulk,events", processes=args.processes, threads=args.threads
    )
    env = worker_env(settings)
    specs = [
        *worker_specs(critical, settings, env, name="worker-critical"),
        *worker_specs(general, settings, env),
        Spec("scheduler", [*me, "scheduler"], {**os.environ, **link_env(settings)}),
        Spec(
            "api",
            [*me, "api", "--host", args.host, "--port", str(args.port)],
            {**os.environ, **link_env(settings)},
        ),
    ]
    try:
        return _supervise(specs, "up", settings)
    finally:
        if sink is not None:
            sink.stop()


def _keys_create(args: argparse.Namespace, settings: Settings) -> int:
    from engine.catalog import keys
    from engine.store.db import Database

    scopes = [s.strip() for s in args.scopes.split(",") if s.strip()]
    database = Database(settings)
    try:
        with database.session() as session:
            row, plain = keys.create(session, name=args.name, scopes=scopes)
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    finally:
        database.close()
    print(f"created key {args.name!r} with scopes {','.join(row.scopes)}; it is shown only once:")
    print(plain)
    return 0


def _webhook_secret(_: argparse.Namespace, settings: Settings) -> int:
    """Print the secret that signs this installation's webhooks, for receivers to verify."""
    from engine.store import installation
    from engine.store.db import Database

    database = Database(settings)
    try:
        print(installation.bind(settings, database).webhook_secret)
    finally:
        database.close()
    return 0


def _keys_list(_: argparse.Namespace, settings: Settings) -> int:
    from engine.catalog import keys
    from engine.store.db import Database

    database = Database(settings)
    try:
        with database.session() as session:
            rows = [keys.public(row) for row in keys.listing(session)]
    finally:
        database.close()
    print(f"{'id':>4}  {'name':<20} {'scopes':<24} {'created':<20} {'last used':<20} revoked")
    for row in rows:
        print(
            f"{row['id']:>4}  {row['name']:<20} {','.join(row['scopes']):<24} "
            f"{_stamp(row['created_at']):<20} {_stamp(row['last_used_at']) or 'never':<20} "
            f"{_stamp(row['revoked_at']) or '-'}"
        )
    return 0


def _stamp(value: str | None) -> str:
    """An ISO timestamp as `2026-11-30 12:00:00` (UTC), or empty."""
    return value[:19].replace("T", " ") if value else ""


def _keys_revoke(args: argparse.Namespace, settings: Settings) -> int:
    from engine.catalog import keys
    from engine.store.db import Database

    database = Database(settings)
    try:
        with database.session() as session:
            row = keys.revoke(session, args.id)
            name = row.name if row else None
    finally:
        database.close()
    if name is None:
        raise BadInput(f"no API key with id {args.id}")
    print(f"revoked key {args.id} ({name!r})")
    if not keys.announce_revocation(settings):
        print(
            "warning: Redis did not answer, so running API processes were not told; "
            "they stop caching keys while Redis is away",
            file=sys.stderr,
        )
    return 0


def _send(args: argparse.Namespace, settings: Settings) -> int:
    from pydantic import ValidationError

    from engine.api.notifications import accepted_out
    from engine.errors import TidingsError
    from engine.pipeline import accept
    from engine.schemas.notifications import NotificationIn
    from engine.store.db import Database
    from engine.worker.broker import Dispatcher, make_broker

    try:
        data = json.loads(args.data)
    except ValueError as exc:
        raise BadInput(f"--data is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadInput('--data must be a JSON object, e.g. \'{"order_id": "456"}\'')
    body: dict[str, object] = {"category": args.category, "data": data}
    body["to"] = {"all": True} if args.to == "all" else args.to.split(",")
    if args.title:
        body["content"] = {"title": args.title, "body": args.body or ""}
    database = Database(settings)
    try:
        spec = NotificationIn.model_validate(body)
        (accepted,) = accept.submit(
            database, [spec], settings=settings, planner=Dispatcher(make_broker(settings))
        )
    except ValidationError as exc:
        from engine.api.middleware import validation_error

        error = validation_error(exc)
        raise BadInput(f"{_option(error.field)}: {error.message}") from None
    except TidingsError as exc:
        raise BadInput(
            f"{_option(exc.field)}: {exc.message}" if exc.field else exc.message
        ) from None
    finally:
        database.close()
    print(json.dumps(accepted_out(accepted).model_dump(mode="json")))
    return 0


IMPORT_FORMATS: dict[str, Literal["ndjson", "csv"]] = {
    ".csv": "csv",
    ".ndjson": "ndjson",
    ".jsonl": "ndjson",
}


def _import_recipients(args: argparse.Namespace, settings: Settings) -> int:
    """Load recipients from an NDJSON or CSV file: all of them, or none with every refused
    line listed on stderr (`FILE:LINE: field: reason`, status 2)."""
    from engine.api.imports import describe, outbound_check
    from engine.catalog.imports import import_recipients
    from engine.errors import LinesRefused
    from engine.store.db import Database

    path = Path(args.file)
    kind: Literal["ndjson", "csv"] | None = args.format or IMPORT_FORMATS.get(path.suffix.lower())
    if kind is None:
        raise BadInput(f"{path}: name the format with --format ndjson or --format csv")
    try:
        stream = path.open("rb")
    except OSError as exc:
        raise BadInput(f"{path}: {exc.strerror}") from None
    database = Database(settings)
    _settle_heap()
    try:
        with stream:
            done = import_recipients(
                database, stream, kind, describe=describe, check=outbound_check(settings)
            )
    except LinesRefused as refused:
        for problem in refused.problems:
            print(f"{path}:{problem.line}: {problem.field}: {problem.message}", file=sys.stderr)
        raise BadInput(f"{path}: {refused.message}") from None
    finally:
        database.close()
    print(f"imported {done.recipients} recipients from {done.lines} lines of {path}")
    return 0


def _option(field: str | None) -> str:
    """The command-line option a notification field came from (`data.x` → `--data x`)."""
    head, _, rest = (field or "body").partition(".")
    option = {"content": "--title/--body"}.get(head, f"--{head}")
    return f"{option} {rest}" if rest else option


def _status(args: argparse.Namespace, settings: Settings) -> int:
    from engine.ops import status

    snapshot = status.snapshot(settings)
    print(json.dumps(snapshot, indent=2) if args.json else status.table(snapshot))
    # What could be read is shown; a broker or Redis that did not answer makes it status 1,
    # so a script or a probe never takes an outage for empty queues.
    unreachable = "error" in snapshot["queues"] or "error" in snapshot["processes"]
    return 1 if unreachable else 0


def parser() -> argparse.ArgumentParser:
    root = Parser(prog="tidings", description=__doc__)
    commands = root.add_subparsers(dest="command", required=True)

    api = commands.add_parser("api", help="serve the HTTP API and the pages")
    api.add_argument("--host", default="127.0.0.1")
    api.add_argument("--port", type=int, default=8080)
    api.set_defaults(run=_api)

    worker = commands.add_parser("worker", help="run Dramatiq workers for Tidings' queues")
    worker.add_argument(
        "--queues",
        "-Q",
        help="comma-separated: critical,normal,bulk,events (TIDINGS_WORKER_QUEUES)",
    )
    worker.add_argument(
        "--processes", "-p", type=int, help="worker processes (TIDINGS_WORKER_PROCESSES)"
    )
    worker.add_argument(
        "--threads", "-t", type=int, help="threads per process (TIDINGS_WORKER_THREADS)"
    )
    worker.set_defaults(run=_worker)

    commands.add_parser("scheduler", help="release due and stalled work").set_defaults(
        run=_scheduler
    )
    commands.add_parser("migrate", help="bring the database schema up to date").set_defaults(
        run=_migrate
    )

    up = commands.add_parser("up", help="API + worker + scheduler on one machine")
    up.add_argument("--host", default="127.0.0.1")
    up.add_argument("--port", type=int, default=8080)
    up.add_argument("--processes", type=int)
    up.add_argument("--threads", type=int)
    up.add_argument("--demo", action="store_true", help="load the demo catalog and recipients")
    up.set_defaults(run=_up)

    keys = commands.add_parser("keys", help="manage API keys")
    key_commands = keys.add_subparsers(dest="keys_command", required=True)
    create = key_commands.add_parser("create", help="create a key; prints it once, last line")
    create.add_argument("--name", required=True)
    create.add_argument("--scopes", default="send,read", help="some of send,read,links,admin")
    create.set_defaults(run=_keys_create)
    listed = key_commands.add_parser(
        "list", help="every key: id, name, scopes, created, last used, revoked (never the secret)"
    )
    listed.set_defaults(run=_keys_list)
    revoke = key_commands.add_parser("revoke", help="revoke a key; APIs refuse it at once")
    revoke.add_argument("id", type=int, help="the key's id, from `tidings keys list`")
    revoke.set_defaults(run=_keys_revoke)

    commands.add_parser(
        "webhook-secret",
        help="print the secret that signs webhooks (TIDINGS_WEBHOOK_SECRET, or the generated one)",
    ).set_defaults(run=_webhook_secret)

    send = commands.add_parser("send", help="send a notification from the command line")
    send.add_argument("--category", required=True)
    send.add_argument("--to", required=True, help="comma-separated recipient ids, or 'all'")
    send.add_argument("--data", default="{}", help="JSON for the templates")
    send.add_argument("--title")
    send.add_argument("--body")
    send.set_defaults(run=_send)

    load = commands.add_parser("import", help="load data from a file").add_subparsers(
        dest="what", required=True
    )
    imported = load.add_parser(
        "recipients", help="upsert recipients from an NDJSON or CSV file: all lines, or none"
    )
    imported.add_argument("file", help="a .ndjson/.jsonl or .csv file")
    imported.add_argument("--format", choices=("ndjson", "csv"), help="if the name does not say")
    imported.set_defaults(run=_import_recipients)

    status = commands.add_parser(
        "status", help="queues, deliveries, throughput and processes, as a table"
    )
    status.add_argument("--json", action="store_true", help="the same as one JSON document")
    status.set_defaults(run=_status)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `tidings` console script.

    Bad input (arguments, `TIDINGS_*` settings, `--data`) is one line on stderr and exit
    status 2; a database or Redis that does not answer is one line and status 1.
    """
    args = parser().parse_args(argv)
    from pydantic import ValidationError
    from redis import RedisError

    try:
        settings = get_settings()
    except ValidationError as exc:
        return _fail(settings_error(exc), 2)
    configure(settings.log_level, settings.log_format)
    try:
        code: int = args.run(args, settings)
    except (BadInput, NoSecret, BadDatabaseUrl) as exc:
        return _fail(str(exc), 2)
    except Exception as exc:
        # SQLAlchemy's errors are looked up, not imported: a command that never touched
        # SQL (the workers' supervisor) never loads it, and then none was raised.
        sql = sys.modules.get("sqlalchemy.exc")
        if sql is not None and isinstance(exc, sql.ArgumentError):
            return _fail(f"TIDINGS_DATABASE_URL: {exc}", 2)
        if isinstance(exc, RedisError | OSError) or (
            sql is not None and isinstance(exc, sql.OperationalError)
        ):
            reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()
            return _fail(f"{type(exc).__name__}: {reason[0] if reason else ''}", 1)
        raise
    return code


def _fail(message: str, code: int) -> int:
    print(f"tidings: error: {message}", file=sys.stderr)
    return code


def settings_error(exc: Exception) -> str:
    """A settings validation error as one line naming the variables."""
    from pydantic import ValidationError

    assert isinstance(exc, ValidationError)
    return "; ".join(
        f"TIDINGS_{'_'.join(str(p) for p in e['loc']).upper()}: "
        f"{e['msg'].removeprefix('Value error, ')}"
        for e in exc.errors()
    )


if __name__ == "__main__":
    sys.exit(main())
