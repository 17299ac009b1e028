#!/usr/bin/env python3
"""A counting SMTP sink for benchmarks: plain SMTP (no TLS, no AUTH), PIPELINING advertised,
messages are parsed and dropped (never stored). It counts accepted messages and remembers when
the last one was accepted.

Side channel: every 100 ms (and on exit) it atomically rewrites --stat-file with one line
    <count> <last_accept_unix_ts> <bytes> <distinct_recipients> <rejected> <connections>
count: messages accepted (250 after DATA); last_accept_unix_ts: time.time() when the last one was
accepted (0 before the first); bytes: total DATA bytes accepted (after un-dot-stuffing, without the
terminator); distinct_recipients: distinct RCPT addresses ever accepted (to detect duplicates);
rejected: protocol errors answered with 5xx; connections: TCP connections accepted.
Benchmarks read it before and after a run and use the difference.

--connect-delay-ms N holds the 220 greeting back N ms on every new connection (a relay's latency,
paid once per connection: the client cannot say anything before the greeting).

Usage: count_sink.py --port 2525 --stat-file /tmp/x/sink.stat [--host 127.0.0.1] [--connect-delay-ms 50]
Prints "READY <port>" on stdout once listening.
"""
import argparse
import asyncio
import os
import signal
import sys
import time


class Stats:
    def __init__(self):
        self.count = 0
        self.last_ts = 0.0
        self.bytes = 0
        self.rejected = 0
        self.recipients = set()
        self.connections = 0

    def line(self):
        return f"{self.count} {self.last_ts:.6f} {self.bytes} {len(self.recipients)} {self.rejected} {self.connections}\n"


STATS = Stats()
HOSTNAME = "bench-sink.localhost"
CONNECT_DELAY = 0.0  # seconds before the greeting (--connect-delay-ms)


class SMTPProtocol(asyncio.Protocol):
    """One SMTP session. Commands may arrive pipelined: every complete line in the buffer is
    answered in order, replies are written in one batch per read."""

    def __init__(self):
        self.buf = bytearray()
        self.in_data = False
        self.mail_from = None
        self.rcpts = []
        self.greeted = False
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport
        STATS.connections += 1
        greeting = f"220 {HOSTNAME} ESMTP count-sink\r\n".encode()
        if CONNECT_DELAY > 0:
            asyncio.get_running_loop().call_later(CONNECT_DELAY, self.greet, greeting)
        else:
            transport.write(greeting)

    def greet(self, greeting):
        if not self.transport.is_closing():
            self.transport.write(greeting)

    def data_received(self, data):
        self.buf += data
        out = []
        while True:
            if self.in_data:
                # The message ends with CRLF.CRLF; the DATA reply (354) ended with CRLF, so a
                # message that is empty can end with just ".\r\n" at the start of the buffer.
                if self.buf.startswith(b".\r\n"):
                    end, body_len = 0, 0
                    consumed = 3
                else:
                    end = self.buf.find(b"\r\n.\r\n")
                    if end < 0:
                        break
                    body_len = end + 2
                    consumed = end + 5
                body = bytes(self.buf[:body_len])
                del self.buf[:consumed]
                self.in_data = False
                # Undo dot-stuffing only for the byte count (cheap approximation: count of "\r\n..").
                size = len(body) - body.count(b"\r\n..") - (1 if body.startswith(b"..") else 0)
                STATS.count += 1
                STATS.last_ts = time.time()
                STATS.bytes += size
                for r in self.rcpts:
                    STATS.recipients.add(r)
                self.mail_from = None
                self.rcpts = []
                # A queue id per message, as real relays answer (Postfix: "queued as 4Hf3x…"), so a
                # client cannot collapse identical replies.
                out.append(b"250 2.0.0 Ok: queued as %X\r\n" % (0x4A0000 + STATS.count))
                continue
            nl = self.buf.find(b"\r\n")
            if nl < 0:
                if len(self.buf) > 4096:
                    out.append(b"500 5.5.2 Line too long\r\n")
                    STATS.rejected += 1
                    self.buf.clear()
                break
            line = bytes(self.buf[:nl]).decode("latin-1")
            del self.buf[: nl + 2]
            reply, close = self.command(line)
            out.append(reply)
            if close:
                self.transport.write(b"".join(out))
                self.transport.close()
                return
        if out:
            self.transport.write(b"".join(out))

    def command(self, line):
        verb = line[:4].upper()
        arg = line[4:].strip()
        if verb == "EHLO":
            self.greeted = True
            self.reset()
            return (f"250-{HOSTNAME}\r\n250-PIPELINING\r\n250-SIZE 52428800\r\n250-8BITMIME\r\n"
                    "250 SMTPUTF8\r\n").encode(), False
        if verb == "HELO":
            self.greeted = True
            self.reset()
            return f"250 {HOSTNAME}\r\n".encode(), False
        if verb == "MAIL":
            if not arg.upper().startswith("FROM:"):
                STATS.rejected += 1
                return b"501 5.5.4 Syntax: MAIL FROM:<address>\r\n", False
            if self.mail_from is not None:
                STATS.rejected += 1
                return b"503 5.5.1 Nested MAIL command\r\n", False
            self.mail_from = arg[5:].strip()
            self.rcpts = []
            return b"250 2.1.0 Ok\r\n", False
        if verb == "RCPT":
            if self.mail_from is None:
                STATS.rejected += 1
                return b"503 5.5.1 Need MAIL first\r\n", False
            if not arg.upper().startswith("TO:"):
                STATS.rejected += 1
                return b"501 5.5.4 Syntax: RCPT TO:<address>\r\n", False
            addr = arg[3:].strip().split(" ")[0].strip("<>").lower()
            self.rcpts.append(addr)
            return b"250 2.1.5 Ok\r\n", False
        if verb == "DATA":
            if not self.rcpts:
                STATS.rejected += 1
                return b"503 5.5.1 Need RCPT first\r\n", False
            self.in_data = True
            return b"354 End data with <CR><LF>.<CR><LF>\r\n", False
        if verb == "RSET":
            self.reset()
            return b"250 2.0.0 Ok\r\n", False
        if verb == "NOOP":
            return b"250 2.0.0 Ok\r\n", False
        if verb == "QUIT":
            return b"221 2.0.0 Bye\r\n", True
        STATS.rejected += 1
        return b"502 5.5.2 Command not recognized\r\n", False

    def reset(self):
        self.mail_from = None
        self.rcpts = []


async def write_stats(path, interval=0.1):
    tmp = path + ".tmp"
    while True:
        with open(tmp, "w") as f:
            f.write(STATS.line())
        os.replace(tmp, path)
        await asyncio.sleep(interval)


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--stat-file", required=True)
    ap.add_argument("--connect-delay-ms", type=float, default=0.0, help="hold the 220 greeting back this long on every connection")
    args = ap.parse_args()
    global CONNECT_DELAY
    CONNECT_DELAY = max(0.0, args.connect_delay_ms) / 1000.0
    loop = asyncio.get_running_loop()
    server = await loop.create_server(SMTPProtocol, args.host, args.port, backlog=1024, reuse_address=True)
    stats_task = asyncio.create_task(write_stats(args.stat_file))
    stop = asyncio.Event()
    for s in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(s, stop.set)
    print(f"READY {args.port}", flush=True)
    await stop.wait()
    server.close()
    stats_task.cancel()
    with open(args.stat_file, "w") as f:
        f.write(STATS.line())


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
