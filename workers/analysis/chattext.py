"""What the text of one chat message contributes: words, top words, emojis, links, media.

Kept apart from the export parser (:mod:`.chat`) because it is pure text handling and is
applied only once a message is complete (its continuation lines may arrive in the next
chunk). A message is exactly one of: deleted, a media placeholder, or text.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

# Placeholders WhatsApp writes instead of the content (Android, iOS, newer iOS exports).
MEDIA = re.compile(r"<Media omitted>|(?:image|video|audio|sticker|GIF|document|Contact card)"
                   r" omitted|<attached: [^>]*>", re.IGNORECASE)
DELETED = frozenset({"this message was deleted", "you deleted this message",
                     "this message was deleted.", "you deleted this message."})
URL = re.compile(r"\b(?:https?://|www\.)[^\s<>\"]+", re.IGNORECASE)
_DOMAIN = re.compile(r"^(?:https?://)?(?:www\.)?([^/:?#]+)", re.IGNORECASE)
WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)*")
EMOJI = re.compile(
    "[\U0001F1E6-\U0001F1FF]{2}|[\U0001F300-\U0001F3FA\U0001F400-\U0001FAFF\u2600-\u27BF"
    "\u2B50\u2B55\u2B1B\u2B1C\u231A\u231B\u23E9-\u23F3\u23F8-\u23FA\u2934\u2935\u3030\u303D]")
# Invisible marks WhatsApp puts before placeholders and inside names.
INVISIBLE = dict.fromkeys(map(ord, "\u200e\u200f\u202a\u202c\ufeff"), None)
MIN_WORD = 2

_STOP = """
a about above after again against all am an and any are aren't as at be because been before
being below between both but by can can't cannot could couldn't did didn't do does doesn't
doing don't down during each few for from further had hadn't has hasn't have haven't having he
he'd he'll he's her here here's hers herself him himself his how how's i i'd i'll i'm i've if
in into is isn't it it's its itself let's me more most mustn't my myself no nor not of off on
once only or other ought our ours ourselves out over own same shan't she she'd she'll she's
should shouldn't so some such than that that's the their theirs them themselves then there
there's these they they'd they'll they're they've this those through to too under until up
very was wasn't we we'd we'll we're we've were weren't what what's when when's where where's
which while who who's whom why why's with won't would wouldn't you you'd you'll you're you've
your yours yourself yourselves also just like get got yes ok okay yeah oh will im dont thats
omitted deleted message media
"""
STOP_WORDS = frozenset(_STOP.split())


def domain(url: str) -> str:
    m = _DOMAIN.match(url)
    return (m.group(1) if m else url).lower()


def text_stats(author: str, text: str) -> dict[str, Any]:
    """Counters one complete message adds (the same keys as the chat partial's ``stats``)."""
    clean = text.translate(INVISIBLE).strip()
    if clean.lower() in DELETED:
        return {"deleted": {author: 1}}
    if MEDIA.fullmatch(clean):
        return {"media": {author: 1}}
    links = URL.findall(clean)
    if links:
        clean = URL.sub(" ", clean)
    stats: dict[str, Any] = {"words": {author: len(clean.split())}}
    if links:
        stats["links"] = dict(Counter(map(domain, links)))
    words = Counter(w for w in WORD.findall(clean.lower())
                    if len(w) >= MIN_WORD and w not in STOP_WORDS)
    if words:
        stats["top_words"] = dict(words)
    if not clean.isascii():
        emojis = Counter(EMOJI.findall(clean))
        if emojis:
            stats["emojis"] = dict(emojis)
    return stats
