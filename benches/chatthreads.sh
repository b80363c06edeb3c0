#!/usr/bin/env bash
# chatthreads.sh [BIN]: one fresh server (BIN, default target/release/confab) under the chat load
# (5,000 connections in rooms of 5, 1,000 msg/s), and the CPU of each of its threads, by name,
# over the steady state (from /proc/PID/task/*/stat; threads that ended meanwhile, as tantivy's
# indexing threads do at each commit, in one row), then the bench's latency and CPU lines.
# CONFAB_BENCH names the load generator (default target/release/confab-bench); EXTRA adds
# server options (e.g. EXTRA="--search-idle-after 0s"). Tests never run it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib/server.sh"
bin=${1:-target/release/confab}
bench=${CONFAB_BENCH:-target/release/confab-bench}
export CONFAB_JWT_SECRET=${CONFAB_JWT_SECRET:-benchsecretbenchsecretbenchsecret00}
# CHAT_SECS: the chat load's measured duration (default 12 s); the threads are read over the
# CHAT_SECS - 4 s from 7 s after the start (warm-up and connects done).
secs=${CHAT_SECS:-12}
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
work=$(mktemp -d "${TMPDIR:-/tmp}/confab-threads.XXXXXX")
trap 'kill ${server_pid:-} 2>/dev/null || true; rm -rf "$work"' EXIT
# shellcheck disable=SC2086
start_fresh_server "$bin" "$work" ${EXTRA:-}
"$bench" chat --url "http://$server_addr" --server-pid "$server_pid" --connections 5000 \
    --conversations 1000 --rate 1000 --warmup-secs 3 --duration-secs "$secs" --drain-secs 3 \
    >"$work/bench.out" 2>&1 &
load=$!
sleep 7
before=$(python3 "$here/lib/threads.py" snap "$server_pid")
sleep "$((secs - 4))"
after=$(python3 "$here/lib/threads.py" snap "$server_pid")
python3 "$here/lib/threads.py" report "$before" "$after" --cores "$((secs - 4))"
wait "$load"
grep -E "ack latency|  latency|server \(proc\)" "$work/bench.out"
