#!/usr/bin/env python3
"""Independent checks for weekly class series (issue 19), used by the Swift tests.

  series_oracle.py rrule   < rules.json   python-dateutil's rrule expands each rule (wall-clock
                                          times in the zone, as RFC 5545 says) -> UTC instants
  series_oracle.py feed FROM TO < feed.ics  PyPI icalendar parses the feed, recurring-ical-events
                                          expands it between FROM and TO (UTC ISO) -> instances;
                                          also reports the VTIMEZONEs checked against zoneinfo,
                                          line lengths and line ends.
"""
import json
import sys
from datetime import datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from dateutil import rrule as du

DAYS = {"MO": du.MO, "TU": du.TU, "WE": du.WE, "TH": du.TH, "FR": du.FR, "SA": du.SA, "SU": du.SU}


def expand(rule):
    zone = ZoneInfo(rule["tz"])
    y, m, d = map(int, rule["start"].split("-"))
    hh, mm = map(int, rule["time"].split(":"))
    dtstart = datetime(y, m, d, hh, mm, tzinfo=zone)
    kwargs = dict(dtstart=dtstart, byweekday=[DAYS[x] for x in rule["byday"]], interval=rule.get("interval", 1), wkst=du.MO)
    if rule.get("count"):
        kwargs["count"] = rule["count"]
    ty, tm, td = map(int, rule["through"].split("-"))
    last = datetime(ty, tm, td, 23, 59, 59, tzinfo=zone)
    if rule.get("until"):
        uy, um, ud = map(int, rule["until"].split("-"))
        last = min(last, datetime(uy, um, ud, 23, 59, 59, tzinfo=zone))
    out = []
    for occ in du.rrule(du.WEEKLY, **kwargs):
        if occ > last:
            break
        # zoneinfo applies fold=0: a wall time in the spring gap reads with the offset before it,
        # an ambiguous one is the first of the two (RFC 5545 §3.3.5).
        out.append(occ.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))
    return out


def utc(dt):
    if not isinstance(dt, datetime):
        dt = datetime.combine(dt, time(0), tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def check_vtimezone(comp):
    """Every observance's DTSTART (local time before the change) must match zoneinfo: the UTC
    offset just before the change is TZOFFSETFROM and just after it TZOFFSETTO."""
    tzid = str(comp.get("TZID"))
    zone = ZoneInfo(tzid)
    problems = []
    observances = 0
    for sub in comp.subcomponents:
        if sub.name not in ("STANDARD", "DAYLIGHT"):
            continue
        observances += 1
        start = sub.get("DTSTART").dt.replace(tzinfo=None)
        off_from = sub.get("TZOFFSETFROM").td
        off_to = sub.get("TZOFFSETTO").td
        instant = (start - off_from).replace(tzinfo=timezone.utc)
        after = instant.astimezone(zone).utcoffset()
        if after != off_to:
            problems.append(f"{tzid} {sub.name} {start}: zoneinfo says {after} after, VTIMEZONE {off_to}")
        before = (instant - timedelta(seconds=1)).astimezone(zone).utcoffset()
        if observances > 1 and before != off_from:
            problems.append(f"{tzid} {sub.name} {start}: zoneinfo says {before} before, VTIMEZONE {off_from}")
    return tzid, observances, problems


def feed(start, end):
    import recurring_ical_events
    from icalendar import Calendar

    raw = sys.stdin.buffer.read()
    cal = Calendar.from_ical(raw)
    zones, problems = {}, []
    for comp in cal.walk("VTIMEZONE"):
        tzid, n, p = check_vtimezone(comp)
        zones[tzid] = n
        problems += p
    used, masters = set(), []
    for ev in cal.walk("VEVENT"):
        for prop in ("DTSTART", "DTEND", "RECURRENCE-ID", "EXDATE"):
            values = ev.get(prop)
            for v in values if isinstance(values, list) else [values]:
                if v is not None and "TZID" in v.params:
                    used.add(v.params["TZID"])
        if ev.get("RRULE") is not None:
            exdates = []
            ex = ev.get("EXDATE")
            for group in ex if isinstance(ex, list) else ([ex] if ex is not None else []):
                exdates += [utc(d.dt) for d in group.dts]
            masters.append({"uid": str(ev.get("UID")), "rrule": ev.get("RRULE").to_ical().decode(), "exdates": exdates,
                            "dtstart": utc(ev.decoded("DTSTART")), "sequence": int(ev.get("SEQUENCE", 0))})
    lo = datetime.fromisoformat(start.replace("Z", "+00:00"))
    hi = datetime.fromisoformat(end.replace("Z", "+00:00"))
    instances = []
    for ev in recurring_ical_events.of(cal).between(lo, hi):
        rid = ev.get("RECURRENCE-ID")
        instances.append({"uid": str(ev.get("UID")), "start": utc(ev.decoded("DTSTART")), "summary": str(ev.get("SUMMARY")),
                          "recurrence_id": utc(rid.dt) if rid is not None else None})
    instances.sort(key=lambda e: (e["start"], e["uid"]))
    lines = raw.split(b"\r\n")
    print(json.dumps({
        "instances": instances, "masters": masters, "vtimezones": zones, "tzids_used": sorted(used),
        "vtimezone_problems": problems, "max_line_octets": max(len(l) for l in lines),
        "crlf_only": b"\n" not in raw.replace(b"\r\n", b""), "components": len(cal.subcomponents),
    }))


if __name__ == "__main__":
    if sys.argv[1] == "rrule":
        print(json.dumps([expand(r) for r in json.load(sys.stdin)]))
    else:
        feed(sys.argv[2], sys.argv[3])
