#!/usr/bin/env bash
# Self-check of the mail test peers: start them in a temp dir, run selftest.py against them,
# stop them (also on failure). Exit status is the test result.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
W=$(mktemp -d /tmp/mailpeers.XXXXXX)
trap '"$HERE/stop_peers.sh" "$W"; rm -rf "$W"' EXIT
"$HERE/start_peers.sh" "$W"
set -a; . "$W/env.sh"; set +a
"${MAIL_PARSE%% *}" "$HERE/selftest.py"
