#!/usr/bin/env python3
"""Checks the running peers (env from start_peers.sh's env.sh) behave as the Swift tests expect.
Run via selftest.sh. Prints 'ok - ...' per check and 'N passed, N failed'."""
import base64
import glob
import json
import os
import shlex
import smtplib
import socket
import ssl
import subprocess
import threading
import time
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

E = os.environ
HOST = "127.0.0.1"
SINK, TLS, WRONG, EXIM = (int(E[k]) for k in
                          ("SMTP_SINK_PORT", "SMTP_SINK_TLS_PORT", "SMTP_SINK_WRONGCERT_PORT", "EXIM_PORT"))
SDIR, MAILDIR = E["SMTP_SINK_DIR"], E["EXIM_MAILDIR"]
USER, PW = E["SMTP_SINK_USER"], E["SMTP_SINK_PASSWORD"]
CTX = ssl.create_default_context(cafile=E["SMTP_TEST_CA_FILE"])
results = []


def check(name):
    def run(fn):
        try:
            fn()
            results.append(True)
            print(f"ok - {name}", flush=True)
        except Exception as e:
            results.append(False)
            print(f"FAIL - {name}: {e!r}", flush=True)
    return run


def message(subject="🔴 Live now: café ⏰", body="plain ✓\n.leading dot\n"):
    m = EmailMessage(policy=policy.SMTP)  # CRLF, RFC 2047 headers
    m["Subject"] = subject
    m["From"] = Address("Zoë Host", addr_spec="host@example.com")
    m["To"] = Address("Viewer", addr_spec="viewer@example.com")
    m["Date"] = formatdate()
    m["Message-ID"] = make_msgid(domain="example.com")
    m.set_content(body, cte="quoted-printable")
    m.add_alternative("<p>html ✓</p>", subtype="html", cte="quoted-printable")
    m.add_attachment(b"BEGIN:VCALENDAR\r\nMETHOD:PUBLISH\r\nEND:VCALENDAR\r\n", maintype="text",
                     subtype="calendar", params={"method": "PUBLISH", "charset": "utf-8"},
                     filename="event.ics")
    return m.as_bytes()


def sink(login=True):
    s = smtplib.SMTP(HOST, SINK, timeout=10)
    s.starttls(context=CTX)
    s.ehlo()  # needed before auth(): without it the server says 503, which smtplib.auth() takes as success
    if login:
        s.login(USER, PW)
    return s


def stored():
    return sorted(glob.glob(os.path.join(SDIR, "*.json")), key=lambda p: int(os.path.basename(p)[:-5]))


def raw_data(s, payload):
    """MAIL/RCPT/DATA by hand and send payload bytes untouched (smtplib.data() would fix EOLs)."""
    assert s.docmd("MAIL FROM:<host@example.com>")[0] == 250
    assert s.docmd("RCPT TO:<viewer@example.com>")[0] == 250
    assert s.docmd("DATA")[0] == 354
    s.send(payload + b".\r\n")
    return s.getreply()


def parse(*files):
    out = subprocess.run(shlex.split(E["MAIL_PARSE"]) + list(files), check=True, capture_output=True)
    return json.loads(out.stdout)


@check("sink: EHLO before TLS offers STARTTLS, no AUTH; AUTH -> 538; MAIL -> 530")
def _():
    s = smtplib.SMTP(HOST, SINK, timeout=10)
    s.ehlo()
    assert s.has_extn("starttls") and not s.has_extn("auth"), s.esmtp_features
    assert s.docmd("AUTH PLAIN " + base64.b64encode(f"\0{USER}\0{PW}".encode()).decode())[0] == 538
    assert s.docmd("MAIL FROM:<a@example.com>")[0] == 530
    s.starttls(context=CTX)
    s.ehlo()
    assert s.esmtp_features.get("auth", "").split() == ["LOGIN", "PLAIN"], s.esmtp_features
    assert s.docmd("MAIL FROM:<a@example.com>")[0] == 530  # TLS alone is not enough
    s.quit()


@check("sink: wrong password -> 535 5.7.8 (PLAIN and LOGIN)")
def _():
    for mech in ("PLAIN", "LOGIN"):
        s = sink(login=False)
        s.user, s.password = USER, "wrong"
        try:
            s.auth(mech, getattr(s, "auth_" + mech.lower()), initial_response_ok=mech == "PLAIN")
            raise AssertionError("accepted")
        except smtplib.SMTPAuthenticationError as e:
            assert e.smtp_code == 535 and e.smtp_error.startswith(b"5.7.8"), e
        s.quit()


