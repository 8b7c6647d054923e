"""DATABASE_URL as a value whose password cannot leak.

`DatabaseUrl` prints with the password masked (str, repr, f-strings, `callbridge config`),
and registers the password with callbridge/secret.py so log redaction removes it from any
line, an exception's text included. `reveal()` gives the URL an engine needs.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from callbridge.secret import MASK, Secret

DRIVERS = {
    "sqlite": "built in",
    "sqlite+pysqlite": "built in",
    "mysql+pymysql": "pip install 'callbridge[mysql]'",
    "mariadb+pymysql": "pip install 'callbridge[mysql]'",
    "postgresql+psycopg": "pip install 'callbridge[postgres]'",
}


class DatabaseUrl:
    __slots__ = ("_url", "_password")

    def __init__(self, url: URL) -> None:
        self._url = url
        # Registered for redaction even though we never log it: a driver's error may quote it.
        self._password = Secret(url.password or "")

    @classmethod
    def parse(cls, text: str) -> DatabaseUrl:
        """Raises ValueError (with the password masked) for a URL we cannot use."""
        try:
            url = make_url(text.strip())
        except ArgumentError:
            raise ValueError(
                "must look like sqlite:///PATH, mysql+pymysql://... or postgresql+psycopg://..."
            ) from None
        if url.drivername not in DRIVERS:
            known = ", ".join(d for d in DRIVERS if "+" in d or d == "sqlite")
            raise ValueError(f"driver {url.drivername!r} is not supported (use one of {known})")
        return cls(url)

    @classmethod
    def sqlite_file(cls, path: Path) -> DatabaseUrl:
        return cls(URL.create("sqlite", database=str(path)))

    @property
    def url(self) -> URL:
        """The SQLAlchemy URL, password included: for create_engine only."""
        return self._url

    @property
    def is_sqlite(self) -> bool:
        return self._url.get_backend_name() == "sqlite"

    @property
    def backend(self) -> str:
        return self._url.get_backend_name()

    def password(self) -> str:
        """The password alone (for `check`'s length warning); empty when there is none."""
        return self._password.reveal()

    def reveal(self) -> str:
        return self._url.render_as_string(hide_password=False)

    def __str__(self) -> str:
        shown = self._url.render_as_string(hide_password=True)
        return shown.replace("***", MASK)

    def __repr__(self) -> str:
        return f"DatabaseUrl({str(self)!r})"

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DatabaseUrl) and other._url == self._url

    def __hash__(self) -> int:
        return hash(str(self._url))

    def __reduce__(self):  # pickling would carry the password out of the process
        raise TypeError("a DatabaseUrl cannot be pickled")
