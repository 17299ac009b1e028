#!/usr/bin/env bash
# Throwaway test PKI: make_certs.sh DIR
#   DIR/ca.pem (+ca.key)           self-signed CA that test clients trust
#   DIR/server.pem, server.key     for DNS:localhost + IP:127.0.0.1
#   DIR/wrong.pem,  wrong.key      for DNS:wrong.example.com only (hostname-mismatch tests)
# RSA 2048 + SHA-256 with full extensions (SKI/AKI, EKU serverAuth) so strict verifiers
# (BoringSSL, GnuTLS, Python) all accept it. Regenerated on every call; valid 30 days.
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
DIR=$1
mkdir -p "$DIR"
cd "$DIR"
chmod 755 .   # Exim runs as Debian-exim and must reach the cert and key

openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 30 -subj "/CN=Mail Test CA" \
  -keyout ca.key -out ca.pem \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -addext "subjectKeyIdentifier=hash" 2>/dev/null

leaf() { # leaf NAME CN SAN
  openssl req -newkey rsa:2048 -nodes -sha256 -subj "/CN=$2" -keyout "$1.key" -out "$1.csr" 2>/dev/null
  printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" \
    "extendedKeyUsage=serverAuth" "subjectAltName=$3" "subjectKeyIdentifier=hash" \
    "authorityKeyIdentifier=keyid" >"$1.ext"
  openssl x509 -req -sha256 -days 30 -in "$1.csr" -CA ca.pem -CAkey ca.key -set_serial "0x$(openssl rand -hex 16)" \
    -extfile "$1.ext" -out "$1.pem" 2>/dev/null
  rm -f "$1.csr" "$1.ext"
}
leaf server localhost "DNS:localhost,IP:127.0.0.1"
leaf wrong wrong.example.com "DNS:wrong.example.com"

# Keys: root (sinks) and Debian-exim (Exim drops to it with -C) must read them.
chmod 600 ca.key
if getent group Debian-exim >/dev/null; then
  chgrp Debian-exim server.key wrong.key && chmod 640 server.key wrong.key
else
  chmod 644 server.key wrong.key   # throwaway keys; no exim group on this machine
fi
chmod 644 ca.pem server.pem wrong.pem
