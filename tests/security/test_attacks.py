"""The whole path over TLS with the handshake on, under attack: every attempt is refused and
the legitimate agent's lines are counted exactly (gateway, worker, agent as real processes)."""

from __future__ import annotations

import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import msgpack
import pytest
import redis

from logsig import forward, handshake
from logsig.keys import Keys
from tests.conftest import Proc, RedisServer, free_port, logsig_cmd, wait_for_port, wait_until
from tests.security.report import RESULTS, record

pytestmark = pytest.mark.slow
KEYS = Keys("logsig")
SHARED_KEY = "k3y-" + "x9Q2" * 8
READ_TIMEOUT = 1.5
MAX_CONNECTIONS = 6


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_pki(d: Path) -> None:
    """A throwaway CA, a gateway certificate for 127.0.0.1/localhost, an agent certificate."""
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out",
            "ca.pem", "-days", "1", "-subj", "/CN=logsig test CA", cwd=d)
    (d / "server.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    (d / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    for name in ("server", "client"):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out",
                f"{name}.csr", "-subj", f"/CN={name}", cwd=d)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", f"{name}.pem", "-days", "1", "-extfile",
                f"{name}.ext", cwd=d)


@dataclass
class Cluster:
    dir: Path
    port: int
    env: dict[str, str]
    procs: dict[str, Proc] = field(default_factory=dict)

    def start(self, name: str, *args: str, **env: str) -> Proc:
        proc = Proc(logsig_cmd(*args), {**self.env, **env}, self.dir / f"{name}.log")
        self.procs[name] = proc
        return proc

    def tls(self, client_cert: bool = True) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.dir / "ca.pem"))
        if client_cert:
            ctx.load_cert_chain(self.dir / "client.pem", self.dir / "client.key")
        return ctx

    def connect(self, client_cert: bool = True) -> ssl.SSLSocket:
        raw = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        sock = self.tls(client_cert).wrap_socket(raw, server_hostname="localhost")
        sock.settimeout(5)
        return sock


@pytest.fixture
def cluster(redis_server: RedisServer, redis_client: redis.Redis,
            tmp_path: Path) -> Iterator[Cluster]:
    make_pki(tmp_path)
    (tmp_path / "shared_key").write_text(SHARED_KEY + "\n")
    port = free_port()
    env = {"REDIS_URL": redis_server.url, "GATEWAY_PORT": str(port), "HEALTH_PORT": "0",
           "ANALYZE_PORT": "0", "QUEUE": "logsig-sec", "BATCH_SIZE": "200", "TIMEOUT": "0.3",
           "POLL_INTERVAL": "0.05", "PARTIAL_LINE_TIMEOUT": "0.5",
           "SHARED_KEY_FILE": str(tmp_path / "shared_key"), "GATEWAY_HOST": "127.0.0.1"}
    c = Cluster(tmp_path, port, env)
    c.start("worker", "worker", "--concurrency", "1")
    gateway = c.start(
        "gateway", "gateway", TLS_CERT_FILE=str(tmp_path / "server.pem"),
        TLS_KEY_FILE=str(tmp_path / "server.key"), TLS_CLIENT_CA_FILE=str(tmp_path / "ca.pem"),
        READ_TIMEOUT=str(READ_TIMEOUT), MAX_CONNECTIONS=str(MAX_CONNECTIONS),
        MAX_FRAME_BYTES="65536", MAX_RECORDS_PER_CHUNK="250", MAX_LINE_BYTES="200",
        SERVER_HOSTNAME="gateway.test")
    wait_for_port(port, proc=gateway.popen)
    wait_until(lambda: redis_client.hlen(KEYS.rules) > 0, 30, what="worker start-up")
    yield c
    for proc in c.procs.values():
        proc.stop()


