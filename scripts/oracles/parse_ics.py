#!/usr/bin/env python3
"""Independent .ics reader for the tests: PyPI `icalendar` parses an iCalendar object from stdin and
this prints what a calendar client would see, as JSON."""
import json
import sys

from icalendar import Calendar

raw = sys.stdin.buffer.read()
cal = Calendar.from_ical(raw)
events = []
for ev in cal.walk("VEVENT"):
    events.append({
        "uid": str(ev.get("UID")),
        "sequence": int(ev.get("SEQUENCE", 0)),
        "dtstart": ev.decoded("DTSTART").isoformat(),
        "dtend": ev.decoded("DTEND").isoformat(),
        "dtstamp": ev.decoded("DTSTAMP").isoformat(),
        "summary": str(ev.get("SUMMARY")),
        "description": str(ev.get("DESCRIPTION")) if ev.get("DESCRIPTION") is not None else None,
        "url": str(ev.get("URL")) if ev.get("URL") is not None else None,
        "status": str(ev.get("STATUS")) if ev.get("STATUS") is not None else None,
    })
lines = raw.split(b"\r\n")
print(json.dumps({
    "method": str(cal.get("METHOD")),
    "version": str(cal.get("VERSION")),
    "events": events,
    "max_line_octets": max(len(l) for l in lines),
    "crlf_only": b"\n" not in raw.replace(b"\r\n", b""),
}))
