"""The installation's own signing secret.

There is no default secret: `tidings migrate` generates a random one the first time and
keeps it in the database, where every process of the installation (API, workers,
scheduler) finds it. A link signed by one installation therefore never opens a page of
another, and nobody can mint links from a secret printed in the documentation. An
operator who sets `TIDINGS_SECRET_KEY` uses that instead.
"""

from __future__ import annotations

import secrets

from sqlalchemy.exc import SQLAlchemyError

from engine.db import Database
from engine.models import Installation
from engine.settings import Settings


class NoSecret(RuntimeError):
    """Neither `TIDINGS_SECRET_KEY` nor a generated secret: the database is not migrated."""


def ensure(database: Database) -> None:
    """Generate and keep the installation's secret unless it already has one."""
    with database.session() as session:
        if session.get(Installation, 1) is None:
            session.add(Installation(id=1, secret_key=secrets.token_urlsafe(32)))


def bind(settings: Settings, database: Database) -> Settings:
    """`settings` with the secret that signs this installation's links filled in.

    Raises `NoSecret` when none is configured and the database holds none.
    """
    if settings.secret_key:
        return settings
    try:
        with database.session() as session:
            row = session.get(Installation, 1)
    except SQLAlchemyError:
        row = None
    if row is None:
        raise NoSecret(
            "no secret key: run `tidings migrate` (it generates one) or set TIDINGS_SECRET_KEY"
        )
    return settings.model_copy(update={"secret_key": row.secret_key})
