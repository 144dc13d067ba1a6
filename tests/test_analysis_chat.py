"""The ``chat`` profile and the merge: exact reports, identical for any split of the file.

Two oracles: a small hand-written export with every figure worked out by hand, and
generated exports whose expected figures come from the generator's own model of the chat
(authors, times, words), not from the parser under test.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import pairwise
from typing import Any

import msgpack
from hypothesis import given, settings
from hypothesis import strategies as st

from workers.analysis import analyze, finalize, merge, merge_all, split_bytes
from workers.analysis.chat import RESPONSE_WINDOW, WEEKDAYS, parse_header
from workers.analysis.report import top

HAND = (
    "\u200e[01/03/2024, 09:15:02] Alice: Good morning! \u2600 Anyone up for coffee?\n"
    "[01/03/24, 09:16:40] Bob: Yes, https://www.example.com/cafe looks nice\n"
    "and it has wifi\n"
    "\n"
    "[01/03/24, 09:20:00] Alice: \u200eimage omitted\n"
    "01/03/24, 10:00 - Carol joined using this group's invite link\n"
    "01/03/24, 10:01 - Carol: This message was deleted\n"
    "01/03/24, 10:02 - Carol: <Media omitted>\n"
    "3/3/24, 9:05 PM - Bob: See you \U0001F600\U0001F600 tomorrow coffee\n"
    "ok?\n"
)


def report_of(data: bytes, chunks: int = 1) -> dict[str, Any]:
    parts = [analyze("chat", c) for c in split_bytes(data, chunks)]
    return finalize(merge_all("chat", parts))


def test_hand_written_export_gives_the_exact_report() -> None:
    r = report_of(HAND.encode())
    assert (r["lines"], r["bytes"]) == (10, len(HAND.encode()))
    assert (r["messages"], r["system_messages"], r["orphan_lines"]) == (6, 1, 0)
    assert (r["media"], r["deleted"], r["links"]) == (2, 1, 1)
    assert (r["first_message"], r["last_message"]) == ("2024-03-01 09:15:02",
                                                       "2024-03-03 21:05:00")
    assert r["authors"] == [
        # Alice answers Bob after 200 s; Bob answers Alice after 98 s (the 2nd day's message
        # comes 35 hours after Carol's, beyond the response window); Carol answers Alice
        # after 41 minutes, then answers herself (not a response).
        {"name": "Alice", "messages": 2, "words": 7, "media": 1, "deleted": 0,
         "responses": 1, "avg_response_s": 200.0},
        {"name": "Bob", "messages": 2, "words": 13, "media": 0, "deleted": 0,
         "responses": 1, "avg_response_s": 98.0},
        {"name": "Carol", "messages": 2, "words": 0, "media": 1, "deleted": 1,
         "responses": 1, "avg_response_s": 2460.0},
    ]
    assert {h: n for h, n in r["hours"].items() if n} == {"09": 3, "10": 2, "21": 1}
    assert r["weekdays"] == {"Mon": 0, "Tue": 0, "Wed": 0, "Thu": 0, "Fri": 5, "Sat": 0,
                             "Sun": 1}
    assert r["busiest_days"] == [["2024-03-01", 5], ["2024-03-03", 1]]
    assert r["top_words"][:2] == [["coffee", 2], ["anyone", 1]]
    assert ["ok", 1] not in r["top_words"]  # a stop word
    assert r["top_emojis"] == [["\U0001F600", 2], ["\u2600", 1]]
    assert r["top_domains"] == [["example.com", 1]]


def test_hand_written_export_is_the_same_for_every_split() -> None:
    data = HAND.encode()
    expected = report_of(data)
    for n in (2, 3, 4, 7, 10, 64):
        assert report_of(data, n) == expected, n


def test_lines_before_the_first_message_are_orphans_not_messages() -> None:
    data = b"...end of an earlier message\n" + HAND.encode()
    for n in (1, 4):
        r = report_of(data, n)
        assert (r["orphan_lines"], r["messages"]) == (1, 6)


def test_header_forms() -> None:
    ios = parse_header("[31/12/23, 23:59:59] Ann: hi")
    android = parse_header("31/12/2023, 11:59 PM - Ann: hi")
    assert ios is not None and android is not None
    assert ios[0]["day"] == android[0]["day"] == "2023-12-31"
    assert (ios[0]["hour"], android[0]["hour"]) == ("23", "23")
    assert ios[1] == android[1] == "Ann: hi"
    assert parse_header("12/13/23, 10:00 - Ann: hi") is None  # month 13: a text line
    assert parse_header("see you at 10:00 - ok") is None


# --- generated exports with a model-based oracle ------------------------------------------

AUTHORS = ["Ana Souza", "Ben", "Chloé", "Dev \U0001F680"]
VOCAB = ["pizza", "train", "museum", "concert", "ticket", "beach", "garden", "laptop",
         "bicycle", "sunset", "market", "coffee"]
EMOJIS = ["\U0001F600", "\U0001F44D", "\u2764", "\U0001F389"]
DOMAINS = ["example.com", "news.example.org", "maps.example.net"]


@dataclass
class Model:
    """What the generator wrote, counted independently of the parser."""

    messages: Counter[str] = field(default_factory=Counter)
    words: Counter[str] = field(default_factory=Counter)
    media: Counter[str] = field(default_factory=Counter)
    deleted: Counter[str] = field(default_factory=Counter)
    hours: Counter[str] = field(default_factory=Counter)
    weekdays: Counter[str] = field(default_factory=Counter)
    days: Counter[str] = field(default_factory=Counter)
    vocab: Counter[str] = field(default_factory=Counter)
    emojis: Counter[str] = field(default_factory=Counter)
    domains: Counter[str] = field(default_factory=Counter)
    responses: dict[str, list[int]] = field(default_factory=dict)
    system: int = 0
    times: list[datetime] = field(default_factory=list)


def header(rng: random.Random, t: datetime, who: str) -> str:
    if rng.random() < 0.5:
        return f"[{t:%d/%m/%y}, {t:%H:%M:%S}] {who}: "
    return f"{t:%d/%m/%Y}, {t:%H:%M} - {who}: "


def text_message(rng: random.Random, m: Model, who: str) -> list[str]:
    tokens: list[str] = []
    for _ in range(rng.randint(1, 12)):
        kind = rng.random()
        if kind < 0.1:
            d = rng.choice(DOMAINS)
            tokens.append(f"https://{d}/p/{rng.randint(1, 99)}")
            m.domains[d] += 1
            continue
        tok = rng.choice(EMOJIS) if kind < 0.25 else rng.choice(VOCAB)
        (m.emojis if kind < 0.25 else m.vocab)[tok] += 1
        m.words[who] += 1
        tokens.append(tok)
    lines, cur = [], []
    for tok in tokens:  # some messages span several lines
        cur.append(tok)
        if rng.random() < 0.15:
            lines.append(" ".join(cur))
            cur = []
    return [*lines, " ".join(cur)] if cur or not lines else lines


def generate_chat(seed: int, count: int) -> tuple[bytes, Model]:
    rng = random.Random(seed)
    m = Model()
    t = datetime(2023, 12, 30, 22, 0, 0)
    prev: tuple[str, datetime] | None = None
    out: list[str] = []
    for _ in range(count):
        t += timedelta(seconds=rng.choice([0, 30, 95, 600, 3600, 50_000]) // 60 * 60)
        if rng.random() < 0.05:
            out.append(f"{t:%d/%m/%y}, {t:%H:%M} - {rng.choice(AUTHORS)} left")
            m.system += 1
            continue
        who = rng.choice(AUTHORS)
        kind = rng.random()
        if kind < 0.08:
            body = ["<Media omitted>" if rng.random() < 0.5 else "\u200eimage omitted"]
            m.media[who] += 1
        elif kind < 0.12:
            body = ["This message was deleted"]
            m.deleted[who] += 1
        else:
            body = text_message(rng, m, who)
        out.append(header(rng, t, who) + body[0])
        out.extend(body[1:])
        m.messages[who] += 1
        m.hours[f"{t.hour:02d}"] += 1
        m.weekdays[WEEKDAYS[t.weekday()]] += 1
        m.days[t.date().isoformat()] += 1
        m.times.append(t)
        if prev and prev[0] != who and (t - prev[1]).total_seconds() <= RESPONSE_WINDOW:
            m.responses.setdefault(who, []).append(int((t - prev[1]).total_seconds()))
        prev = (who, t)
    return ("\n".join(out) + "\n").encode(), m


def expected_report(m: Model) -> dict[str, Any]:
    authors = []
    for name, count in top(dict(m.messages), 99):
        gaps = m.responses.get(name, [])
        authors.append({"name": name, "messages": count, "words": m.words[name],
                        "media": m.media[name], "deleted": m.deleted[name],
                        "responses": len(gaps),
                        "avg_response_s": round(sum(gaps) / len(gaps), 1) if gaps else None})
    return {
        "messages": m.messages.total(), "system_messages": m.system, "authors": authors,
        "hours": {f"{h:02d}": m.hours[f"{h:02d}"] for h in range(24)},
        "weekdays": {d: m.weekdays[d] for d in WEEKDAYS},
        "busiest_days": top(dict(m.days)), "top_words": top(dict(m.vocab)),
        "top_emojis": top(dict(m.emojis)), "links": m.domains.total(),
        "top_domains": top(dict(m.domains)), "media": m.media.total(),
        "deleted": m.deleted.total(), "orphan_lines": 0,
        "first_message": f"{m.times[0]:%Y-%m-%d %H:%M:%S}",
        "last_message": f"{m.times[-1]:%Y-%m-%d %H:%M:%S}",
    }


def test_generated_export_matches_the_model_for_1_2_4_and_7_chunks() -> None:
    data, model = generate_chat(seed=5, count=1500)
    want = expected_report(model)
    for n in (1, 2, 4, 7):
        got = report_of(data, n)
        assert {k: got[k] for k in want} == want, n
        assert got["lines"] == data.count(b"\n")


def test_partials_survive_the_msgpack_trip_to_the_gateway() -> None:
    data, _ = generate_chat(seed=9, count=300)
    parts = [analyze("chat", c) for c in split_bytes(data, 4)]
    wired = [msgpack.unpackb(msgpack.packb(p), strict_map_key=False) for p in parts]
    assert finalize(merge_all("chat", wired)) == report_of(data)


CHAT_DATA, _ = generate_chat(seed=3, count=120)
CHAT_LINES = CHAT_DATA.splitlines(keepends=True)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, len(CHAT_LINES)), max_size=12))
def test_any_split_on_line_boundaries_gives_the_same_report(cuts: list[int]) -> None:
    bounds = [0, *sorted(cuts), len(CHAT_LINES)]
    chunks = [b"".join(CHAT_LINES[a:b]) for a, b in pairwise(bounds)]
    parts = [analyze("chat", c) for c in chunks]
    assert finalize(merge_all("chat", parts)) == report_of(CHAT_DATA)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, len(CHAT_LINES)), st.integers(0, len(CHAT_LINES)))
def test_merge_is_associative(i: int, j: int) -> None:
    i, j = sorted((i, j))
    a, b, c = (analyze("chat", b"".join(CHAT_LINES[x:y]))
               for x, y in ((0, i), (i, j), (j, len(CHAT_LINES))))
    assert merge(merge(a, b), c) == merge(a, merge(b, c))
