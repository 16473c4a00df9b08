"""`tidings`: the one console script (api, worker, scheduler, migrate, up, keys, send, status)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from engine.settings import Settings, get_settings


def _api(args: argparse.Namespace, settings: Settings) -> int:
    from aiohttp import web

    from engine.api.app import create_app

    web.run_app(create_app(settings), host=args.host, port=args.port, print=None)
    return 0


def _migrate(_: argparse.Namespace, settings: Settings) -> int:
    from engine.db import migrate

    migrate(settings)
    print("database is at the latest schema")
    return 0


def _keys_create(args: argparse.Namespace, settings: Settings) -> int:
    from engine import keys
    from engine.db import Database

    scopes = [s.strip() for s in args.scopes.split(",") if s.strip()]
    database = Database(settings)
    try:
        with database.session() as session:
            row, plain = keys.create(session, name=args.name, scopes=scopes)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        database.close()
    print(f"created key {args.name!r} with scopes {','.join(row.scopes)}; it is shown only once:")
    print(plain)
    return 0


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="tidings", description=__doc__)
    commands = root.add_subparsers(dest="command", required=True)

    api = commands.add_parser("api", help="serve the HTTP API and the pages")
    api.add_argument("--host", default="127.0.0.1")
    api.add_argument("--port", type=int, default=8080)
    api.set_defaults(run=_api)

    commands.add_parser("migrate", help="bring the database schema up to date").set_defaults(
        run=_migrate
    )

    keys = commands.add_parser("keys", help="manage API keys")
    key_commands = keys.add_subparsers(dest="keys_command", required=True)
    create = key_commands.add_parser("create", help="create a key; prints it once, last line")
    create.add_argument("--name", required=True)
    create.add_argument("--scopes", default="send,read")
    create.set_defaults(run=_keys_create)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `tidings` console script."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    args = parser().parse_args(argv)
    code: int = args.run(args, get_settings())
    return code


if __name__ == "__main__":
    sys.exit(main())
