#!/usr/bin/env bash
# histthreads.sh [BIN]: one fresh server (BIN, default target/release/confab) seeded with
# MESSAGES (default 200,000) pipelined messages by `confab-bench history --fresh`, and the CPU
# of each of the server's threads, by name, per acknowledged message over the seeding (from
# /proc/PID/task/*/stat; threads that ended meanwhile in one row), then the bench's seeding
# figures. CONFAB_BENCH names the load generator (default target/release/confab-bench); EXTRA
# adds server options. Tests never run it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib/server.sh"
bin=${1:-target/release/confab}
bench=${CONFAB_BENCH:-target/release/confab-bench}
messages=${MESSAGES:-200000}
export CONFAB_JWT_SECRET=${CONFAB_JWT_SECRET:-benchsecretbenchsecretbenchsecret00}
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
work=$(mktemp -d "${TMPDIR:-/tmp}/confab-hist.XXXXXX")
trap 'kill ${server_pid:-} 2>/dev/null || true; rm -rf "$work"' EXIT
# shellcheck disable=SC2086
start_fresh_server "$bin" "$work" ${EXTRA:-}
"$bench" history --url "http://$server_addr" --server-pid "$server_pid" --messages "$messages" \
    --fresh --walk-secs 1 --duration-secs 1 >"$work/bench.out" 2>&1 &
load=$!
# The threads are read over the seeding alone: from the bench's "seeding" line to its "seeded".
wait_for() {
    until grep -q "$1" "$work/bench.out"; do
        kill -0 "$load" 2>/dev/null || { cat "$work/bench.out"; exit 1; }
        sleep 0.01
    done
}
wait_for '; seeding '
before=$(python3 "$here/lib/threads.py" snap "$server_pid")
wait_for 'history: seeded '
after=$(python3 "$here/lib/threads.py" snap "$server_pid")
wait "$load"
python3 "$here/lib/threads.py" report "$before" "$after" --per-message "$messages"
grep "history: seeded" "$work/bench.out"
python3 - "$work/bench.out" <<'PY'
import json, sys
report = json.loads([l for l in open(sys.argv[1]) if l.startswith('{')][-1])['history']
print(f"durable acks/s {report['seed_acks_per_sec']:.0f}, server CPU per ack "
      f"{report['seed_server_cpu_us_per_ack']:.2f} µs (the bench's own probe), ack p99 "
      f"{report['seed_ack_latency']['p99_ms']} ms")
PY
