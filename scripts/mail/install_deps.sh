#!/usr/bin/env bash
# System packages the mail peers need (Debian 12, as root): openssl and exim4-daemon-light.
# Installs only what is missing. The package's postinst may start the system exim daemon on
# port 25; we do not want it (our tests start their own), so stop it if it came up.
set -euo pipefail
need=()
command -v exim4 >/dev/null || need+=(exim4-daemon-light)
command -v openssl >/dev/null || need+=(openssl)
[ ${#need[@]} -eq 0 ] && exit 0
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
if [ -s /run/exim4/exim.pid ]; then
  pid=$(cat /run/exim4/exim.pid)
  if kill -0 "$pid" 2>/dev/null; then echo "stopping system exim4 daemon (pid $pid)" >&2; $SUDO kill "$pid"; fi
fi
