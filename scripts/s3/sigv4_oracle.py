#!/usr/bin/env python3
"""Independent AWS SigV4 oracle backed by botocore (pinned in scripts/s3/requirements.txt).

The Swift tests (Tests/SigV4Tests) drive this over stdin/stdout as JSON Lines: one request object
per line in, exactly one response object per line out (flushed), until EOF.

  {"op":"presign", "method":"PUT"|"GET"|"HEAD", "endpoint": "http://127.0.0.1:9000" | null (AWS),
   "style":"path"|"virtual", "region", "bucket", "key", "expires", "contentType"?,
   "accessKey", "secret", "token"?, "time": unix seconds (float; botocore drops the fraction)}
      -> {"url": str}         boto3 `generate_presigned_url` (S3SigV4QueryAuth underneath)
  {"op":"signHeaders", "method", "url", "headers":{...}, "region", "accessKey", "secret", "token"?,
   "time", "unsignedPayload": bool, "body": str}
      -> {"headers": {...}, "canonicalRequest": str}     botocore `S3SigV4Auth`
  anything that fails -> {"error": str}

No signing logic of our own: we only freeze botocore's clock (it reads it via
botocore.auth.get_current_datetime) so both sides sign the same instant.
"""
import datetime
import json
import sys

import boto3
import botocore.auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

_now = [datetime.datetime(2000, 1, 1)]
botocore.auth.get_current_datetime = lambda *args, **kwargs: _now[0]

_session = boto3.session.Session()  # one session: its loader caches the service model
_clients = {}


def freeze(unix_time):
    # botocore uses a naive UTC datetime.
    _now[0] = datetime.datetime.fromtimestamp(unix_time, datetime.timezone.utc).replace(tzinfo=None)


def client(req):
    k = (req.get("endpoint"), req["style"], req["region"], req["accessKey"], req["secret"], req.get("token"))
    if k not in _clients:
        _clients[k] = _session.client(
            "s3",
            region_name=req["region"],
            endpoint_url=req.get("endpoint"),
            aws_access_key_id=req["accessKey"],
            aws_secret_access_key=req["secret"],
            aws_session_token=req.get("token"),
            # No checksum parameters: a presigned URL must not commit to a body.
            config=Config(signature_version="s3v4", s3={"addressing_style": req["style"]},
                          request_checksum_calculation="when_required"),
        )
    return _clients[k]


def presign(req):
    freeze(req["time"])
    params = {"Bucket": req["bucket"], "Key": req["key"]}
    if req.get("contentType") is not None:
        params["ContentType"] = req["contentType"]
    op = {"PUT": "put_object", "GET": "get_object", "HEAD": "head_object"}[req["method"]]
    url = client(req).generate_presigned_url(op, Params=params, ExpiresIn=req["expires"], HttpMethod=req["method"])
    return {"url": url}


def sign_headers(req):
    freeze(req["time"])
    creds = Credentials(req["accessKey"], req["secret"], req.get("token"))
    body = req.get("body", "").encode()
    request = AWSRequest(method=req["method"], url=req["url"], headers=dict(req.get("headers", {})), data=body)
    request.context["client_config"] = Config(s3={"payload_signing_enabled": not req["unsignedPayload"]})
    auth = _RecordingS3SigV4Auth(creds, "s3", req["region"])
    auth.add_auth(request)
    return {"headers": dict(request.headers.items()), "canonicalRequest": auth.last_canonical_request}


class _RecordingS3SigV4Auth(botocore.auth.S3SigV4Auth):
    """botocore's header signer, keeping the canonical request it signed."""

    def canonical_request(self, request):
        self.last_canonical_request = super().canonical_request(request)
        return self.last_canonical_request


def main():
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            req = json.loads(line)
            out = {"presign": presign, "signHeaders": sign_headers}[req["op"]](req)
        except Exception as e:  # noqa: BLE001 — report, keep serving
            out = {"error": f"{type(e).__name__}: {e}"}
        sys.stdout.write(json.dumps(out) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
