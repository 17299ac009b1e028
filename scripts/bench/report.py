"""Results and BENCHMARKS.md.

Every scenario run is saved as benchmarks/results/<scenario>[.<label>].json (all raw numbers) and
.md (rendered). BENCHMARKS.md is assembled from those files (every label, oldest first, with a
comparison table when a scenario has several labels) plus the hand-written notes in
benchmarks/notes/<scenario>.md, so re-running one scenario replaces only its own section.

`python scripts/bench/report.py` re-assembles BENCHMARKS.md without running anything.
"""
import glob
import json
import os
import platform
import re
import subprocess
import sys

ORDER = ["token", "fanout", "fanout100k", "reminders", "schedule", "import", "emailapi", "push100k", "joinstorm", "ncsburst"]
TITLES = {
    "token": "1. `token` — Agora token endpoint vs `/health`",
    "fanout": "2. `fanout` — live-now fan-out to 10,000 followers vs an smtplib blaster",
    "fanout100k": "3. `fanout100k` — 100,000 recipients, peak RSS",
    "reminders": "4. `reminders` — lateness of 200 streams' reminders",
    "schedule": "5. `schedule` — a creator's schedule, 10,000 streams, open loop 200 req/s",
    "import": "6. `import` — admin import of 10,000 users + 10,000 follows",
    "emailapi": "7. `emailapi` — live-now fan-out through Resend / Postmark / SendGrid HTTPS APIs vs SMTP, 50 ms added",
    "push100k": "8. `push100k` — 100,000 live-now pushes through a fake APNs (HTTP/2 over TLS), 50 ms added",
    "joinstorm": "9. `joinstorm` — class-start join storm: every token request a different member, production settings",
    "ncsburst": "10. `ncsburst` — Agora NCS join events for 5,000 viewers in ~30 s, 10 % duplicates, shuffled",
}
TARGETS = {
    "joinstorm": "0 errors; token req/s ≥ 0.5 × /health; token p99 ≤ 3 × /health p99 (wrk, same connections and duration; medians of 3)",
    "ncsburst": "every event acknowledged, webhook p99 ≤ 3 × /health p99 at the same open-loop rate, viewer count exact, no backlog 5 s after",
    "push100k": "100,000 pushes, each once, in < 60 s wall; server peak RSS (VmHWM) < 200 MB",
    "token": "token req/s ÷ health req/s ≥ 0.5 (medians of 3 rounds, each database)",
    "fanout": "issue 22: server (+ PostgreSQL) CPU per email ÷ blaster CPU per message ≤ 1.0 (SQLite) / 1.5 (PostgreSQL) and emails/s ≥ 0.8 / 0.6 × the blaster's (runs before issue 22: emails/s ≥ 0.8 × blaster); medians of 3 alternating rounds",
    "fanout100k": "every recipient delivered exactly once; server peak RSS (VmHWM) < 200 MB",
    "reminders": "max (sent − due) ≤ 5 s",
    "schedule": "p99 < 20 ms at 200 req/s open loop; the (creator_id, start_time) index is used",
    "import": "none (report); the README says \"about a second\"",
    "emailapi": ("batch path (Resend, Postmark) ≥ 5 × the SMTP path's emails/s in the same run, rate limit raised; "
                 "Resend at its default 2 requests/s: wall time within 10 % of the floor (recipients ÷ 200 s) and < 1 % of calls answered 429"),
}


def sh(cmd, cwd=None):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True, cwd=cwd, timeout=30).stdout.strip()
    except Exception:  # noqa: BLE001
        return ""


def machine_info(root):
    mem_kb = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    model = sh("lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -1")
    dirty = sh("git status --porcelain -- Sources Package.swift | wc -l", cwd=root)
    return {
        "nproc": sh("nproc"), "cpu_model": model, "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(), "swift": sh("/opt/swift/usr/bin/swift --version 2>&1 | head -1"),
        "git_commit": sh("git rev-parse HEAD", cwd=root), "git_subject": sh("git log -1 --format=%s", cwd=root),
        "sources_modified_files": int(dirty or 0),
        "postgres": sh("/usr/lib/postgresql/15/bin/postgres --version"), "wrk": sh("wrk --version 2>&1 | head -1"),
        "python": platform.python_version(), "binary": ".build-release/release/App (swift build -c release)",
        "built_from": os.environ.get("BENCH_SOURCE_DESC", "working tree"),
    }


def command_for(scenario):
    db = os.environ.get("BENCH_DB", "both")
    label = os.environ.get("BENCH_LABEL")
    ref = os.environ.get("BENCH_REF")
    prefix = (f"BENCH_REF={ref} " if ref else "") + (f"BENCH_LABEL={label} " if label else "") + f"BENCH_DB={db} "
    prefix += "".join(f"{k}={v} " for k, v in sorted(os.environ.items()) if k.startswith(("BENCH_APP_", "BENCH_SMTP_", "BENCH_EMAILAPI_")))
    return f"{prefix}scripts/bench/run {scenario}"


def results_dir(root):
    return os.path.join(root, "benchmarks", "results")


def write_machine(root, machine):
    os.makedirs(results_dir(root), exist_ok=True)
    with open(os.path.join(results_dir(root), "machine.json"), "w") as f:
        json.dump(machine, f, indent=2)


def save(root, record):
    os.makedirs(results_dir(root), exist_ok=True)
    base = record["scenario"] + (f".{record['label']}" if record.get("label") else "")
    with open(os.path.join(results_dir(root), base + ".json"), "w") as f:
        json.dump(record, f, indent=2, default=str)
    with open(os.path.join(results_dir(root), base + ".md"), "w") as f:
        f.write(render(record))


