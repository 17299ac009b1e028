#!/usr/bin/env python3
"""Benchmark scenarios against the release binary. Started by scripts/bench/run, which installs
what is missing, builds, starts PostgreSQL and the counting SMTP sink, and exports:

  BENCH_ROOT (repository), BENCH_TMP (scratch dir), APP_BINARY, PGPORT, SINK_PORT, SINK_STAT,
  BENCH_DB (sqlite|postgres|both), BENCH_LABEL (optional: results go to <scenario>.<label>.md)

Each scenario writes benchmarks/results/<scenario>[.<label>].{json,md}; BENCHMARKS.md is then
re-assembled from every file there (report.py), so one scenario can be re-run on its own.
"""
import asyncio
import hashlib
import http.client
import json
import os
import random
import re
import resource
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from datetime import datetime, timedelta, timezone

import jwt

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import report  # noqa: E402
from sinkstat import read_stat, wait_for_count  # noqa: E402

ROOT = os.environ["BENCH_ROOT"]
TMP = os.environ["BENCH_TMP"]
APP = os.environ["APP_BINARY"]
PGPORT = int(os.environ.get("PGPORT", "55450"))
SINK_PORT = int(os.environ["SINK_PORT"])
SINK_STAT = os.environ["SINK_STAT"]
LABEL = os.environ.get("BENCH_LABEL", "").strip()
PIDFILE = os.path.join(TMP, "server.pids")

JWT_SECRET = "bench-jwt-secret-0123456789abcdef-0123456789"
ADMIN_KEY = "bench-admin-key-0123456789"
AGORA_APP_ID = "0123456789abcdef0123456789abcdef"
AGORA_CERT = "fedcba9876543210fedcba9876543210"
# The server's SMTP pool (SMTP_MAX_CONNECTIONS, default 8); the blaster uses the same number.
SMTP_CONNECTIONS = int(os.environ.get("BENCH_SMTP_CONNECTIONS", "8"))
MAX_IN_FLIGHT = 64     # AppConfig: WorkerSettings.maxInFlight = 64 (fixed)

ALL_SCENARIOS = ["token", "fanout", "fanout100k", "reminders", "schedule", "import", "emailapi", "push100k", "joinstorm", "ncsburst"]
SUPPORTED_DBS = {
    "token": ["sqlite", "postgres"], "fanout": ["sqlite", "postgres"], "fanout100k": ["postgres", "sqlite"],
    "reminders": ["sqlite", "postgres"], "schedule": ["postgres"], "import": ["sqlite", "postgres"],
    "emailapi": ["sqlite", "postgres"],
    "push100k": ["postgres", "sqlite"],
    "joinstorm": ["sqlite", "postgres"],
    "ncsburst": ["sqlite", "postgres"],
}
# fanout100k runs on SQLite only when asked (BENCH_FANOUT100K_SQLITE=1): it takes a long time there.
ZONES = ["America/New_York", "Europe/Madrid", "Asia/Tokyo", "Australia/Sydney", "Asia/Kathmandu", "America/Chicago", None]


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


class BenchError(Exception):
    pass


class ScenarioFailed(BenchError):
    """A target check that failed after the numbers were taken: they are saved, then the run fails."""
    def __init__(self, message, data):
        super().__init__(message)
        self.data = data


def cpu_snapshot(server_pid=None):
    """CPU seconds used so far by the server, every PostgreSQL process, the sink, and the whole machine (busy)."""
    tick = os.sysconf("SC_CLK_TCK")

    def proc_cpu(pid):
        try:
            with open(f"/proc/{pid}/stat") as f:
                parts = f.read().rsplit(")", 1)[1].split()
            return (int(parts[11]) + int(parts[12])) / tick
        except OSError:
            return 0.0
    pg = 0.0
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/comm") as f:
                    if f.read().strip() == "postgres":
                        pg += proc_cpu(pid)
            except OSError:
                pass
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    busy = (sum(fields) - fields[3] - fields[4]) / tick  # minus idle and iowait
    return {"server": proc_cpu(server_pid) if server_pid else 0.0, "postgres": pg,
            "sink": proc_cpu(os.environ["SINK_PID"]) if os.environ.get("SINK_PID") else 0.0, "machine_busy": busy}


def cpu_delta(a, b):
    return {k: round(b[k] - a[k], 2) for k in a}


def median(xs):
    return statistics.median(xs) if xs else None


def percentile(sorted_xs, p):
    if not sorted_xs:
        return None
    k = (len(sorted_xs) - 1) * p / 100.0
    f = int(k)
    c = min(f + 1, len(sorted_xs) - 1)
    return sorted_xs[f] + (sorted_xs[c] - sorted_xs[f]) * (k - f)


def mint(user_id, days=2):
    return jwt.encode({"sub": user_id, "exp": int(time.time()) + days * 86400}, JWT_SECRET, algorithm="HS256")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def iso(dt):
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


# --- Databases -------------------------------------------------------------------------------------

def psql(db, sql, fmt="-At"):
    r = subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(PGPORT), "-U", "postgres", "-d", db, "-v", "ON_ERROR_STOP=1", fmt, "-c", sql],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise BenchError(f"psql failed: {r.stderr.strip()}\nSQL: {sql[:500]}")
    return r.stdout


class Database:
    """A fresh database for one server: a new PostgreSQL database, or a new SQLite file."""
    counter = 0

    def __init__(self, kind, name):
        Database.counter += 1
        self.kind = kind
        self.name = f"bench_{name}_{Database.counter}_{os.getpid()}"
        if kind == "postgres":
            psql("postgres", f'CREATE DATABASE "{self.name}"')
            self.env = {"DATABASE_URL": f"postgres://postgres@127.0.0.1:{PGPORT}/{self.name}"}
        else:
            d = os.path.join(TMP, "sqlite")
            os.makedirs(d, exist_ok=True)
            self.path = os.path.join(d, self.name + ".sqlite")
            self.env = {"SQLITE_PATH": self.path}

    def query(self, sql):
        """Rows as tuples of strings/numbers (read-only helpers for results)."""
        if self.kind == "postgres":
            out = psql(self.name, sql, fmt="-AtF\t")
            return [tuple(line.split("\t")) for line in out.splitlines() if line]
        con = sqlite3.connect(self.path, timeout=30)
        try:
            return con.execute(sql).fetchall()
        finally:
            con.close()

    def status_counts(self, where="1=1"):
        rows = self.query(f"SELECT status, COUNT(*) FROM deliveries WHERE {where} GROUP BY status ORDER BY status")
        return {r[0]: int(r[1]) for r in rows}

    def epoch(self, column):
        """SQL for a datetime column as Unix seconds (PostgreSQL timestamptz; SQLite as Fluent stores it)."""
        if self.kind == "postgres":
            return f"EXTRACT(EPOCH FROM {column})"
        # sqlite-nio stores Date as a REAL (seconds since 1970) or as text; normalise both.
        return f"(CASE WHEN typeof({column}) IN ('real','integer') THEN {column} ELSE strftime('%s', {column}) + (julianday({column}) - julianday(strftime('%Y-%m-%d %H:%M:%S', {column}))) * 86400.0 END)"


# --- Server ------------------------------------------------------------------------------------------

class Server:
    def __init__(self, db, name, extra_env=None, drop_env=()):
        self.db = db
        self.name = name
        self.port = free_port()
        self.base = f"127.0.0.1:{self.port}"
        self.log_path = os.path.join(TMP, f"server-{name}-{db.kind}-{self.port}.log")
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/root"),
            "JWT_SECRET": JWT_SECRET, "AGORA_APP_ID": AGORA_APP_ID, "AGORA_APP_CERTIFICATE": AGORA_CERT,
            "ADMIN_API_KEY": ADMIN_KEY, "PUBLIC_BASE_URL": "https://api.fit.example.com",
            "FRONTEND_URL": "https://fit.example.com", "EMAIL_FROM": "Fit Live <live@fit.example.com>",
            "EMAIL_TRANSPORT": "smtp", "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(SINK_PORT), "SMTP_SECURITY": "none",
            "RATE_LIMIT_ENABLED": "false", "LOG_LEVEL": "notice", "SMTP_MAX_CONNECTIONS": str(SMTP_CONNECTIONS),
        }
        env.update(db.env)
        # BENCH_APP_<NAME>=v sets the server's <NAME>=v (e.g. BENCH_APP_WORKER_MAX_IN_FLIGHT=256).
        env.update({k[len("BENCH_APP_"):]: v for k, v in os.environ.items() if k.startswith("BENCH_APP_")})
        env.update(extra_env or {})
        # BENCH_FORCE_<NAME>=v overrides even a scenario's own setting (diagnostics, e.g. LOG_LEVEL).
        env.update({k[len("BENCH_FORCE_"):]: v for k, v in os.environ.items() if k.startswith("BENCH_FORCE_")})
        for k in drop_env:
            env.pop(k, None)
        self.env = env
        self.proc = None

    def start(self, timeout=180):
        log(f"starting server ({self.db.kind}, port {self.port}) for {self.name}")
        self.logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [APP, "serve", "--env", "production", "--hostname", "127.0.0.1", "--port", str(self.port)],
            cwd=os.environ.get("BENCH_SERVER_CWD") or ROOT, env=self.env, stdout=self.logf, stderr=subprocess.STDOUT, start_new_session=True)
        with open(PIDFILE, "a") as f:
            f.write(f"{self.proc.pid}\n")
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"server exited with {self.proc.returncode} during start; log {self.log_path}:\n{self.tail()}")
            try:
                status, body = self.request("GET", "/health", timeout=2)
                if status == 200 and json.loads(body).get("status") == "ok":
                    return self
            except (OSError, http.client.HTTPException, ValueError):
                pass
            time.sleep(0.2)
        raise BenchError(f"server did not answer /health within {timeout} s; log:\n{self.tail()}")

    def log_offset(self):
        self.logf.flush()
        return os.path.getsize(self.log_path)

    def request_times(self, since, route):
        """Time in the server (ms) of each `route` request logged after byte `since` of its log (LOG_LEVEL=info)."""
        out = []
        with open(self.log_path, "rb") as f:
            f.seek(since)
            for line in f:
                try:
                    j = json.loads(line)
                except ValueError:
                    continue
                if j.get("message") == "request" and j.get("route") == route and "ms" in j:
                    out.append(float(j["ms"]))
        return out

    def tail(self, n=40):
        try:
            with open(self.log_path, "rb") as f:
                return b"\n".join(f.read().splitlines()[-n:]).decode("utf-8", "replace")
        except OSError:
            return ""

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc:
            self.logf.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def pid(self):
        return self.proc.pid

    def proc_status(self, field):
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])  # kB
        return None

    def cpu_seconds(self):
        with open(f"/proc/{self.pid}/stat") as f:
            parts = f.read().rsplit(")", 1)[1].split()
        return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")

    def request(self, method, path, body=None, token=None, timeout=120):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        headers = {}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if body is not None:
            if not isinstance(body, (bytes, bytearray)):
                body = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        try:
            conn.request(method, path, body=body, headers=headers)
            r = conn.getresponse()
            return r.status, r.read()
        finally:
            conn.close()

    def call(self, method, path, body=None, token=None, expect=200, timeout=300):
        status, data = self.request(method, path, body, token, timeout)
        if status != expect:
            raise BenchError(f"{method} {path} → {status} (expected {expect}): {data[:500].decode('utf-8', 'replace')}")
        return json.loads(data) if data else None

    # Domain helpers.
    def import_members(self, users=None, follows=None, subscriptions=None):
        body = {}
        if users is not None:
            body["users"] = users
        if follows is not None:
            body["follows"] = follows
        if subscriptions is not None:
            body["subscriptions"] = subscriptions
        return self.call("POST", "/api/admin/import", json.dumps(body).encode(), token=ADMIN_KEY)

    def create_stream(self, creator, live, start=None, title="Morning HIIT"):
        body = {"creatorId": creator, "title": title, "description": "Bring water and a towel.", "workoutType": "HIIT",
                "thumbnail": "https://cdn.fit.example.com/t.jpg", "isScheduled": not live}
        if start is not None:
            body["startTime"] = iso(start)
        return self.call("POST", "/api/creator/streams/create", body, token=mint(creator), expect=201)["stream"]


