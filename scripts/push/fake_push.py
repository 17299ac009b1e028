#!/usr/bin/env python3
"""Contract-faithful fakes of APNs and FCM HTTP v1 (+ the Google OAuth token endpoint) for the
tests and the push benchmark. One hypercorn server: HTTPS with HTTP/2 (ALPN h2) for the push
APIs, plain HTTP for the control endpoints (/_log, /_reset, /_stats).

It generates its own CA + server certificate, the APNs .p8 key (P-256) and an FCM service
account (RSA 2048) into --dir, and checks what the real services check:
- APNs: HTTP/2 only; `authorization: bearer <JWT>` verified with PyJWT + cryptography (ES256,
  header kid = the key id, iss = the team id, iat present); apns-topic = the bundle id,
  apns-push-type, apns-priority 5|10, apns-expiration, apns-collapse-id <= 64 bytes, payload
  <= 4096 bytes with `aps`. Errors as Apple documents them: {"reason": ...}.
  Device tokens steer the answer: dead… 410 Unregistered (+timestamp), bad0… 400 BadDeviceToken,
  e0e0… 403 ExpiredProviderToken the first time a JWT is used with it, 5030… 503 once, 4290… 429 once.
- OAuth (token_uri): grant_type jwt-bearer, the assertion verified RS256 with the service
  account's public key (kid = private_key_id, iss = client_email, aud = token_uri, scope,
  exp - iat <= 3600) -> {access_token, expires_in: 3600, token_type: Bearer}.
- FCM: bearer must be an issued access token (401 UNAUTHENTICATED otherwise); message.token
  required; dead… -> 404 UNREGISTERED, quota… -> 429 QUOTA_EXCEEDED with Retry-After: 1 once.
Times are not checked against the wall clock (the tests drive their own clock); the token
ages the real services enforce are the client's rules, tested with an injected clock.

  fake_push.py --dir DIR [--latency-ms 50]   prints "READY <https port> <http port>"
"""
import argparse
import asyncio
import datetime
import json
import os
import socket
import ssl
import sys
import time
import urllib.parse
import uuid

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from hypercorn.asyncio import serve
from hypercorn.config import Config

