#!/usr/bin/env bash
# start_exim.sh WORKDIR PORT CERT KEY USER PASS
# Renders exim.conf.template into WORKDIR/exim.conf and runs Debian's exim4 as a foreground
# daemon (-bdf) in the background, on 127.0.0.1:PORT. Mail for any address lands in the
# Maildir WORKDIR/maildir (new/). Prints the daemon PID on stdout once the port accepts
# connections. Installs nothing: needs exim4-daemon-light (see install_deps.sh).
set -euo pipefail
[ $# -eq 6 ] || { echo "usage: $0 WORKDIR PORT CERT KEY USER PASS" >&2; exit 2; }
HERE=$(cd "$(dirname "$0")" && pwd)
WORKDIR=$1 PORT=$2 USER_=$5 PASS_=$6
CERT=$(realpath "$3") KEY=$(realpath "$4")
EXIM=$(command -v exim4 || command -v exim || true)
[ -n "$EXIM" ] || { echo "exim4 not installed: apt-get install -y --no-install-recommends exim4-daemon-light" >&2; exit 1; }
# USER/PASS are pasted into ${if eq{..}} expansions: keep them free of Exim syntax.
for v in "$USER_" "$PASS_"; do
  [[ $v =~ ^[A-Za-z0-9._@+-]+$ ]] || { echo "USER/PASS must match [A-Za-z0-9._@+-]+" >&2; exit 2; }
done

mkdir -p "$WORKDIR"/{spool,log,maildir}
WORKDIR=$(realpath "$WORKDIR")
# With -C Exim gives up root and runs as Debian-exim: it must own spool/log/maildir and be
# able to traverse every parent directory (mktemp -d makes 0700 ones) and read the key.
chown -R Debian-exim:Debian-exim "$WORKDIR"/{spool,log,maildir}
d=$WORKDIR
while [ "$d" != / ]; do
  if ! runuser -u Debian-exim -- test -x "$d"; then echo "chmod o+x $d (for Debian-exim)" >&2; chmod o+x "$d"; fi
  d=$(dirname "$d")
done
for f in "$CERT" "$KEY"; do
  runuser -u Debian-exim -- test -r "$f" || { echo "Debian-exim cannot read $f" >&2; exit 1; }
done

sed -e "s|@@WORKDIR@@|$WORKDIR|g" -e "s|@@PORT@@|$PORT|g" -e "s|@@CERT@@|$CERT|g" \
    -e "s|@@KEY@@|$KEY|g" -e "s|@@USER@@|$USER_|g" -e "s|@@PASS@@|$PASS_|g" \
    "$HERE/exim.conf.template" >"$WORKDIR/exim.conf"
chmod 644 "$WORKDIR/exim.conf"
"$EXIM" -C "$WORKDIR/exim.conf" -bV >/dev/null || { echo "exim rejected $WORKDIR/exim.conf" >&2; exit 1; }

# -bdf: daemon, no fork, so $! is the daemon. -q30s: a queue runner as a safety net for
# anything deferred. Output to files so callers' $(...) never wait on our stdout.
"$EXIM" -C "$WORKDIR/exim.conf" -bdf -q30s -oX "$PORT" >"$WORKDIR/log/daemon.out" 2>&1 </dev/null &
PID=$!
for _ in $(seq 100); do
  kill -0 "$PID" 2>/dev/null || { echo "exim exited; see $WORKDIR/log" >&2; cat "$WORKDIR"/log/* >&2 || true; exit 1; }
  if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then echo "$PID"; exit 0; fi
  sleep 0.1
done
echo "exim did not listen on $PORT within 10 s" >&2; kill "$PID"; exit 1