def user(uid, role="member", i=0, email_domain="bench.example"):
    return {"id": uid, "name": f"Member {uid}", "email": f"{uid}@{email_domain}", "timezone": ZONES[i % len(ZONES)],
            "role": role, "isActive": True}


def seed_audience(server, creator, count, prefix, batch=10_000):
    """Imports `creator` and `count` members who follow it, in admin imports of `batch` users + follows."""
    server.import_members(users=[user(creator, role="creator", i=1)])
    took = []
    for start in range(0, count, batch):
        ids = [f"{prefix}{i:06d}" for i in range(start, min(count, start + batch))]
        body = json.dumps({"users": [user(u, i=n) for n, u in enumerate(ids)],
                           "follows": [{"followerId": u, "followedId": creator} for u in ids]}).encode()
        t = time.time()
        server.call("POST", "/api/admin/import", body, token=ADMIN_KEY)
        took.append(time.time() - t)
    log(f"imported {count} followers of {creator} in {sum(took):.1f} s ({len(took)} requests)")
    return took


def selected_dbs(scenario):
    want = os.environ.get("BENCH_DB", "both")
    kinds = {"both": ["sqlite", "postgres"], "sqlite": ["sqlite"], "postgres": ["postgres"]}.get(want)
    if kinds is None:
        raise BenchError("BENCH_DB must be sqlite, postgres or both")
    dbs = [k for k in SUPPORTED_DBS[scenario] if k in kinds]
    if scenario == "fanout100k" and os.environ.get("BENCH_FANOUT100K_SQLITE") != "1":
        dbs = [k for k in dbs if k == "postgres"]
    return dbs


# --- wrk ---------------------------------------------------------------------------------------------

