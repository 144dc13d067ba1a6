"""Settings read once at start-up from the environment and an optional ``.env`` file.

Every component takes a :class:`Settings` instance and never reads the environment itself,
so tests and the CLI can build one explicitly and pass it down.
"""

from __future__ import annotations

import dataclasses
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from dotenv import dotenv_values

from logsig.errors import SettingsError
from logsig.secrets import REDACTED, read_secret, redact_url

ACK_MODES = ("counted", "published")
EVENT_LOOPS = ("auto", "uvloop", "asyncio")  # auto: uvloop when importable, else asyncio

# Environment variable for each field; the names are part of the documented interface.
ENV_NAMES: dict[str, str] = {
    "redis_url": "REDIS_URL",
    "key_prefix": "KEY_PREFIX",
    "gateway_host": "GATEWAY_HOST",
    "gateway_port": "GATEWAY_PORT",
    "health_port": "HEALTH_PORT",
    "analyze_port": "ANALYZE_PORT",
    "max_upload_bytes": "MAX_UPLOAD_BYTES",
    "analyze_timeout": "ANALYZE_TIMEOUT",
    "read_timeout": "READ_TIMEOUT",
    "event_loop": "EVENT_LOOP",
    "batch_size": "BATCH_SIZE",
    "timeout": "TIMEOUT",
    "max_frame_bytes": "MAX_FRAME_BYTES",
    "max_inflight_publishes": "MAX_INFLIGHT_PUBLISHES",
    "ack_mode": "ACK_MODE",
    "ack_timeout": "ACK_TIMEOUT",
    "agent_max_inflight": "AGENT_MAX_INFLIGHT",
    "retry_initial": "RETRY_INITIAL",
    "retry_max": "RETRY_MAX",
    "registry_path": "REGISTRY_PATH",
    "agent_name": "AGENT_NAME",
    "tag": "FLUENT_TAG",
    "partial_line_timeout": "PARTIAL_LINE_TIMEOUT",
    "poll_interval": "POLL_INTERVAL",
    "rotate_wait": "ROTATE_WAIT",
    "rules_path": "RULES_PATH",
    "worker_concurrency": "WORKER_CONCURRENCY",
    "queue": "QUEUE",
    "visibility_timeout": "VISIBILITY_TIMEOUT",
    "match_stream_maxlen": "MATCH_STREAM_MAXLEN",
    "chunk_ttl": "CHUNK_TTL",
    "minute_ttl": "MINUTE_TTL",
    "shutdown_timeout": "SHUTDOWN_TIMEOUT",
    "log_level": "LOG_LEVEL",
    "shared_key": "SHARED_KEY",
    "auth_users_file": "AUTH_USERS_FILE",
    "server_hostname": "SERVER_HOSTNAME",
    "agent_username": "AGENT_USERNAME",
    "agent_password": "AGENT_PASSWORD",
    "tls_cert_file": "TLS_CERT_FILE",
    "tls_key_file": "TLS_KEY_FILE",
    "tls_client_ca_file": "TLS_CLIENT_CA_FILE",
    "tls_ca_file": "TLS_CA_FILE",
    "tls_client_cert_file": "TLS_CLIENT_CERT_FILE",
    "tls_client_key_file": "TLS_CLIENT_KEY_FILE",
    "tls_server_name": "TLS_SERVER_NAME",
    "max_connections": "MAX_CONNECTIONS",
    "max_records_per_chunk": "MAX_RECORDS_PER_CHUNK",
    "max_line_bytes": "MAX_LINE_BYTES",
}

# Secrets: also readable from the file named by NAME_FILE; never shown by repr() or logs.
SECRET_FIELDS = ("shared_key", "agent_password", "redis_url")


