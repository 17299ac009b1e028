#!/usr/bin/env bash
# stop_ministack.sh WORKDIR — stop what start_ministack.sh started (PIDs in WORKDIR/pids); the
# pid-file stop (SIGTERM, 5 s grace, SIGKILL) is the same one the mail peers use.
exec "$(dirname "$0")/../mail/stop_peers.sh" "$@"