def parse_duration(s):
    m = re.match(r"([\d.]+)(us|ms|s|m)$", s)
    if not m:
        raise BenchError(f"cannot parse wrk duration {s!r}")
    v, unit = float(m.group(1)), m.group(2)
    return v * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def run_wrk(url, token=None, threads=2, connections=64, duration="10s", allow_errors=False, script=None, env=None, srv=None):
    """wrk's numbers, its own CPU (the load generator shares the cores) and, given `srv`, the server's CPU."""
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}", "--latency"]
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    srv_cpu0 = srv.cpu_seconds() if srv else None
    if token:
        cmd += ["-H", f"Authorization: Bearer {token}"]
    if script:
        cmd += ["-s", script]
    cmd.append(url)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})})
    if out.returncode != 0:
        raise BenchError(f"wrk failed: {out.stderr}")
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    client_cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    server_cpu = srv.cpu_seconds() - srv_cpu0 if srv else None
    text = out.stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    lat = {p: parse_duration(v) for p, v in re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", text, re.M)}
    total = int(re.search(r"(\d+) requests in", text).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    result = {"rps": rps, "p50_ms": lat.get("50"), "p99_ms": lat.get("99"), "requests": total,
              "non2xx": int(non2xx.group(1)) if non2xx else 0,
              "socket_errors": list(map(int, errors.groups())) if errors else [0, 0, 0, 0], "raw": text,
              "client_cpu_s": client_cpu, "server_cpu_s": server_cpu,
              "server_cpu_us_per_request": server_cpu / total * 1e6 if server_cpu is not None and total else None}
    if result["non2xx"] and not allow_errors:
        raise BenchError(f"wrk saw {result['non2xx']} non-2xx responses from {url}:\n{text}")
    return result


# --- Scenarios -------------------------------------------------------------------------------------------

def scenario_token():
    results = {}
    for kind in selected_dbs("token"):
        db = Database(kind, "token")
        with Server(db, "token") as srv:
            srv.import_members(users=[user("tk-creator", role="creator", i=1), user("tk-member", i=2)])
            stream = srv.create_stream("tk-creator", live=True)
            token = mint("tk-member")
            path = f"/api/streams/{stream['id']}/token?role=subscriber"
            status, body = srv.request("GET", path, token=token)
            sample = json.loads(body)
            if status != 200 or not sample.get("success") or not sample.get("token", "").startswith("007"):
                raise BenchError(f"sample token request → {status}: {body[:300]!r}")
            log(f"[{kind}] sample token response 200 ({len(body)} bytes, token {sample['token'][:12]}…)")
            health_url, token_url = f"http://{srv.base}/health", f"http://{srv.base}{path}"
            log(f"[{kind}] warm-up: 3 s health, 3 s token (not recorded)")
            run_wrk(health_url, duration="3s")
            run_wrk(token_url, token=token, duration="3s")
            rounds = []
            for r in range(3):
                c0 = cpu_snapshot(srv.pid)
                h = run_wrk(health_url)
                c1 = cpu_snapshot(srv.pid)
                h["cpu_seconds"] = cpu_delta(c0, c1)
                log(f"[{kind}] round {r + 1} health: {h['rps']:.0f} req/s p50 {h['p50_ms']:.2f} ms p99 {h['p99_ms']:.2f} ms")
                t = run_wrk(token_url, token=token)
                t["cpu_seconds"] = cpu_delta(c1, cpu_snapshot(srv.pid))
                log(f"[{kind}] round {r + 1} token:  {t['rps']:.0f} req/s p50 {t['p50_ms']:.2f} ms p99 {t['p99_ms']:.2f} ms")
                rounds.append({"health": h, "token": t})
            cpu = srv.cpu_seconds()
        med = {f"{w}_{m}": median([r[w][m] for r in rounds]) for w in ("health", "token") for m in ("rps", "p50_ms", "p99_ms")}
        med["ratio"] = med["token_rps"] / med["health_rps"]
        results[kind] = {"rounds": rounds, "median": med, "server_cpu_seconds_total": cpu, "path": path}
        log(f"[{kind}] medians: health {med['health_rps']:.0f} req/s, token {med['token_rps']:.0f} req/s, ratio {med['ratio']:.2f}")
    return results


def wait_sent(db, where, expected, timeout=120):
    """Waits until `expected` deliveries matching `where` are no longer queued/sending; returns the counts."""
    deadline = time.time() + timeout
    while True:
        counts = db.status_counts(where)
        done = sum(v for k, v in counts.items() if k not in ("queued", "sending"))
        if done >= expected or time.time() > deadline:
            return counts
        time.sleep(0.5)


def server_fanout(srv, db, creator, expected, label, timeout):
    """Creates a live stream (queues the live_now fan-out) and waits until the sink has `expected` more messages."""
    before = read_stat(SINK_STAT)
    cpu0 = srv.cpu_seconds()
    snap0 = cpu_snapshot(srv.pid)
    t0 = time.time()
    stream = srv.create_stream(creator, live=True, title=f"Fan-out {label}")
    api_ms = (time.time() - t0) * 1000
    progress_log = []

    def progress(st):
        progress_log.append((round(time.time() - t0, 1), st["count"] - before["count"]))
        log(f"  {label}: {st['count'] - before['count']}/{expected} accepted")
    after = wait_for_count(SINK_STAT, before["count"] + expected, timeout=timeout, progress=progress)
    seconds = after["last_ts"] - t0
    cpu = srv.cpu_seconds() - cpu0
    cpu_all = cpu_delta(snap0, cpu_snapshot(srv.pid))
    counts = wait_sent(db, f"stream_id = '{stream['id']}'", expected)
    # CPU until every outcome is recorded too (the durable half of each email), for the CPU-per-email ratio.
    cpu_recorded = cpu_delta(snap0, cpu_snapshot(srv.pid))
    delivered = after["count"] - before["count"]
    # How long the fan-out job took to insert the delivery rows (first → last created_at), and when the first was sent.
    span = db.query(f"SELECT {db.epoch('MIN(created_at)')}, {db.epoch('MAX(created_at)')}, {db.epoch('MIN(sent_at)')} FROM deliveries WHERE stream_id = '{stream['id']}'")[0]
    enqueue = {"first_row_after_api_s": float(span[0]) - t0, "insert_span_s": float(span[1]) - float(span[0]),
               "first_sent_after_api_s": float(span[2]) - t0}
    r = {"stream": stream["id"], "seconds": seconds, "per_second": expected / seconds, "delivered": delivered,
         "distinct_new": after["distinct"] - before["distinct"], "avg_bytes": (after["bytes"] - before["bytes"]) / max(1, delivered),
         "create_api_ms": api_ms, "server_cpu_seconds": cpu, "cpu_seconds": cpu_all, "cpu_seconds_recorded": cpu_recorded,
         "cpu_us_per_email": (cpu_recorded["server"] + cpu_recorded["postgres"]) / expected * 1e6,
         "deliveries": counts, "enqueue": enqueue,
         "progress": progress_log}
    if counts.get("sent") != expected or len(counts) != 1:
        raise BenchError(f"{label}: deliveries by status {counts}, expected {expected} sent")
    return r


def run_blaster(messages, size, tag):
    snap0 = cpu_snapshot()
    cmd = [sys.executable, os.path.join(ROOT, "scripts/bench/blaster.py"), "--port", str(SINK_PORT), "--stat-file", SINK_STAT,
           "--messages", str(messages), "--connections", str(SMTP_CONNECTIONS), "--size", str(size), "--tag", tag]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if out.returncode != 0:
        raise BenchError(f"blaster failed: {out.stderr}")
    r = json.loads(out.stdout.strip().splitlines()[-1])
    r["cpu_seconds"] = cpu_delta(snap0, cpu_snapshot())
    if r["failures"]:
        raise BenchError(f"blaster: {r['failures']} messages refused")
    return r


def scenario_fanout():
    n = 10_000
    results = {}
    for kind in selected_dbs("fanout"):
        db = Database(kind, "fanout")
        with Server(db, "fanout") as srv:
            setup = seed_audience(srv, "fo-creator", n, "fo")
            # Warm-up (not recorded): a small fan-out so templates, pools and connections are warm.
            seed_audience(srv, "fo-warm", 200, "fw")
            server_fanout(srv, db, "fo-warm", 200, "warm-up", timeout=120)
            rounds = []
            size = None
            for r in range(3):
                log(f"[{kind}] round {r + 1}: server fan-out of {n}")
                s = server_fanout(srv, db, "fo-creator", n, f"server round {r + 1}", timeout=900)
                log(f"[{kind}]   server: {s['seconds']:.2f} s, {s['per_second']:.0f} emails/s, avg {s['avg_bytes']:.0f} B, server CPU {s['server_cpu_seconds']:.1f} s")
                size = size or int(s["avg_bytes"])
                b = run_blaster(n, size, f"blast-{kind}-{r}")
                log(f"[{kind}]   blaster: {b['seconds']:.2f} s, {b['per_second']:.0f} msgs/s ({b['size']} B messages), own CPU {b['own_cpu_seconds']:.2f} s")
                rounds.append({"server": s, "blaster": b})
            if kind == "postgres" and os.environ.get("BENCH_PG_STATS"):
                # Top statements by total time over the whole scenario (pg_stat_statements is preloaded): calls,
                # execution ms, planning ms (0 unless BENCH_PG_OPTS="-c pg_stat_statements.track_planning=on"), rows.
                db.query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
                rows = db.query("SELECT calls, round(total_exec_time::numeric, 1), round(total_plan_time::numeric, 1), rows, left(regexp_replace(query, '\\s+', ' ', 'g'), 160) "
                                "FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) "
                                "ORDER BY total_exec_time + total_plan_time DESC LIMIT 12")
                for row in rows:
                    log(f"[pg_stat_statements] {row}")
        med = {"server_per_second": median([r["server"]["per_second"] for r in rounds]),
               "server_seconds": median([r["server"]["seconds"] for r in rounds]),
               "blaster_per_second": median([r["blaster"]["per_second"] for r in rounds]),
               "blaster_seconds": median([r["blaster"]["seconds"] for r in rounds]),
               "server_cpu_us_per_email": median([r["server"]["cpu_us_per_email"] for r in rounds]),
               "blaster_cpu_us_per_message": median([r["blaster"]["own_cpu_us_per_message"] for r in rounds])}
        med["ratio"] = med["server_per_second"] / med["blaster_per_second"]
        med["cpu_ratio"] = med["server_cpu_us_per_email"] / med["blaster_cpu_us_per_message"]
        results[kind] = {"rounds": rounds, "median": med, "setup_import_seconds": setup}
        log(f"[{kind}] medians: server {med['server_per_second']:.0f}/s, blaster {med['blaster_per_second']:.0f}/s, ratio {med['ratio']:.2f}; "
            f"CPU per email {med['server_cpu_us_per_email']:.0f} µs (server{' + PostgreSQL' if kind == 'postgres' else ''}) vs blaster "
            f"{med['blaster_cpu_us_per_message']:.0f} µs per message, ratio {med['cpu_ratio']:.2f}")
    return results


class ForeignCPU(threading.Thread):
    """CPU used by processes that are not part of this benchmark (not descendants of the `run` script,
    not PostgreSQL), sampled every second: how noisy the machine was during a scenario."""

    def __init__(self, root_pid):
        super().__init__(daemon=True)
        self.root_pid = root_pid
        self.tick = os.sysconf("SC_CLK_TCK")
        with open("/proc/uptime") as f:
            self.start_ticks = float(f.read().split()[0]) * self.tick
        self.last, self.by_comm = {}, {}
        self.stop_flag = threading.Event()
        with open("/proc/loadavg") as f:
            self.loadavg_start = f.read().split()[:3]
        self.sample(first=True)

    def sample(self, first=False):
        procs = {}
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open(f"/proc/{pid}/stat") as f:
                    head, rest = f.read().rsplit(")", 1)
                parts = rest.split()
                procs[int(pid)] = (head.split("(", 1)[1], int(parts[1]), (int(parts[11]) + int(parts[12])), int(parts[19]))
            except (OSError, IndexError, ValueError):
                pass

        def ours(pid):
            seen = 0
            while pid in procs and seen < 64:
                if pid == self.root_pid or procs[pid][0] == "postgres":
                    return True
                pid = procs[pid][1]
                seen += 1
            return False
        for pid, (comm, _, cpu, started) in procs.items():
            if ours(pid) or pid == os.getpid():
                continue
            prev = self.last.get(pid)
            if prev is None:
                prev = cpu if first or started < self.start_ticks else 0
            if cpu > prev:
                self.by_comm[comm] = self.by_comm.get(comm, 0) + (cpu - prev) / self.tick
            self.last[pid] = cpu

    def run(self):
        while not self.stop_flag.wait(1.0):
            self.sample()

    def stop(self):
        self.stop_flag.set()
        self.join()
        self.sample()
        top = sorted(self.by_comm.items(), key=lambda kv: -kv[1])[:5]
        return {"foreign_cpu_seconds": round(sum(self.by_comm.values()), 1), "top": [(c, round(v, 1)) for c, v in top if v >= 0.5],
                "loadavg_at_start": self.loadavg_start}


class RSSSampler(threading.Thread):
    def __init__(self, srv, interval=0.25):
        super().__init__(daemon=True)
        self.srv, self.interval = srv, interval
        self.samples = []
        self.stop_flag = threading.Event()

    def run(self):
        while not self.stop_flag.is_set():
            try:
                self.samples.append((time.time(), self.srv.proc_status("VmRSS"), self.srv.proc_status("VmHWM")))
            except (OSError, TypeError):
                pass
            time.sleep(self.interval)

    def stop(self):
        self.stop_flag.set()
        self.join()


def scenario_fanout100k():
    n = 100_000
    results = {}
    for kind in selected_dbs("fanout100k"):
        db = Database(kind, "fanout100k")
        with Server(db, "fanout100k-seed") as seeder:
            setup = seed_audience(seeder, "big-creator", n, "big")
            seed_hwm = seeder.proc_status("VmHWM")
        # A fresh process for the fan-out, so its VmHWM (peak RSS) is the fan-out's, not the import's.
        srv = Server(db, "fanout100k")
        with srv:
            idle_hwm = srv.proc_status("VmHWM")
            sampler = RSSSampler(srv)
            sampler.start()
            try:
                log(f"[{kind}] fan-out of {n} (server pid {srv.pid}, VmHWM at start {idle_hwm / 1024:.1f} MB)")
                s = server_fanout(srv, db, "big-creator", n, "fan-out 100k", timeout=3600)
            finally:
                sampler.stop()
            hwm = srv.proc_status("VmHWM")
            counts_all = db.status_counts()
        rss = [x[1] for x in sampler.samples if x[1]]
        r = {"fanout": s, "vmhwm_kb": hwm, "vmhwm_mb": hwm / 1024, "vmhwm_at_start_mb": idle_hwm / 1024,
             "vmrss_max_sampled_mb": max(rss) / 1024 if rss else None, "seed_server_vmhwm_mb": seed_hwm / 1024,
             "rss_timeline_mb": [(round(t - sampler.samples[0][0], 1), round(v / 1024, 1)) for t, v, _ in sampler.samples[::8]],
             "deliveries_by_status": counts_all, "setup_import_seconds": setup}
        once = s["delivered"] == n and s["distinct_new"] == n and counts_all == {"sent": n}
        r["all_delivered_once"] = once
        log(f"[{kind}] {n} in {s['seconds']:.1f} s ({s['per_second']:.0f}/s), VmHWM {r['vmhwm_mb']:.1f} MB, "
            f"sink +{s['delivered']} (distinct +{s['distinct_new']}), deliveries {counts_all}")
        if not once:
            raise BenchError(f"fanout100k: not every recipient got exactly one email: {r}")
        results[kind] = r
    return results


def scenario_reminders():
    streams, followers_each, lead = 200, 5, 60
    results = {}
    for kind in selected_dbs("reminders"):
        db = Database(kind, "reminders")
        with Server(db, "reminders", {"REMINDER_LEAD_MINUTES": "1"}) as srv:
            creators = [f"rc{i:03d}" for i in range(streams)]
            members = [f"rm{i:04d}" for i in range(streams * followers_each)]
            srv.import_members(users=[user(c, role="creator", i=i) for i, c in enumerate(creators)] + [user(m, i=i) for i, m in enumerate(members)],
                               follows=[{"followerId": members[i * followers_each + k], "followedId": c}
                                        for i, c in enumerate(creators) for k in range(followers_each)])
            t0 = datetime.now(timezone.utc)
            margin = 30  # seconds for creating the streams before the first reminder falls due
            starts = [t0 + timedelta(seconds=lead + margin + i * 60.0 / streams) for i in range(streams)]
            log(f"[{kind}] creating {streams} scheduled streams; reminders due {margin}…{margin + 60} s from now")
            for c, st in zip(creators, starts):
                srv.create_stream(c, live=False, start=st, title=f"Reminder test {c}")
            created = (datetime.now(timezone.utc) - t0).total_seconds()
            if created > margin:
                log(f"WARNING: creating streams took {created:.1f} s, past the first due time")
            last_due = starts[-1] - timedelta(seconds=lead)
            expected = streams * followers_each
            deadline = last_due + timedelta(seconds=180)
            while True:
                counts = db.status_counts("kind = 'reminder'")
                if counts.get("sent", 0) >= expected or datetime.now(timezone.utc) > deadline:
                    break
                time.sleep(1)
            rows = db.query(f"SELECT {db.epoch('d.sent_at')}, {db.epoch('s.start_time')}, {db.epoch('d.created_at')}, d.status "
                            "FROM deliveries d JOIN streams s ON s.id = d.stream_id WHERE d.kind = 'reminder'")
            sched = db.status_counts("kind = 'scheduled'")
        late = sorted(float(r[0]) - (float(r[1]) - lead) for r in rows if r[0] not in (None, ""))
        early_queued = sum(1 for r in rows if float(r[2]) < float(r[1]) - lead - 0.001)
        stats = {"count": len(late), "min": late[0], "median": median(late), "p95": percentile(late, 95), "max": late[-1]} if late else {}
        results[kind] = {"streams": streams, "followers_each": followers_each, "expected": expected, "reminders_by_status": counts,
                         "scheduled_by_status": sched, "lateness_s": stats, "queued_before_due": early_queued,
                         "create_seconds": created, "lateness_histogram": histogram(late)}
        log(f"[{kind}] reminder lateness over {len(late)} emails: " + ", ".join(f"{k} {v:.2f}s" for k, v in stats.items() if k != "count"))
        if counts.get("sent", 0) != expected:
            raise BenchError(f"reminders: expected {expected} sent, got {counts}")
    return results


def histogram(xs, edges=(0, 0.5, 1, 2, 3, 5, 10, 30)):
    out = {}
    for lo, hi in zip(edges, list(edges[1:]) + [float("inf")]):
        out[f"{lo}–{hi if hi != float('inf') else '∞'} s"] = sum(1 for x in xs if lo <= x < hi)
    out["< 0 s"] = sum(1 for x in xs if x < 0)
    return out


def scenario_schedule():
    results = {}
    for kind in selected_dbs("schedule"):
        db = Database(kind, "schedule")
        with Server(db, "schedule") as srv:
            others = [f"sco{i:03d}" for i in range(100)]
            srv.import_members(users=[user("sc-creator", role="creator", i=1), user("sc-member", i=2)]
                               + [user(o, role="creator", i=i) for i, o in enumerate(others)])
            base = datetime(2026, 1, 1, tzinfo=timezone.utc)
            # 10,000 streams of sc-creator evenly over 730 days (every 20th cancelled) + 10,000 of 100 other creators.
            psql(db.name, f"""
                INSERT INTO streams (id, title, description, workout_type, thumbnail, start_time, end_time, is_live, replay_url,
                                     agora_channel_id, viewer_count, reminder_sent, created_at, updated_at, creator_id,
                                     schedule_revision, cancelled_at)
                SELECT id, 'Session ' || i, 'Bring water', 'HIIT', 'https://cdn.fit.example.com/t.jpg',
                       TIMESTAMPTZ '{base.isoformat()}' + (i * INTERVAL '730 days' / 10000), NULL, false, NULL,
                       id, 0, true, now(), now(), creator, 0, CASE WHEN i % 20 = 0 THEN now() ELSE NULL END
                FROM (SELECT i, md5('sc' || i) AS id, 'sc-creator' AS creator FROM generate_series(0, 9999) i
                      UNION ALL
                      SELECT i, md5('oth' || i), 'sco' || lpad((i % 100)::text, 3, '0') FROM generate_series(0, 9999) i) x;
                ANALYZE streams;""")
            n_streams = int(psql(db.name, "SELECT COUNT(*) FROM streams WHERE creator_id = 'sc-creator'").strip())
            token = mint("sc-member")
            rng = random.Random(7)

            def window():
                start = base + timedelta(days=rng.uniform(0, 700))
                return f"/api/creator/sc-creator/scheduled-streams?startDate={iso(start)}&endDate={iso(start + timedelta(days=30))}&limit=200"

            probe = srv.call("GET", window(), token=token)
            log(f"[{kind}] sample window returned {len(probe['streams'])} streams")
            plan = explain_scheduled(db, srv, token, window())
            log(f"[{kind}] warm-up: 3 s at 200 req/s (not recorded)")
            asyncio.run(open_loop(srv.port, token, window, rate=200, seconds=3))
            time.sleep(5)
            # Closed-loop capacity of this endpoint (for the diagnosis): one fixed 30-day window, 8 connections.
            cap = run_wrk(f"http://{srv.base}{window()}", token=token, threads=1, connections=8, duration="10s", allow_errors=True)
            log(f"[{kind}] closed-loop capacity (wrk -t1 -c8 -d10s): {cap['rps']:.0f} req/s, p50 {cap['p50_ms']:.1f} ms, p99 {cap['p99_ms']:.1f} ms")
            time.sleep(5)
            log(f"[{kind}] open loop: 200 req/s for 30 s")
            snap0 = cpu_snapshot(srv.pid)
            run = asyncio.run(open_loop(srv.port, token, window, rate=200, seconds=30))
            run["cpu_seconds"] = cpu_delta(snap0, cpu_snapshot(srv.pid))
            # For reference: the same open loop at half the measured capacity, where the server keeps up.
            ref_rate = max(10, int(cap["rps"] * 0.5 / 10) * 10)
            time.sleep(15)
            log(f"[{kind}] reference open loop: {ref_rate} req/s for 30 s")
            ref = asyncio.run(open_loop(srv.port, token, window, rate=ref_rate, seconds=30))
        run["streams_of_creator"] = n_streams
        run["explain"] = plan
        run["capacity_wrk_c8"] = {k: v for k, v in cap.items() if k != "raw"}
        run["reference_run"] = ref
        results[kind] = run
        for name, rr in (("200 req/s", run), (f"{ref_rate} req/s", ref)):
            log(f"[{kind}] {name}: {rr['sent']} requests over {rr['elapsed']:.1f} s, statuses {rr['statuses']}; latency from intended send: "
                f"p50 {rr['latency_ms']['p50']:.2f} p99 {rr['latency_ms']['p99']:.2f} max {rr['latency_ms']['max']:.2f} ms")
    bad = {k: r["statuses"] for k, r in results.items() if set(r["statuses"]) != {200} or r["errors"]}
    if bad:
        raise ScenarioFailed(f"non-200 responses or errors under the 200 req/s open loop: {bad}", results)
    return results


async def open_loop(port, token, make_path, rate, seconds):
    """Open-loop load: request i is sent at start + i/rate whatever happened to the others. Latency is
    measured from the intended send time (so queueing in the client or server counts) and also from
    the actual send."""
    import aiohttp
    total = int(rate * seconds)
    paths = [make_path() for _ in range(total)]
    headers = {"Authorization": f"Bearer {token}"}
    lat_intended, lat_actual, statuses, lag, lat_ok = [], [], {}, [], []
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        loop = asyncio.get_running_loop()
        start = loop.time() + 0.2
        errors = []

        async def one(i):
            intended = start + i / rate
            now = loop.time()
            if intended > now:
                await asyncio.sleep(intended - now)
            sent = loop.time()
            lag.append(sent - intended)
            try:
                async with session.get(f"http://127.0.0.1:{port}{paths[i]}", headers=headers) as r:
                    await r.read()
                    status = r.status
                    statuses[status] = statuses.get(status, 0) + 1
            except Exception as e:  # noqa: BLE001 - counted and reported
                errors.append(repr(e))
                return
            done = loop.time()
            lat_intended.append((done - intended) * 1000)
            lat_actual.append((done - sent) * 1000)
            if status == 200:
                lat_ok.append((done - intended) * 1000)

        tasks = [asyncio.create_task(one(i)) for i in range(total)]
        await asyncio.gather(*tasks)
        elapsed = loop.time() - start
    if errors or set(statuses) != {200}:
        log(f"WARNING: open loop at {rate} req/s: statuses {statuses}, client errors {len(errors)} {errors[:3]}")
    li, la, lg = sorted(lat_intended), sorted(lat_actual), sorted(lag)
    li_ok = sorted(lat_ok)
    return {"rate": rate, "seconds": seconds, "sent": total, "elapsed": elapsed, "achieved_rps": total / elapsed, "statuses": statuses,
            "errors": len(errors), "error_samples": errors[:3],
            "latency_ok_ms": {"p50": percentile(li_ok, 50), "p99": percentile(li_ok, 99), "max": li_ok[-1]} if li_ok else None,
            "latency_ms": {"p50": percentile(li, 50), "p90": percentile(li, 90), "p99": percentile(li, 99), "max": li[-1]},
            "latency_from_actual_send_ms": {"p50": percentile(la, 50), "p99": percentile(la, 99), "max": la[-1]},
            "client_send_lag_ms": {"p50": percentile(lg, 50) * 1000, "p99": percentile(lg, 99) * 1000, "max": lg[-1] * 1000}}


def explain_scheduled(db, srv, token, path):
    """Logs every statement for one request, takes the streams query the server ran (with its bound
    parameters) and runs it under EXPLAIN (ANALYZE, BUFFERS)."""
    pglog = os.environ.get("PGLOG")
    size0 = os.path.getsize(pglog)
    psql("postgres", "ALTER SYSTEM SET log_min_duration_statement = 0")
    psql("postgres", "SELECT pg_reload_conf()")
    time.sleep(0.5)
    try:
        srv.call("GET", path, token=token)
        time.sleep(0.5)
    finally:
        psql("postgres", "ALTER SYSTEM RESET log_min_duration_statement")
        psql("postgres", "SELECT pg_reload_conf()")
    with open(pglog, encoding="utf-8", errors="replace") as f:
        f.seek(size0)
        lines = f.read().splitlines()
    stmt, params = None, []
    for i, line in enumerate(lines):
        m = re.search(r"(?:execute [^:]*|statement): (SELECT .*FROM \"streams\".*)$", line)
        if m:
            stmt = m.group(1)
            params = []
            if i + 1 < len(lines) and "parameters:" in lines[i + 1]:
                params = re.findall(r"\$(\d+) = (NULL|'(?:[^']|'')*')", lines[i + 1])
    if not stmt:
        raise BenchError("could not find the streams query in the PostgreSQL log")
    args = ", ".join(v for _, v in sorted(params, key=lambda p: int(p[0])))
    plan = psql(db.name, f"PREPARE q AS {stmt}; EXPLAIN (ANALYZE, BUFFERS) EXECUTE q({args});" if args
                else f"EXPLAIN (ANALYZE, BUFFERS) {stmt}", fmt="-At")
    uses_index = "streams_creator_start_idx" in plan
    log(f"[{db.kind}] EXPLAIN: streams_creator_start_idx used: {uses_index}")
    return {"statement": stmt, "parameters": params, "plan": plan, "uses_creator_start_index": uses_index}


def scenario_import():
    n = 10_000
    results = {}
    for kind in selected_dbs("import"):
        db = Database(kind, "import")
        with Server(db, "import") as srv:
            srv.import_members(users=[user("im-creator", role="creator", i=1)])
            rounds = []
            for r in range(3):
                ids = [f"im{r}-{i:05d}" for i in range(n)]
                body = json.dumps({"users": [user(u, i=k) for k, u in enumerate(ids)],
                                   "follows": [{"followerId": u, "followedId": "im-creator"} for u in ids]}).encode()
                t = time.time()
                resp = srv.call("POST", "/api/admin/import", body, token=ADMIN_KEY)
                secs = time.time() - t
                if resp.get("users") != n or resp.get("follows") != n:
                    raise BenchError(f"import answered {resp}")
                log(f"[{kind}] round {r + 1}: {n} users + {n} follows ({len(body) / 1e6:.1f} MB) in {secs:.2f} s")
                rounds.append({"seconds": secs, "body_bytes": len(body)})
            followers = int(db.query("SELECT COUNT(*) FROM follows WHERE followed_id = 'im-creator'")[0][0])
        if followers != 3 * n:
            raise BenchError(f"import: {followers} follows stored, expected {3 * n}")
        results[kind] = {"rounds": rounds, "median_seconds": median([r["seconds"] for r in rounds])}
    return results


# --- emailapi: live-now fan-out through the providers' HTTPS APIs vs SMTP, both with 50 ms added ------

EMAIL_API_KEY = "bench-email-api-key-0123456789"
HELPER_PIDS = os.path.join(TMP, "helper.pids")
# Batch sizes of the providers' clients (EmailProvider.maxBatch) — for the report only.
PROVIDER_MAX_BATCH = {"resend": 100, "postmark": 500, "sendgrid": 1}


class Helper:
    """A helper process this scenario starts and stops itself (fake email API, delayed SMTP sink);
    its pid also goes to $BENCH_TMP/helper.pids for run's trap."""

    def __init__(self, name, script, args, stat):
        self.name, self.script, self.args, self.stat = name, script, args, stat
        self.proc, self.port = None, None

    def start(self, timeout=15):
        self.out_path = os.path.join(TMP, f"{self.name}.out")
        self.out = open(self.out_path, "ab")
        self.proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "scripts/bench", self.script), *self.args],
                                     stdout=self.out, stderr=subprocess.STDOUT, start_new_session=True)
        with open(HELPER_PIDS, "a") as f:
            f.write(f"{self.proc.pid}\n")
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                break
            with open(self.out_path, "rb") as f:
                m = re.search(rb"READY (\d+)", f.read())
            if m and os.path.exists(self.stat):
                self.port = int(m.group(1))
                return self
            time.sleep(0.1)
        with open(self.out_path, "rb") as f:
            raise BenchError(f"{self.name} did not start: {f.read()[-2000:].decode('utf-8', 'replace')}")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc:
            self.out.close()

    def cpu_seconds(self):
        try:
            with open(f"/proc/{self.proc.pid}/stat") as f:
                parts = f.read().rsplit(")", 1)[1].split()
            return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")
        except OSError:
            return 0.0


