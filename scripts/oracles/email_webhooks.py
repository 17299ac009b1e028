#!/usr/bin/env python3
"""Independent email-provider webhook oracle for the Swift tests (deps pinned in requirements.txt).

Reads ONE JSON object on stdin, writes ONE JSON object on stdout; errors go to stderr, exit 1.

  {"cmd":"svix","secret":"whsec_...","msg_id":"msg_...","timestamp":<int>,"body":"<raw>"}
      -> {"svix-id":str,"svix-timestamp":"<int>","svix-signature":"v1,<base64>"}
  {"cmd":"svix_secret"}      -> {"secret":"whsec_<base64 of 24 random bytes>"}
  {"cmd":"sendgrid_keypair"} -> {"public_key":"<base64 DER SubjectPublicKeyInfo>","private_key_pem":"<PKCS8 PEM>"}
  {"cmd":"sendgrid_sign","private_key_pem":str,"timestamp":"<str>","body":"<raw>"}
      -> {"X-Twilio-Email-Event-Webhook-Signature":"<base64 DER ECDSA>",
          "X-Twilio-Email-Event-Webhook-Timestamp":"<str>"}

Signing uses the providers' own libraries: the PyPI `svix` package (Webhook.sign/verify, which
delegates to `standardwebhooks`) and, for SendGrid, `cryptography` ECDSA P-256/SHA-256 whose
result is cross-checked with the `sendgrid` package's EventWebhook.verify_signature. Every
output is verified by the library before it is printed; a failed check exits non-zero.
"""
import base64
import json
import secrets
import sys
from datetime import datetime, timezone
from typing import Any, Callable, Dict

import standardwebhooks.webhooks as stdwh_module
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sendgrid.helpers.eventwebhook import EventWebhook
from svix.webhooks import Webhook

Json = Dict[str, Any]


def _verify_svix_at(wh: Webhook, body: str, headers: Dict[str, str], ts: int) -> None:
    """Run the library's verify with its clock pinned to `ts`.

    The library rejects timestamps more than 5 minutes from *now*; tests legitimately ask for
    stale/future timestamps (replay-window checks), so we pin the module's `datetime.now` to the
    message time. The HMAC comparison itself is entirely the library's.
    """

    class _Frozen(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> "datetime":  # type: ignore[override]
            return datetime.fromtimestamp(ts, tz=tz or timezone.utc)

    real = stdwh_module.datetime
    stdwh_module.datetime = _Frozen  # type: ignore[misc]
    try:
        wh.verify(body, headers)  # raises WebhookVerificationError on mismatch
    finally:
        stdwh_module.datetime = real  # type: ignore[misc]


def svix(req: Json) -> Json:
    ts = int(req["timestamp"])
    body = str(req["body"])
    msg_id = str(req["msg_id"])
    wh = Webhook(str(req["secret"]))
    # Must be timezone-aware UTC: the library does timestamp.replace(tzinfo=utc), so a naive
    # local-time datetime would silently shift the signed timestamp by the local UTC offset.
    sig = wh.sign(msg_id, datetime.fromtimestamp(ts, tz=timezone.utc), body)
    headers = {"svix-id": msg_id, "svix-timestamp": str(ts), "svix-signature": sig}
    _verify_svix_at(wh, body, headers, ts)
    return headers


def svix_secret(_: Json) -> Json:
    return {"secret": "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode("ascii")}


def sendgrid_keypair(_: Json) -> Json:
    key = ec.generate_private_key(ec.SECP256R1())
    spki = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return {"public_key": base64.b64encode(spki).decode("ascii"), "private_key_pem": pem.decode("ascii")}


def sendgrid_sign(req: Json) -> Json:
    ts = str(req["timestamp"])
    body = str(req["body"])
    key = serialization.load_pem_private_key(str(req["private_key_pem"]).encode("utf-8"), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("private_key_pem must be an ECDSA P-256 key")
    der_sig = key.sign((ts + body).encode("utf-8"), ec.ECDSA(hashes.SHA256()))
    sig = base64.b64encode(der_sig).decode("ascii")
    # Cross-check with SendGrid's own verifier, fed the public key exactly as SendGrid shows it
    # (single-line base64 DER SPKI); verify_signature's public_key argument wants the converted
    # EllipticCurvePublicKey object, which convert_public_key_to_ecdsa produces.
    spki_b64 = base64.b64encode(
        key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    ).decode("ascii")
    ew = EventWebhook()
    if not ew.verify_signature(body, sig, ts, ew.convert_public_key_to_ecdsa(spki_b64)):
        raise RuntimeError("sendgrid EventWebhook.verify_signature rejected our signature")
    return {"X-Twilio-Email-Event-Webhook-Signature": sig, "X-Twilio-Email-Event-Webhook-Timestamp": ts}


COMMANDS: Dict[str, Callable[[Json], Json]] = {
    "svix": svix,
    "svix_secret": svix_secret,
    "sendgrid_keypair": sendgrid_keypair,
    "sendgrid_sign": sendgrid_sign,
}


def main() -> int:
    try:
        req = json.loads(sys.stdin.read())
        if not isinstance(req, dict):
            raise ValueError("input must be a JSON object")
        cmd = req.get("cmd")
        handler = COMMANDS.get(cmd) if isinstance(cmd, str) else None
        if handler is None:
            print(f"email_webhooks: unknown cmd {cmd!r}; expected one of {sorted(COMMANDS)}", file=sys.stderr)
            return 2
        out = handler(req)
    except Exception as e:  # fail loudly: message on stderr, non-zero exit, nothing on stdout
        print(f"email_webhooks: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
