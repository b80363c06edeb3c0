#!/usr/bin/env bash
# histthreads.sh [BIN]: one fresh server (BIN, default target/release/confab) seeded with
# MESSAGES (default 200,000) pipelined messages by `confab-bench history --fresh`, and the CPU
# of each of the server's threads, by name, per acknowledged message over the seeding (from
# /proc/PID/task/*/stat; threads that ended meanwhile in one row), then the bench's seeding
# line. CONFAB_BENCH names the load generator (default target/release/confab-bench); EXTRA adds
# server options. Tests never run it.
set -euo pipefail
bin=${1:-target/release/confab}
bench=${CONFAB_BENCH:-target/release/confab-bench}
messages=${MESSAGES:-200000}
export CONFAB_JWT_SECRET=${CONFAB_JWT_SECRET:-benchsecretbenchsecretbenchsecret00}
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
work=$(mktemp -d "${TMPDIR:-/tmp}/confab-hist.XXXXXX")
"$bin" serve --listen 127.0.0.1:0 --data-dir "$work/data" --message-rate-per-minute 0 \
    --join-rate-per-minute 0 --rest-rate-per-minute 0 --jwt-secret "$CONFAB_JWT_SECRET" \
    --log warn ${EXTRA:-} >"$work/log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 100); do
    addr=$(grep -soE '127\.0\.0\.1:[0-9]+' "$work/log" | head -n1 || true)
    [[ -n $addr ]] && break
    sleep 0.05
done
snap() {
    python3 - "$pid" <<'PY'
import collections, json, os, sys
pid = sys.argv[1]
ticks = collections.Counter()
stat = open(f'/proc/{pid}/stat').read()
ticks['(process)'] = sum(map(int, stat[stat.rindex(')') + 2:].split()[11:13]))
for task in os.listdir(f'/proc/{pid}/task'):
    try:
        stat = open(f'/proc/{pid}/task/{task}/stat').read()
    except OSError:
        continue
    name = stat[stat.index('(') + 1:stat.rindex(')')]
    ticks[name] += sum(map(int, stat[stat.rindex(')') + 2:].split()[11:13]))
print(json.dumps(ticks))
PY
}
"$bench" history --url "http://$addr" --server-pid "$pid" --messages "$messages" --fresh \
    --walk-secs 1 --duration-secs 1 >"$work/bench.out" 2>&1 &
load=$!
# The threads are read over the seeding alone: from the bench's "seeding" line to its "seeded".
wait_for() {
    until grep -q "$1" "$work/bench.out"; do
        kill -0 "$load" 2>/dev/null || { cat "$work/bench.out"; exit 1; }
        sleep 0.01
    done
}
wait_for '; seeding '
before=$(snap)
wait_for 'history: seeded '
after=$(snap)
wait "$load"
python3 - "$before" "$after" "$messages" <<'PY'
import json, os, sys
a, b, n = json.loads(sys.argv[1]), json.loads(sys.argv[2]), int(sys.argv[3])
us = 1e6 / os.sysconf('SC_CLK_TCK') / n
total = b.pop('(process)') - a.pop('(process)')
print(f"server CPU per message {total * us:.2f} µs")
b['(ended threads)'] = total - sum(b[k] - a.get(k, 0) for k in b)
for k in sorted(b, key=lambda k: -(b[k] - a.get(k, 0))):
    if b[k] - a.get(k, 0) > 0:
        print(f"  {k:22s} {(b[k] - a.get(k, 0)) * us:.2f} µs")
PY
grep "history: seeded" "$work/bench.out"
python3 - "$work/bench.out" <<'PY'
import json, sys
report = json.loads([l for l in open(sys.argv[1]) if l.startswith('{')][-1])['history']
print(f"durable acks/s {report['seed_acks_per_sec']:.0f}, server CPU per ack "
      f"{report['seed_server_cpu_us_per_ack']} µs (the bench's own probe), ack p99 "
      f"{report['seed_ack_latency']['p99_ms']} ms")
PY