def start_fake(name, latency_ms, rate_limit=0):
    stat = os.path.join(TMP, f"{name}.stat")
    calls = os.path.join(TMP, f"{name}.calls")
    h = Helper(name, "fake_email_api.py", ["--port", "0", "--stat-file", stat, "--call-log", calls, "--api-key", EMAIL_API_KEY,
                                          "--latency-ms", str(latency_ms), "--rate-limit", str(rate_limit)], stat)
    h.call_log = calls
    h.kind = "api"
    return h.start()


def start_delayed_sink(latency_ms):
    stat = os.path.join(TMP, "sink-delayed.stat")
    h = Helper("sink-delayed", "count_sink.py", ["--port", str(free_port()), "--stat-file", stat, "--connect-delay-ms", str(latency_ms)], stat)
    h.kind = "smtp"
    return h.start()


def read_fake(path):
    for _ in range(50):
        try:
            with open(path) as f:
                return json.load(f)
        except (FileNotFoundError, ValueError):
            time.sleep(0.02)
    raise BenchError(f"cannot read the fake's stat file {path}")


def read_calls(path, since, until):
    """The fake's call log lines with arrival in [since, until]: (arrival, answered, status, emails, path)."""
    out = []
    with open(path) as f:
        for line in f:
            p = line.split()
            if len(p) == 5 and since <= float(p[0]) <= until:
                out.append((float(p[0]), float(p[1]), int(p[2]), int(p[3]), p[4]))
    return out