# --- Rendering -----------------------------------------------------------------------------------------

def f1(x, nd=1):
    return "—" if x is None else f"{x:,.{nd}f}"


def met(ok):
    return "**met**" if ok else "**NOT met**"


def render(rec):
    s, res, m = rec["scenario"], rec["results"], rec["machine"]
    out = [f"#### Run{' `' + rec['label'] + '`' if rec.get('label') else ''}: {rec['finished_at']}",
           "",
           f"Binary built from the {m.get('built_from', 'working tree')}; "
           f"{m['nproc']} × {m['cpu_model']}, {m['memory_gib']} GiB; {m['swift']}; wall time {rec['wall_seconds']:.0f} s.",
           "", f"Command: `{rec['command']}`", ""]
    if rec.get("noise"):
        nz = rec["noise"]
        out += [f"Machine noise: processes outside this benchmark used **{nz['foreign_cpu_seconds']} CPU-seconds** during the "
                f"{rec['wall_seconds']:.0f} s run (of {2 * rec['wall_seconds']:.0f} available){': ' + ', '.join(f'{c} {v} s' for c, v in nz['top']) if nz['top'] else ''}; "
                f"load average at start {' / '.join(nz['loadavg_at_start'])}.", ""]
    if rec.get("failure"):
        out += [f"**The run failed its checks** (the numbers below were kept): {rec['failure']}", ""]
    out += globals()[f"render_{s}"](res)
    return "\n".join(out) + "\n"


def render_token(res):
    out = []
    for db, r in res.items():
        out += [f"**{db}** — `GET {r['path']}` vs `GET /health`, `wrk -t2 -c64 -d10s --latency`, alternating, 3 rounds (after a 3 s warm-up of each):", "",
                "| round | health req/s | health p50 ms | health p99 ms | token req/s | token p50 ms | token p99 ms |",
                "|---|---:|---:|---:|---:|---:|---:|"]
        for i, rd in enumerate(r["rounds"], 1):
            h, t = rd["health"], rd["token"]
            out.append(f"| {i} | {f1(h['rps'])} | {f1(h['p50_ms'], 2)} | {f1(h['p99_ms'], 2)} | {f1(t['rps'])} | {f1(t['p50_ms'], 2)} | {f1(t['p99_ms'], 2)} |")
        md = r["median"]
        out += [f"| **median** | **{f1(md['health_rps'])}** | {f1(md['health_p50_ms'], 2)} | {f1(md['health_p99_ms'], 2)} | **{f1(md['token_rps'])}** | {f1(md['token_p50_ms'], 2)} | {f1(md['token_p99_ms'], 2)} |",
                ""]
        cpus = [(rd["health"].get("cpu_seconds"), rd["token"].get("cpu_seconds")) for rd in r["rounds"]]
        if all(h and t for h, t in cpus):
            def per_req(c, rd):
                return 1e6 * c["server"] / max(1, rd["requests"])
            out += ["CPU seconds during each 10 s run (server / PostgreSQL / whole machine; 20 s = both cores busy) and server CPU per request: "
                    + "; ".join(f"round {i}: health {f1(h['server'])} / {f1(h['postgres'])} / {f1(h['machine_busy'])} ({per_req(h, rd['health']):.0f} µs/req), "
                                f"token {f1(t['server'])} / {f1(t['postgres'])} / {f1(t['machine_busy'])} ({per_req(t, rd['token']):.0f} µs/req)"
                                for i, ((h, t), rd) in enumerate(zip(cpus, r["rounds"]), 1)) + ".", ""]
        out += [f"Ratio token/health = **{md['ratio']:.2f}** (target ≥ 0.5): {met(md['ratio'] >= 0.5)}. "
                f"Non-2xx responses: {sum(rd[w]['non2xx'] for rd in r['rounds'] for w in ('health', 'token'))}; "
                f"socket errors (connect/read/write/timeout, summed): {[sum(x) for x in zip(*[rd[w]['socket_errors'] for rd in r['rounds'] for w in ('health', 'token')])]}.", ""]
    return out


# Issue 22's fan-out targets per database: (CPU per email ÷ blaster CPU per message ≤, throughput ratio ≥).
FANOUT_GOALS = {"sqlite": (1.0, 0.8), "postgres": (1.5, 0.6)}