@check("sink: STARTTLS+AUTH send, 2 messages on one connection, stored raw with envelope")
def _():
    before = len(stored())
    s = sink()
    msg = message()
    assert s.sendmail("host@example.com", ["viewer@example.com"], msg) == {}
    s.rset()
    assert s.sendmail("b@example.com", ["x@example.com", "y@example.org"], message("second")) == {}
    s.quit()
    files = stored()[before:]
    assert len(files) == 2, files
    meta = json.load(open(files[0]))
    assert meta == {"mail_from": "host@example.com", "rcpt_tos": ["viewer@example.com"],
                    "auth_user": USER, "tls": True}, meta
    assert json.load(open(files[1]))["rcpt_tos"] == ["x@example.com", "y@example.org"]
    assert open(files[0][:-5] + ".eml", "rb").read() == msg  # byte-exact, dot-unstuffed


@check("sink: implicit TLS port (SMTPS), AUTH without STARTTLS")
def _():
    s = smtplib.SMTP_SSL(HOST, TLS, context=CTX, timeout=10)
    s.ehlo()
    assert not s.has_extn("starttls") and s.has_extn("auth"), s.esmtp_features
    s.login(USER, PW)
    assert s.sendmail("host@example.com", ["tls@example.com"], message("smtps")) == {}
    s.quit()
    meta = json.load(open(stored()[-1]))
    assert meta["rcpt_tos"] == ["tls@example.com"] and meta["tls"] is True, meta


@check("sink: tempfail* -> 451, reject* -> 550, others still accepted")
def _():
    s = sink()
    refused = s.sendmail("host@example.com", ["tempfail-1@example.com", "reject.x@example.com",
                                              "ok@example.com"], message("partial"))
    assert refused == {"tempfail-1@example.com": (451, b"4.3.0 try later"),
                       "reject.x@example.com": (550, b"5.1.1 no such user")}, refused
    s.quit()
    assert json.load(open(stored()[-1]))["rcpt_tos"] == ["ok@example.com"]


@check("sink: dropdata* -> connection closed at end of DATA, no reply, nothing stored")
def _():
    before = len(stored())
    s = sink()
    try:
        s.sendmail("host@example.com", ["dropdata@example.com"], message("drop"))
        raise AssertionError("got a reply")
    except smtplib.SMTPServerDisconnected:
        pass
    assert len(stored()) == before


@check("sink: bare LF -> 554 (smtplib raw send after DATA)")
def _():
    s = sink()
    code, text = raw_data(s, b"Subject: bare\r\n\r\nline one\nline two\r\n")
    assert code == 554, (code, text)
    assert s.noop()[0] == 250  # session survives, next message works
    assert raw_data(s, b"Subject: fine\r\n\r\nok\r\n")[0] == 250
    s.quit()


@check("sink: bare LF -> 554 over a raw TLS socket (implicit port, hand-written SMTP)")
def _():
    with CTX.wrap_socket(socket.create_connection((HOST, TLS), timeout=10), server_hostname="localhost") as t:
        f = t.makefile("rb")

        def reply():
            lines = [f.readline()]
            while lines[-1][3:4] == b"-":
                lines.append(f.readline())
            return int(lines[-1][:3])
        assert reply() == 220
        auth = base64.b64encode(f"\0{USER}\0{PW}".encode())
        for cmd, want in ((b"EHLO raw", 250), (b"AUTH PLAIN " + auth, 235), (b"MAIL FROM:<a@example.com>", 250),
                          (b"RCPT TO:<b@example.com>", 250), (b"DATA", 354)):
            t.sendall(cmd + b"\r\n")
            assert reply() == want, cmd
        # Bare LFs inside; the terminator must still be CRLF.CRLF or the server keeps waiting.
        t.sendall(b"Subject: raw\n\nbare LF everywhere\r\n.\r\n")
        assert reply() == 554


@check("sink: line of 999 octets -> 500; 998 accepted; 8-bit needs BODY=8BITMIME")
def _():
    s = sink()
    code, _ = raw_data(s, b"Subject: long\r\n\r\n" + b"x" * 999 + b"\r\n")
    assert code == 500, code
    assert raw_data(s, b"Subject: long\r\n\r\n" + b"x" * 998 + b"\r\n")[0] == 250
    assert raw_data(s, "Subject: 8bit\r\n\r\ncafé\r\n".encode())[0] == 554
    s.rset()
    assert s.sendmail("a@example.com", ["b@example.com"], "Subject: 8bit\r\n\r\ncafé\r\n".encode(),
                      mail_options=["BODY=8BITMIME"]) == {}
    s.quit()