def call_summary(calls, t0):
    """What the fake saw during one fan-out: calls, statuses, batch sizes, pacing."""
    if not calls:
        return {"calls": 0}
    statuses, sizes, per_window = {}, {}, {}
    for arrival, _, status, n, _ in calls:
        statuses[str(status)] = statuses.get(str(status), 0) + 1
        if 200 <= status < 300:
            sizes[n] = sizes.get(n, 0) + 1
        w = int(arrival)
        per_window[w] = per_window.get(w, 0) + 1
    events = sorted([(a, 1) for a, *_ in calls] + [(b, -1) for _, b, *_ in calls], key=lambda e: (e[0], e[1]))
    cur = peak = 0
    for _, d in events:
        cur += d
        peak = max(peak, cur)
    arrivals = sorted(c[0] for c in calls)
    gaps = sorted(b - a for a, b in zip(arrivals, arrivals[1:]))
    ok = [c for c in calls if 200 <= c[2] < 300 and c[3] > 0]
    window_hist = {}
    for v in per_window.values():
        window_hist[str(v)] = window_hist.get(str(v), 0) + 1
    return {"calls": len(calls), "statuses": statuses, "r429": statuses.get("429", 0),
            "share_429": statuses.get("429", 0) / len(calls),
            "batch_sizes": {str(k): v for k, v in sorted(sizes.items())},
            "mean_batch": (sum(c[3] for c in ok) / len(ok)) if ok else None,
            "max_batch": max((c[3] for c in ok), default=0), "max_concurrent_calls": peak,
            "first_call_after_api_s": arrivals[0] - t0, "last_call_after_api_s": arrivals[-1] - t0,
            "first_email_answered_after_api_s": (min(c[1] for c in ok) - t0) if ok else None,
            "calls_per_1s_window": window_hist, "max_calls_in_a_1s_window": max(per_window.values()),
            "call_gap_s": {"min": gaps[0], "p50": percentile(gaps, 50), "max": gaps[-1]} if gaps else None,
            "call_duration_ms_p50": percentile(sorted((b - a) * 1000 for a, b, *_ in calls), 50)}


def measure_fanout(srv, db, helper, creator, expected, label, timeout, stall=90):
    """Creates a live stream of `creator` (queues the live-now fan-out) and waits until the sink or
    fake (`helper`) has accepted `expected` more emails. Wall time: API call → last email accepted."""
    api = helper.kind == "api"
    read = (lambda: read_fake(helper.stat)) if api else (lambda: read_stat(helper.stat))
    count = (lambda s: s["emails"]) if api else (lambda s: s["count"])
    before = read()
    srv_cpu0, helper_cpu0, all0 = srv.cpu_seconds(), helper.cpu_seconds(), cpu_snapshot()
    t0 = time.time()
    stream = srv.create_stream(creator, live=True, title=f"Fan-out {label}")
    api_ms = (time.time() - t0) * 1000
    progress, last_print, last_n, last_change = [], 0.0, -1, time.time()
    while True:
        s = read()
        n = count(s) - count(before)
        now = time.time()
        if n != last_n:
            last_n, last_change = n, now
        if n >= expected:
            break
        if now - last_change > stall:
            raise BenchError(f"{label}: stuck at {n} of {expected} emails for {stall} s; server log:\n{srv.tail()}")
        if now - t0 > timeout:
            raise BenchError(f"{label}: {n} of {expected} emails within {timeout:.0f} s")
        if now - last_print >= 5:
            progress.append((round(now - t0, 1), n))
            log(f"  {label}: {n}/{expected} accepted")
            last_print = now
        time.sleep(0.1)
    time.sleep(0.3)  # the stat file is rewritten every 100 ms: this read belongs to the last email
    after = read()
    end = after["last_ts"]
    seconds = end - t0
    cpu = {"server": round(srv.cpu_seconds() - srv_cpu0, 2), ("fake" if api else "sink"): round(helper.cpu_seconds() - helper_cpu0, 2)}
    d = cpu_delta(all0, cpu_snapshot())
    cpu.update({"postgres": d["postgres"], "machine_busy": d["machine_busy"]})
    counts = wait_sent(db, f"stream_id = '{stream['id']}'", expected)
    span = db.query(f"SELECT {db.epoch('MIN(created_at)')}, {db.epoch('MAX(created_at)')}, {db.epoch('MIN(sent_at)')} "
                    f"FROM deliveries WHERE stream_id = '{stream['id']}'")[0]
    r = {"stream": stream["id"], "seconds": seconds, "per_second": expected / seconds, "delivered": count(after) - count(before),
         "distinct_new": after["distinct"] - before["distinct"], "create_api_ms": api_ms, "cpu_seconds": cpu, "deliveries": counts,
         "enqueue": {"first_row_after_api_s": float(span[0]) - t0, "insert_span_s": float(span[1]) - float(span[0]),
                     "first_sent_after_api_s": float(span[2]) - t0},
         "progress": progress}
    if api:
        r["fake"] = call_summary(read_calls(helper.call_log, t0, end + 1), t0)
        r["fake"]["auth_failures"] = after["auth_failures"] - before["auth_failures"]
        r["fake"]["rejected"] = after["rejected"] - before["rejected"]
        r["fake"]["replays"] = after["replays"] - before["replays"]
    else:
        r["smtp"] = {"connections_opened": (after.get("connections") or 0) - (before.get("connections") or 0),
                     "avg_bytes": (after["bytes"] - before["bytes"]) / max(1, r["delivered"]), "rejected": after["rejected"] - before["rejected"]}
    once = r["delivered"] == expected and r["distinct_new"] == expected and counts == {"sent": expected}
    r["all_delivered_once"] = once
    extra = (f"{r['fake']['calls']} calls, mean batch {r['fake']['mean_batch'] or 0:.1f}, 429s {r['fake']['r429']}, "
             f"max {r['fake']['max_concurrent_calls']} calls at once") if api else f"{r['smtp']['connections_opened']} new SMTP connections"
    log(f"  {label}: {expected} in {seconds:.2f} s ({r['per_second']:.0f}/s); {extra}; server CPU {cpu['server']:.1f} s")
    if not once:
        raise BenchError(f"{label}: not every member got exactly one email: accepted {r['delivered']}, distinct new {r['distinct_new']}, "
                         f"deliveries {counts}")
    return r


def api_env(provider, port, rate_limit=None):
    env = {"EMAIL_PROVIDER": provider, "EMAIL_SERVICE_API_KEY": EMAIL_API_KEY, "EMAIL_API_BASE_URL": f"http://127.0.0.1:{port}"}
    if rate_limit is not None:
        env["EMAIL_API_RATE_LIMIT"] = str(rate_limit)
    return env


API_DROP = ("EMAIL_TRANSPORT", "SMTP_HOST", "SMTP_PORT", "SMTP_SECURITY", "SMTP_MAX_CONNECTIONS")


