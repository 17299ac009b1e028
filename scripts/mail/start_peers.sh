#!/usr/bin/env bash
# start_peers.sh WORKDIR — start every SMTP peer the mail integration tests use:
#   sink A: strict aiosmtpd sink, STARTTLS port + implicit-TLS port, cert for localhost/127.0.0.1
#   sink B: same sink, STARTTLS port, cert for wrong.example.com (hostname-mismatch tests)
#   Exim 4: real MTA, STARTTLS + AUTH + PIPELINING, delivers everything into a Maildir
# Writes WORKDIR/env.sh (source it) and WORKDIR/pids; stop with stop_peers.sh WORKDIR.
# Needs exim4 + openssl (scripts/mail/install_deps.sh) and python3 for $ROOT/.venv.
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 WORKDIR" >&2; exit 2; }
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
mkdir -p "$1"
WORKDIR=$(realpath "$1")
USER_=mailtest PASS_=mailtest-Secret.42   # fixed test credentials, same on every peer

# A previous run in the same WORKDIR: stop it first so ports and pids stay consistent.
[ -f "$WORKDIR/pids" ] && "$HERE/stop_peers.sh" "$WORKDIR"
command -v exim4 >/dev/null || { echo "exim4 missing: run scripts/mail/install_deps.sh" >&2; exit 1; }

"$HERE/make_certs.sh" "$WORKDIR/certs"
CERTS=$WORKDIR/certs

# Shared project venv; install our pins only when aiosmtpd is not importable yet.
VENV=$ROOT/.venv
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
if ! "$VENV/bin/python" -c 'import aiosmtpd' 2>/dev/null; then
  "$VENV/bin/pip" install -q --disable-pip-version-check -r "$HERE/requirements.txt"
fi
PY=$VENV/bin/python

# Free ports from the OS: bind all four at once so they are distinct, then release them.
read -r P_SINK P_TLS P_WRONG P_EXIM < <("$PY" -c '
import socket
ss = [socket.socket() for _ in range(4)]
for s in ss: s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in ss))')

: >"$WORKDIR/pids"
ok=0
trap '[ $ok = 1 ] || "$HERE/stop_peers.sh" "$WORKDIR"' EXIT   # no half-started set on failure

start_sink() { # NAME ARGS... ; stdout/stderr to files so "$(start_peers.sh)" never hangs
  "$PY" "$HERE/smtp_sink.py" --host 127.0.0.1 --user "$USER_" --password "$PASS_" "${@:2}" \
    >"$WORKDIR/$1.out" 2>"$WORKDIR/$1.err" </dev/null &
  echo $! >>"$WORKDIR/pids"
}
start_sink sink-a --port "$P_SINK" --implicit-tls-port "$P_TLS" \
  --cert "$CERTS/server.pem" --key "$CERTS/server.key" --maildir "$WORKDIR/sink-a"
start_sink sink-b --port "$P_WRONG" \
  --cert "$CERTS/wrong.pem" --key "$CERTS/wrong.key" --maildir "$WORKDIR/sink-b"
"$HERE/start_exim.sh" "$WORKDIR/exim" "$P_EXIM" "$CERTS/server.pem" "$CERTS/server.key" \
  "$USER_" "$PASS_" >>"$WORKDIR/pids"

for name in sink-a sink-b; do
  for _ in $(seq 150); do grep -qx READY "$WORKDIR/$name.out" && continue 2; sleep 0.1; done
  echo "$name not READY within 15 s:" >&2; cat "$WORKDIR/$name.err" >&2; exit 1
done

{
  q() { printf 'export %s=%q\n' "$1" "$2"; }
  q SMTP_SINK_PORT "$P_SINK"
  q SMTP_SINK_TLS_PORT "$P_TLS"
  q SMTP_SINK_WRONGCERT_PORT "$P_WRONG"
  q SMTP_SINK_DIR "$WORKDIR/sink-a"
  q SMTP_SINK_WRONGCERT_DIR "$WORKDIR/sink-b"
  q SMTP_SINK_USER "$USER_"
  q SMTP_SINK_PASSWORD "$PASS_"
  q EXIM_PORT "$P_EXIM"
  q EXIM_MAILDIR "$WORKDIR/exim/maildir"
  q EXIM_USER "$USER_"
  q EXIM_PASSWORD "$PASS_"
  q SMTP_TEST_CA_FILE "$CERTS/ca.pem"
  q MAIL_PARSE "$PY $HERE/parse_eml.py"
} >"$WORKDIR/env.sh.tmp"
mv "$WORKDIR/env.sh.tmp" "$WORKDIR/env.sh"
ok=1
echo "mail peers up: sink $P_SINK (tls $P_TLS), wrong-cert sink $P_WRONG, exim $P_EXIM; source $WORKDIR/env.sh" >&2
