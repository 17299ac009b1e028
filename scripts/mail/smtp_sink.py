#!/usr/bin/env python3
"""Strict, scriptable SMTP sink for integration tests (aiosmtpd 1.4.6).

  smtp_sink.py --host 127.0.0.1 --port P [--implicit-tls-port P2] --cert F --key F \
               --maildir DIR --user U --password PW

- EHLO offers STARTTLS; AUTH PLAIN LOGIN only once TLS is up (538 before). MAIL before AUTH -> 530.
  Bad credentials -> 535 5.7.8. --implicit-tls-port speaks TLS from the first byte (SMTPS).
- RCPT scripting by local part prefix: tempfail* -> 451 4.3.0, reject* -> 550 5.1.1,
  dropdata* -> accepted, but the connection is aborted at end of DATA with no final reply.
- Strict DATA (checked on the raw bytes, after dot-unstuffing): bare LF or bare CR -> 554 5.6.0,
  a line > 998 octets -> 500 5.5.2, 8-bit bytes without MAIL FROM ... BODY=8BITMIME -> 554 5.6.1.
- Accepted messages: DIR/<n>.eml (raw bytes) then DIR/<n>.json (envelope), each written to a
  temp file and renamed; the .json appears last, so once it exists both files are complete.
- Prints READY on stdout once every socket listens.
- --pipelining: also advertise PIPELINING (stock aiosmtpd does not, though it already handles
  pipelined commands in order), to test a pipelining client against the scripted RCPT replies.
"""
import argparse
import asyncio
import itertools
import json
import logging
import os
import re
import signal
import ssl
import sys
import warnings

from aiosmtpd.smtp import SMTP, AuthResult

BARE_LF = re.compile(rb"(?<!\r)\n")
BARE_CR = re.compile(rb"\r(?!\n)")
MAX_LINE = 998  # RFC 5322 2.1.1, excluding CRLF


class StrictSMTP(SMTP):
    """aiosmtpd only counts STARTTLS as TLS (self._tls_protocol); on an implicit-TLS socket
    it would refuse AUTH with 538 and leave session.ssl None. Mark such sessions as TLS."""

    def __init__(self, *args, implicit_tls=False, **kwargs):
        self.implicit_tls = implicit_tls
        super().__init__(*args, **kwargs)

    def connection_made(self, transport):
        super().connection_made(transport)
        if self.implicit_tls and self.session.ssl is None:
            self.session.ssl = {"ssl_object": transport.get_extra_info("ssl_object")}


class Handler:
    def __init__(self, maildir, user, password, pipelining=False):
        self.maildir, self.pipelining = maildir, pipelining
        self.user, self.password = user.encode(), password.encode()
        os.makedirs(maildir, exist_ok=True)
        # Continue numbering after anything already in DIR (a reused directory).
        nums = [int(f.split(".")[0]) for f in os.listdir(maildir) if re.fullmatch(r"\d+\.json", f)]
        self.counter = itertools.count(max(nums, default=0) + 1)

    def authenticate(self, server, session, envelope, mechanism, auth_data):
        ok = auth_data.login == self.user and auth_data.password == self.password
        # handled=False lets aiosmtpd send its standard 235 / 535 5.7.8 replies.
        return AuthResult(success=ok, handled=False, auth_data=auth_data)

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        # 5-argument hook: we own the reply list and must record the EHLO name ourselves.
        session.host_name = hostname
        if self.pipelining:
            responses.insert(-1, "250-PIPELINING")  # before the final "250 HELP"
        return responses

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.rsplit("@", 1)[0].lower()
        if local.startswith("tempfail"):
            return "451 4.3.0 try later"
        if local.startswith("reject"):
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        if any(r.rsplit("@", 1)[0].lower().startswith("dropdata") for r in envelope.rcpt_tos):
            # Simulate a crash mid-DATA: drop the TCP connection without a final reply (no TLS
            # close_notify either). connection_lost() then cancels this coroutine.
            server.transport.abort()
            await asyncio.Event().wait()
        # original_content is the raw DATA (aiosmtpd splits on CRLF only, so bare LF/CR
        # survive in it); .content would be the same bytes here because decode_data=False.
        raw = envelope.original_content
        if BARE_LF.search(raw):
            return "554 5.6.0 bare LF in message (RFC 5322 requires CRLF)"
        if BARE_CR.search(raw):
            return "554 5.6.0 bare CR in message (RFC 5322 requires CRLF)"
        if max((len(l) for l in raw.split(b"\r\n")), default=0) > MAX_LINE:
            return "500 5.5.2 line longer than 998 octets"
        body8 = any(o.upper() == "BODY=8BITMIME" for o in envelope.mail_options)
        if not body8 and not envelope.smtp_utf8 and any(b > 0x7F for b in raw):
            return "554 5.6.1 8-bit data requires MAIL FROM ... BODY=8BITMIME"
        n = next(self.counter)
        login = session.login_data
        meta = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "auth_user": login.decode("utf-8", "replace") if login is not None else None,
            "tls": session.ssl is not None,
        }
        self._atomic_write(f"{n}.eml", raw)
        self._atomic_write(f"{n}.json", json.dumps(meta).encode())
        return f"250 2.0.0 OK queued as {n}"

    def _atomic_write(self, name, data):
        tmp = os.path.join(self.maildir, f".tmp-{name}")
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, os.path.join(self.maildir, name))


async def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--implicit-tls-port", type=int)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--maildir", required=True)
    ap.add_argument("--user", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--pipelining", action="store_true", help="advertise PIPELINING in EHLO")
    ap.add_argument("--verbose", action="store_true", help="log the SMTP dialogue to stderr")
    a = ap.parse_args()
    # Implicit-TLS port: aiosmtpd warns per connection about AUTH without required TLS;
    # the socket is TLS from the first byte, so the warning does not apply.
    warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")
    logging.basicConfig(level=logging.DEBUG if a.verbose else logging.ERROR, stream=sys.stderr)

    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(a.cert, a.key)
    handler = Handler(a.maildir, a.user, a.password, a.pipelining)
    loop = asyncio.get_running_loop()

    def factory(implicit):
        # hostname given explicitly: the default socket.getfqdn() may do a DNS lookup.
        return lambda: StrictSMTP(
            handler, implicit_tls=implicit, hostname="sink.localhost", ident="strict-sink",
            decode_data=False, authenticator=handler.authenticate, auth_required=True,
            # STARTTLS port: AUTH only after STARTTLS. Implicit port: already TLS.
            auth_require_tls=not implicit, tls_context=None if implicit else ctx)

    servers = [await loop.create_server(factory(False), a.host, a.port)]
    if a.implicit_tls_port:
        servers.append(await loop.create_server(factory(True), a.host, a.implicit_tls_port, ssl=ctx))
    stop = asyncio.Event()
    # A parent may have blocked these (Swift's Process on Linux spawns children with the
    # parent's signal mask); unblock them so SIGTERM really stops the sink.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("READY", flush=True)
    await stop.wait()
    for s in servers:
        s.close()


if __name__ == "__main__":
    asyncio.run(main())