def emailapi_compare(kind, n, rounds, transports, helpers, raised):
    """One server per transport (fresh database each, `rounds` audiences of n members, a 200-member
    warm-up fan-out), then `rounds` rounds alternating the transports."""
    servers = {}
    try:
        for t in transports:
            db = Database(kind, f"emailapi_{t}")
            if t == "smtp":
                srv = Server(db, f"emailapi-smtp-{n}", {"SMTP_PORT": str(helpers["smtp"].port)})
            else:
                srv = Server(db, f"emailapi-{t}-{n}", api_env(t, helpers[t].port, raised), drop_env=API_DROP)
            servers[t] = srv.start()
            # Addresses unique per size and round: the fakes and the sink live through every size, and
            # "distinct new recipients" must grow by exactly n in each round.
            for r in range(rounds):
                seed_audience(srv, f"ea-c{r}", n, f"ea{n}-{r}-")
            seed_audience(srv, "ea-warm", 200, f"eaw{n}-")
            measure_fanout(srv, db, helpers[t], "ea-warm", 200, f"{t} warm-up", timeout=300)
        runs = {t: [] for t in transports}
        for r in range(rounds):
            for t in transports:
                log(f"[{kind}] {n:,} members, round {r + 1}/{rounds}: {t}")
                runs[t].append(measure_fanout(servers[t], servers[t].db, helpers[t], f"ea-c{r}", n, f"{t} {n // 1000}k r{r + 1}",
                                              timeout=max(900, n / 20)))
                time.sleep(2)
        worker_in_flight = {t: servers[t].env.get("WORKER_MAX_IN_FLIGHT") for t in transports}
    finally:
        for srv in servers.values():
            srv.stop()
    out = {"members": n, "rounds": rounds, "runs": runs, "median": {}, "worker_max_in_flight_env": worker_in_flight}
    for t in transports:
        out["median"][t] = {"seconds": median([x["seconds"] for x in runs[t]]), "per_second": median([x["per_second"] for x in runs[t]])}
    smtp = out["median"]["smtp"]["per_second"]
    for t in transports:
        if t != "smtp":
            out["median"][t]["ratio_vs_smtp"] = out["median"][t]["per_second"] / smtp
            out["median"][t]["meets_5x"] = out["median"][t]["ratio_vs_smtp"] >= 5
    log(f"[{kind}] {n:,} members, medians: " + ", ".join(
        f"{t} {m['seconds']:.2f} s ({m['per_second']:.0f}/s{', ×%.2f vs smtp' % m['ratio_vs_smtp'] if 'ratio_vs_smtp' in m else ''})"
        for t, m in out["median"].items()))
    return out


def emailapi_resend_default(kind, n, latency_ms):
    """Resend at its default pace: the server's own pacing (EMAIL_API_RATE_LIMIT unset → 2/s) against a
    fake that enforces 2 requests per 1 s window."""
    fake = start_fake("fake-resend-limited", latency_ms, rate_limit=2)
    try:
        db = Database(kind, "emailapi_resend_default")
        with Server(db, f"emailapi-resend-default-{n}", api_env("resend", fake.port), drop_env=API_DROP) as srv:
            seed_audience(srv, "ea-c0", n, "ea0-")
            seed_audience(srv, "ea-warm", 200, "eaw-")
            measure_fanout(srv, db, fake, "ea-warm", 200, "resend default warm-up", timeout=300)
            time.sleep(3)  # a fresh rate-limit window and a full token bucket, as after any quiet moment
            log(f"[{kind}] Resend at its default 2 requests/s (server pacing + the fake's limit): {n:,} members")
            r = measure_fanout(srv, db, fake, "ea-c0", n, f"resend default {n // 1000}k", timeout=max(900, n / 20))
            r["worker_max_in_flight"] = int(srv.env.get("WORKER_MAX_IN_FLIGHT") or WORKER_IN_FLIGHT_DEFAULT["resend"])
    finally:
        fake.stop()
    floor = n / 200.0
    r.update({"members": n, "floor_seconds": floor, "ratio_to_floor": r["seconds"] / floor,
              "within_10pct": r["seconds"] <= floor * 1.10, "share_429": r["fake"]["share_429"],
              "under_1pct_429": r["fake"]["share_429"] < 0.01})
    log(f"[{kind}] resend default: {r['seconds']:.1f} s vs floor {floor:.0f} s (×{r['ratio_to_floor']:.3f}), "
        f"{r['fake']['r429']} of {r['fake']['calls']} calls answered 429 ({100 * r['share_429']:.2f} %)")
    return r


WORKER_IN_FLIGHT_DEFAULT = {"smtp": 64, "resend": 200, "postmark": 1000, "sendgrid": 64}  # AppConfig: min(1000, max(64, 2 × batch))


def scenario_emailapi():
    latency = float(os.environ.get("BENCH_EMAILAPI_LATENCY_MS", "50"))
    raised = os.environ.get("BENCH_EMAILAPI_RATE_LIMIT", "1000")
    sizes = [int(x) for x in os.environ.get("BENCH_EMAILAPI_SIZES", "10000,100000").split(",") if x.strip()]
    sendgrid_big = os.environ.get("BENCH_EMAILAPI_SENDGRID_100K") == "1"
    limited_n = int(os.environ.get("BENCH_EMAILAPI_LIMITED_MEMBERS", "10000"))
    results, errors = {}, []
    for kind in selected_dbs("emailapi"):
        helpers = {}
        res = {"latency_ms": latency, "raised_rate_limit": raised, "compare": [], "skipped": [], "errors": [],
               "api_concurrency": os.environ.get("BENCH_APP_EMAIL_API_CONCURRENCY")}
        results[kind] = res
        try:
            helpers["smtp"] = start_delayed_sink(latency)
            for p in ("resend", "postmark", "sendgrid"):
                helpers[p] = start_fake(f"fake-{p}", latency)
            for n in sizes:
                rounds = 3 if n <= 10_000 else 1
                transports = ["smtp", "resend", "postmark", "sendgrid"]
                if n > 10_000 and not sendgrid_big:
                    transports.remove("sendgrid")
                    res["skipped"].append(f"sendgrid at {n:,} members (BENCH_EMAILAPI_SENDGRID_100K=1 runs it)")
                try:
                    c = emailapi_compare(kind, n, rounds, transports, helpers, raised)
                    c["worker_max_in_flight"] = {t: int(c["worker_max_in_flight_env"].get(t) or WORKER_IN_FLIGHT_DEFAULT[t]) for t in transports}
                    res["compare"].append(c)
                except BenchError as e:
                    log(f"[{kind}] {n:,} members: FAILED: {e}")
                    res["errors"].append(f"{n:,} members: {e}")
        finally:
            for h in helpers.values():
                h.stop()
        try:
            res["resend_default"] = emailapi_resend_default(kind, limited_n, latency)
        except BenchError as e:
            log(f"[{kind}] resend at its default rate: FAILED: {e}")
            res["resend_default"] = None
            res["errors"].append(f"resend default rate: {e}")
        errors += [f"{kind}: {e}" for e in res["errors"]]
    if errors:
        raise ScenarioFailed("; ".join(errors), results)
    return results


# --- push100k: 100,000 live-now pushes through the fake APNs (HTTP/2, TLS) with 50 ms added ---------

def start_fake_push(latency_ms):
    """scripts/push/fake_push.py (hypercorn, HTTP/2 over TLS; verifies the provider JWT); returns
    (process, settings dict, directory)."""
    d = os.path.join(TMP, f"fake-push-{time.time_ns()}")
    out_path = d + ".out"
    out = open(out_path, "ab")
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "scripts/push/fake_push.py"), "--dir", d, "--latency-ms", str(latency_ms), "--no-log"],
                            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    with open(HELPER_PIDS, "a") as f:
        f.write(f"{proc.pid}\n")
    deadline = time.time() + 30
    while time.time() < deadline:
        if proc.poll() is not None:
            break
        with open(out_path, "rb") as f:
            if b"READY" in f.read() and os.path.exists(os.path.join(d, "settings.json")):
                with open(os.path.join(d, "settings.json")) as s:
                    return proc, json.load(s), d
        time.sleep(0.1)
    with open(out_path, "rb") as f:
        raise BenchError(f"the fake push server did not start: {f.read()[-2000:].decode('utf-8', 'replace')}")


def fake_push_stats(settings):
    with urllib.request.urlopen(settings["controlURL"] + "/_stats", timeout=10) as r:
        return json.loads(r.read())


def register_devices(srv, ids, threads=8):
    """POST /api/me/devices for every member (the real path), `threads` clients in parallel."""
    from concurrent.futures import ThreadPoolExecutor

    def one(uid):
        # "a1…": never one of the fake's magic prefixes (dead…, bad0…, e0e0…, 5030…, 4290… steer its errors).
        token = "a1" + hashlib.sha256(uid.encode()).hexdigest()[2:]
        srv.call("POST", "/api/me/devices", {"platform": "ios", "token": token}, token=mint(uid), expect=201)
    t = time.time()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, ids))
    return time.time() - t


def scenario_push100k():
    n = int(os.environ.get("BENCH_PUSH_MEMBERS", "100000"))
    latency = int(os.environ.get("BENCH_PUSH_LATENCY_MS", "50"))
    results = {}
    for kind in selected_dbs("push100k"):
        proc, fake, d = start_fake_push(latency)
        try:
            db = Database(kind, "push100k")
            with Server(db, "push100k-seed") as seeder:
                setup = seed_audience(seeder, "push-creator", n, "pm")
                devices_s = register_devices(seeder, [f"pm{i:06d}" for i in range(n)])
                log(f"[{kind}] registered {n} iOS devices in {devices_s:.1f} s")
            env = {"APNS_KEY_P8_PATH": os.path.join(d, "apns.p8"), "APNS_KEY_ID": fake["keyId"], "APNS_TEAM_ID": fake["teamId"],
                   "APNS_TOPIC": fake["topic"], "APNS_BASE_URL": fake["baseURL"], "PUSH_CA_FILE": os.path.join(d, "ca.pem")}
            # Email off (no relay): the fan-out still writes every member's email row, only pushes are sent.
            srv = Server(db, "push100k", env, drop_env=("EMAIL_TRANSPORT", "SMTP_HOST", "SMTP_PORT", "SMTP_SECURITY", "SMTP_MAX_CONNECTIONS"))
            with srv:
                idle_hwm = srv.proc_status("VmHWM")
                sampler = RSSSampler(srv)
                sampler.start()
                before = fake_push_stats(fake)["apns"]
                cpu0 = srv.cpu_seconds()
                t0 = time.time()
                try:
                    srv.create_stream("push-creator", live=True, title="Push 100k")
                    api_s = time.time() - t0
                    last, last_change = -1, time.time()
                    while True:
                        st = fake_push_stats(fake)
                        got = st["apns"] - before
                        if got != last:
                            last, last_change = got, time.time()
                        if got >= n:
                            break
                        if time.time() - last_change > 90:
                            raise BenchError(f"push100k: stuck at {got} of {n}; server log:\n{srv.tail()}")
                        time.sleep(0.2)
                    wall = time.time() - t0
                finally:
                    sampler.stop()
                cpu = srv.cpu_seconds() - cpu0
                hwm = srv.proc_status("VmHWM")
                st = fake_push_stats(fake)
                rows = db.query("SELECT status, COUNT(*) FROM push_deliveries GROUP BY status ORDER BY status")
            counts = {r[0]: int(r[1]) for r in rows}
            r = {"members": n, "latency_ms": latency, "seconds": wall, "per_second": n / wall, "create_api_s": api_s,
                 "server_cpu_seconds": cpu, "vmhwm_mb": hwm / 1024, "vmhwm_at_start_mb": idle_hwm / 1024,
                 "provider_jwts_seen": st["jwts"], "fake_accepted": st["apns"], "fake_errors": st["errors"],
                 "push_deliveries_by_status": counts, "setup_import_seconds": setup, "device_registration_seconds": devices_s,
                 "push_concurrency": os.environ.get("BENCH_APP_PUSH_CONCURRENCY") or "256 (default)"}
            r["all_sent_once"] = counts == {"sent": n} and st["apns"] - before == n
            log(f"[{kind}] {n} pushes in {wall:.1f} s ({n / wall:.0f}/s), VmHWM {hwm / 1024:.1f} MB, JWTs {st['jwts']}, deliveries {counts}")
            results[kind] = r
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=10)
    return results


