#!/usr/bin/env python3
"""Independent AccessToken2 ("007") oracle backed by PyPI `agoraiotools` (pinned in requirements.txt).

The Swift tests drive this over stdin/stdout as JSON Lines: one request object per line in,
exactly one response object per line out (flushed), until EOF:

  {"op":"build","appId","appCertificate","channel","uid"|"account","role":"publisher"|"subscriber",
   "tokenExpire","privilegeExpire","issueTs","salt"}            -> {"token": str}   ("" = library refused)
  {"op":"parse","token","appCertificate"}
      -> {"valid","appId","issueTs","expire","salt","services":[{"type","privileges":{"1":600},...}]}
  anything that fails                                           -> {"error": str}
An optional "id" in a request is echoed back so a client can sanity-check the pairing.

Deliberately no token logic of our own: building and parsing are the library's; we only pin
issueTs/salt (the library takes them from the clock / secrets) and add signature verification,
which the library does not offer.
"""
import base64
import hmac
import importlib
import json
import sys
import zlib

# Import the submodules explicitly: the package __init__ rebinds `agoraiotools.AccessToken` to the
# legacy 006 class and `agoraiotools.RtcTokenBuilder2` to a class, shadowing the modules we need.
at2 = importlib.import_module("agoraiotools.AccessToken2")
rtc2 = importlib.import_module("agoraiotools.RtcTokenBuilder2")
packer = importlib.import_module("agoraiotools.Packer")

# AccessToken.from_string print()s its errors; keep stdout reserved for protocol lines.
OUT = sys.stdout
sys.stdout = sys.stderr

ROLES = {"publisher": rtc2.Role_Publisher, "subscriber": rtc2.Role_Subscriber}


def build(req):
    issue_ts, salt = int(req["issueTs"]), int(req["salt"])

    # The builder constructs AccessToken itself with issue_ts=now and a random salt, and the
    # constructor cannot pin issueTs 0. Swap in a subclass (in the builder module's namespace only,
    # for this call) that overwrites the name-mangled fields after the library's __init__ ran, so
    # the library's own role/uid/privilege logic and packing stay in charge.
    class PinnedAccessToken(at2.AccessToken):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self._AccessToken__issue_ts = issue_ts
            self._AccessToken__salt = salt

    if ("uid" in req) == ("account" in req):
        raise ValueError("give exactly one of uid (int) or account (str)")
    if "uid" in req:
        user = req["uid"]
        if type(user) is not int:  # the library's `uid == 0` test must see an int, not "0"
            raise ValueError("uid must be an integer")
    else:
        user = req["account"]
        if not isinstance(user, str):
            raise ValueError("account must be a string")
    role = ROLES[req["role"]]

    original = rtc2.AccessToken
    rtc2.AccessToken = PinnedAccessToken
    try:
        # build_token_with_uid forwards to build_token_with_user_account; both are the same code path.
        token = rtc2.RtcTokenBuilder.build_token_with_uid(
            req["appId"], req["appCertificate"], req["channel"], user, role,
            int(req["tokenExpire"]), int(req["privilegeExpire"]))
    finally:
        rtc2.AccessToken = original
    return {"token": token}


# Name-mangled service fields the library keeps private; output keys follow our Swift naming.
SERVICE_FIELDS = {
    1: [("channel", "_ServiceRtc__channel_name"), ("uid", "_ServiceRtc__uid")],
    2: [("userId", "_ServiceRtm__user_id")],
    5: [("userId", "_ServiceChat__user_id")],
    7: [("roomUuid", "_ServiceApaas__room_uuid"), ("userUuid", "_ServiceApaas__user_uuid"),
        ("role", "_ServiceApaas__role")],
}


def text(v):
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else v


def parse(req):
    token, cert = req["token"], req["appCertificate"]
    tok = at2.AccessToken()
    try:
        ok = tok.from_string(token)
    except ValueError as e:  # the library wraps every failure, incl. an unknown service type
        raise ValueError(f"library could not parse token: {e}") from None
    if not ok:
        raise ValueError("not a 007 token (bad version prefix)")

    # The library parses but never verifies. Verify over the *original* signingInfo bytes (not a
    # re-serialisation, which could hide packing bugs), using the library's own key derivation.
    raw = zlib.decompress(base64.b64decode(token[3:]))
    signature, signing_info = packer.unpack_string(raw)
    tok._AccessToken__app_cert = cert.encode("utf-8")
    sign_key = tok._AccessToken__signing()
    expected = hmac.new(sign_key, signing_info, "sha256").digest()

    services = []
    for stype, svc in sorted(tok._AccessToken__service.items()):
        entry = {"type": stype,
                 "privileges": {str(k): v for k, v in sorted(svc._Service__privileges.items())}}
        for key, attr in SERVICE_FIELDS.get(stype, []):
            entry[key] = text(getattr(svc, attr))
        services.append(entry)

    return {"valid": hmac.compare_digest(signature, expected),
            "appId": text(tok._AccessToken__app_id),
            "issueTs": tok._AccessToken__issue_ts,
            "expire": tok._AccessToken__expire,
            "salt": tok._AccessToken__salt,
            "services": services}


OPS = {"build": build, "parse": parse}


def handle(line):
    try:
        req = json.loads(line)
    except ValueError as e:
        return {"error": f"bad JSON: {e}"}
    if not isinstance(req, dict):
        return {"error": "request must be a JSON object"}
    try:
        resp = OPS[req.get("op")](req)
    except KeyError as e:
        resp = {"error": f"missing or unknown field/op: {e}"}
    except Exception as e:  # any library/struct failure must become a reply, never a crash
        resp = {"error": f"{type(e).__name__}: {e}"}
    if "id" in req:
        resp["id"] = req["id"]
    return resp


def main():
    # One reply per input line, blank lines included, so a lock-step client can never hang.
    for line in sys.stdin:
        OUT.write(json.dumps(handle(line)) + "\n")
        OUT.flush()


if __name__ == "__main__":
    main()
