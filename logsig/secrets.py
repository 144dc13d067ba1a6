"""Secrets from the environment: ``NAME`` itself, or a file named by ``NAME_FILE``.

The file form is what Docker/Kubernetes secrets mount (``/run/secrets/...``); it keeps the
secret out of ``docker inspect``, process listings and command lines. A trailing newline in
the file is dropped. Secrets never reach a log line: :func:`redact_url` hides the password of
a URL before it is logged.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit, urlunsplit

from logsig.errors import SettingsError

__all__ = ["REDACTED", "read_secret", "redact_url"]

REDACTED = "***"


def read_secret(source: Mapping[str, str | None], name: str) -> str | None:
    """``source[name]`` if set, else the contents of the file ``source[name + "_FILE"]``."""
    value = source.get(name)
    path = source.get(f"{name}_FILE")
    if value and path:
        raise SettingsError(f"set {name} or {name}_FILE, not both")
    if value:
        return value
    if not path:
        return None
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        raise SettingsError(f"{name}_FILE: cannot read {path!r}: {exc.strerror}") from exc
    text = text.rstrip("\r\n")
    if not text:
        raise SettingsError(f"{name}_FILE: {path!r} is empty")
    return text


def redact_url(url: str) -> str:
    """``redis://:secret@host:6379/0`` -> ``redis://:***@host:6379/0`` (for log lines)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{parts.username or ''}:{REDACTED}@{host}"
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))