def render_fanout(res):
    out = []
    for db, r in res.items():
        out += [f"**{db}** — server: `POST /api/creator/streams/create` (`isScheduled:false`) → last message accepted by the counting sink; "
                f"blaster: `scripts/bench/blaster.py`, {r['rounds'][0]['blaster']['connections']} smtplib connections (the server's SMTP pool size), "
                f"~{r['rounds'][0]['blaster']['size']} B multipart messages (the server's average). Alternating, after a 200-recipient warm-up fan-out:", "",
                "| round | server s | server emails/s | CPU s: server / PostgreSQL / sink / machine | avg bytes | blaster s | blaster msgs/s | CPU s: sink / machine |",
                "|---|---:|---:|---|---:|---:|---:|---|"]
        for i, rd in enumerate(r["rounds"], 1):
            sv, b = rd["server"], rd["blaster"]
            c, bc = sv.get("cpu_seconds", {}), b.get("cpu_seconds", {})
            cpu = " / ".join(f1(c.get(k)) for k in ("server", "postgres", "sink", "machine_busy")) if c else f1(sv["server_cpu_seconds"])
            bcpu = " / ".join(f1(bc.get(k)) for k in ("sink", "machine_busy")) if bc else "—"
            out.append(f"| {i} | {f1(sv['seconds'], 2)} | {f1(sv['per_second'])} | {cpu} | {f1(sv['avg_bytes'], 0)} | {f1(b['seconds'], 2)} | {f1(b['per_second'])} | {bcpu} |")
        md = r["median"]
        out += [f"| **median** | {f1(md['server_seconds'], 2)} | **{f1(md['server_per_second'])}** | | | {f1(md['blaster_seconds'], 2)} | **{f1(md['blaster_per_second'])}** | |", "",
                "CPU seconds are measured over each run (machine = busy time of both cores together; 2 cores × run time is the ceiling).", ""]
        if "cpu_ratio" in md:
            cpu_goal, tput_goal = FANOUT_GOALS[db]
            who = "server + PostgreSQL" if db == "postgres" else "server (SQLite runs inside it)"
            out += ["CPU per email (issue 22): " + ", ".join(
                        f"round {i}: {f1(rd['server']['cpu_us_per_email'], 0)} µs ({who}, API call → last outcome recorded) vs blaster "
                        f"{f1(rd['blaster']['own_cpu_us_per_message'], 0)} µs (its sending processes' own CPU)" for i, rd in enumerate(r["rounds"], 1)) + ".", "",
                    f"Median CPU per email **{f1(md['server_cpu_us_per_email'], 0)} µs** vs the blaster's **{f1(md['blaster_cpu_us_per_message'], 0)} µs** per message: "
                    f"ratio **{md['cpu_ratio']:.2f}** (target ≤ {cpu_goal}): {met(md['cpu_ratio'] <= cpu_goal)}. "
                    f"Throughput ratio **{md['ratio']:.2f}** (target ≥ {tput_goal}): {met(md['ratio'] >= tput_goal)}. "
                    f"Every server round: deliveries {r['rounds'][0]['server']['deliveries']} for its stream.", ""]
            continue
        out += [f"Ratio server/blaster = **{md['ratio']:.2f}** (target ≥ 0.8): {met(md['ratio'] >= 0.8)}. "
                f"Every server round: deliveries {r['rounds'][0]['server']['deliveries']} for its stream. "
                f"Setup: the 10,000 followers were imported in {len(r['setup_import_seconds'])} admin request(s) taking {', '.join(f1(x, 2) + ' s' for x in r['setup_import_seconds'])}.", ""]
    return out


def render_fanout100k(res):
    out = []
    for db, r in res.items():
        fo = r["fanout"]
        ok = r["all_delivered_once"] and r["vmhwm_mb"] < 200
        out += [f"**{db}** — 100,000 followers imported (10 requests of 10,000) by one server process; a fresh process then ran the live-now fan-out.", "",
                "| metric | value |", "|---|---:|",
                f"| API call → last message accepted | {f1(fo['seconds'], 1)} s |",
                f"| emails/s | {f1(fo['per_second'])} |",
                f"| sink: accepted / distinct new recipients | {fo['delivered']:,} / {fo['distinct_new']:,} |",
                f"| `SELECT status, count(*) FROM deliveries GROUP BY status` | {r['deliveries_by_status']} |",
                f"| server peak RSS, VmHWM (fan-out process) | **{f1(r['vmhwm_mb'])} MB** |",
                f"| VmHWM right after start (before the fan-out) | {f1(r['vmhwm_at_start_mb'])} MB |",
                f"| max VmRSS sampled every 0.25 s | {f1(r['vmrss_max_sampled_mb'])} MB |",
                f"| server CPU during the fan-out | {f1(fo['server_cpu_seconds'])} s |",
                f"| VmHWM of the process that did the 10 imports | {f1(r['seed_server_vmhwm_mb'])} MB |"]
        if fo.get("enqueue"):
            e = fo["enqueue"]
            out.append(f"| fan-out job: first delivery row / all 100,000 rows inserted / first email sent (s after the API call) | "
                       f"{f1(e['first_row_after_api_s'], 1)} / {f1(e['first_row_after_api_s'] + e['insert_span_s'], 1)} / {f1(e['first_sent_after_api_s'], 1)} |")
        if fo.get("progress"):
            pr = fo["progress"]
            rates = [f"{t:g}s:{(c - pc) / (t - pt):.0f}/s" for (pt, pc), (t, c) in zip(pr[::3], pr[3::3]) if t > pt]
            out.append(f"| sink rate over time (every ~15 s) | {', '.join(rates)} |")
        out += ["",
                f"Target (all delivered once, VmHWM < 200 MB): {met(ok)}. RSS timeline (s, MB), every 2 s: "
                + ", ".join(f"{t:g}:{v:g}" for t, v in r["rss_timeline_mb"][:60]) + ("…" if len(r["rss_timeline_mb"]) > 60 else ""), ""]
    return out


def render_reminders(res):
    out = []
    for db, r in res.items():
        st = r["lateness_s"]
        out += [f"**{db}** — REMINDER_LEAD_MINUTES=1; {r['streams']} scheduled streams (one per creator, {r['followers_each']} followers each) "
                f"created through the API in {r['create_seconds']:.1f} s, starts spread evenly so reminders fall due over 60 s. "
                "Lateness = `deliveries.sent_at − (streams.start_time − lead)` per reminder email.", "",
                "| emails | min s | median s | p95 s | max s |", "|---:|---:|---:|---:|---:|",
                f"| {st.get('count', 0):,} | {f1(st.get('min'), 2)} | {f1(st.get('median'), 2)} | {f1(st.get('p95'), 2)} | **{f1(st.get('max'), 2)}** |", "",
                f"Histogram: {r['lateness_histogram']}. Reminders by status: {r['reminders_by_status']}; scheduled emails: {r['scheduled_by_status']}; "
                f"queued before due: {r['queued_before_due']}. Target max ≤ 5 s: {met(st and st['max'] <= 5)}.", ""]
    return out


