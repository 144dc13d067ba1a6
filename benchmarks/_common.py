"""Shared benchmark inputs: a realistic line corpus and plausible extra rules.

The corpus mixes the real Loghub/secrepo samples in ``../shared/corpus`` (when present) with
generated traffic from :func:`agents.generator.generate_lines`, which carries the attack lines;
without the samples it is generated data alone. Extra rules are generated from templates of
the kind real packs contain (exploit paths, daemon errors, Java exceptions, scanner agents),
each anchored on a distinct literal, so 1,000 rules are 1,000 different signatures.
"""

from __future__ import annotations

import math
import random
import re
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from agents.generator import generate_lines
from workers.rules import Rule

CORPUS_DIR = Path(__file__).resolve().parents[2] / "shared" / "corpus"


def real_lines(corpus_dir: Path = CORPUS_DIR) -> list[str]:
    """Every line of the sample logs (line endings removed), or [] if they are absent."""
    lines: list[str] = []
    for path in sorted(corpus_dir.glob("*/*.log")):
        text = path.read_bytes().decode("utf-8", "replace")
        lines.extend(text.replace("\r\n", "\n").rstrip("\n").split("\n"))
    return lines


def corpus(count: int, seed: int = 7, corpus_dir: Path = CORPUS_DIR) -> tuple[list[str], str]:
    """``count`` lines, half real samples (cycled) and half generated, mixed in blocks."""
    real = real_lines(corpus_dir)
    if not real:
        return generate_lines(count, seed), "generated"
    half = count // 2
    reals = [real[i % len(real)] for i in range(half)]
    generated = generate_lines(count - half, seed)
    blocks = [reals[i:i + 500] for i in range(0, len(reals), 500)]
    blocks += [generated[i:i + 500] for i in range(0, len(generated), 500)]
    random.Random(seed).shuffle(blocks)
    return [line for block in blocks for line in block], "loghub+secrepo samples + generated"


def _split(text: str) -> tuple[str, ...]:
    return tuple(text.split())


_WORDS = _split("alpha nova vertex orbit quartz ember cobalt delta falcon harbor ionic jade "
          "krypton "
          "lumen magma nimbus onyx prism quasar raven sable titan umbra vortex willow xenon "
          "yonder zephyr astral blaze cipher drift echo flux glyph helix")
_DAEMONS = _split("nginx postfix dovecot named ntpd dockerd containerd kubelet haproxy "
            "redis-server "
            "mongod mysqld slapd squid smbd nmbd cupsd avahi-daemon chronyd rsyslogd")
_PROBLEMS = ("connection reset by peer", "permission denied", "timed out waiting for",
             "failed to open", "refused to start", "out of file descriptors",
             "certificate verify failed", "unexpected EOF from", "checksum mismatch in",
             "too many open connections from")
_TOOLS = _split("dirbuster gobuster feroxbuster wfuzz ffuf whatweb wpscan joomscan arachni "
          "skipfish "
          "w3af acunetix netsparker appscan openvas nessus jaeles nuclei httpx")


def _word(rng: random.Random) -> str:
    return rng.choice(_WORDS) + rng.choice(_WORDS)[:3]


def _templates(rng: random.Random, n: int) -> tuple[str, str, str]:
    """(title, pattern, flags) of the n-th generated rule; the kind rotates with n."""
    kind = n % 5
    if kind == 0:
        name = f"{_word(rng)}-{rng.randint(1, 99)}"
        path = rf"wp-content/plugins/{re.escape(name)}/"
        return (f"Plugin exploit probe {name}",
                rf'"(?:GET|POST) /(?:[^" ]*/)?{path}[^" ]*\.php', "i")
    if kind == 1:
        daemon, problem = rng.choice(_DAEMONS), rng.choice(_PROBLEMS)
        tag = _word(rng)
        return (f"{daemon} {problem} ({tag})",
                rf"\b{re.escape(daemon)}\[\d+\]: (?:error|fatal|crit): {re.escape(problem)} "
                rf"(?P<target>{tag}[\w.-]*)", "")
    if kind == 2:
        cls = _word(rng).capitalize() + rng.choice(("Timeout", "State", "Format", "Access"))
        return (f"Java {cls}Exception",
                rf"\b(?:org|com|io)\.\w+(?:\.\w+)*\.{cls}Exception\b(?::\s*(?P<msg>.+))?", "")
    if kind == 3:
        tool = rng.choice(_TOOLS) + rng.choice(("", "-ng", "-x", "2", "pro"))
        return (f"Scanner user agent {tool} #{n}",
                rf'" "[^"]*\b{re.escape(tool)}/\d+\.\d+[^"]*"$', "i")
    dev = f"{rng.choice(('sd', 'nvme', 'md', 'dm-'))}{rng.randint(0, 63)}"
    return (f"Driver error on {dev}",
            rf"\bkernel: (?:\[\s*\d+\.\d+\] )?{re.escape(_word(rng))}\S*: (?:reset|timeout|"
            rf"error \d+) on (?P<dev>{re.escape(dev)})\b", "")


def extra_rules(count: int, seed: int = 11) -> list[Rule]:
    """``count`` generated rules (no examples: they exist for benchmarking only)."""
    rng = random.Random(seed)
    rules: list[Rule] = []
    for n in range(count):
        title, pattern, flag = _templates(rng, n)
        flags = ("ignorecase",) if flag == "i" else ()
        rule = Rule(id=f"bench-{n:04d}", title=title, severity="low", patterns=(pattern,),
                    flags=flags, origin="benchmarks/_common.py")
        object.__setattr__(rule, "compiled", (re.compile(pattern, rule.re_flags),))
        rules.append(rule)
    return rules


def exit_on_sigterm() -> None:
    """SIGTERM unwinds like Ctrl-C, so the benchmarks' ``finally`` blocks stop every child
    process and remove their temporary directories (a test harness's timeout sends it)."""
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))


def wait(predicate: Callable[[], object], timeout: float, what: str,
         interval: float = 0.02) -> None:
    """Poll ``predicate`` until it is true; raise TimeoutError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(interval)


def redis_server_args(port: int, workdir: Path) -> list[str]:
    """A throw-away redis-server on loopback: no snapshots, no AOF, files in ``workdir``."""
    return ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(workdir)]


def percentile(ordered: Sequence[float], q: float) -> float:
    """Nearest-rank ``q``-th percentile of an ascending sequence.

    Nearest rank, not interpolation: the figure reported is a latency that was observed, and
    with few samples a p99 is honestly the largest of them rather than a blend.
    """
    if not ordered:
        raise ValueError("no values")
    return ordered[max(1, math.ceil(q / 100 * len(ordered))) - 1]