@dataclass(frozen=True)
class Settings:
    """All tunables of logsig; see ``.env.example`` for what each one does."""

    redis_url: str = "redis://127.0.0.1:6379/0"
    key_prefix: str = "logsig"
    gateway_host: str = "127.0.0.1"
    gateway_port: int = 24224
    health_port: int = 24225
    analyze_port: int = 24226
    max_upload_bytes: int = 256 * 1024 * 1024
    analyze_timeout: float = 600.0
    read_timeout: float = 30.0
    event_loop: str = "auto"
    batch_size: int = 20_000
    timeout: float = 1.0
    max_frame_bytes: int = 16 * 1024 * 1024
    max_inflight_publishes: int = 4
    ack_mode: str = "counted"
    ack_timeout: float = 10.0
    agent_max_inflight: int = 8
    retry_initial: float = 0.2
    retry_max: float = 10.0
    registry_path: str = "logsig-registry.json"
    agent_name: str = field(default_factory=socket.gethostname)
    tag: str = "logsig"
    partial_line_timeout: float = 5.0
    poll_interval: float = 0.25
    rotate_wait: float = 5.0
    rules_path: str = ""
    worker_concurrency: int = field(default_factory=lambda: os.cpu_count() or 1)
    queue: str = "logsig"
    visibility_timeout: int = 300
    match_stream_maxlen: int = 10_000
    chunk_ttl: int = 7 * 86400
    minute_ttl: int = 7 * 86400
    shutdown_timeout: float = 10.0
    log_level: str = "INFO"
    shared_key: str = field(default="", repr=False)
    auth_users_file: str = ""
    server_hostname: str = field(default_factory=socket.gethostname)
    agent_username: str = ""
    agent_password: str = field(default="", repr=False)
    tls_cert_file: str = ""
    tls_key_file: str = ""
    tls_client_ca_file: str = ""
    tls_ca_file: str = ""
    tls_client_cert_file: str = ""
    tls_client_key_file: str = ""
    tls_server_name: str = ""
    max_connections: int = 1024
    max_records_per_chunk: int = 100_000
    max_line_bytes: int = 64 * 1024

    def __repr__(self) -> str:
        shown = []
        for fld in dataclasses.fields(self):
            value = getattr(self, fld.name)
            if fld.name == "redis_url":
                value = redact_url(value)
            elif fld.name in SECRET_FIELDS and value:
                value = REDACTED
            shown.append(f"{fld.name}={value!r}")
        return f"Settings({', '.join(shown)})"

    def __post_init__(self) -> None:
        self._check_numbers()
        for name, choices in (("ack_mode", ACK_MODES), ("event_loop", EVENT_LOOPS)):
            if getattr(self, name) not in choices:
                raise SettingsError(f"{ENV_NAMES[name]} must be one of {', '.join(choices)}, "
                                    f"got {getattr(self, name)!r}")
        for a, b in (("tls_cert_file", "tls_key_file"),
                     ("tls_client_cert_file", "tls_client_key_file")):
            if bool(getattr(self, a)) != bool(getattr(self, b)):
                raise SettingsError(f"set both {ENV_NAMES[a]} and {ENV_NAMES[b]}, or neither")
        if self.auth_users_file and not self.shared_key:
            raise SettingsError("AUTH_USERS_FILE needs SHARED_KEY (the handshake carries it)")
        for name in ("gateway_port", "health_port", "analyze_port"):
            if not 0 <= getattr(self, name) < 65536:
                raise SettingsError(f"{ENV_NAMES[name]} must be 0..65535 (0: any free port), "
                                    f"got {getattr(self, name)!r}")

    def _check_numbers(self) -> None:
        positive = ("batch_size", "max_frame_bytes", "max_inflight_publishes",
                    "agent_max_inflight", "worker_concurrency", "match_stream_maxlen",
                    "max_upload_bytes", "max_connections", "max_records_per_chunk",
                    "max_line_bytes")
        for name in positive:
            if getattr(self, name) < 1:
                raise SettingsError(f"{ENV_NAMES[name]} must be >= 1, got {getattr(self, name)!r}")
        for name in ("timeout", "ack_timeout", "retry_initial", "retry_max", "poll_interval",
                     "read_timeout", "analyze_timeout"):
            if getattr(self, name) <= 0:
                raise SettingsError(f"{ENV_NAMES[name]} must be > 0, got {getattr(self, name)!r}")
        if self.rotate_wait < 0:
            raise SettingsError(f"{ENV_NAMES['rotate_wait']} must be >= 0, "
                                f"got {self.rotate_wait!r}")

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, dotenv_path: str | None = ".env"
    ) -> Settings:
        """Build settings from ``.env`` (if present) overlaid by the process environment."""
        source: dict[str, str | None] = {}
        if dotenv_path and os.path.exists(dotenv_path):
            source.update(dotenv_values(dotenv_path))
        source.update(os.environ if environ is None else environ)
        values: dict[str, Any] = {}
        for fld in dataclasses.fields(cls):
            if fld.name in SECRET_FIELDS:
                raw = read_secret(source, ENV_NAMES[fld.name])
            else:
                raw = source.get(ENV_NAMES[fld.name])
            if raw is None or raw == "":
                continue
            values[fld.name] = _coerce(fld.name, raw, fld.type)
        return cls(**values)

    def to_env(self) -> dict[str, str]:
        """The settings as environment variables, to hand them to a child process."""
        return {ENV_NAMES[f.name]: str(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def replace(self, **overrides: Any) -> Settings:
        """Return a copy with the non-None overrides applied (for CLI flags)."""
        return dataclasses.replace(self, **{k: v for k, v in overrides.items() if v is not None})


def _coerce(name: str, raw: str, type_name: object) -> Any:
    kind = {"int": int, "float": float}.get(str(type_name), str)
    try:
        return kind(raw.strip()) if kind is not str else raw
    except ValueError as exc:
        raise SettingsError(f"{ENV_NAMES[name]}={raw!r} is not a valid {kind.__name__}") from exc