# --- joinstorm: the class-start join storm — every token request a different account --------------

# wrk script: each request carries the next member's JWT (threads start at different offsets).
JOINSTORM_LUA = r"""
local tokens = {}
for line in io.lines(os.getenv("JOIN_TOKENS")) do tokens[#tokens + 1] = line end
local counter = 0
local ids = 0
function setup(thread) thread:set("offset", ids * 7919); ids = ids + 1 end
function init(args) counter = tonumber(wrk.thread:get("offset")) or 0 end
function request()
  counter = counter + 1
  return wrk.format("GET", nil, {["Authorization"] = "Bearer " .. tokens[(counter % #tokens) + 1]})
end
"""


def scenario_joinstorm():
    sizes = [int(x) for x in os.environ.get("BENCH_JOINSTORM_MEMBERS", "5000,20000").split(",") if x.strip()]
    results = {}
    script = os.path.join(TMP, "joinstorm.lua")
    with open(script, "w") as f:
        f.write(JOINSTORM_LUA)
    for kind in selected_dbs("joinstorm"):
        db = Database(kind, "joinstorm")
        res = {}
        # Production settings: rate limits on (the default), JSON logs at info.
        with Server(db, "joinstorm", {"RATE_LIMIT_ENABLED": "true", "LOG_LEVEL": "info"}) as srv:
            seed_audience(srv, "js-creator", max(sizes), "js")
            stream = srv.create_stream("js-creator", live=True)
            url = f"http://{srv.base}/api/streams/{stream['id']}/token?role=subscriber"
            health = f"http://{srv.base}/health"
            for n in sizes:
                tokens = os.path.join(TMP, f"join-tokens-{n}.txt")
                with open(tokens, "w") as f:
                    f.write("\n".join(mint(f"js{i:06d}") for i in range(n)) + "\n")
                env = {"JOIN_TOKENS": tokens}
                run_wrk(health, duration="3s")
                run_wrk(url, duration="3s", script=script, env=env, allow_errors=True)
                rounds = []
                for r in range(3):
                    # /health twice: plain wrk, and driven by the same Lua client as the token run (a new
                    # Authorization header per request, which /health ignores) — wrk shares the 2 cores,
                    # and its per-request Lua costs CPU the server then does not get.
                    h = run_wrk(health, srv=srv)
                    hs = run_wrk(health, script=script, env=env, srv=srv)
                    t = run_wrk(url, script=script, env=env, allow_errors=True, srv=srv)
                    log(f"[{kind}] {n} members round {r + 1}: health {h['rps']:.0f} req/s p99 {h['p99_ms']:.2f} ms "
                        f"(same client: {hs['rps']:.0f} req/s p99 {hs['p99_ms']:.2f} ms); "
                        f"token {t['rps']:.0f} req/s p99 {t['p99_ms']:.2f} ms, non-2xx {t['non2xx']}, socket errors {t['socket_errors']}; "
                        f"server CPU/request health {h['server_cpu_us_per_request']:.0f} µs, token {t['server_cpu_us_per_request']:.0f} µs; "
                        f"wrk CPU health {h['client_cpu_s']:.1f} s / same client {hs['client_cpu_s']:.1f} s / token {t['client_cpu_s']:.1f} s")
                    for x in (h, hs, t):
                        x.pop("raw", None)
                    rounds.append({"health": h, "health_same_client": hs, "token": t})
                med = {f"{w}_{m}": median([r[w][m] for r in rounds]) for w in ("health", "health_same_client", "token")
                       for m in ("rps", "p99_ms", "server_cpu_us_per_request", "client_cpu_s")}
                med["ratio_rps"] = med["token_rps"] / med["health_rps"]
                med["ratio_p99"] = med["token_p99_ms"] / med["health_p99_ms"]
                med["ratio_rps_same_client"] = med["token_rps"] / med["health_same_client_rps"]
                med["ratio_p99_same_client"] = med["token_p99_ms"] / med["health_same_client_p99_ms"]
                errors = sum(r["token"]["non2xx"] + sum(r["token"]["socket_errors"]) for r in rounds)
                res[str(n)] = {"rounds": rounds, "median": med, "errors": errors,
                               "met": errors == 0 and med["ratio_rps"] >= 0.5 and med["ratio_p99"] <= 3,
                               "met_same_client": errors == 0 and med["ratio_rps_same_client"] >= 0.5 and med["ratio_p99_same_client"] <= 3}
                log(f"[{kind}] {n} members: token/health {med['ratio_rps']:.2f} (rps), p99 ×{med['ratio_p99']:.2f}; "
                    f"vs the same client {med['ratio_rps_same_client']:.2f}, p99 ×{med['ratio_p99_same_client']:.2f}; errors {errors}")
        results[kind] = res
    return results


# --- ncsburst: Agora NCS join events for 5,000 viewers in ~30 s, 10 % duplicates, shuffled -------------

NCS_SECRET = "bench-ncs-secret-0123456789"


async def open_loop_posts(port, bodies, rate, headers_for):
    """POSTs `bodies` open loop at `rate`/s; latencies from the intended send time."""
    import aiohttp
    lat, statuses, errors = [], {}, []
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:
        loop = asyncio.get_running_loop()
        start = loop.time() + 0.2

        async def one(i, body):
            intended = start + i / rate
            now = loop.time()
            if intended > now:
                await asyncio.sleep(intended - now)
            try:
                if body is None:
                    async with session.get(f"http://127.0.0.1:{port}/health") as r:
                        await r.read()
                        st = r.status
                else:
                    async with session.post(f"http://127.0.0.1:{port}/api/webhooks/agora", data=body, headers=headers_for(body)) as r:
                        await r.read()
                        st = r.status
            except Exception as e:  # noqa: BLE001
                errors.append(repr(e))
                return
            statuses[st] = statuses.get(st, 0) + 1
            lat.append((loop.time() - intended) * 1000)

        await asyncio.gather(*[asyncio.create_task(one(i, b)) for i, b in enumerate(bodies)])
        elapsed = loop.time() - start
    lat.sort()
    return {"sent": len(bodies), "elapsed": elapsed, "statuses": {str(k): v for k, v in statuses.items()}, "errors": len(errors),
            "latency_ms": {"p50": percentile(lat, 50), "p99": percentile(lat, 99), "max": lat[-1]} if lat else None}


def dirty_kilobytes():
    """The kernel's dirty page cache waiting for writeback (/proc/meminfo), in kB."""
    with open("/proc/meminfo") as f:
        return next((int(ln.split()[1]) for ln in f if ln.startswith("Dirty:")), 0)


