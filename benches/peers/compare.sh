#!/usr/bin/env bash
# compare.sh SCENARIO [bench args...]: runs one confab-bench scenario (idle, fanout or chat)
# against a fresh Confab server and then a fresh µWebSockets.js reference peer, with the same
# arguments, each on a free loopback port and read through --server-pid, and prints both
# reports and one side-by-side summary. Run from the repository root; CONFAB and CONFAB_BENCH
# name the binaries (default target/release/confab and target/release/confab-bench). With
# COMPARE_SAVE_DIR set, the two JSON reports are kept as $COMPARE_SAVE_DIR/confab/NAME.json and
# $COMPARE_SAVE_DIR/uws/NAME.json (NAME: $COMPARE_SAVE_NAME, default the scenario), for
# `confab-bench plot` (benches/sweep.sh does this).
set -euo pipefail
scenario=${1:?usage: compare.sh idle|fanout|chat [bench args...]}
shift
case $scenario in idle | fanout | chat) ;; *) echo "the peer speaks only idle, fanout and chat" >&2; exit 2 ;; esac
here=$(cd "$(dirname "$0")" && pwd)
confab=${CONFAB:-target/release/confab}
bench=${CONFAB_BENCH:-target/release/confab-bench}
export CONFAB_JWT_SECRET=${CONFAB_JWT_SECRET:-benchsecretbenchsecretbenchsecret00}
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
work=$(mktemp -d "${TMPDIR:-/tmp}/confab-compare.XXXXXX")
pid=
cleanup() {
    if [[ -n $pid ]]; then kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; fi
    rm -rf "$work"
}
trap cleanup EXIT

# Waits for the `listening` line of log $1 and prints the address it names.
address_in() {
    for _ in $(seq 100); do
        local addr
        addr=$(grep -oE '127\.0\.0\.1:[0-9]+' "$1" | head -n1 || true)
        if [[ -n $addr ]]; then echo "$addr"; return 0; fi
        sleep 0.05
    done
    echo "no listening address in $1" >&2
    cat "$1" >&2
    return 1
}

# Runs the scenario against http://$1 (pid $2), labelled $3; its JSON line goes to $work/$3.json.
run_bench() {
    echo "== $3: $bench $scenario --url http://$1 --server-pid $2 ${*:4}"
    "$bench" "$scenario" --url "http://$1" --server-pid "$2" "${@:4}" >"$work/$3.out"
    grep -v '^{' "$work/$3.out" || true
    grep '^{' "$work/$3.out" >"$work/$3.json"
    if [[ -n ${COMPARE_SAVE_DIR:-} ]]; then
        mkdir -p "$COMPARE_SAVE_DIR/$3"
        cp "$work/$3.json" "$COMPARE_SAVE_DIR/$3/${COMPARE_SAVE_NAME:-$scenario}.json"
    fi
}

# Confab as benches/bench-one.sh starts it: no rate limits, warnings only.
"$confab" serve --listen 127.0.0.1:0 --data-dir "$work/data" --message-rate-per-minute 0 \
    --join-rate-per-minute 0 --rest-rate-per-minute 0 --jwt-secret "$CONFAB_JWT_SECRET" \
    --log warn >"$work/confab.log" 2>&1 &
pid=$!
run_bench "$(address_in "$work/confab.log")" "$pid" confab "$@"
kill "$pid"; wait "$pid" 2>/dev/null || true; pid=

pid=$(UWS_PEER_LOG="$work/uws.log" "$here/uws/run" 0)
run_bench "$(address_in "$work/uws.log")" "$pid" uws "$@"
kill "$pid"; wait "$pid" 2>/dev/null || true; pid=

# One line per figure: Confab, the peer, and Confab / peer.
node - "$work/confab.json" "$work/uws.json" <<'JS'
const fs = require('fs');
const [a, b] = process.argv.slice(2).map((f) => JSON.parse(fs.readFileSync(f, 'utf8')));
const figures = [
  ['server cpu per delivery (µs)', (r) => r.server.cpu_us_per_delivery],
  ['server cpu (cores)', (r) => r.server.cpu_cores],
  ['deliveries/s', (r) => r.traffic?.deliveries_per_sec],
  ['delivery p50 (ms)', (r) => r.traffic?.latency.p50_ms],
  ['delivery p99 (ms)', (r) => r.traffic?.latency.p99_ms],
  ['ack p50 (ms)', (r) => r.traffic?.ack_latency.p50_ms],
  ['ack p99 (ms)', (r) => r.traffic?.ack_latency.p99_ms],
  ['loss', (r) => r.traffic?.loss],
  ['unacked', (r) => r.traffic?.unacked],
  ['errors', (r) => r.traffic?.errors],
  ['bytes per idle connection', (r) => r.server.bytes_per_connection],
  ['server cpu per connect (µs)', (r) => r.connections?.server_cpu_us_per_connect],
  ['connect rate (/s)', (r) => r.connections?.connect_rate_per_sec],
  ['connections failed', (r) => r.connections?.failed],
];
const show = (v) => (v == null ? 'n/a' : Number.isInteger(v) ? String(v) : v.toFixed(2));
console.log(`\n== ${a.scenario}: confab vs uws peer (same arguments, this run)`);
console.log(`${'figure'.padEnd(30)} ${'confab'.padStart(12)} ${'uws'.padStart(12)} ${'ratio'.padStart(8)}`);
for (const [name, get] of figures) {
  const [x, y] = [get(a), get(b)];
  if (x == null && y == null) continue;
  const ratio = x != null && y ? (x / y).toFixed(2) : '';
  console.log(`${name.padEnd(30)} ${show(x).padStart(12)} ${show(y).padStart(12)} ${ratio.padStart(8)}`);
}
JS
