"""The demo's mail sink: an SMTP server on 127.0.0.1 that keeps every message in a
Maildir, so `tidings up --demo` sends its email somewhere a newcomer can open it
instead of failing against a relay that is not there.

It is aiosmtpd's own Maildir handler in a thread of the `up` process; any mail reader
that opens a Maildir (mutt -f, or the files under `new/` themselves) shows the messages
byte for byte as Tidings sent them.
"""

from __future__ import annotations

import socket
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Mailbox

# The folder beside the working directory that the demo's email lands in.
FOLDER = "demo-mail"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class MailSink:
    """An SMTP server on 127.0.0.1:`port` delivering into the Maildir at `folder`."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder.resolve()
        for part in ("tmp", "new", "cur"):  # a Maildir's three folders
            (self.folder / part).mkdir(parents=True, exist_ok=True)
        self.port = _free_port()
        self._controller = Controller(Mailbox(self.folder), hostname="127.0.0.1", port=self.port)

    def start(self) -> MailSink:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()
