"""Email headers as they go on the wire, written by Tidings rather than a generic folder.

A generic folder (the standard library's, which SMTP clients use) turns any header
token longer than 78 columns into RFC 2047 encoded-words, so a `List-Unsubscribe`
link arrives as `=?utf-8?q?=3Chttps…?=`, which mail providers do not read as a link
(RFC 2369 and RFC 8058 want the plain `<https://…>` form); it also writes encoded-words
longer than RFC 2047's 75 characters for some non-ASCII text. Here every header Tidings
writes is ASCII: URLs and tokens as given, text (Subject, display names) as plain words
when they are ASCII and as short base64 encoded-words when they are not, folded only at
whitespace, no line longer than RFC 5322's 998 octets.
"""

from __future__ import annotations

import base64
import re
from email.policy import EmailPolicy
from email.utils import formataddr, parseaddr
from typing import Any

from channels.errors import PermanentError

# RFC 5322 2.1.1: a line is at most 998 octets without its CRLF, and should be at most 78.
MAX_LINE = 998
WIDTH = 78
# UTF-8 octets per encoded-word: 36 octets are 48 base64 characters, so a word is
# 60 characters (RFC 2047 allows 75) and fits a 78-column line after `Subject: `.
WORD_OCTETS = 36
# Headers Tidings writes itself; the policy below writes their stored value unchanged.
WRITTEN = frozenset(
    {"subject", "from", "to", "list-unsubscribe", "list-unsubscribe-post", "message-id", "date"}
)
_PLAIN_TEXT = re.compile(r"[\x21-\x7e]+( [\x21-\x7e]+)*")


def _one_line(name: str, value: str) -> str:
    if "\r" in value or "\n" in value:
        raise PermanentError(f"email: a line break in the {name} header")
    return value


def encoded_words(text: str) -> str:
    """`text` as RFC 2047 `B` encoded-words of at most 60 characters, split between
    characters (never inside one), separated by spaces, which a reader drops."""
    words: list[bytes] = []
    chunk = b""
    for char in text:
        octets = char.encode("utf-8", "surrogatepass")
        if len(chunk) + len(octets) > WORD_OCTETS:
            words.append(chunk)
            chunk = b""
        chunk += octets
    words.append(chunk)
    return " ".join(f"=?utf-8?b?{base64.b64encode(w).decode('ascii')}?=" for w in words)


def text(name: str, value: str) -> str:
    """An unstructured header's value (RFC 5322 `unstructured`): as is when it is plain
    ASCII words with single spaces that fold, otherwise encoded-words."""
    value = _one_line(name, value)
    plain = _PLAIN_TEXT.fullmatch(value) and "=?" not in value
    if plain and all(len(word) + 1 < MAX_LINE - len(name) for word in value.split(" ")):
        return value
    return encoded_words(value)


def mailbox(name: str, value: str) -> str:
    """An address header's value (`Name <local@domain>` or a bare address) in ASCII.

    Raises `PermanentError` for a line break or an address that is not ASCII (that
    would need SMTPUTF8, which Tidings does not use).
    """
    display, address = parseaddr(_one_line(name, value))
    if not address or not address.isascii() or "@" not in address:
        raise PermanentError(f"email: {name} is not an ASCII email address: {value!r}")
    if not display:
        return address
    if re.fullmatch(r"[\x20-\x7e]*", display) and "=?" not in display:
        return formataddr((display, address))
    return f"{encoded_words(display)} <{address}>"


def fold(name: str, value: str, *, linesep: str = "\r\n") -> str:
    """`Name: value` + line end, folded at whitespace only, preferring 78 columns.

    Raises `PermanentError` for a value that is not ASCII or has a word that cannot fit
    on a 998-octet line.
    """
    value = _one_line(name, value)
    if not value.isascii():
        raise PermanentError(f"email: the {name} header is not ASCII")
    lines = [f"{name}:"]
    for word in value.split(" "):
        if lines[-1] == f"{name}:" or len(lines[-1]) + 1 + len(word) <= WIDTH:
            lines[-1] += f" {word}"
        else:
            lines.append(f" {word}")
    if any(len(line) > MAX_LINE for line in lines):
        raise PermanentError(f"email: the {name} header has a word longer than a line")
    return linesep.join(lines) + linesep


class WirePolicy(EmailPolicy):
    """The SMTP policy for bodies and MIME parts; the headers Tidings writes (`WRITTEN`)
    are stored and written exactly as `text`/`mailbox` made them."""

    def header_store_parse(self, name: str, value: Any) -> tuple[str, Any]:
        if name.lower() in WRITTEN:
            fold(name, str(value))  # refuses at once what cannot go on the wire
            return name, str(value)
        return super().header_store_parse(name, value)

    def header_fetch_parse(self, name: str, value: Any) -> Any:
        if name.lower() in WRITTEN:
            return value
        return super().header_fetch_parse(name, value)

    def fold(self, name: str, value: Any) -> str:
        if name.lower() in WRITTEN:
            return fold(name, str(value), linesep=self.linesep)
        return str(super().fold(name, value))

    def fold_binary(self, name: str, value: Any) -> bytes:
        if name.lower() in WRITTEN:
            return fold(name, str(value), linesep=self.linesep).encode("ascii")
        return bytes(super().fold_binary(name, value))


# 7-bit bodies (quoted-printable or base64): every relay takes them, 8BITMIME or not.
WIRE = WirePolicy(linesep="\r\n", cte_type="7bit")
