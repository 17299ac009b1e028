#!/usr/bin/env python3
"""Reference SMTP load: sends N multipart/alternative messages (text + HTML, similar size to the
server's emails) into an SMTP server over C connections, with Python's smtplib, one process per
connection (so the GIL does not serialize them). Messages are rendered before the clock starts.

The clock starts when every connection is open (EHLO done) and all are released at once; the
result is read from the counting sink's stat file (last accepted − start), like the server runs.

Usage: blaster.py --port 2525 --stat-file sink.stat --messages 10000 --connections 8 --size 9000 --tag run1
Prints one JSON line: {"messages", "connections", "size", "start", "last_accept", "seconds", "per_second",
"own_cpu_seconds" (user + system CPU of the sending processes while sending), "own_cpu_us_per_message"}.
"""
import argparse
import json
import multiprocessing as mp
import smtplib
import time
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import formatdate, make_msgid

from sinkstat import read_stat, wait_for_count


def render_template(size):
    """A multipart/alternative message whose rendered size is close to `size` bytes (calibrated:
    the parts are base64 like many mailers' UTF-8 parts), with a placeholder for the recipient."""
    budget = size
    for _ in range(6):
        out = _render(budget)
        if abs(len(out) - size) <= max(50, size // 100):
            break
        budget = max(300, int(budget * size / len(out)))
    return out


def _render(size):
    filler_unit = "Warm up, then 4 rounds of 45 s work and 15 s rest. Bring water and a towel. "
    msg = MIMEMultipart("alternative")
    msg["From"] = "Fit Live <live@fit.example.com>"
    msg["To"] = "Member <@@RCPT@@>"
    msg["Subject"] = "Coach is live now: Morning HIIT"
    msg["Date"] = formatdate(localtime=False)
    msg["Message-ID"] = make_msgid(domain="fit.example.com")
    msg["List-Unsubscribe"] = "<https://api.fit.example.com/api/unsubscribe/xyz>"
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    budget = max(200, size)
    text = (filler_unit * (budget // 2 // len(filler_unit) + 1))[: budget // 2]
    html = "<p>" + (filler_unit * (budget // 2 // len(filler_unit) + 1))[: budget // 2 - 7] + "</p>"
    msg.attach(MIMEText(text, "plain", "utf-8"))
    msg.attach(MIMEText(html, "html", "utf-8"))
    return msg.as_bytes().replace(b"\n", b"\r\n")


def worker(port, messages, template, tag, index, ready, go, done):
    rendered = [(f"{tag}-{index}-{i}@bench.example", template.replace(b"@@RCPT@@", f"{tag}-{index}-{i}@bench.example".encode()))
                for i in range(messages)]
    smtp = smtplib.SMTP("127.0.0.1", port, local_hostname="blaster.localhost", timeout=60)
    smtp.ehlo()
    ready.put(index)
    go.wait()
    cpu0 = time.process_time()  # this connection's own CPU while sending (rendering was before the clock)
    failures = 0
    for rcpt, body in rendered:
        try:
            smtp.sendmail("live@fit.example.com", [rcpt], body)
        except smtplib.SMTPException:
            failures += 1
    smtp.quit()
    done.put((index, failures, time.time(), time.process_time() - cpu0))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--stat-file", required=True)
    ap.add_argument("--messages", type=int, default=10000)
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--size", type=int, default=9000)
    ap.add_argument("--tag", default="blast")
    ap.add_argument("--timeout", type=float, default=600)
    args = ap.parse_args()

    template = render_template(args.size)
    per = [args.messages // args.connections + (1 if i < args.messages % args.connections else 0) for i in range(args.connections)]
    ctx = mp.get_context("fork")
    ready, done, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    procs = [ctx.Process(target=worker, args=(args.port, per[i], template, args.tag, i, ready, go, done)) for i in range(args.connections)]
    for p in procs:
        p.start()
    for _ in procs:
        ready.get(timeout=120)
    before = read_stat(args.stat_file)
    start = time.time()
    go.set()
    failures = 0
    own_cpu = 0.0
    for _ in procs:
        _, f, _, cpu = done.get(timeout=args.timeout)
        failures += f
        own_cpu += cpu
    for p in procs:
        p.join()
    after = wait_for_count(args.stat_file, before["count"] + args.messages - failures, timeout=30)
    seconds = after["last_ts"] - start
    delivered = after["count"] - before["count"]
    print(json.dumps({
        "messages": delivered, "failures": failures, "connections": args.connections, "size": len(template),
        "avg_bytes_in_sink": (after["bytes"] - before["bytes"]) / max(1, delivered),
        "start": start, "last_accept": after["last_ts"], "seconds": seconds,
        "per_second": delivered / seconds if seconds > 0 else None,
        "own_cpu_seconds": own_cpu, "own_cpu_us_per_message": own_cpu / max(1, delivered) * 1e6,
    }))


if __name__ == "__main__":
    main()
