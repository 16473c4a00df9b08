"""The installation's own secrets: the one signing page links and the webhook signing secret.

There are no default secrets: `tidings migrate` generates random ones the first time and
keeps them in the database, where every process of the installation (API, workers,
scheduler) finds them. A link signed by one installation therefore never opens a page of
another, a webhook signed by one never verifies with another's secret, and nobody can
forge either from a secret printed in the documentation. An operator who sets
`TIDINGS_SECRET_KEY` or `TIDINGS_WEBHOOK_SECRET` uses that instead.
"""

from __future__ import annotations

import base64
import secrets

from sqlalchemy.exc import SQLAlchemyError

from engine.settings import NoSecret, Settings
from engine.store.db import Database
from engine.store.models import Installation

__all__ = ["NoSecret", "bind", "ensure", "new_webhook_secret"]


def new_webhook_secret() -> str:
    """A Standard Webhooks signing secret: `whsec_` and the base64 of 32 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def ensure(database: Database) -> None:
    """Generate and keep the installation's secrets unless it already has them.

    An installation migrated before webhook secrets were generated gets one now.
    """
    with database.session() as session:
        row = session.get(Installation, 1)
        if row is None:
            session.add(
                Installation(
                    id=1,
                    secret_key=secrets.token_urlsafe(32),
                    webhook_secret=new_webhook_secret(),
                )
            )
        elif not row.webhook_secret:
            row.webhook_secret = new_webhook_secret()
            session.add(row)


def bind(settings: Settings, database: Database) -> Settings:
    """`settings` with this installation's link secret and webhook secret filled in.

    A secret set in the settings wins over the generated one. Raises `NoSecret` when a
    secret is neither configured nor held by the database.
    """
    if settings.secret_key and settings.webhook_secret:
        return settings
    try:
        with database.session() as session:
            row = session.get(Installation, 1)
    except SQLAlchemyError:
        row = None
    secret_key = settings.secret_key or (row.secret_key if row else None)
    webhook_secret = settings.webhook_secret or (row.webhook_secret if row else None)
    if not secret_key:
        raise NoSecret(
            "no secret key: run `tidings migrate` (it generates one) or set TIDINGS_SECRET_KEY"
        )
    if not webhook_secret:
        raise NoSecret(
            "no webhook secret: run `tidings migrate` (it generates one) "
            "or set TIDINGS_WEBHOOK_SECRET"
        )
    return settings.model_copy(update={"secret_key": secret_key, "webhook_secret": webhook_secret})