@check("sink B: wrong.example.com cert -> hostname mismatch; CA chain itself is fine")
def _():
    s = smtplib.SMTP(HOST, WRONG, timeout=10)
    try:
        s.starttls(context=CTX)
        raise AssertionError("verified")
    except ssl.SSLCertVerificationError as e:
        assert "mismatch" in str(e) or "match" in str(e), e
    s.close()
    ctx = ssl.create_default_context(cafile=E["SMTP_TEST_CA_FILE"])
    ctx.check_hostname = False
    s = smtplib.SMTP(HOST, WRONG, timeout=10)
    s.starttls(context=ctx)
    s.login(USER, PW)
    s.quit()


@check("sink: 20 concurrent connections, all stored under distinct numbers")
def _():
    before = len(stored())
    errs = []

    def one(i):
        try:
            s = sink()
            s.sendmail("c@example.com", [f"c{i}@example.com"], message(f"concurrent {i}"))
            s.quit()
        except Exception as e:
            errs.append(e)
    ts = [threading.Thread(target=one, args=(i,)) for i in range(20)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    assert not errs, errs
    new = stored()[before:]
    rcpts = sorted(json.load(open(p))["rcpt_tos"][0] for p in new)
    assert rcpts == sorted(f"c{i}@example.com" for i in range(20)), rcpts
    assert not glob.glob(os.path.join(SDIR, ".tmp-*"))


@check("parse_eml: sink message decodes cleanly")
def _():
    d = next(x for x in parse(*glob.glob(os.path.join(SDIR, "*.eml"))) if x["subject"].startswith("🔴"))
    assert d["subject"] == "🔴 Live now: café ⏰", d["subject"]
    assert d["from"] == {"name": "Zoë Host", "address": "host@example.com"}, d["from"]
    assert d["structure"] == "multipart/mixed[multipart/alternative[text/plain,text/html],text/calendar]"
    assert [p["content_type"] for p in d["parts"]] == ["text/plain", "text/html", "text/calendar"]
    assert d["parts"][0]["content"].replace("\r\n", "\n") == "plain ✓\n.leading dot\n"
    assert d["parts"][2]["params"]["method"] == "PUBLISH" and d["parts"][2]["filename"] == "event.ics"
    assert d["defects"] == [] and not d["has_bare_lf"] and d["header_line_max"] <= 78, d
    assert d["mime_version"] == "1.0" and d["message_id"].startswith("<")


@check("exim: EHLO offers PIPELINING+STARTTLS, AUTH only after TLS; MAIL before AUTH -> 530")
def _():
    s = smtplib.SMTP(HOST, EXIM, timeout=10)
    s.ehlo()
    assert s.has_extn("pipelining") and s.has_extn("starttls") and not s.has_extn("auth"), s.esmtp_features
    assert s.docmd("MAIL FROM:<a@example.com>")[0] == 530
    s.starttls(context=CTX)
    s.ehlo()
    assert s.has_extn("pipelining") and set(s.esmtp_features["auth"].split()) == {"PLAIN", "LOGIN"}
    s.quit()


@check("exim: wrong password -> 535")
def _():
    s = smtplib.SMTP(HOST, EXIM, timeout=10)
    s.starttls(context=CTX)
    s.ehlo()
    s.user, s.password = E["EXIM_USER"], "wrong"
    try:
        s.auth("PLAIN", s.auth_plain)
        raise AssertionError("accepted")
    except smtplib.SMTPAuthenticationError as e:
        assert e.smtp_code == 535, e
    s.quit()


@check("exim: STARTTLS + AUTH LOGIN send to any domain lands in the Maildir, CRLF, parses")
def _():
    tag = make_msgid(domain="selftest")[1:-1]
    s = smtplib.SMTP(HOST, EXIM, timeout=10)
    s.starttls(context=CTX)
    s.ehlo()
    s.user, s.password = E["EXIM_USER"], E["EXIM_PASSWORD"]
    s.auth("LOGIN", s.auth_login, initial_response_ok=False)
    assert s.sendmail("host@example.com", ["anyone@gmail.com"], message(f"exim {tag}")) == {}
    s.quit()
    deadline = time.time() + 10
    while time.time() < deadline:
        hits = [p for p in glob.glob(os.path.join(MAILDIR, "new", "*")) if tag.encode() in open(p, "rb").read()]
        if hits:
            break
        time.sleep(0.1)
    assert hits, "not delivered within 10 s"
    d = parse(hits[0])[0]
    assert d["subject"] == f"exim {tag}" and not d["has_bare_lf"] and d["defects"] == [], d
    names = [h[0].lower() for h in d["headers"]]
    assert "envelope-to" in names and "received" in names, names


if __name__ == "__main__":
    passed = sum(results)
    print(f"{passed} passed, {len(results) - passed} failed")
    raise SystemExit(0 if all(results) else 1)
