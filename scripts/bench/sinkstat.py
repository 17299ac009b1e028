"""Reads the counting sink's side channel (see count_sink.py)."""
import time


def read_stat(path):
    for _ in range(50):
        try:
            with open(path) as f:
                parts = f.read().split()
            if len(parts) in (5, 6):
                return {"count": int(parts[0]), "last_ts": float(parts[1]), "bytes": int(parts[2]),
                        "distinct": int(parts[3]), "rejected": int(parts[4]),
                        "connections": int(parts[5]) if len(parts) == 6 else None}
        except (FileNotFoundError, ValueError):
            pass
        time.sleep(0.02)
    raise RuntimeError(f"cannot read sink stat file {path}")


def wait_for_count(path, target, timeout, progress=None, poll=0.1, stall=90):
    """Waits until the sink has accepted `target` messages in total; returns the stat. Raises on
    timeout, or when the count has not moved for `stall` seconds."""
    deadline = time.time() + timeout
    last_print = 0.0
    last_count, last_change = -1, time.time()
    while True:
        s = read_stat(path)
        if s["count"] != last_count:
            last_count, last_change = s["count"], time.time()
        elif time.time() - last_change > stall:
            raise TimeoutError(f"sink stuck at {s['count']} of {target} messages for {stall} s")
        if s["count"] >= target:
            # The file is rewritten every 100 ms: read once more so last_ts belongs to the final message.
            time.sleep(0.25)
            return read_stat(path)
        now = time.time()
        if now > deadline:
            raise TimeoutError(f"sink reached {s['count']} of {target} messages within {timeout:.0f} s")
        if progress and now - last_print >= 5:
            progress(s)
            last_print = now
        time.sleep(poll)