def scenario_ncsburst():
    import hmac
    n = int(os.environ.get("BENCH_NCS_VIEWERS", "5000"))
    seconds = float(os.environ.get("BENCH_NCS_SECONDS", "30"))
    rounds = int(os.environ.get("BENCH_NCS_ROUNDS", "3"))
    results = {}
    for kind in selected_dbs("ncsburst"):
        db = Database(kind, "ncsburst")
        per_round = []
        with Server(db, "ncsburst", {"AGORA_NCS_SECRET": NCS_SECRET, "RATE_LIMIT_ENABLED": "true", "LOG_LEVEL": "info"}) as srv:
            srv.import_members(users=[user("ncs-creator", role="creator", i=1), user("ncs-member", i=2)])
            for rnd in range(rounds):
                # Each round its own live stream (a fresh channel); the burst and /health alternate which goes first.
                stream = srv.create_stream("ncs-creator", live=True)
                now_ms = int(time.time() * 1000)
                events = [json.dumps({"noticeId": f"ncs-{stream['id'][:8]}-{i}", "productId": 1, "eventType": 105, "notifyMs": now_ms + i,
                                      "payload": {"channelName": stream["id"], "uid": 200000 + i, "clientSeq": now_ms + i, "ts": now_ms // 1000,
                                                  "platform": 1, "clientType": 0}}, separators=(",", ":")).encode() for i in range(n)]
                rng = random.Random(7 + rnd)
                burst = events + rng.sample(events, n // 10)   # Agora retries: 10 % arrive twice
                rng.shuffle(burst)
                rate = len(burst) / seconds
                sign = lambda body: {"Agora-Signature-V2": hmac.new(NCS_SECRET.encode(), body, "sha256").hexdigest(), "Content-Type": "application/json"}
                # Writeback of what this machine wrote before (the release build, the last round's data) stalls
                # SQLite's commit fsyncs for tens of ms (800 MB written just before a round: p99 326 ms): flushed first.
                dirty_kb = dirty_kilobytes()
                os.sync()
                log(f"[{kind}] round {rnd + 1}: {len(burst)} NCS events ({n} viewers + {n // 10} duplicates) at {rate:.0f}/s "
                    f"(flushed {dirty_kb} kB of dirty pages first)")
                if rnd % 2 == 1:
                    health = asyncio.run(open_loop_posts(srv.port, [None] * len(burst), rate, lambda b: {}))
                since = srv.log_offset()
                hooks = asyncio.run(open_loop_posts(srv.port, burst, rate, sign))
                time.sleep(5)
                # The server's own time per request (its request log): what the server adds, without the client's side.
                inside = sorted(srv.request_times(since, "/api/webhooks/agora"))
                pct = lambda q: round(percentile(inside, q), 2) if inside else None
                server_side = {"requests": len(inside), "p50": pct(50), "p99": pct(99),
                               "max": inside[-1] if inside else None, "over_4ms": sum(1 for x in inside if x > 4)}
                details = srv.call("GET", f"/api/streams/{stream['id']}", token=mint("ncs-member"))["stream"]
                applied = int(db.query(f"SELECT COUNT(*) FROM webhook_notices WHERE notice_id LIKE 'ncs-{stream['id'][:8]}-%'")[0][0])
                if rnd % 2 == 0:
                    health = asyncio.run(open_loop_posts(srv.port, [None] * len(burst), rate, lambda b: {}))
                ratio = hooks["latency_ms"]["p99"] / health["latency_ms"]["p99"]
                exact = details["viewerCount"] == n and hooks["statuses"] == {"200": len(burst)} and applied == n
                per_round.append({"dirty_kb_flushed_before": dirty_kb, "webhooks_in_server_ms": server_side,
                                  "events_sent": len(burst), "rate_per_s": rate, "webhooks": hooks, "health": health, "ratio_p99": ratio,
                                  "viewer_count_after": details["viewerCount"], "notices_recorded_after_5s": applied, "exact": exact})
                log(f"[{kind}] round {rnd + 1}: webhook p99 {hooks['latency_ms']['p99']:.1f} ms vs health p99 {health['latency_ms']['p99']:.1f} ms "
                    f"(×{ratio:.2f}); viewerCount {details['viewerCount']} of {n}; statuses {hooks['statuses']}; "
                    f"in the server: webhook p50 {server_side['p50']} / p99 {server_side['p99']} ms, {server_side['over_4ms']} over 4 ms")
        med = lambda xs: statistics.median(xs)
        lat = lambda key, q: med([r[key]["latency_ms"][q] for r in per_round])
        worst = next((r for r in per_round if not r["exact"]), per_round[0])
        ratio = med([r["ratio_p99"] for r in per_round])
        r = {"viewers": n, "rounds": per_round, "events_sent": per_round[0]["events_sent"], "rate_per_s": per_round[0]["rate_per_s"],
             "webhooks": {"latency_ms": {"p50": lat("webhooks", "p50"), "p99": lat("webhooks", "p99")}, "statuses": worst["webhooks"]["statuses"]},
             "health": {"latency_ms": {"p50": lat("health", "p50"), "p99": lat("health", "p99")}},
             "ratio_p99": ratio, "viewer_count_after": worst["viewer_count_after"], "notices_recorded_after_5s": worst["notices_recorded_after_5s"],
             "met": ratio <= 3 and all(x["exact"] for x in per_round)}
        log(f"[{kind}] medians of {rounds}: webhook p99 {r['webhooks']['latency_ms']['p99']:.1f} ms vs health p99 "
            f"{r['health']['latency_ms']['p99']:.1f} ms; median ratio ×{ratio:.2f}; every round exact: {all(x['exact'] for x in per_round)}")
        results[kind] = r
    return results


# --- Profiling (diagnosis): perf on the server under one scenario's load ------------------------------

def perf_profile(srv, name, seconds=8):
    """`perf record -g` on the server process for `seconds`, then flat (self) and inclusive (children) reports, demangled."""
    outdir = os.path.join(ROOT, "benchmarks", "profiles")
    os.makedirs(outdir, exist_ok=True)
    data = os.path.join(TMP, f"perf-{name}.data")
    subprocess.run(["perf", "record", "-F", "499", "-g", "-p", str(srv.pid), "-o", data, "--", "sleep", str(seconds)],
                   capture_output=True, check=True)
    reports = []
    for title, extra in (("self time (flat), by symbol", ["--no-children"]), ("inclusive time (children), by symbol", ["--children"])):
        rep_ = subprocess.run(["perf", "report", "-i", data, "--stdio", "--sort", "symbol", "-g", "none", "--percent-limit", "0.7", *extra],
                              capture_output=True, text=True)
        lines = [ln for ln in rep_.stdout.splitlines() if ln.strip() and not ln.startswith("#")][:45]
        dem = subprocess.run(["swift-demangle", "--simplified"], input="\n".join(lines), capture_output=True, text=True).stdout
        dem = "\n".join(ln[:220] for ln in dem.splitlines())
        reports.append(f"## {title}\n\n```\n{dem}\n```\n")
    # App-level frames (inclusive), wherever they rank: where the time goes in our own code and the libraries' entry points.
    full = subprocess.run(["perf", "report", "-i", data, "--stdio", "--sort", "symbol", "-g", "none", "--children", "--percent-limit", "0.1"],
                          capture_output=True, text=True).stdout
    dem = subprocess.run(["swift-demangle", "--simplified"], input=full, capture_output=True, text=True).stdout
    pattern = re.compile(r"(JWT|RTCTokenBuilder|AccessToken|Moderation|TokenController|StreamController|UserAuthMiddleware|AdminAuth|"
                         r"Fields\.output|Fields\.input|Fields\.properties|Model\.find|QueryBuilder\.(all|first|count|run|aggregate)|SQLDatabase\.serialize|"
                         r"SQLQueryConverter|JSONEncoder\.encode<|JSONDecoder\.decode<|encodeResponse|DeliverySender\.(compose|process|load)|"
                         r"EmailTemplates|TimeFormatting|MailMessage\.render|SMTPClient\.send|SMTPSession\.deliver|Lease\.claim|Worker\.|FanOut\.run|"
                         r"UnsubscribeTokens|CalendarEvent|GoogleCalendar|DotStuffing|QuotedPrintable|Recipients\.|deflate|compress2|HMAC|SHA256)")
    picked, seen = [], set()
    for ln in dem.splitlines():
        if ln.startswith("#") or not pattern.search(ln) or "partial apply" in ln or "thunk" in ln:
            continue
        key = ln.split("]", 1)[-1].strip()[:120]
        if key not in seen:
            seen.add(key)
            picked.append(ln.strip()[:200])
    reports.append("## selected frames (inclusive %, self %), app code and library entry points\n\n```\n" + "\n".join(picked[:80]) + "\n```\n")
    path = os.path.join(outdir, f"{name}{'.' + LABEL if LABEL else ''}.md")
    with open(path, "w") as f:
        f.write(f"# perf profile: {name}\n\nBinary: {os.environ.get('BENCH_SOURCE_DESC', 'working tree')}. "
                f"`perf record -F 499 -g -p <server pid> -- sleep {seconds}` under load, `perf report --sort symbol` (top entries, ≥ 0.7%).\n\n"
                + "\n".join(reports))
    log(f"profile written to {path}")
    return path


def profile(args):
    target, kind = (args + ["token", "postgres"])[:2] if args else ("token", "postgres")
    db = Database(kind, f"profile_{target}")
    with Server(db, f"profile-{target}") as srv:
        if target == "token":
            srv.import_members(users=[user("tk-creator", role="creator", i=1), user("tk-member", i=2)])
            stream = srv.create_stream("tk-creator", live=True)
            token = mint("tk-member")
            url = f"http://{srv.base}/api/streams/{stream['id']}/token?role=subscriber"
            load = subprocess.Popen(["wrk", "-t2", "-c64", "-d14s", "-H", f"Authorization: Bearer {token}", url], stdout=subprocess.PIPE, text=True)
            time.sleep(3)
            perf_profile(srv, f"token-{kind}")
            print(load.communicate()[0])
        elif target == "schedule":
            srv.import_members(users=[user("sc-creator", role="creator", i=1), user("sc-member", i=2)])
            psql(db.name, """INSERT INTO streams (id, title, description, workout_type, thumbnail, start_time, is_live, agora_channel_id,
                             viewer_count, reminder_sent, created_at, updated_at, creator_id, schedule_revision)
                             SELECT md5('sc' || i), 'Session ' || i, 'Bring water', 'HIIT', 'https://cdn.fit.example.com/t.jpg',
                                    TIMESTAMPTZ '2026-01-01T00:00:00Z' + (i * INTERVAL '730 days' / 10000), false, md5('sc' || i), 0, true,
                                    now(), now(), 'sc-creator', 0 FROM generate_series(0, 9999) i; ANALYZE streams;""")
            url = f"http://{srv.base}/api/creator/sc-creator/scheduled-streams?startDate=2026-03-01T00:00:00Z&endDate=2026-03-31T00:00:00Z&limit=200"
            load = subprocess.Popen(["wrk", "-t1", "-c8", "-d14s", "-H", f"Authorization: Bearer {mint('sc-member')}", url], stdout=subprocess.PIPE, text=True)
            time.sleep(3)
            perf_profile(srv, f"schedule-{kind}")
            print(load.communicate()[0])
        elif target == "fanout":
            seed_audience(srv, "fo-creator", 10_000, "fo")
            before = read_stat(SINK_STAT)
            srv.create_stream("fo-creator", live=True)
            time.sleep(1)
            perf_profile(srv, f"fanout-{kind}", seconds=6)
            wait_for_count(SINK_STAT, before["count"] + 10_000, timeout=600)
        elif target == "joinstorm":
            # The join storm's token path (every request a different member), with its production settings.
            srv.stop()
            srv = Server(db, "profile-joinstorm", {"RATE_LIMIT_ENABLED": "true", "LOG_LEVEL": "info"})
            srv.start()
            n = int(os.environ.get("BENCH_JOINSTORM_MEMBERS", "5000").split(",")[0])
            seed_audience(srv, "js-creator", n, "js")
            stream = srv.create_stream("js-creator", live=True)
            script = os.path.join(TMP, "joinstorm.lua")
            with open(script, "w") as f:
                f.write(JOINSTORM_LUA)
            tokens = os.path.join(TMP, f"join-tokens-{n}.txt")
            with open(tokens, "w") as f:
                f.write("\n".join(mint(f"js{i:06d}") for i in range(n)) + "\n")
            url = f"http://{srv.base}/api/streams/{stream['id']}/token?role=subscriber"
            load = subprocess.Popen(["wrk", "-t2", "-c64", "-d14s", "-s", script, url], stdout=subprocess.PIPE, text=True,
                                    env={**os.environ, "JOIN_TOKENS": tokens})
            time.sleep(3)
            perf_profile(srv, f"joinstorm-{kind}")
            print(load.communicate()[0])
            srv.stop()
        else:
            raise BenchError("profile targets: token, schedule, fanout, joinstorm")
    return 0


SCENARIOS = {"token": scenario_token, "fanout": scenario_fanout, "fanout100k": scenario_fanout100k,
             "reminders": scenario_reminders, "schedule": scenario_schedule, "import": scenario_import,
             "emailapi": scenario_emailapi, "push100k": scenario_push100k, "joinstorm": scenario_joinstorm, "ncsburst": scenario_ncsburst}


def main(argv):
    if argv[:1] == ["profile"]:
        return profile(argv[1:])
    names = argv or ALL_SCENARIOS
    for n in names:
        if n not in SCENARIOS:
            raise SystemExit(f"unknown scenario {n!r}; choose from {', '.join(ALL_SCENARIOS)}")
    machine = report.machine_info(ROOT)
    report.write_machine(ROOT, machine)
    failed = []
    for n in names:
        log(f"=== scenario {n} (databases: {', '.join(selected_dbs(n)) or 'none selected'}) ===")
        if not selected_dbs(n):
            log(f"skipping {n}: BENCH_DB={os.environ.get('BENCH_DB')} excludes every database it supports")
            continue
        started = time.time()
        failure = None
        noise = ForeignCPU(int(os.environ.get("BENCH_RUN_PID", os.getppid())))
        noise.start()
        try:
            data = SCENARIOS[n]()
        except ScenarioFailed as e:
            log(f"scenario {n} FAILED (numbers kept): {e}")
            failed.append(n)
            data, failure = e.data, str(e)
        except BenchError as e:
            log(f"scenario {n} FAILED: {e}")
            failed.append(n)
            noise.stop()
            continue
        noise_info = noise.stop()
        log(f"other processes used {noise_info['foreign_cpu_seconds']} CPU-s during {n} ({time.time() - started:.0f} s wall): {noise_info['top']}")
        record = {"scenario": n, "label": LABEL or None, "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                  "wall_seconds": time.time() - started, "machine": machine, "command": report.command_for(n), "results": data,
                  "failure": failure, "noise": noise_info}
        report.save(ROOT, record)
        log(f"scenario {n} done in {time.time() - started:.0f} s")
    report.assemble(ROOT)
    if failed:
        log(f"FAILED: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
