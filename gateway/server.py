"""The gateway process: an asyncio TCP server speaking Forward v1, publishing to Celery.

Lifecycle: start listening; serve until SIGTERM/SIGINT; then stop accepting, stop reading,
publish what is buffered, ack it, close connections and exit 0. A second signal exits at
once.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable

from gateway.acks import CountedAcks
from gateway.analyze import AnalysisServer
from gateway.auth import Authenticator
from gateway.coalescer import Coalescer, Publisher
from gateway.connection import Connection
from gateway.health import HealthMonitor
from gateway.publisher import RedisPublisher
from logsig.errors import SettingsError
from logsig.gc_tuning import tune_gc
from logsig.keys import Keys
from logsig.malloc_tuning import tune_malloc
from logsig.settings import Settings
from logsig.tls import server_context

log = logging.getLogger(__name__)


class Gateway:
    def __init__(self, settings: Settings, publisher: Publisher) -> None:
        self._settings = settings
        self.health = HealthMonitor(settings.redis_url)
        self.counted = (CountedAcks(settings.redis_url, Keys(settings.key_prefix))
                        if settings.ack_mode == "counted" else None)
        high_water = settings.batch_size * (settings.max_inflight_publishes + 2)
        self.coalescer = Coalescer(publisher, settings.batch_size, settings.timeout, high_water,
                                   observer=self.health, counted=self.counted,
                                   max_chars=settings.max_frame_bytes)
        self._server: asyncio.Server | None = None
        self._health_server: asyncio.Server | None = None
        self._connections: dict[asyncio.Task[None], Connection] = {}
        self.analysis = AnalysisServer(settings)  # `logsig analyze` jobs on ANALYZE_PORT
        self.auth = Authenticator(settings) if settings.shared_key else None
        self._tls = server_context(settings)
        self.refused_connections = 0

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        s = self._settings
        self._server = await asyncio.start_server(
            self._handle, s.gateway_host, s.gateway_port, reuse_address=True, backlog=4096,
            ssl=self._tls, ssl_handshake_timeout=s.read_timeout if self._tls else None,
        )
        self._health_server = await asyncio.start_server(
            self.health.answer, s.gateway_host, s.health_port, reuse_address=True
        )
        self.health.start()
        if self.counted is not None:
            self.counted.start()
        await self.analysis.start()
        log.info("gateway listening on %s:%d, health on port %d (BATCH_SIZE=%d, TIMEOUT=%ss, "
                 "loop=%s)", s.gateway_host, self.port,
                 self._health_server.sockets[0].getsockname()[1], s.batch_size, s.timeout,
                 type(asyncio.get_running_loop()).__module__)
        log.info("security: TLS %s, handshake %s, MAX_CONNECTIONS=%d",
                 "on" + (" (client certificates required)" if s.tls_client_ca_file else "")
                 if self._tls else "off",
                 ("on (shared key" + (", users" if s.auth_users_file else "") + ")")
                 if self.auth else "off", s.max_connections)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        s = self._settings
        if len(self._connections) >= s.max_connections:
            self.refused_connections += 1
            peer = writer.get_extra_info("peername") or ("?", 0)
            log.warning("refused connection %s:%s: MAX_CONNECTIONS=%d reached (%d refused so "
                        "far)", peer[0], peer[1], s.max_connections, self.refused_connections)
            writer.transport.abort()
            return
        conn = Connection(reader, writer, self.coalescer, s.max_frame_bytes, s.read_timeout,
                          s.max_records_per_chunk, s.max_line_bytes)
        task = asyncio.current_task()
        assert task is not None
        self._connections[task] = conn
        try:
            initial = b""
            if self.auth is not None:
                accepted = await self.auth.handshake(reader, writer, conn.peer)
                if accepted is None:
                    conn.close()
                    return
                initial = accepted
            await conn.serve(initial)
        finally:
            self._connections.pop(task, None)

    async def shutdown(self) -> bool:
        """Stop accepting and reading, publish and ack what is buffered, close everything."""
        if self._server is not None:
            self._server.close()
        if self._health_server is not None:
            self._health_server.close()
        await self.analysis.close()
        readers = list(self._connections)
        for task in readers:
            task.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        drained = await self.coalescer.drain(self._settings.shutdown_timeout)
        if not drained:
            log.warning("shutdown timeout: %d lines were not published (clients will resend)",
                        self.coalescer.pending_lines)
        if self.counted is not None:
            if not await self.counted.wait_idle(self._settings.shutdown_timeout):
                log.warning("shutdown: %d published chunk(s) not yet recorded by the workers "
                            "(their agents will resend them)", self.counted.waiting)
            await self.counted.close()
        for conn in list(self._connections.values()):
            conn.close()
        await asyncio.sleep(0)  # let transports flush the last acks
        await self.health.close()
        return drained


async def serve(settings: Settings) -> int:
    publisher = RedisPublisher(settings)
    gateway = Gateway(settings, publisher)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        if stop.is_set():
            log.warning("second %s: exiting now", signal.Signals(signum).name)
            raise SystemExit(1)
        log.info("%s received: shutting down", signal.Signals(signum).name)
        stop.set()

    # Before anything starts: a SIGTERM during start-up still means a graceful stop.
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        tune_gc()
        tune_malloc()
        await gateway.start()
        await stop.wait()
        await gateway.shutdown()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        await publisher.close()
    log.info("gateway stopped (%d batches published)", gateway.coalescer.published_batches)
    return 0


def _loop_factory(choice: str = "auto") -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The loop EVENT_LOOP asks for; None means the standard library's (asyncio.Runner)."""
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError as exc:
        if choice == "uvloop":
            raise SettingsError("EVENT_LOOP=uvloop but the uvloop package is not installed "
                                "(pip install 'logsig[fast]', or set EVENT_LOOP=asyncio)"
                                ) from exc
        return None
    return uvloop.new_event_loop


def run(settings: Settings) -> int:
    with asyncio.Runner(loop_factory=_loop_factory(settings.event_loop)) as runner:
        return runner.run(serve(settings))
