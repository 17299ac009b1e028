#!/usr/bin/env python3
"""A counting fake of the Resend, Postmark and SendGrid send APIs for benchmarks (aiohttp, HTTP/1.1
keep-alive). It checks the key, parses every email, counts, and stores nothing; every call is
answered `--latency-ms` (default 50) after it arrived, whatever the answer.

  Resend    POST /emails/batch  JSON array of 1–100 emails, `Authorization: Bearer <key>`
                                → 200 {"data": [{"id"}, …]} in order (no attachments in a batch: 422)
            POST /emails        one email object → 200 {"id"}
                                Missing key 401, wrong key 403. `Idempotency-Key`: the same key with
                                the same body answers the first answer again (counted as a replay, no
                                email); with another body 409.
  Postmark  POST /email/batch   JSON array of ≤ 500, header `X-Postmark-Server-Token`
                                → 200 [{"ErrorCode": 0, "Message": "OK", "MessageID", "To", "SubmittedAt"}, …]
                                Wrong token: 401 {"ErrorCode": 10}.
  SendGrid  POST /v3/mail/send  one email (1–1,000 personalizations), Bearer → 202, `X-Message-Id`.
                                Wrong key 401.

--rate-limit N (requests/s, 0 = off): Resend's limiter — one budget for every call on any endpoint,
in fixed 1 s windows aligned to the Unix second. A call that arrives when the window's budget is
spent is answered 429 with `retry-after`; while the limit is on, every answer carries
`ratelimit-limit`, `ratelimit-remaining` and `ratelimit-reset` (whole seconds until the window
ends, at least 1, as Resend sends them).

Side channel like count_sink.py: every 100 ms (and on exit) --stat-file is atomically rewritten
with one JSON object of cumulative counters:
  emails        emails accepted (one per recipient address)
  distinct      distinct recipient addresses ever accepted
  calls         every HTTP call received on the three endpoints (429s and refusals included)
  ok_calls      calls answered 2xx (emails accepted)
  status        {"200": n, "429": n, …}
  r429          calls answered 429
  auth_failures calls answered 401/403
  rejected      calls answered another 4xx (validation), replays (idempotent replays)
  paths         {path: {"calls", "ok_calls", "emails"}}
  batch_sizes   {emails per accepted call: number of calls}
  first_ts / last_ts            time.time() when the first / last accepted email was answered
  first_call_ts / last_call_ts  arrival of the first / last call
  max_in_progress               most calls open at the same time
  bytes         request body bytes received
Benchmarks read it before and after a run and use the difference.
--call-log F appends one line per call, flushed before every stat-file write:
  <arrival_unix_ts> <answered_unix_ts> <status> <emails_accepted> <path>

Usage: fake_email_api.py --stat-file F [--call-log F] [--host 127.0.0.1] [--port 0] [--api-key K]
                         [--latency-ms 50] [--rate-limit 0]
Prints "READY <port>" on stdout once listening.
"""
import argparse
import asyncio
import hashlib
import json
import math
import os
import signal
import sys
import time
import uuid

from aiohttp import web


class Stats:
    def __init__(self):
        self.emails = 0
        self.recipients = set()
        self.calls = 0
        self.ok_calls = 0
        self.status = {}
        self.auth_failures = 0
        self.rejected = 0
        self.replays = 0
        self.paths = {}
        self.batch_sizes = {}
        self.first_ts = 0.0
        self.last_ts = 0.0
        self.first_call_ts = 0.0
        self.last_call_ts = 0.0
        self.in_progress = 0
        self.max_in_progress = 0
        self.bytes = 0

    def snapshot(self):
        return {"emails": self.emails, "distinct": len(self.recipients), "calls": self.calls, "ok_calls": self.ok_calls,
                "status": {str(k): v for k, v in sorted(self.status.items())}, "r429": self.status.get(429, 0),
                "auth_failures": self.auth_failures, "rejected": self.rejected, "replays": self.replays,
                "paths": self.paths, "batch_sizes": {str(k): v for k, v in sorted(self.batch_sizes.items())},
                "first_ts": self.first_ts, "last_ts": self.last_ts, "first_call_ts": self.first_call_ts,
                "last_call_ts": self.last_call_ts, "max_in_progress": self.max_in_progress, "bytes": self.bytes}