def render_schedule(res):
    out = []
    for db, r in res.items():
        l, la, lag = r["latency_ms"], r["latency_from_actual_send_ms"], r["client_send_lag_ms"]
        ok_only = r.get("latency_ok_ms")
        out += [f"**{db}** — {r['streams_of_creator']:,} streams of one creator over 730 days (every 20th cancelled) plus 10,000 of 100 other creators; "
                f"`GET /api/creator/sc-creator/scheduled-streams?startDate=…&endDate=…+30d&limit=200` at random 30-day windows, "
                f"open loop (Python asyncio + aiohttp, request i sent at t0 + i/{r['rate']} s), {r['seconds']} s after a 3 s warm-up.", "",
                "| run | requests | statuses | achieved req/s | p50 ms | p90 ms | p99 ms | max ms |", "|---|---:|---|---:|---:|---:|---:|---:|",
                f"| **200 req/s (target)** | {r['sent']:,} | {r['statuses']} | {f1(r['achieved_rps'])} | {f1(l['p50'], 2)} | {f1(l['p90'], 2)} | **{f1(l['p99'], 2)}** | {f1(l['max'], 2)} |"]
        ref = r.get("reference_run")
        if ref:
            rl = ref["latency_ms"]
            out.append(f"| {ref['rate']} req/s (reference: half the closed-loop capacity) | {ref['sent']:,} | {ref['statuses']} | {f1(ref['achieved_rps'])} | "
                       f"{f1(rl['p50'], 2)} | {f1(rl['p90'], 2)} | {f1(rl['p99'], 2)} | {f1(rl['max'], 2)} |")
        out.append("")
        cap = r.get("capacity_wrk_c8")
        if cap:
            out += [f"Closed-loop capacity of the endpoint (`wrk -t1 -c8 -d10s`, one 30-day window): **{f1(cap['rps'])} req/s**, p50 {f1(cap['p50_ms'], 2)} ms, "
                    f"p99 {f1(cap['p99_ms'], 2)} ms, non-2xx {cap['non2xx']}.", ""]
        if ok_only and {str(k) for k in r["statuses"]} != {"200"}:
            out += [f"At 200 req/s, the 200 responses alone: p50 {f1(ok_only['p50'], 1)} ms, p99 {f1(ok_only['p99'], 1)} ms, max {f1(ok_only['max'], 1)} ms; "
                    "the 500s are `AsyncKit.ConnectionPoolTimeoutError.connectionRequestTimeout` (a request waited 10 s for a database connection).", ""]
        if r.get("cpu_seconds"):
            c = r["cpu_seconds"]
            out += [f"CPU seconds during the 200 req/s run: server {f1(c['server'])}, PostgreSQL {f1(c['postgres'])}, machine busy {f1(c['machine_busy'])} (of {2 * r['elapsed']:.0f} available).", ""]
        out += [
                f"Latency is measured from each request's intended send time (all responses). From the actual send: p50 {f1(la['p50'], 2)}, p99 {f1(la['p99'], 2)}, max {f1(la['max'], 2)} ms; "
                f"the client's own send lag: p50 {f1(lag['p50'], 2)}, p99 {f1(lag['p99'], 2)}, max {f1(lag['max'], 2)} ms. Statuses: {r['statuses']}. "
                f"Target p99 < 20 ms (and no errors): {met(l['p99'] < 20 and {str(k) for k in r['statuses']} == {'200'})}; index `streams_creator_start_idx` used: {met(r['explain']['uses_creator_start_index'])}.", "",
                "The statement the server ran (from PostgreSQL's log with `log_min_duration_statement=0` for one request) and its plan "
                "(`PREPARE` + `EXPLAIN (ANALYZE, BUFFERS) EXECUTE` with the logged parameters):", "", "```sql", r["explain"]["statement"],
                "-- parameters: " + ", ".join(f"${n} = {v}" for n, v in r["explain"]["parameters"]), "```", "", "```", r["explain"]["plan"].rstrip(), "```", ""]
    return out


def render_import(res):
    out = ["| database | round 1 s | round 2 s | round 3 s | median s | body |", "|---|---:|---:|---:|---:|---:|"]
    for db, r in res.items():
        rs = r["rounds"]
        out.append(f"| {db} | " + " | ".join(f1(x["seconds"], 2) for x in rs) + f" | **{f1(r['median_seconds'], 2)}** | {rs[0]['body_bytes'] / 1e6:.1f} MB |")
    out += ["", "Each round imports 10,000 new users and 10,000 follows (of one creator) in one `POST /api/admin/import`, timed from request to response on the client.", ""]
    return out


