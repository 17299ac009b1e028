#!/usr/bin/env python3
"""Independent oracle for start-time formatting: Python's zoneinfo (the system tz database).

JSON Lines on stdin: {"epoch": int, "zone": str}
-> {"local": "March 8, 2026 at 3:30 AM", "tzname": "EDT", "offset": seconds east of UTC}
"""
import json
import sys
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

for line in sys.stdin:
    req = json.loads(line)
    t = datetime.fromtimestamp(req["epoch"], tz=timezone.utc).astimezone(ZoneInfo(req["zone"]))
    hour = t.hour % 12 or 12
    local = f"{t.strftime('%B')} {t.day}, {t.year} at {hour}:{t.minute:02d} {'AM' if t.hour < 12 else 'PM'}"
    print(json.dumps({"local": local, "tzname": t.tzname(), "offset": int(t.utcoffset().total_seconds())}), flush=True)
