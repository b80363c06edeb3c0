#!/bin/bash
# Container healthcheck for Confab: exits 0 when `GET /health` answers 200.
#
# Installed in the image as /usr/local/bin/confab-healthcheck. The slim image has no curl, so
# this speaks HTTP/1.1 over bash's /dev/tcp. It asks the address in CONFAB_LISTEN (a wildcard
# address becomes loopback). Usage: confab-healthcheck [PATH]   (default /health)
set -euo pipefail

listen="${CONFAB_LISTEN:-127.0.0.1:8080}"
path="${1:-/health}"
port="${listen##*:}"
host="${listen%:*}"
host="${host#[}"
host="${host%]}"
case "$host" in
  0.0.0.0 | "") host=127.0.0.1 ;;
  ::) host=::1 ;;
esac

if ! exec 3<>"/dev/tcp/${host}/${port}"; then
  echo "confab-healthcheck: cannot connect to ${host}:${port}" >&2
  exit 1
fi
printf 'GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n' "$path" >&3
status=""
IFS= read -r -t 5 status <&3 || true
exec 3<&-
case "$status" in
  "HTTP/1."?" 200 "*) exit 0 ;;
esac
echo "confab-healthcheck: GET ${path} on ${host}:${port} answered: ${status:-nothing}" >&2
exit 1