TEAM_ID, KEY_ID, TOPIC = "TEAM123456", "KEY1234567", "com.example.fitlive"
PROJECT, CLIENT_EMAIL, PRIVATE_KEY_ID = "fit-live-test", "push@fit-live-test.iam.gserviceaccount.com", "k" + uuid.uuid4().hex[:12]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def pem(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()


def make_certs(directory):
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fake push CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
          .not_valid_after(now + datetime.timedelta(days=30))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    import ipaddress
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    with open(os.path.join(directory, "ca.pem"), "wb") as f:
        f.write(ca.public_bytes(serialization.Encoding.PEM))
    with open(os.path.join(directory, "server.pem"), "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(os.path.join(directory, "server.key"), "w") as f:
        f.write(pem(key))


class State:
    def __init__(self, latency):
        self.latency = latency
        self.apns = []          # accepted pushes
        self.fcm = []
        self.errors = []        # refused requests: (status, reason)
        self.jwts = set()       # distinct APNs provider JWTs seen
        self.access_tokens = set()
        self.token_requests = 0
        self.once = set()       # one-shot failures already served
        self.expired = {}       # device token -> the JWT answered ExpiredProviderToken
        self.verified = {}      # provider JWT -> (header, claims), verified once
        self.keep_log = True    # the benchmark only counts
        self.apns_count = 0


async def read_body(receive):
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


async def respond(send, status, payload=None, headers=()):
    data = json.dumps(payload).encode() if payload is not None else b""
    hs = [(b"content-type", b"application/json")] if payload is not None else []
    hs += [(k.encode(), v.encode()) for k, v in headers]
    await send({"type": "http.response.start", "status": status, "headers": hs})
    await send({"type": "http.response.body", "body": data})


def make_app(state, apns_public, fcm_public, token_uri):
    async def apns(scope, receive, send, token):
        body = await read_body(receive)
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}

        async def refuse(status, reason, extra=None):
            state.errors.append({"status": status, "reason": reason, "token": token})
            payload = {"reason": reason}
            if extra:
                payload.update(extra)
            await respond(send, status, payload)

        if scope.get("http_version") != "2":
            return await refuse(400, "HTTP2Required")   # APNs speaks HTTP/2 only
        auth = headers.get("authorization", "")
        if not auth.startswith("bearer "):
            return await refuse(403, "MissingProviderToken")
        provider_jwt = auth[len("bearer "):]
        # Like APNs, a provider token is verified once and then recognised.
        verified = state.verified.get(provider_jwt)
        if verified is None:
            try:
                header = jwt.get_unverified_header(provider_jwt)
                claims = jwt.decode(provider_jwt, apns_public, algorithms=["ES256"],
                                    options={"verify_exp": False, "verify_iat": False, "require": ["iss", "iat"]})
            except jwt.PyJWTError as e:
                return await refuse(403, "InvalidProviderToken", {"detail": str(e)})
            verified = state.verified[provider_jwt] = (header, claims)
        header, claims = verified
        if header.get("kid") != KEY_ID or claims.get("iss") != TEAM_ID or header.get("alg") != "ES256":
            return await refuse(403, "InvalidProviderToken")
        state.jwts.add(provider_jwt)
        if headers.get("apns-topic") != TOPIC:
            return await refuse(400, "TopicDisallowed" if "apns-topic" in headers else "MissingTopic")
        if headers.get("apns-push-type") not in ("alert", "background"):
            return await refuse(400, "InvalidPushType")
        if headers.get("apns-priority", "10") not in ("5", "10"):
            return await refuse(400, "BadPriority")
        if not headers.get("apns-expiration", "0").isdigit():
            return await refuse(400, "BadExpirationDate")
        if len(headers.get("apns-collapse-id", "").encode()) > 64:
            return await refuse(400, "BadCollapseId")
        if len(body) > 4096:
            return await refuse(413, "PayloadTooLarge")
        try:
            payload = json.loads(body)
            assert isinstance(payload.get("aps"), dict)
        except Exception:
            return await refuse(400, "PayloadEmpty")
        if token.startswith("dead"):
            return await refuse(410, "Unregistered", {"timestamp": int(time.time() * 1000)})
        if token.startswith("bad0"):
            return await refuse(400, "BadDeviceToken")
        if token.startswith("e0e0"):
            # The first JWT used with this token is "expired": the client must come back with a new one.
            refused = state.expired.setdefault(token, provider_jwt)
            if refused == provider_jwt:
                return await refuse(403, "ExpiredProviderToken")
        for prefix, status, reason in (("5030", 503, "ServiceUnavailable"), ("4290", 429, "TooManyRequests")):
            if token.startswith(prefix) and (token, prefix) not in state.once:
                state.once.add((token, prefix))
                return await refuse(status, reason)
        if state.latency:
            await asyncio.sleep(state.latency)
        apns_id = headers.get("apns-id") or str(uuid.uuid4()).upper()
        state.apns_count += 1
        if state.keep_log:
            state.apns.append({"token": token, "headers": {k: v for k, v in headers.items() if k.startswith("apns-")},
                               "payload": payload, "iat": claims["iat"]})
        await respond(send, 200, None, [("apns-id", apns_id)])

    async def oauth(scope, receive, send):
        form = urllib.parse.parse_qs((await read_body(receive)).decode())
        state.token_requests += 1
        if form.get("grant_type") != ["urn:ietf:params:oauth:grant-type:jwt-bearer"] or "assertion" not in form:
            return await respond(send, 400, {"error": "unsupported_grant_type"})
        assertion = form["assertion"][0]
        try:
            header = jwt.get_unverified_header(assertion)
            claims = jwt.decode(assertion, fcm_public, algorithms=["RS256"], audience=token_uri,
                                options={"verify_exp": False, "verify_iat": False, "require": ["iss", "aud", "iat", "exp", "scope"]})
        except jwt.PyJWTError as e:
            return await respond(send, 400, {"error": "invalid_grant", "error_description": str(e)})
        if (header.get("kid") != PRIVATE_KEY_ID or claims["iss"] != CLIENT_EMAIL
                or claims["scope"] != "https://www.googleapis.com/auth/firebase.messaging" or not 0 < claims["exp"] - claims["iat"] <= 3600):
            return await respond(send, 400, {"error": "invalid_grant", "error_description": "bad claims"})
        token = "ya29." + uuid.uuid4().hex
        state.access_tokens.add(token)
        await respond(send, 200, {"access_token": token, "expires_in": 3600, "token_type": "Bearer"})

    def fcm_error(code, status, error_code=None):
        error = {"code": code, "message": status, "status": status}
        if error_code:
            error["details"] = [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": error_code}]
        return {"error": error}

    async def fcm(scope, receive, send, project):
        body = await read_body(receive)
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        auth = headers.get("authorization", "")
        if project != PROJECT or not auth.startswith("Bearer ") or auth[7:] not in state.access_tokens:
            state.errors.append({"status": 401, "reason": "UNAUTHENTICATED"})
            return await respond(send, 401, fcm_error(401, "UNAUTHENTICATED"))
        try:
            message = json.loads(body)["message"]
            token = message["token"]
        except Exception:
            return await respond(send, 400, fcm_error(400, "INVALID_ARGUMENT", "INVALID_ARGUMENT"))
        if token.startswith("dead"):
            state.errors.append({"status": 404, "reason": "UNREGISTERED", "token": token})
            return await respond(send, 404, fcm_error(404, "NOT_FOUND", "UNREGISTERED"))
        if token.startswith("quota") and token not in state.once:
            state.once.add(token)
            state.errors.append({"status": 429, "reason": "QUOTA_EXCEEDED", "token": token})
            return await respond(send, 429, fcm_error(429, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED"), [("retry-after", "1")])
        if state.latency:
            await asyncio.sleep(state.latency)
        state.fcm.append({"token": token, "message": message})
        await respond(send, 200, {"name": f"projects/{PROJECT}/messages/{uuid.uuid4().hex}"})

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        path, method = scope["path"], scope["method"]
        if path.startswith("/3/device/") and method == "POST":
            return await apns(scope, receive, send, path[len("/3/device/"):])
        if path == "/token" and method == "POST":
            return await oauth(scope, receive, send)
        if path.startswith("/v1/projects/") and path.endswith("/messages:send") and method == "POST":
            return await fcm(scope, receive, send, path[len("/v1/projects/"):-len("/messages:send")])
        if scope["scheme"] == "http" and path == "/_log":
            return await respond(send, 200, {"apns": state.apns, "fcm": state.fcm, "errors": state.errors,
                                             "jwts": len(state.jwts), "accessTokens": len(state.access_tokens),
                                             "tokenRequests": state.token_requests})
        if scope["scheme"] == "http" and path == "/_stats":
            return await respond(send, 200, {"apns": state.apns_count, "fcm": len(state.fcm), "errors": len(state.errors),
                                             "jwts": len(state.jwts)})
        if scope["scheme"] == "http" and path == "/_reset" and method == "POST":
            state.apns.clear(); state.fcm.clear(); state.errors.clear(); state.once.clear(); state.expired.clear()
            return await respond(send, 200, {"ok": True})
        await respond(send, 404, {"reason": "NotFound"})

    return app


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", required=True)
    parser.add_argument("--latency-ms", type=int, default=0)
    parser.add_argument("--no-log", action="store_true", help="count pushes without keeping them (benchmarks)")
    args = parser.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    make_certs(args.dir)
    https_port, http_port = free_port(), free_port()
    apns_key = ec.generate_private_key(ec.SECP256R1())
    with open(os.path.join(args.dir, "apns.p8"), "w") as f:
        f.write(pem(apns_key))
    fcm_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token_uri = f"https://127.0.0.1:{https_port}/token"
    with open(os.path.join(args.dir, "service-account.json"), "w") as f:
        json.dump({"type": "service_account", "project_id": PROJECT, "private_key_id": PRIVATE_KEY_ID, "private_key": pem(fcm_key),
                   "client_email": CLIENT_EMAIL, "token_uri": token_uri}, f)
    with open(os.path.join(args.dir, "settings.json"), "w") as f:
        json.dump({"teamId": TEAM_ID, "keyId": KEY_ID, "topic": TOPIC, "baseURL": f"https://127.0.0.1:{https_port}",
                   "controlURL": f"http://127.0.0.1:{http_port}"}, f)
    config = Config()
    config.bind = [f"127.0.0.1:{https_port}"]
    config.insecure_bind = [f"127.0.0.1:{http_port}"]
    config.certfile = os.path.join(args.dir, "server.pem")
    config.keyfile = os.path.join(args.dir, "server.key")
    config.alpn_protocols = ["h2", "http/1.1"]
    config.accesslog = None
    config.errorlog = None
    config.h2_max_concurrent_streams = 1000
    config.keep_alive_timeout = 600
    # hypercorn closes a connection after 1,000 requests by default; APNs keeps it open (in-flight
    # streams would be cut off every 1,000 pushes).
    config.keep_alive_max_requests = 1 << 40
    state = State(args.latency_ms / 1000)
    state.keep_log = not args.no_log
    app = make_app(state, apns_key.public_key(), fcm_key.public_key(), token_uri)
    print(f"READY {https_port} {http_port}", flush=True)
    asyncio.run(serve(app, config))


if __name__ == "__main__":
    main()
