"""Find the time a log line was written, in the three forms most logs use.

* syslog ``Mar  1 00:00:07`` (no year: the request's ``year`` is used; the client sends the
  year of the file's modification time unless told otherwise);
* ISO ``2024-03-01 00:00:07`` or ``2024-03-01T00:00:07`` (fractions and a zone ignored);
* Apache ``[01/Mar/2024:00:00:07 +0100]`` (converted to UTC with its offset).

The first stamp within the first :data:`STAMP_WITHIN` characters of a line wins (a stamp
further right is part of the message, and looking there would double the cost). Results
are ``YYYY-MM-DD HH:MM:SS`` strings, which sort in time order, so first/last are min/max and
merge associatively.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

MONTHS = {m: i for i, m in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1)}
_MON = "|".join(MONTHS)
STAMP_WITHIN = 80
STAMP = re.compile(
    rf"(?P<iso>(?P<Y>\d{{4}})-(?P<m>\d\d)-(?P<d>\d\d)[T ](?P<H>\d\d):(?P<M>\d\d):(?P<S>\d\d))"
    rf"|(?P<apache>\[(?P<ad>\d\d)/(?P<amon>{_MON})/(?P<aY>\d{{4}}):(?P<aH>\d\d):(?P<aM>\d\d):"
    rf"(?P<aS>\d\d) (?P<zone>[+-]\d{{4}})\])"
    rf"|(?P<syslog>\b(?P<smon>{_MON}) {{1,2}}(?P<sd>\d{{1,2}}) (?P<sH>\d\d):(?P<sM>\d\d):"
    rf"(?P<sS>\d\d)\b)"
)


def line_time(line: str, year: int) -> str | None:
    """``YYYY-MM-DD HH:MM:SS`` of the first stamp on ``line``, or None."""
    m = STAMP.search(line, 0, STAMP_WITHIN)
    if m is None:
        return None
    g = m.group
    if m.group("iso"):
        return f"{g('Y')}-{g('m')}-{g('d')} {g('H')}:{g('M')}:{g('S')}"
    if m.group("apache"):
        text = (f"{g('aY')}-{MONTHS[g('amon')]:02d}-{g('ad')} "
                f"{g('aH')}:{g('aM')}:{g('aS')}")
        zone = g("zone")
        if zone in ("+0000", "-0000"):
            return text
        return _to_utc(text, zone)
    return (f"{year:04d}-{MONTHS[g('smon')]:02d}-{int(g('sd')):02d} "
            f"{g('sH')}:{g('sM')}:{g('sS')}")


def _to_utc(text: str, zone: str) -> str | None:
    try:
        local = datetime.strptime(text, "%Y-%m-%d %H:%M:%S")
    except ValueError:
        return None
    offset = timedelta(hours=int(zone[1:3]), minutes=int(zone[3:5]))
    utc = local - offset if zone[0] == "+" else local + offset
    return utc.strftime("%Y-%m-%d %H:%M:%S")
