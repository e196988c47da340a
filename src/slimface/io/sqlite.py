"""The name of an SQLite error (``SQLITE_BUSY``, ``SQLITE_CORRUPT`` ...) on every Python
slimface supports: 3.11 puts it on the exception (``sqlite_errorname``), 3.10 gives only
SQLite's message, so the gallery and the crop cache would otherwise mistake a damaged,
locked or read-only file for some other failure there."""
from __future__ import annotations

#: SQLite's own messages (``sqlite3_errstr``) for the codes slimface tells apart.
_MESSAGE_NAMES = (("file is not a database", "SQLITE_NOTADB"),
                  ("database disk image is malformed", "SQLITE_CORRUPT"),
                  ("database table is locked", "SQLITE_LOCKED"),
                  ("database is locked", "SQLITE_BUSY"),
                  ("attempt to write a readonly database", "SQLITE_READONLY"),
                  ("database or disk is full", "SQLITE_FULL"),
                  ("unable to open database file", "SQLITE_CANTOPEN"),
                  ("disk I/O error", "SQLITE_IOERR"),
                  ("access permission denied", "SQLITE_PERM"))


def sqlite_error_name(exc: BaseException) -> str:
    """``exc``'s SQLite error name, from the exception where Python gives it, else from
    SQLite's message; "" when neither says."""
    name = getattr(exc, "sqlite_errorname", None)
    if name:
        return str(name)
    text = str(exc)
    return next((n for message, n in _MESSAGE_NAMES if message in text), "")
