#!/usr/bin/env bash
# start_ministack.sh WORKDIR — start a local S3 (ministack, AUTH=true) on a free 127.0.0.1 port and
# create the test bucket with a signed request. Writes WORKDIR/env.sh (source it: S3_ENDPOINT,
# AWS_* ...) and WORKDIR/pids; stop with stop_ministack.sh WORKDIR.
#
# ministack verifies presigned URLs (signature, expiry, signed headers) for every key, but it does
# NOT check header signatures (Authorization) made with its root key. So the credentials handed to
# the tests are an IAM user's (created here, allowed s3:*), whose every signature is verified, plus
# STS temporary credentials of that user (S3_SESSION_*) to exercise X-Amz-Security-Token.
# ministack pins its own botocore, so it lives in its own venv $ROOT/.venv-s3; the setup calls use
# boto3 from the oracle venv $ROOT/.venv (scripts/s3/requirements.txt).
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 WORKDIR" >&2; exit 2; }
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
mkdir -p "$1"
WORKDIR=$(realpath "$1")
# Distinctive root credentials: ministack treats `test` (or any 12-digit id) as root too.
ROOT_KEY=AKIDLIVESTREAMROOT ROOT_SECRET='ministack/Root+Key=42' REGION=us-east-1 BUCKET=livestream-test

[ -f "$WORKDIR/pids" ] && "$HERE/stop_ministack.sh" "$WORKDIR"

S3VENV=$ROOT/.venv-s3
[ -x "$S3VENV/bin/python" ] || python3 -m venv "$S3VENV"
if [ "$("$S3VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("ministack"))' 2>/dev/null)" != 1.5.33 ]; then
  "$S3VENV/bin/pip" install -q --disable-pip-version-check -r "$HERE/requirements-ministack.txt"
fi
VENV=$ROOT/.venv
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -c 'import boto3' 2>/dev/null \
  || "$VENV/bin/pip" install -q --disable-pip-version-check -r "$HERE/requirements.txt"

PORT=$("$VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

: >"$WORKDIR/pids"
ok=0
trap '[ $ok = 1 ] || "$HERE/stop_ministack.sh" "$WORKDIR"' EXIT   # no half-started server on failure

# TMPDIR: ministack writes its pid file there. SERVICES: only what we use, starts faster.
env AUTH=true BIND_HOST=127.0.0.1 GATEWAY_PORT="$PORT" SERVICES=s3,iam,sts LOG_LEVEL=WARNING TMPDIR="$WORKDIR" \
    AWS_ACCESS_KEY_ID="$ROOT_KEY" AWS_SECRET_ACCESS_KEY="$ROOT_SECRET" AWS_DEFAULT_REGION="$REGION" MINISTACK_REGION="$REGION" \
    "$S3VENV/bin/ministack" >"$WORKDIR/ministack.log" 2>&1 </dev/null &
echo $! >>"$WORKDIR/pids"

for _ in $(seq 150); do
  curl -s -o /dev/null "http://127.0.0.1:$PORT/" && break
  kill -0 "$(cat "$WORKDIR/pids")" 2>/dev/null || { echo "ministack exited:" >&2; cat "$WORKDIR/ministack.log" >&2; exit 1; }
  sleep 0.1
done
curl -s -o /dev/null "http://127.0.0.1:$PORT/" || { echo "ministack not answering within 15 s" >&2; cat "$WORKDIR/ministack.log" >&2; exit 1; }

# IAM user + STS session, then the bucket, with correctly signed requests (boto3). Also proves
# that AUTH=true refuses a wrong secret for these credentials. Prints the env.sh lines.
"$VENV/bin/python" - "http://127.0.0.1:$PORT" "$ROOT_KEY" "$ROOT_SECRET" "$REGION" "$BUCKET" >"$WORKDIR/env.sh.tmp" <<'PY'
import json, shlex, sys
import boto3, botocore.exceptions
endpoint, root_key, root_secret, region, bucket = sys.argv[1:]
def client(service, key, secret, token=None):
    return boto3.client(service, endpoint_url=endpoint, region_name=region, aws_access_key_id=key,
                        aws_secret_access_key=secret, aws_session_token=token,
                        config=boto3.session.Config(s3={"addressing_style": "path"}))
iam = client("iam", root_key, root_secret)
iam.create_user(UserName="livestream-app")
iam.put_user_policy(UserName="livestream-app", PolicyName="s3-all", PolicyDocument=json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
user = iam.create_access_key(UserName="livestream-app")["AccessKey"]
key, secret = user["AccessKeyId"], user["SecretAccessKey"]
try:
    client("s3", key, secret + "x").list_buckets()
    sys.exit("ministack accepted a wrong secret: AUTH=true is not in effect")
except botocore.exceptions.ClientError as e:
    assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 403, e.response
client("s3", key, secret).create_bucket(Bucket=bucket)
session = client("sts", key, secret).get_session_token(DurationSeconds=43200)["Credentials"]
for name, value in [("S3_ENDPOINT", endpoint), ("AWS_ACCESS_KEY_ID", key), ("AWS_SECRET_ACCESS_KEY", secret),
                    ("AWS_REGION", region), ("AWS_BUCKET_NAME", bucket),
                    ("S3_SESSION_ACCESS_KEY_ID", session["AccessKeyId"]),
                    ("S3_SESSION_SECRET_ACCESS_KEY", session["SecretAccessKey"]),
                    ("S3_SESSION_TOKEN", session["SessionToken"])]:
    print(f"export {name}={shlex.quote(value)}")
PY
mv "$WORKDIR/env.sh.tmp" "$WORKDIR/env.sh"
ok=1
echo "ministack (S3, AUTH=true) on http://127.0.0.1:$PORT, bucket $BUCKET; source $WORKDIR/env.sh" >&2
