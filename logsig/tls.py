"""TLS contexts for the Forward port, built from settings (``None`` when TLS is off).

Gateway: TLS when ``TLS_CERT_FILE`` and ``TLS_KEY_FILE`` are set; with ``TLS_CLIENT_CA_FILE``
it also requires a client certificate signed by that CA. Agent: TLS when ``TLS_CA_FILE`` is
set; the gateway's certificate must chain to that CA and carry ``TLS_SERVER_NAME`` (default
``GATEWAY_HOST``); ``TLS_CLIENT_CERT_FILE``/``TLS_CLIENT_KEY_FILE`` are presented if set.
TLS 1.2 is the floor; certificate checks are never turned off.
"""

from __future__ import annotations

import ssl

from logsig.errors import SettingsError
from logsig.settings import Settings

__all__ = ["client_context", "server_context", "server_name"]


def _load(action: str, fn, *args: str) -> None:  # type: ignore[no-untyped-def]
    try:
        fn(*args)
    except (OSError, ssl.SSLError) as exc:
        raise SettingsError(f"TLS: cannot load {action} from {args[0]!r}: {exc}") from exc


def server_context(settings: Settings) -> ssl.SSLContext | None:
    if not settings.tls_cert_file:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    _load("TLS_CERT_FILE/TLS_KEY_FILE", ctx.load_cert_chain, settings.tls_cert_file,
          settings.tls_key_file)
    if settings.tls_client_ca_file:
        _load("TLS_CLIENT_CA_FILE", ctx.load_verify_locations, settings.tls_client_ca_file)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def client_context(settings: Settings) -> ssl.SSLContext | None:
    if not settings.tls_ca_file:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    _load("TLS_CA_FILE", ctx.load_verify_locations, settings.tls_ca_file)
    if settings.tls_client_cert_file:
        _load("TLS_CLIENT_CERT_FILE/TLS_CLIENT_KEY_FILE", ctx.load_cert_chain,
              settings.tls_client_cert_file, settings.tls_client_key_file)
    return ctx


def server_name(settings: Settings) -> str:
    """The name the gateway's certificate must match."""
    return settings.tls_server_name or settings.gateway_host
