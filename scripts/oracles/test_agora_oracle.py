#!/usr/bin/env python3
"""Self-test for agora_oracle.py: it must reproduce the published/derived vectors of
shared/reference/agora.md §3 byte-for-byte before the Swift suite may trust it.

Run with the interpreter that has requirements.txt installed, e.g.
  /tmp/oracle-venv/bin/python scripts/oracles/test_agora_oracle.py
"""
import json
import os
import subprocess
import sys

ORACLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "agora_oracle.py")

APP_ID = "970CA35de60c44645bbae8a215061b33"
CERT = "5CFd2fd1755d40ecb72977518be15d3b"
CHANNEL = "7d72365eb983485397e3e3f9d460bdda"

V1 = "007eJxTYBBbsMMnKq7p9Hf/HcIX5kce9b518kCiQgSr5Zrp4X1Tu6UUGCzNDZwdjU1TUs0Mkk1MzExMk5ISUy0SjQxNDcwMk4yN3b8IMEQwMTAwMoAwBIL4CgzmKeZGxmamqUmWFsYmFqbGluapxqnGaZYpJmYGSSkpiVwMRhYWRsYmhkbmxgDCaiTj"
V1G = "007eJxSYBBbsMMnKq7p9Hf/HcIX5kce9b518kCiQgSr5Zrp4X1Tu6UUGCzNDZwdjU1TUs0Mkk1MzExMk5ISUy0SjQxNDcwMk4yN3b8IMEQwMTAwMoAwBIL4CgzmKeZGxmamqUmWFsYmFqbGluapxqnGaZYpJmYGSSkpiVwMRhYWRsYmhkbmxoAAAAD//8JqJOM="
V2 = "007eJxTYLhzZP08Lxa1Pg57+TcXb/3cZ3wi4V6kbpbOog0G2dOYk20UGCzNDZwdjU1TUs0Mkk1MzExMk5ISUy0SjQxNDcwMk4yN3b8IMEQwMTAwMoAwBIL4CgzmKeZGxmamqUmWFsYmFqbGluapxqnGaZYpJmYGSSkpiQwMADacImo="
V4 = "007eJxTYOAQsrQ5s3TfH+1tvy8zZZ46EpCc0V43JXdGd2jS8porKo4KDJbmBs6OxqYpqWYGySYmZiamSUmJqRaJRoamBmaGScbG7l8EGCKYGBgYGRgYmIAkCxCD+ExgkhlMsoBJBQbzFHMjYzPT1CRLC2MTC1NjS/NU41TjNMsUEzODpJSURC4GIwsLI2MTQyNzY5BZEJM4GUpSi0viS4tTiwAipyp4"
PUB_UID = "007eJxTYDhuGCT90E3Yo2+N3efJV5hX1K1MZAqae/Sa8UP9VXvOhfArMFiaGzg7GpumpJoZJJuYmJmYJiUlplokGhmaGpgZJhkbu38RYIhgYmBgZABhRgYWIAbxmcAkM5hkAZMKDOYp5kbGZqapSZYWxiYWpsaW5qnGqcZplikmZgZJKSmJXAxGFhZGxiaGRubGAKizJcs="
PUB_UID0 = "007eJxTYLi32Teo5m76Rq2Ntc2TPa3D5X7K31zkf1jo4waXA1V+/38qMFiaGzg7GpumpJoZJJuYmJmYJiUlplokGhmaGpgZJhkbu38RYIhgYmBgZABhRgYWIAbxmcAkM5hkAZMKDOYp5kbGZqapSZYWxiYWpsaW5qnGqcZplikmZgZJKSmJDAwAH8gliw=="
PUB_3600 = "007eJxTYHDQ//PYyc2xIJc//cqrTcJdf47l/VsdxVCZUjFxQw/fNkYFBktzA2dHY9OUVDODZBMTMxPTpKTEVItEI0NTAzPDJGNjho/BqQJ8DAyWBgwMjEDIAsQgwAQmmcEkC5hUYDBPMTcyNjNNTbK0MDaxMDW2NE81TjVOs0wxMTNISklJ5GIwsrAwMjYxNDI3BgCvAyUs"


