#!/usr/bin/env bash
# schemathesis against the live production binary: every documented operation fuzzed with valid
# credentials (member/creator JWT, admin key, cron secret), zero responses >= 500, responses
# conforming to Resources/openapi.json. Called by scripts/test (needs APP_BINARY and, for S3,
# the ministack env); runnable alone: scripts/schemathesis/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
VENV="$ROOT/.venv-schemathesis"
if [ ! -x "$VENV/bin/schemathesis" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check -r scripts/schemathesis/requirements.txt
fi
: "${APP_BINARY:?set APP_BINARY to the built App executable}"
WORK=$(mktemp -d /tmp/livestream-st.XXXXXX)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
JWT_SECRET="schemathesis-jwt-secret-0123456789abcdef"
ADMIN_KEY="schemathesis-admin-key-0123"
CRON="schemathesis-cron-secret-0123"
stop() { [ -n "${PID:-}" ] && kill "$PID" 2>/dev/null; wait "${PID:-}" 2>/dev/null || true; rm -rf "$WORK"; }
trap stop EXIT

env -i PATH="$PATH" HOME="$WORK" SQLITE_PATH="$WORK/app.sqlite" JWT_SECRET="$JWT_SECRET" \
  AGORA_APP_ID=970CA35de60c44645bbae8a215061b33 AGORA_APP_CERTIFICATE=5CFd2fd1755d40ecb72977518be15d3b \
  ADMIN_API_KEY="$ADMIN_KEY" CRON_SECRET="$CRON" AGORA_NCS_SECRET=schemathesis-ncs-secret \
  EMAIL_TRANSPORT=outbox RATE_LIMIT_ENABLED=false LOG_LEVEL=warning PUBLIC_BASE_URL="http://127.0.0.1:$PORT" \
  ${S3_ENDPOINT:+S3_ENDPOINT="$S3_ENDPOINT" AWS_ACCESS_KEY_ID="$AWS_ACCESS_KEY_ID" AWS_SECRET_ACCESS_KEY="$AWS_SECRET_ACCESS_KEY" AWS_REGION="$AWS_REGION" AWS_BUCKET_NAME="$AWS_BUCKET_NAME"} \
  "$APP_BINARY" serve --env production --hostname 127.0.0.1 --port "$PORT" >"$WORK/server.log" 2>&1 &
PID=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.2; done
BASE="http://127.0.0.1:$PORT"

# Seed: a creator with a stream and a follower, so some generated requests reach real rows.
curl -sf -X POST "$BASE/api/admin/import" -H "Authorization: Bearer $ADMIN_KEY" -H 'Content-Type: application/json' -d '{
  "users": [{"id": "creator", "name": "Coach", "email": "coach@example.com", "role": "creator", "timezone": "Europe/Berlin"},
            {"id": "member", "name": "Member", "email": "member@example.com", "timezone": "Asia/Tokyo"}],
  "follows": [{"followerId": "member", "followedId": "creator"}]}' >/dev/null
CREATOR=$("$VENV/bin/python" scripts/schemathesis/mint_jwt.py "$JWT_SECRET" creator 7200)
STREAM=$(curl -sf -X POST "$BASE/api/creator/streams/create" -H "Authorization: Bearer $CREATOR" -H 'Content-Type: application/json' \
  -d '{"creatorId": "creator", "title": "Seed", "isScheduled": true, "startTime": "2031-01-01T10:00:00Z"}' \
  | "$VENV/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["stream"]["id"])')
# Path parameters point at the seeded rows, so requests reach the handlers' logic, not only 404s.
cat >"$WORK/schemathesis.toml" <<TOML
[parameters]
streamId = "$STREAM"
creatorId = "creator"
userId = "member"
TOML

CHECKS=not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance
# One worker: with two, hypothesis (inside schemathesis) parses lambda sources with `ast.parse` in two
# threads at once, which CPython 3.11.7 can fail with "SystemError: AST constructor recursion depth
# mismatch" (CPython gh-106905, a race in the interpreter) and schemathesis reports a Runtime Error.
run() {
  local name=$1; shift
  echo "--- schemathesis: $name"
  "$VENV/bin/schemathesis" --config-file "$WORK/schemathesis.toml" run "$BASE/openapi.json" --checks "$CHECKS" --max-examples "${ST_MAX_EXAMPLES:-25}" \
    --workers 1 --no-color --seed 20261125 --generation-database none --suppress-health-check all "$@"
}
status=0
run "user routes as a creator" -H "Authorization: Bearer $CREATOR" \
  --exclude-path-regex '^/(api/(admin|cron|webhooks)|dev)/' || status=1
run "admin routes with the admin key" -H "Authorization: Bearer $ADMIN_KEY" --include-path-regex '^/api/admin/' || status=1
run "cron routes with the cron secret" -H "Authorization: Bearer $CRON" --include-path-regex '^/api/cron/' || status=1
run "webhooks without a signature" --include-path-regex '^/api/webhooks/' || status=1
if grep -q '"status":"5' "$WORK/server.log" || grep -qi 'internal_error' "$WORK/server.log"; then
  echo "server logged 5xx responses:"; grep -i '"status":"5\|internal_error' "$WORK/server.log" | head -20; status=1
fi
exit $status