def next_obj(sock: socket.socket, unpacker: msgpack.Unpacker) -> object | None:
    """The next msgpack value, or None once the gateway closed the connection."""
    while True:
        for obj in unpacker:
            return obj
        try:
            data = sock.recv(65536)
        except (ConnectionError, ssl.SSLError):
            return None
        if not data:
            return None
        unpacker.feed(data)


def refused(sock: socket.socket, within: float = 5.0) -> bool:
    """The gateway closes the connection (after any PONG) within ``within`` seconds."""
    sock.settimeout(within)
    unpacker = msgpack.Unpacker(raw=False)
    try:
        while (obj := next_obj(sock, unpacker)) is not None:
            if isinstance(obj, dict) and "ack" in obj:
                return False  # accepted data
    except TimeoutError:
        return False
    return True


def authenticate(sock: ssl.SSLSocket, key: str) -> tuple[bytes, object]:
    unpacker = msgpack.Unpacker(raw=False)
    helo = handshake.Helo.decode(next_obj(sock, unpacker))
    ping = handshake.Ping.create(helo, "attacker", key)
    sock.sendall(ping.encode())
    return ping.encode(), next_obj(sock, unpacker)


def frame(lines: list[str], chunk: str) -> bytes:
    entries = b"".join(forward.pack_event(time.time(), {"message": ln, "host": "attacker"})
                       for ln in lines)
    return forward.encode_packed_forward("logsig", entries, len(lines), chunk)


def lines_counted(client: redis.Redis) -> int:
    return int(client.hget(KEYS.totals, "lines") or 0)


