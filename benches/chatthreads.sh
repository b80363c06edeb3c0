#!/usr/bin/env bash
# chatthreads.sh [BIN]: one fresh server (BIN, default target/release/confab) under the chat load
# (5,000 connections in rooms of 5, 1,000 msg/s), and the CPU of each of its threads, by name,
# over the steady state (from /proc/PID/task/*/stat; threads that ended meanwhile, as tantivy's
# indexing threads do at each commit, in one row), then the bench's latency and CPU lines.
# CONFAB_BENCH names the load generator (default target/release/confab-bench); EXTRA adds
# server options (e.g. EXTRA="--search-idle-after 0s"). Tests never run it.
set -euo pipefail
bin=${1:-target/release/confab}
bench=${CONFAB_BENCH:-target/release/confab-bench}
export CONFAB_JWT_SECRET=${CONFAB_JWT_SECRET:-benchsecretbenchsecretbenchsecret00}
# CHAT_SECS: the chat load's measured duration (default 12 s); the threads are read over the
# CHAT_SECS - 4 s from 7 s after the start (warm-up and connects done).
secs=${CHAT_SECS:-12}
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
work=$(mktemp -d "${TMPDIR:-/tmp}/confab-threads.XXXXXX")
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
"$bench" chat --url "http://$addr" --server-pid "$pid" --connections 5000 --conversations 1000 \
    --rate 1000 --warmup-secs 3 --duration-secs "$secs" --drain-secs 3 >"$work/bench.out" 2>&1 &
load=$!
python3 - "$pid" 7 "$((secs - 4))" <<'PY'
import collections, os, sys, time
pid, wait, span = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
def snap():
    ticks = collections.Counter()
    # The process's own line counts every thread, ended ones too (tantivy's indexing threads
    # end at each commit and new ones start): what no live thread accounts for is theirs.
    stat = open(f'/proc/{pid}/stat').read()
    fields = stat[stat.rindex(')') + 2:].split()
    ticks[None] = int(fields[11]) + int(fields[12])
    for task in os.listdir(f'/proc/{pid}/task'):
        try:
            stat = open(f'/proc/{pid}/task/{task}/stat').read()
        except OSError:
            continue
        name = stat[stat.index('(') + 1:stat.rindex(')')]
        fields = stat[stat.rindex(')') + 2:].split()
        ticks[name] += int(fields[11]) + int(fields[12])
    return ticks
time.sleep(wait); a = snap(); time.sleep(span); b = snap()
hz = os.sysconf('SC_CLK_TCK')
total = b.pop(None) - a.pop(None)
print(f"total {total / hz / span:.3f} cores")
b['(ended threads)'] = total - sum(b[k] - a.get(k, 0) for k in b)
for k in sorted(b, key=lambda k: -(b[k] - a.get(k, 0))):
    cores = (b[k] - a.get(k, 0)) / hz / span
    if cores > 0.001:
        print(f"  {k:20s} {cores:.3f} cores")
PY
wait "$load"
grep -E "ack latency|  latency|server \(proc\)" "$work/bench.out"