def build(role, user, token_expire=600, privilege_expire=600, issue_ts=1111111, salt=1):
    req = {"op": "build", "appId": APP_ID, "appCertificate": CERT, "channel": CHANNEL,
           "role": role, "tokenExpire": token_expire, "privilegeExpire": privilege_expire,
           "issueTs": issue_ts, "salt": salt}
    req["account" if isinstance(user, str) else "uid"] = user
    return req


def main():
    # (request, check) pairs, all sent through ONE oracle process: this also proves the
    # lock-step protocol survives errors and many requests.
    cases = []

    def expect(name, req, reply):
        def check(resp):
            assert resp == reply, f"{name}: {resp}"
        cases.append((name, req, check))

    def expect_token(name, req, token):
        expect(name, req, {"token": token})

    expect_token("V1 subscriber uid", build("subscriber", 2882341273), V1)
    expect_token("V2 subscriber uid 0", build("subscriber", 0), V2)
    expect_token("V3 account equals V1", build("subscriber", "2882341273"), V1)
    expect_token("derived publisher uid", build("publisher", 2882341273), PUB_UID)
    expect_token("derived publisher uid 0", build("publisher", 0), PUB_UID0)
    expect_token("derived publisher 3600/0",
                 build("publisher", 2882341273, 3600, 0, 1700000000, 12345), PUB_3600)
    # The library's own precondition: invalid appId -> "" (what our Swift builder must mirror).
    expect_token("bad appId refused", dict(build("publisher", 1), appId="nothex"), "")

    v1_fields = {"appId": APP_ID, "issueTs": 1111111, "expire": 600, "salt": 1,
                 "services": [{"type": 1, "privileges": {"1": 600},
                               "channel": CHANNEL, "uid": "2882341273"}]}

    def parse_case(name, token, cert, valid, fields=None):
        def check(resp):
            assert resp.get("valid") is valid, f"{name}: {resp}"
            if fields is not None:
                got = {k: v for k, v in resp.items() if k != "valid"}
                assert got == fields, f"{name}: {resp}"
        cases.append((name, {"op": "parse", "token": token, "appCertificate": cert}, check))

    parse_case("parse V1 right cert", V1, CERT, True, v1_fields)
    parse_case("parse V1 wrong cert", V1, "a" * 32, False, v1_fields)
    parse_case("parse V1g (Go deflate) right cert", V1G, CERT, True, v1_fields)
    parse_case("parse V4 (RTC+RTM)", V4, CERT, True, {
        "appId": APP_ID, "issueTs": 1111111, "expire": 600, "salt": 1,
        "services": [{"type": 1, "privileges": {"1": 600, "2": 600, "3": 600, "4": 600},
                      "channel": CHANNEL, "uid": "2882341273"},
                     {"type": 2, "privileges": {"1": 600}, "userId": "test_user"}]})

    def expect_error(name, req):
        def check(resp):
            assert set(resp) == {"error"} and resp["error"], f"{name}: {resp}"
        cases.append((name, req, check))

    expect_error("garbage token", {"op": "parse", "token": "007!!!notbase64", "appCertificate": CERT})
    expect_error("006 token", {"op": "parse", "token": "006" + APP_ID + "IACV0fZU", "appCertificate": CERT})
    expect_error("truncated token", {"op": "parse", "token": V1[:40], "appCertificate": CERT})
    expect_error("unknown op", {"op": "nope"})
    expect_error("not JSON", "this is not json")
    expect_error("blank line", "")
    # A valid request after all the errors must still be answered correctly; "id" is echoed.
    expect("V1 after errors", dict(build("subscriber", 2882341273), id=7), {"token": V1, "id": 7})

    lines = [c[1] if isinstance(c[1], str) else json.dumps(c[1]) for c in cases]
    proc = subprocess.run([sys.executable, ORACLE], input="\n".join(lines) + "\n",
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.splitlines()
    assert len(out) == len(cases), f"{len(out)} replies for {len(cases)} requests:\n{proc.stdout}"

    failed = 0
    for (name, _, check), line in zip(cases, out):
        try:
            check(json.loads(line))
        except AssertionError as e:
            failed += 1
            print(f"FAIL {name}: {e}")
    print(f"{len(cases) - failed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