def test_attacks_are_refused_and_the_legitimate_agent_is_counted_exactly(
    cluster: Cluster, redis_client: redis.Redis
) -> None:
    log = cluster.dir / "app.log"
    legit = [f"Nov 22 10:00:{i % 60:02d} app[{i}]: request {i} ok" for i in range(500)]
    legit[7] = "L" * 1000  # longer than MAX_LINE_BYTES: truncated, still one line
    log.write_text("".join(f"{ln}\n" for ln in legit))
    agent = cluster.start(
        "agent", "agent", str(log), "--name", "legit-agent", "--registry",
        str(cluster.dir / "registry.json"), TLS_CA_FILE=str(cluster.dir / "ca.pem"),
        TLS_CLIENT_CERT_FILE=str(cluster.dir / "client.pem"),
        TLS_CLIENT_KEY_FILE=str(cluster.dir / "client.key"), TLS_SERVER_NAME="localhost")
    wait_until(lambda: lines_counted(redis_client) >= 500, 60, interval=0.2, what="500 lines")
    assert "authenticated with gateway 'gateway.test'" in agent.output()

    # Plaintext to the TLS port; TLS without a client certificate.
    with socket.create_connection(("127.0.0.1", cluster.port), timeout=5) as plain:
        plain.sendall(frame(["plaintext"], "p1"))
        ok_plain = refused(plain)
    try:
        with cluster.connect(client_cert=False) as nocert:
            nocert.sendall(frame(["no cert"], "n1"))
            ok_nocert = refused(nocert)
    except (ssl.SSLError, ConnectionError):
        ok_nocert = True
    record("plaintext / no client certificate", 2, ok_plain + ok_nocert, "TLS refused")

    # Unauthenticated: data before any handshake.
    with cluster.connect() as s:
        s.sendall(frame(["no handshake"], "u1"))
        record("unauthenticated (no PING)", 1, int(refused(s)), "expected PING")
    # Wrong key.
    with cluster.connect() as s:
        _, pong = authenticate(s, "not-the-key")
        ok = isinstance(pong, list) and pong[1] is False and pong[2] == "shared_key mismatch"
        record("wrong shared key", 1, int(ok and refused(s)), "PONG false: shared_key mismatch")
    # Replay: a PING captured on one connection, sent on another.
    with cluster.connect() as s:
        captured, pong = authenticate(s, SHARED_KEY)
        assert isinstance(pong, list) and pong[1] is True
    with cluster.connect() as s:
        next_obj(s, msgpack.Unpacker(raw=False))  # the new, different HELO
        s.sendall(captured + frame(["replayed"], "r1"))
        pong = next_obj(s, msgpack.Unpacker(raw=False))
        ok = isinstance(pong, list) and pong[1] is False
        record("replayed PING", 1, int(ok and refused(s)), "nonce differs: refused")
    # Oversized: a handshake message, a frame, too many records (the last two authenticated).
    outcomes = []
    with cluster.connect() as s:
        s.sendall(b"\xc6" + (200_000).to_bytes(4, "big") + b"A" * 100_000)
        outcomes.append(refused(s))
    with cluster.connect() as s:
        authenticate(s, SHARED_KEY)
        s.sendall(frame(["B" * 100] * 1000, "o1"))
        outcomes.append(refused(s))
    with cluster.connect() as s:
        authenticate(s, SHARED_KEY)
        s.sendall(frame(["c"] * 251, "o2"))
        outcomes.append(refused(s))
    record("oversized (handshake, frame, records)", 3, sum(outcomes), "closed")
    # Slowloris: half a PING, half a frame, then silence.
    outcomes = []
    with cluster.connect() as s:
        next_obj(s, msgpack.Unpacker(raw=False))
        s.sendall(handshake.Ping.create(handshake.Helo(b"n"), "slow", "k").encode()[:20])
        started = time.monotonic()
        outcomes.append(refused(s, READ_TIMEOUT + 3) and
                        time.monotonic() - started < READ_TIMEOUT + 2)
    with cluster.connect() as s:
        authenticate(s, SHARED_KEY)
        s.sendall(frame(["slow"] * 10, "s1")[:30])
        outcomes.append(refused(s, READ_TIMEOUT + 3))
    record("slowloris (pre- and post-auth)", 2, sum(outcomes), f"closed after {READ_TIMEOUT}s")
    # Connection flood: the agent holds one slot; the rest beyond MAX_CONNECTIONS are refused.
    flood = [cluster.connect() for _ in range(3 * MAX_CONNECTIONS)]
    greeted = 0
    for s in flood:
        s.settimeout(2)
        greeted += next_obj(s, msgpack.Unpacker(raw=False)) is not None
    for s in flood:
        s.close()
    flood_refused = len(flood) - greeted
    assert greeted <= MAX_CONNECTIONS - 1
    record("connection flood", len(flood), flood_refused, f"MAX_CONNECTIONS={MAX_CONNECTIONS}")

    # The legitimate agent still works after all that, and nothing else was counted.
    more = [f"Nov 22 10:01:{i % 60:02d} app[{i}]: after the attacks {i}" for i in range(100)]
    with log.open("a") as f:
        f.write("".join(f"{ln}\n" for ln in more))
    wait_until(lambda: lines_counted(redis_client) >= 600, 60, interval=0.2, what="600 lines")
    time.sleep(1.0)
    assert lines_counted(redis_client) == 600
    assert int(redis_client.hget(KEYS.agents, "legit-agent")) == 600
    assert redis_client.hkeys(KEYS.agents) == ["legit-agent"]
    assert redis_client.hget(KEYS.totals, "truncated") == "1"  # the 1,000-character line
    record("legitimate agent (TLS + key)", 600, 0, "600 lines counted exactly")

    gateway_log = cluster.procs["gateway"].output()
    assert "1 line(s) longer than MAX_LINE_BYTES=200 truncated" in gateway_log
    assert "expected PING" in gateway_log and "shared_key mismatch" in gateway_log
    assert "MAX_CONNECTIONS=6 reached" in gateway_log
    for name, proc in cluster.procs.items():
        assert SHARED_KEY not in proc.output(), f"the shared key leaked into the {name} log"
    for row in RESULTS:
        if row["attack"] not in ("connection flood", "legitimate agent (TLS + key)"):
            assert row["refused"] == row["tried"], f"not refused: {row}"