def render_emailapi(res):
    out = []
    for db, r in res.items():
        lat = r["latency_ms"]
        out += [f"**{db}** — {lat:g} ms added by the local fakes: the fake email API answers every call {lat:g} ms after it arrived "
                f"(`scripts/bench/fake_email_api.py`), the SMTP sink holds its 220 greeting {lat:g} ms on every new connection "
                f"(`count_sink.py --connect-delay-ms {lat:g}`). One server process per transport, each with a fresh database; "
                f"HTTPS APIs with `EMAIL_API_RATE_LIMIT={r['raised_rate_limit']}` and no limit in the fake, `EMAIL_API_CONCURRENCY` {r.get('api_concurrency') or 'unset (the binary’s default; see “max calls at once”)'}; "
                "SMTP with the pool of 8 connections. After a 200-member warm-up fan-out per server, the rounds alternate the transports; "
                "each round is a fresh audience of the same size (new addresses), timed from `POST /api/creator/streams/create` to the last email "
                "accepted by the fake or sink. Every round checked: every member accepted exactly once, every delivery row `sent`.", ""]
        for c in r["compare"]:
            n = c["members"]
            smtp = c["median"]["smtp"]["per_second"]
            out += [f"*{n:,} members, {c['rounds']} round(s):*", "",
                    "| transport | WORKER_MAX_IN_FLIGHT | wall s per round | median s | median emails/s | × SMTP | calls per round | emails per call (mean / max) "
                    "| max calls at once | first email accepted after the API call, s | CPU s: server / fake or sink / machine (median round) |",
                    "|---|---:|---|---:|---:|---:|---:|---|---:|---:|---|"]
            for t, runs in c["runs"].items():
                m = c["median"][t]
                mid = sorted(runs, key=lambda x: x["seconds"])[len(runs) // 2]
                cpu = mid["cpu_seconds"]
                helper_cpu = cpu.get("fake", cpu.get("sink"))
                if "fake" in mid:
                    fk = mid["fake"]
                    calls = f"{fk['calls']:,}"
                    per_call = f"{f1(fk['mean_batch'])} / {fk['max_batch']}"
                    conc = str(fk["max_concurrent_calls"])
                    first = f1(fk["first_email_answered_after_api_s"], 2)
                else:
                    calls = f"{mid['smtp']['connections_opened']} new connections"
                    per_call = "1 (one SMTP transaction each)"
                    conc = "8 (pool)"
                    first = f1(mid["enqueue"]["first_sent_after_api_s"], 2)
                ratio = "—" if t == "smtp" else f"**{m['ratio_vs_smtp']:.2f}**"
                out.append(f"| {t} | {c['worker_max_in_flight'].get(t, '—')} | {', '.join(f1(x['seconds'], 2) for x in runs)} | {f1(m['seconds'], 2)} | "
                           f"**{f1(m['per_second'])}** | {ratio} | {calls} | {per_call} | {conc} | {first} | "
                           f"{f1(cpu['server'])} / {f1(helper_cpu)} / {f1(cpu['machine_busy'])} |")
            verdicts = [f"{t} ×{m['ratio_vs_smtp']:.2f} {met(m['ratio_vs_smtp'] >= 5)}" for t, m in c["median"].items() if t in ("resend", "postmark")]
            sg = c["median"].get("sendgrid")
            out += ["", f"Target batch path ≥ 5 × SMTP ({f1(smtp)} emails/s): " + "; ".join(verdicts) + "."
                    + (f" SendGrid (one email per call, not a batch API in this server) ×{sg['ratio_vs_smtp']:.2f}." if sg else ""), ""]
            batches = {t: runs[0]["fake"]["batch_sizes"] for t, runs in c["runs"].items() if "fake" in runs[0]}
            if batches:
                out += ["Emails per accepted call (first round; size: calls): " + "; ".join(
                    f"{t} " + ", ".join(f"{k}: {v}" for k, v in sorted(b.items(), key=lambda kv: -kv[1])[:8]) + (" …" if len(b) > 8 else "")
                    for t, b in batches.items()) + ".", ""]
        sg_rate = next((c["median"]["sendgrid"]["per_second"] for c in r["compare"] if "sendgrid" in c["median"]), None)
        for msg in r.get("skipped", []):
            m = re.match(r"sendgrid at ([\d,]+) members", msg)
            proj = (f"; at its measured {sg_rate:.0f} emails/s it would take about {int(m.group(1).replace(',', '')) / sg_rate / 60:.0f} minutes"
                    if m and sg_rate else "")
            out += [f"Not run: {msg}{proj}.", ""]
        rd = r.get("resend_default")
        if rd:
            fk = rd["fake"]
            gap = fk.get("call_gap_s") or {}
            out += [f"*Resend at its default pace, {rd['members']:,} members:* the server's own pacing (`EMAIL_API_RATE_LIMIT` unset → 2 requests/s, "
                    f"`WORKER_MAX_IN_FLIGHT` {rd.get('worker_max_in_flight', 200)}) against a fake that allows 2 requests per fixed 1 s window (aligned to the Unix second) "
                    "and answers 429 with `retry-after` beyond that; every answer carries `ratelimit-limit/remaining/reset`.", "",
                    "| wall s | floor s (members ÷ 200) | wall ÷ floor | calls | answered 429 | share 429 | emails per call (mean / max) | calls per 1 s window (calls: windows) | gap between calls s (min / p50 / max) | first email accepted after the API call s |",
                    "|---:|---:|---:|---:|---:|---:|---|---|---|---:|",
                    f"| **{f1(rd['seconds'], 1)}** | {f1(rd['floor_seconds'], 0)} | {rd['ratio_to_floor']:.3f} | {fk['calls']} | {fk['r429']} | "
                    f"**{100 * rd['share_429']:.2f} %** | {f1(fk['mean_batch'])} / {fk['max_batch']} | "
                    f"{', '.join(f'{k}: {v}' for k, v in sorted(fk['calls_per_1s_window'].items()))} | "
                    f"{f1(gap.get('min'), 2)} / {f1(gap.get('p50'), 2)} / {f1(gap.get('max'), 2)} | {f1(fk['first_email_answered_after_api_s'], 2)} |", "",
                    f"Targets: wall time within 10 % of the floor: {met(rd['within_10pct'])}; < 1 % of calls answered 429: {met(rd['under_1pct_429'])}. "
                    f"Emails per accepted call: {', '.join(f'{k}: {v}' for k, v in sorted(fk['batch_sizes'].items(), key=lambda kv: -kv[1]))}.", ""]
        for e in r.get("errors", []):
            out += [f"**Failed:** {e}", ""]
    return out


# --- Headline numbers for comparisons between labels -----------------------------------------------

def render_push100k(res):
    out = ["| database | pushes | wall s | pushes/s | server CPU s | VmHWM MB | provider JWTs | all once | deliveries |",
           "|---|---:|---:|---:|---:|---:|---:|---|---|"]
    for db, r in res.items():
        out.append(f"| {db} | {r['members']:,} | {r['seconds']:.1f} | {r['per_second']:,.0f} | {r['server_cpu_seconds']:.1f} | {r['vmhwm_mb']:.1f} | "
                   f"{r['provider_jwts_seen']} | {r['all_sent_once']} | {r['push_deliveries_by_status']} |")
    first = next(iter(res.values()), None)
    if first:
        out += ["", f"Fake APNs latency {first['latency_ms']} ms per push; `PUSH_CONCURRENCY` {first['push_concurrency']}; "
                f"members imported and their devices registered through the API first (not timed). Wall time: live-now API call → "
                f"the fake's count reaches {first['members']:,}.", ""]
    return out


def render_joinstorm(res):
    out = ["| database | members | health req/s | token req/s | ratio | health p99 ms | token p99 ms | p99 ratio | errors | met |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for db, r in res.items():
        for n, x in r.items():
            m = x["median"]
            out.append(f"| {db} | {int(n):,} | {m['health_rps']:,.0f} | {m['token_rps']:,.0f} | {m['ratio_rps']:.2f} | {m['health_p99_ms']:.2f} | "
                       f"{m['token_p99_ms']:.2f} | {m['ratio_p99']:.2f} | {x['errors']} | {x['met']} |")
    same = [(db, n, x) for db, r in res.items() for n, x in r.items() if "ratio_rps_same_client" in x["median"]]
    if same:
        out += ["", "The same, with `/health` driven by the same wrk Lua client as the token run (a new `Authorization` header per "
                "request, ignored by `/health`): wrk shares the two cores, and its per-request Lua costs CPU the server does not get. "
                "Server CPU per request from the server process's CPU time over each run:", "",
                "| database | members | health (same client) req/s | token req/s | ratio | health p99 ms | token p99 ms | p99 ratio | "
                "server CPU µs/request: health / token | wrk CPU s: health / same client / token | met |",
                "|---|---:|---:|---:|---:|---:|---:|---:|---|---|---|"]
        for db, n, x in same:
            m = x["median"]
            out.append(f"| {db} | {int(n):,} | {m['health_same_client_rps']:,.0f} | {m['token_rps']:,.0f} | {m['ratio_rps_same_client']:.2f} | "
                       f"{m['health_same_client_p99_ms']:.2f} | {m['token_p99_ms']:.2f} | {m['ratio_p99_same_client']:.2f} | "
                       f"{m['health_server_cpu_us_per_request']:.0f} / {m['token_server_cpu_us_per_request']:.0f} | "
                       f"{m['health_client_cpu_s']:.1f} / {m['health_same_client_client_cpu_s']:.1f} / {m['token_client_cpu_s']:.1f} | {x['met_same_client']} |")
    return out + [""]


def render_ncsburst(res):
    out = ["| database | round | events | rate/s | webhook p50 / p99 ms | health p50 / p99 ms | p99 ratio | viewer count | notices after 5 s | round: all 200, count exact · median: target met |",
           "|---|---|---:|---:|---|---|---:|---:|---:|---|"]
    for db, r in res.items():
        for i, x in enumerate(r.get("rounds", [])):
            w, h = x["webhooks"]["latency_ms"], x["health"]["latency_ms"]
            out.append(f"| {db} | {i + 1} | {x['events_sent']:,} | {x['rate_per_s']:.0f} | {w['p50']:.1f} / {w['p99']:.1f} | {h['p50']:.1f} / {h['p99']:.1f} | "
                       f"{x['ratio_p99']:.2f} | {x['viewer_count_after']:,} | {x['notices_recorded_after_5s']:,} | {x['exact']} |")
        w, h = r["webhooks"]["latency_ms"], r["health"]["latency_ms"]
        label = "**median**" if "rounds" in r else "1"
        out.append(f"| {db} | {label} | {r['events_sent']:,} | {r['rate_per_s']:.0f} | {w['p50']:.1f} / {w['p99']:.1f} | {h['p50']:.1f} / {h['p99']:.1f} | "
                   f"{r['ratio_p99']:.2f} | {r['viewer_count_after']:,} of {r['viewers']:,} | {r['notices_recorded_after_5s']:,} | {r['met']} |")
    return out + [""]


def headline(rec):
    s, res = rec["scenario"], rec["results"]
    h = {}
    for db, r in res.items():
        if s == "token":
            md = r["median"]
            h[f"{db}: token req/s"] = md["token_rps"]
            h[f"{db}: token p99 ms"] = md["token_p99_ms"]
            h[f"{db}: health req/s"] = md["health_rps"]
            h[f"{db}: ratio token/health"] = md["ratio"]
        elif s == "fanout":
            h[f"{db}: server emails/s"] = r["median"]["server_per_second"]
            h[f"{db}: ratio server/blaster"] = r["median"]["ratio"]
            if "cpu_ratio" in r["median"]:
                h[f"{db}: CPU µs per email"] = r["median"]["server_cpu_us_per_email"]
                h[f"{db}: blaster CPU µs per message"] = r["median"]["blaster_cpu_us_per_message"]
                h[f"{db}: CPU ratio"] = r["median"]["cpu_ratio"]
        elif s == "fanout100k":
            h[f"{db}: VmHWM MB"] = r["vmhwm_mb"]
            h[f"{db}: emails/s"] = r["fanout"]["per_second"]
        elif s == "reminders":
            h[f"{db}: max lateness s"] = r["lateness_s"].get("max")
        elif s == "schedule":
            h[f"{db}: p99 ms"] = r["latency_ms"]["p99"]
        elif s == "import":
            h[f"{db}: median s"] = r["median_seconds"]
        elif s == "joinstorm":
            for n, x in r.items():
                h[f"{db} {n}: ratio rps"] = x["median"]["ratio_rps"]
                h[f"{db} {n}: ratio p99"] = x["median"]["ratio_p99"]
        elif s == "ncsburst":
            h[f"{db}: p99 ratio"] = r["ratio_p99"]
        elif s == "push100k":
            h[f"{db}: pushes/s"] = r["per_second"]
            h[f"{db}: VmHWM MB"] = r["vmhwm_mb"]
        elif s == "emailapi":
            for c in r["compare"]:
                for t, m in c["median"].items():
                    h[f"{db} {c['members']:,}: {t} emails/s"] = m["per_second"]
            if r.get("resend_default"):
                h[f"{db}: resend 2 req/s wall s"] = r["resend_default"]["seconds"]
    return h


def assemble(root):
    rdir = results_dir(root)
    machine = {}
    if os.path.exists(os.path.join(rdir, "machine.json")):
        machine = json.load(open(os.path.join(rdir, "machine.json")))
    out = ["# Benchmarks", "",
           "Generated by `scripts/bench/run` (see `scripts/bench/README.md`); each section is assembled from "
           "`benchmarks/results/<scenario>[.<label>].{json,md}` (raw numbers in the JSON) and the notes in `benchmarks/notes/`. "
           "Re-running one scenario (e.g. `BENCH_LABEL=after scripts/bench/run token`) replaces or adds only that scenario's file.", "",
           "## Machine (latest run)", ""]
    if machine:
        out += [f"- `nproc`: {machine['nproc']}; CPU: {machine['cpu_model']} (lscpu); memory: {machine['memory_gib']} GiB; kernel {machine['kernel']}",
                f"- {machine['swift']}; binary `{machine['binary']}`",
                f"- binary built from the {machine.get('built_from', 'working tree')}",
                f"- {machine['postgres']}; {machine['wrk']}; Python {machine['python']}",
                "- Everything (server, PostgreSQL, SMTP sink, load generators) runs on this one machine, so the load generator competes with the server for the 2 cores.",
                "- PostgreSQL: a private cluster started by the harness on 127.0.0.1:55450 with `fsync=off` (data in a temp dir, deleted afterwards); "
                "SQLite: a fresh file per server in the temp dir. Every server gets a fresh database.",
                "- The server: `.build-release/release/App serve --env production --hostname 127.0.0.1 --port P` with `RATE_LIMIT_ENABLED=false`, "
                "`LOG_LEVEL=notice`, `EMAIL_TRANSPORT=smtp` to the counting sink (`SMTP_SECURITY=none`, no AUTH), its own worker (`RUN_WORKER` default).", ""]
    out += ["## Summary", "", "| scenario | target | result | |", "|---|---|---|---|"]
    records = {}
    for path in glob.glob(os.path.join(rdir, "*.json")):
        if os.path.basename(path) == "machine.json":
            continue
        rec = json.load(open(path))
        records.setdefault(rec["scenario"], []).append(rec)
    for s in records:
        records[s].sort(key=lambda r: r["finished_at"])
    for s in ORDER:
        for rec in records.get(s, []):
            for key, (value, ok) in summary(rec).items():
                out.append(f"| `{s}`{' (' + rec['label'] + ')' if rec.get('label') else ''} | {TARGETS[s]} | {key}: {value} | {'' if ok is None else ('met' if ok else '**not met**')} |")
    out.append("")
    for s in ORDER:
        out += [f"## {TITLES[s]}", "", f"Target: {TARGETS[s]}.", ""]
        recs = records.get(s, [])
        if not recs:
            out += ["_Not run yet._", ""]
        for rec in recs:
            base = rec["scenario"] + (f".{rec['label']}" if rec.get("label") else "")
            md = os.path.join(rdir, base + ".md")
            out.append(open(md).read() if os.path.exists(md) else render(rec))
        if len(recs) > 1:
            heads = [headline(r) for r in recs]
            keys = [k for k in heads[0] if all(k in h for h in heads)]
            if keys:
                out += ["#### Comparison", "", "| metric | " + " | ".join(r.get("label") or r["finished_at"] for r in recs) + " |",
                        "|---|" + "---:|" * len(recs)]
                for k in keys:
                    out.append(f"| {k} | " + " | ".join(f1(h[k], 2) for h in heads) + " |")
                out.append("")
        note = os.path.join(root, "benchmarks", "notes", f"{s}.md")
        if os.path.exists(note):
            out += [open(note).read().rstrip(), ""]
    with open(os.path.join(root, "BENCHMARKS.md"), "w") as f:
        f.write("\n".join(out).rstrip() + "\n")


def summary(rec):
    s, res = rec["scenario"], rec["results"]
    out = {}
    for db, r in res.items():
        if s == "token":
            md = r["median"]
            out[db] = (f"token {md['token_rps']:,.0f} req/s vs health {md['health_rps']:,.0f} req/s, ratio {md['ratio']:.2f}", md["ratio"] >= 0.5)
        elif s == "fanout":
            md = r["median"]
            if "cpu_ratio" in md:
                cpu_goal, tput_goal = FANOUT_GOALS[db]
                out[db] = (f"CPU {md['server_cpu_us_per_email']:,.0f} µs/email vs blaster {md['blaster_cpu_us_per_message']:,.0f} µs/msg, ratio {md['cpu_ratio']:.2f} (≤ {cpu_goal}); "
                           f"server {md['server_per_second']:,.0f} emails/s vs blaster {md['blaster_per_second']:,.0f}/s, ratio {md['ratio']:.2f} (≥ {tput_goal})",
                           md["cpu_ratio"] <= cpu_goal and md["ratio"] >= tput_goal)
            else:
                out[db] = (f"server {md['server_per_second']:,.0f} emails/s vs blaster {md['blaster_per_second']:,.0f}/s, ratio {md['ratio']:.2f}", md["ratio"] >= 0.8)
        elif s == "fanout100k":
            out[db] = (f"{r['fanout']['seconds']:.0f} s ({r['fanout']['per_second']:,.0f}/s), all once: {r['all_delivered_once']}, VmHWM {r['vmhwm_mb']:.0f} MB",
                       r["all_delivered_once"] and r["vmhwm_mb"] < 200)
        elif s == "reminders":
            st = r["lateness_s"]
            out[db] = (f"lateness median {st['median']:.2f} s, p95 {st['p95']:.2f} s, max {st['max']:.2f} s", st["max"] <= 5)
        elif s == "schedule":
            l = r["latency_ms"]
            errs = sum(v for k, v in r["statuses"].items() if str(k) != "200")
            out[db] = (f"p50 {l['p50']:.0f} ms, p99 {l['p99']:.0f} ms, max {l['max']:.0f} ms, {errs:,} of {r['sent']:,} non-200; index used: {r['explain']['uses_creator_start_index']}",
                       l["p99"] < 20 and errs == 0 and r["explain"]["uses_creator_start_index"])
        elif s == "import":
            out[db] = (f"median {r['median_seconds']:.2f} s", None)
        elif s == "joinstorm":
            for n, x in r.items():
                m = x["median"]
                out[f"{db}, {int(n):,} members"] = (f"token {m['token_rps']:,.0f} vs health {m['health_rps']:,.0f} req/s (×{m['ratio_rps']:.2f}), "
                                                    f"p99 ×{m['ratio_p99']:.2f}, errors {x['errors']}", x["met"])
                if "ratio_rps_same_client" in m:
                    out[f"{db}, {int(n):,} members, /health by the same client"] = (
                        f"token {m['token_rps']:,.0f} vs health {m['health_same_client_rps']:,.0f} req/s (×{m['ratio_rps_same_client']:.2f}), "
                        f"p99 ×{m['ratio_p99_same_client']:.2f}, errors {x['errors']}", x["met_same_client"])
        elif s == "ncsburst":
            out[db] = (f"webhook p99 {r['webhooks']['latency_ms']['p99']:.1f} ms vs health {r['health']['latency_ms']['p99']:.1f} ms (×{r['ratio_p99']:.2f}), "
                       f"viewers {r['viewer_count_after']:,}/{r['viewers']:,}", r["met"])
        elif s == "push100k":
            out[db] = (f"{r['members']:,} in {r['seconds']:.1f} s ({r['per_second']:,.0f}/s), all once: {r['all_sent_once']}, VmHWM {r['vmhwm_mb']:.0f} MB",
                       r["all_sent_once"] and r["seconds"] < 60 and r["vmhwm_mb"] < 200)
        elif s == "emailapi":
            for c in r["compare"]:
                md = c["median"]
                parts = ", ".join(f"{t} {m['per_second']:,.0f}/s (×{m['ratio_vs_smtp']:.2f})" for t, m in md.items() if t != "smtp")
                ok = all(m["ratio_vs_smtp"] >= 5 for t, m in md.items() if t in ("resend", "postmark"))
                out[f"{db}, {c['members']:,} members"] = (f"SMTP {md['smtp']['per_second']:,.0f}/s; {parts}", ok)
            rd = r.get("resend_default")
            if rd:
                out[f"{db}, Resend at 2 req/s"] = (f"{rd['seconds']:.1f} s vs floor {rd['floor_seconds']:.0f} s (×{rd['ratio_to_floor']:.3f}), "
                                                   f"{rd['fake']['r429']} of {rd['fake']['calls']} calls 429 ({100 * rd['share_429']:.2f} %)",
                                                   rd["within_10pct"] and rd["under_1pct_429"])
    return out


if __name__ == "__main__":
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
    assemble(root)
    print(f"wrote {os.path.join(root, 'BENCHMARKS.md')}")
