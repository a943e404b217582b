"""What an error shown to any caller may say: a job's ``error`` (``GET /v1/jobs/{id}``, a
viewer's; the ``retune_*`` events) holds no database endpoint (host, port, user,
password, URL) nor a path under the data directory, which the HTTP API's own answers
send only to the daemon's log (:func:`redacted`)."""

from __future__ import annotations

import re
from pathlib import Path

from sqlalchemy.engine import URL

#: The driver's words that name a database's endpoint (libpq's, through psycopg), each
#: with what stands in for the name.
_ENDPOINT_TEXT = (
    # "connection to server at "10.0.0.9" (10.0.0.9), port 5433 failed"
    (re.compile(r'server at "[^"]*"(?: \([^)]*\))?, port \d+'), "server at <host>, port <port>"),
    (re.compile(r'on socket "[^"]*"'), "on socket <socket>"),
    # 'for user "tw"', 'role "tw" does not exist', 'could not translate host name "db"'
    (re.compile(r'\b(host name|host|user|role|database) "[^"]*"'), r"\1 <\1>"),
    # a connection string's: host=db port=5433 user=tw password=…
    (
        re.compile(
            r"\b(host|hostaddr|port|user|dbname|password|passfile|service|sslkey|sslcert"
            r"|sslrootcert|sslpassword)=(?:'(?:[^'\\]|\\.)*'|[^\s,;)]+)"
        ),
        r"\1=<\1>",
    ),
    (re.compile(r"\bport \d+"), "port <port>"),
    (re.compile(r"\.s\.PGSQL\.\d+"), ".s.PGSQL.<port>"),
    # a URL with credentials, or any but a web page's (a database's, a file's): its scheme
    (re.compile(r"\b([A-Za-z][\w+.-]*)://[^\s'\"<>]*@[^\s'\"<>]*"), r"\1://<redacted>"),
    (re.compile(r"\b((?!https?://)[A-Za-z][\w+.-]*)://[^\s'\"<>]*"), r"\1://<redacted>"),
)


def redacted(text: str, *, data_dir: Path, store_url: URL) -> str:
    """``text`` (a worker's stderr) without what names the database (its host, port, user,
    password, the driver's words for them, a URL of it) or a path under ``data_dir``
    (shown ``<data_dir>``) or the SQLite store's file. The rest, a traceback's files in
    tunewatch's install and the reason, is left as it is."""
    names = [(str(path), "<data_dir>") for path in {data_dir, data_dir.resolve()}]
    if store_url.get_backend_name() == "sqlite":
        if store_url.database and store_url.database != ":memory:":
            names.append((store_url.database, "<the store's file>"))
    else:
        if store_url.host:
            names.append((store_url.host, "<db host>"))
        if store_url.password:
            names.append((str(store_url.password), "***"))
    for pattern, shown in _ENDPOINT_TEXT:
        text = pattern.sub(shown, text)
    for name, shown in sorted(names, key=lambda pair: -len(pair[0])):
        text = _bounded(name).sub(shown, text)
    # the host's port, once the host is taken out: db:5433
    return re.sub(r"<db host>:\d+", "<db host>:<port>", text)


def _bounded(name: str) -> re.Pattern[str]:
    """``name`` as a whole: not part of a longer word or path (``/data`` is not in
    ``/data2`` nor ``/srv/data``; it is in ``/data/artefacts`` and ``/data.``)."""
    return re.compile(rf"(?<![\w.~/-]){re.escape(name)}(?![\w-]|\.\w)")