STATS = Stats()
CALL_LOG = None  # open file (--call-log)


class Limiter:
    """Fixed 1 s windows aligned to the Unix second, one budget for every call."""

    def __init__(self, limit):
        self.limit = limit
        self.window = None
        self.count = 0

    def take(self, now):
        """Counts a call arriving at `now`; returns (allowed, headers)."""
        if self.limit <= 0:
            return True, {}
        window = math.floor(now)
        if window != self.window:
            self.window, self.count = window, 0
        self.count += 1
        allowed = self.count <= self.limit
        reset = max(1, math.ceil(window + 1 - now))
        headers = {"ratelimit-limit": str(self.limit), "ratelimit-remaining": str(max(0, self.limit - self.count)),
                   "ratelimit-reset": str(reset)}
        if not allowed:
            headers["retry-after"] = str(reset)
        return allowed, headers


def valid_address(s):
    if not isinstance(s, str):
        return False
    parts = s.split("@")
    return len(parts) == 2 and "." in parts[1] and " " not in s and "<" not in s


class FakeAPI:
    def __init__(self, api_key, latency, rate_limit):
        self.key = api_key
        self.latency = latency
        self.limiter = Limiter(rate_limit)
        self.idempotent = {}  # key → (body hash, status, body, headers)

    # --- shared -------------------------------------------------------------------------------------

    def path_stats(self, path):
        return STATS.paths.setdefault(path, {"calls": 0, "ok_calls": 0, "emails": 0})

    async def handle(self, request, path, auth_ok, process):
        """Counts the call, checks the key, applies the rate limit, waits out the latency, then answers
        with `process(body)` → (status, json_or_None, headers, recipients accepted)."""
        arrived = time.time()
        STATS.calls += 1
        STATS.first_call_ts = STATS.first_call_ts or arrived
        STATS.last_call_ts = arrived
        STATS.in_progress += 1
        STATS.max_in_progress = max(STATS.max_in_progress, STATS.in_progress)
        ps = self.path_stats(path)
        ps["calls"] += 1
        try:
            body = await request.read()
            STATS.bytes += len(body)
            refused = auth_ok(request)
            allowed, rl_headers = self.limiter.take(arrived)
            if refused is not None:
                status, payload, headers, recipients = refused
            elif not allowed:
                status, payload, headers, recipients = 429, {"statusCode": 429, "name": "rate_limit_exceeded",
                                                             "message": "Too many requests. You can only make 2 requests per second."}, {}, []
            else:
                status, payload, headers, recipients = process(request, body)
            delay = arrived + self.latency - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            STATS.status[status] = STATS.status.get(status, 0) + 1
            accepted = len(recipients) if 200 <= status < 300 and recipients else 0
            if CALL_LOG is not None:
                CALL_LOG.write(f"{arrived:.6f} {time.time():.6f} {status} {accepted} {path}\n")
            if status in (401, 403):
                STATS.auth_failures += 1
            elif 400 <= status < 500 and status != 429:
                STATS.rejected += 1
            if 200 <= status < 300 and recipients is not None:
                ps["ok_calls"] += 1
                STATS.ok_calls += 1
                if recipients:
                    now = time.time()
                    STATS.first_ts = STATS.first_ts or now
                    STATS.last_ts = now
                    STATS.emails += len(recipients)
                    ps["emails"] += len(recipients)
                    STATS.recipients.update(r.lower() for r in recipients)
                    STATS.batch_sizes[len(recipients)] = STATS.batch_sizes.get(len(recipients), 0) + 1
            out_headers = dict(rl_headers)
            out_headers.update(headers)
            if payload is None:
                return web.Response(status=status, headers=out_headers)
            return web.Response(status=status, headers=out_headers, body=json.dumps(payload).encode(), content_type="application/json")
        finally:
            STATS.in_progress -= 1

    def bearer_auth(self, resend):
        def check(request):
            auth = request.headers.get("Authorization", "")
            if not auth.startswith("Bearer "):
                return (401, {"statusCode": 401, "name": "missing_api_key", "message": "Missing API key"} if resend
                        else {"errors": [{"message": "authorization required", "field": None}]}, {}, None)
            if auth[7:].strip() != self.key:
                if resend:
                    return 403, {"statusCode": 403, "name": "invalid_api_key", "message": "API key is invalid"}, {}, None
                return 401, {"errors": [{"message": "The provided authorization grant is invalid, expired, or revoked", "field": None}]}, {}, None
            return None
        return check

    def postmark_auth(self, request):
        if request.headers.get("X-Postmark-Server-Token") != self.key:
            return 401, {"ErrorCode": 10, "Message": "The Server Token you provided in the X-Postmark-Server-Token request header was invalid."}, {}, None
        return None

    # --- Resend -------------------------------------------------------------------------------------

    def resend(self, batch):
        def process(request, raw):
            try:
                parsed = json.loads(raw)
            except ValueError:
                return 422, {"statusCode": 422, "name": "validation_error", "message": "Invalid JSON"}, {}, None
            if batch:
                if not isinstance(parsed, list) or not 1 <= len(parsed) <= 100:
                    return 422, {"statusCode": 422, "name": "validation_error", "message": "Batch must hold 1 to 100 emails"}, {}, None
                if any(isinstance(e, dict) and "attachments" in e and e["attachments"] is not None for e in parsed):
                    return 422, {"statusCode": 422, "name": "validation_error", "message": "Attachments are not supported in batch"}, {}, None
                emails = parsed
            else:
                if not isinstance(parsed, dict):
                    return 422, {"statusCode": 422, "name": "validation_error", "message": "Expected an object"}, {}, None
                emails = [parsed]
            recipients = []
            for e in emails:
                to = e.get("to") if isinstance(e, dict) else None
                if isinstance(to, str):
                    to = [to]
                if (not isinstance(to, list) or not 1 <= len(to) <= 50 or not all(valid_address(t) for t in to)
                        or not isinstance(e.get("from"), str) or not isinstance(e.get("subject"), str)
                        or not (isinstance(e.get("html"), str) or isinstance(e.get("text"), str))):
                    return 422, {"statusCode": 422, "name": "validation_error", "message": "Invalid email"}, {}, None
                recipients += to
            key = request.headers.get("Idempotency-Key")
            digest = hashlib.sha256(raw).hexdigest()
            if key:
                cached = self.idempotent.get(key)
                if cached:
                    if cached[0] != digest:
                        return 409, {"statusCode": 409, "name": "invalid_idempotent_request", "message": "Same key, different payload"}, {}, None
                    STATS.replays += 1
                    return cached[1], cached[2], {}, []
            ids = [{"id": str(uuid.uuid4())} for _ in emails]
            answer = {"data": ids} if batch else ids[0]
            if key:
                self.idempotent[key] = (digest, 200, answer)
            return 200, answer, {}, recipients
        return process

    # --- Postmark -----------------------------------------------------------------------------------

    def postmark(self, request, raw):
        try:
            parsed = json.loads(raw)
        except ValueError:
            return 422, {"ErrorCode": 402, "Message": "Received invalid JSON input."}, {}, None
        if not isinstance(parsed, list) or len(parsed) > 500 or len(raw) > 50_000_000:
            return 422, {"ErrorCode": 300, "Message": "Batch exceeds 500 messages or 50 MB"}, {}, None
        results, recipients = [], []
        for m in parsed:
            to = m.get("To") if isinstance(m, dict) else None
            if (not isinstance(m, dict) or not isinstance(m.get("From"), str) or not isinstance(m.get("Subject"), str)
                    or not isinstance(m.get("MessageStream"), str) or not isinstance(to, str)
                    or not all(valid_address(t.strip()) for t in to.split(","))):
                results.append({"ErrorCode": 300, "Message": "Invalid email request", "To": to})
                continue
            recipients += [t.strip() for t in to.split(",")]
            results.append({"ErrorCode": 0, "Message": "OK", "MessageID": str(uuid.uuid4()), "To": to,
                            "SubmittedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
        return 200, results, {}, recipients

    # --- SendGrid -----------------------------------------------------------------------------------

    def sendgrid(self, request, raw):
        try:
            mail = json.loads(raw)
        except ValueError:
            mail = None
        bad = 400, {"errors": [{"message": "Bad Request", "field": None}]}, {}, None
        if not isinstance(mail, dict):
            return bad
        ps = mail.get("personalizations")
        frm = mail.get("from") if isinstance(mail.get("from"), dict) else {}
        content = mail.get("content")
        if (not isinstance(ps, list) or not 1 <= len(ps) <= 1000 or not valid_address(frm.get("email"))
                or not isinstance(content, list) or not content or not isinstance(mail.get("subject"), str)):
            return bad
        recipients = []
        for p in ps:
            for t in (p.get("to") or []) if isinstance(p, dict) else []:
                if not isinstance(t, dict) or not valid_address(t.get("email")):
                    return bad
                recipients.append(t["email"])
        if not recipients:
            return bad
        return 202, None, {"X-Message-Id": uuid.uuid4().hex[:22]}, recipients

    def app(self):
        app = web.Application(client_max_size=64 * 1024 * 1024)
        resend_auth = self.bearer_auth(resend=True)
        sg_auth = self.bearer_auth(resend=False)
        batch, single = self.resend(True), self.resend(False)

        async def r_batch(req):
            return await self.handle(req, "/emails/batch", resend_auth, batch)

        async def r_single(req):
            return await self.handle(req, "/emails", resend_auth, single)

        async def pm_batch(req):
            return await self.handle(req, "/email/batch", self.postmark_auth, self.postmark)

        async def sg_send(req):
            return await self.handle(req, "/v3/mail/send", sg_auth, self.sendgrid)

        app.router.add_post("/emails/batch", r_batch)
        app.router.add_post("/emails", r_single)
        app.router.add_post("/email/batch", pm_batch)
        app.router.add_post("/v3/mail/send", sg_send)
        return app


def write_stats(path):
    if CALL_LOG is not None:
        CALL_LOG.flush()
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(STATS.snapshot(), f)
    os.replace(tmp, path)


async def stats_loop(path, interval=0.1):
    while True:
        write_stats(path)
        await asyncio.sleep(interval)


async def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--stat-file", required=True)
    ap.add_argument("--call-log", help="append one line per call: arrival answered status emails path")
    ap.add_argument("--api-key", default="bench-email-api-key-0123456789")
    ap.add_argument("--latency-ms", type=float, default=50.0, help="added to every call (from arrival to answer)")
    ap.add_argument("--rate-limit", type=int, default=0, help="Resend-style requests per 1 s window, all endpoints (0 = off)")
    args = ap.parse_args()
    global CALL_LOG
    if args.call_log:
        CALL_LOG = open(args.call_log, "a", buffering=1 << 20)
    api = FakeAPI(args.api_key, max(0.0, args.latency_ms) / 1000.0, args.rate_limit)
    runner = web.AppRunner(api.app(), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, args.host, args.port, backlog=1024, reuse_address=True)
    await site.start()
    port = runner.addresses[0][1]
    write_stats(args.stat_file)
    task = asyncio.create_task(stats_loop(args.stat_file))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for s in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(s, stop.set)
    print(f"READY {port}", flush=True)
    await stop.wait()
    task.cancel()
    write_stats(args.stat_file)
    await runner.cleanup()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
