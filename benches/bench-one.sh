#!/usr/bin/env bash
# bench-one.sh BIN SCENARIO [bench args...]: one fresh server, one scenario, then stop it.
set -u
BIN=$1; shift; SC=$1; shift
export CONFAB_JWT_SECRET=benchsecretbenchsecretbenchsecret00
ulimit -n 20000
rm -rf /tmp/cb/data; mkdir -p /tmp/cb
$BIN serve --listen 127.0.0.1:8090 --data-dir /tmp/cb/data --message-rate-per-minute 0 --join-rate-per-minute 0 --rest-rate-per-minute 0 --jwt-secret "$CONFAB_JWT_SECRET" --log warn &
PID=$!
sleep 1
"${CONFAB_BENCH:-target/release/confab-bench}" $SC --url http://127.0.0.1:8090 --server-pid $PID "$@" 2>&1
kill $PID; wait $PID 2>/dev/null
