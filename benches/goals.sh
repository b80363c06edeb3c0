#!/usr/bin/env bash
# goals.sh [OUT_DIR]: every goal of the per-message issue (16) measured in one run, against a
# fresh Confab and a fresh µWebSockets.js peer for each scenario (benches/peers/compare.sh),
# then one table: each figure for both, the ratio, the goal, met or not. Run from the
# repository root on a quiet host; CONFAB and CONFAB_BENCH name the binaries (default
# target/release/confab and target/release/confab-bench). Reports are kept under OUT_DIR
# (default a fresh temporary directory, printed), one JSON per scenario and server, for
# `confab-bench plot`. Takes about three minutes; tests never run it.
#
# To compare two builds, run it once per build, alternating, on the same host:
#   CONFAB=/tmp/before/confab benches/goals.sh /tmp/goals-before
#   CONFAB=target/release/confab benches/goals.sh /tmp/goals-after
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib/server.sh"
out=${1:-$(mktemp -d "${TMPDIR:-/tmp}/confab-goals.XXXXXX")}
mkdir -p "$out"
confab=${CONFAB:-target/release/confab}
bench=${CONFAB_BENCH:-target/release/confab-bench}
export CONFAB CONFAB_BENCH COMPARE_SAVE_DIR=$out
export CONFAB_JWT_SECRET=${CONFAB_JWT_SECRET:-benchsecretbenchsecretbenchsecret00}
echo "goals.sh: $confab, reports in $out, load $(cut -d' ' -f1-3 /proc/loadavg)"

compare() {
    local name=$1
    shift
    COMPARE_SAVE_NAME=$name "$here/peers/compare.sh" "$@" >"$out/$name.log" 2>&1 ||
        { cat "$out/$name.log" >&2; exit 1; }
    sed -n '/^== .*: confab vs uws peer/,$p' "$out/$name.log"
}

# Server CPU per delivery at 50,000 deliveries/s (2,000 members, 25 msg/s).
compare fanout-50k fanout --members 2000 --rate 25 --warmup-secs 2 --duration-secs 8 --drain-secs 3
# Best fan-out: 600,000 deliveries/s offered (2,000 members, 300 msg/s from 4 senders).
compare fanout-600k fanout --members 2000 --rate 300 --senders 4 --warmup-secs 2 --duration-secs 6 --drain-secs 3
# Chat: 5,000 connections in rooms of 5, 1,000 msg/s.
compare chat chat --connections 5000 --conversations 1000 --rate 1000 --warmup-secs 3 --duration-secs 10 --drain-secs 3

# Durable acks/s of Confab alone (the peer persists nothing): seeding a fresh conversation.
work=$(mktemp -d "${TMPDIR:-/tmp}/confab-goals-history.XXXXXX")
trap 'kill ${server_pid:-} 2>/dev/null; rm -rf "$work"' EXIT
start_fresh_server "$confab" "$work"
"$bench" history --url "http://$server_addr" --server-pid "$server_pid" --messages 200000 --fresh \
    --walk-secs 1 --duration-secs 1 2>"$out/history.log" | grep '^{' >"$out/history.json"
kill "$server_pid"; wait "$server_pid" 2>/dev/null || true
rm -rf "$work"
trap - EXIT
# The kernel's price of one small loopback write: the floor of CPU per delivery; and the disk's
# price of a commit (write + fdatasync, in the temporary directory the servers' data went to):
# the floor under a durable ack.
"$bench" floor 2>"$out/floor.log" | grep '^{' >"$out/floor.json"

node - "$out" <<'JS'
const fs = require('fs');
const dir = process.argv[2];
const read = (p) => JSON.parse(fs.readFileSync(`${dir}/${p}`, 'utf8'));
const pair = (name) => [read(`confab/${name}.json`), read(`uws/${name}.json`)];
const [f50, u50] = pair('fanout-50k');
const [f600, u600] = pair('fanout-600k');
const [chat, uchat] = pair('chat');
const history = read('history.json').history;
const floor = read('floor.json').cpu_us_per_write;
const rows = [];
const row = (goal, confab, uws, ratio, target, met) => rows.push({ goal, confab, uws, ratio, target, met });
const r = (x, y) => (x != null && y ? x / y : null);
let x = f50.server.cpu_us_per_delivery, y = u50.server.cpu_us_per_delivery;
row('fan-out CPU per delivery at 50k/s (µs)', x, y, r(x, y), '≤ 1.1×', r(x, y) <= 1.1);
row('  … against the loopback write floor (µs)', x, floor, r(x, floor), '', null);
x = chat.server.cpu_cores; y = uchat.server.cpu_cores;
row('chat server CPU (cores at 1,000 msg/s)', x, y, r(x, y), '≤ 2×', r(x, y) <= 2);
x = chat.traffic.latency.p99_ms; y = uchat.traffic.latency.p99_ms;
row('chat delivery p99 (ms)', x, y, r(x, y), '≤ 2×', r(x, y) <= 2);
x = chat.traffic.ack_latency.p99_ms;
row('chat ack p99 (ms, durable)', x, uchat.traffic.ack_latency.p99_ms, null, '≤ 1 ms', x <= 1);
const sync = read('floor.json').sync;
if (sync) {
  row("  … against the disk's sync floor (20 KiB + fdatasync, p99 ms)", x, sync.p99_ms, r(x, sync.p99_ms), '', null);
}
x = f600.traffic.deliveries_per_sec; y = u600.traffic.deliveries_per_sec;
const p99ok = f600.traffic.latency.p99_ms < 100;
row(`fan-out at 600k/s offered: deliveries/s (p99 ${f600.traffic.latency.p99_ms.toFixed(1)} / ${u600.traffic.latency.p99_ms.toFixed(1)} ms)`,
    x, y, r(x, y), '≥ 1× at p99 < 100 ms', r(x, y) >= 0.99 && p99ok);
row('durable acks/s (history seeding)', history.seed_acks_per_sec, null, null, '≥ 66,000', history.seed_acks_per_sec >= 66000);
const show = (v) => (v == null ? '' : Number.isInteger(v) ? String(v) : v >= 100 ? v.toFixed(0) : v.toFixed(2));
console.log(`\n== issue 16 goals (${dir})`);
console.log('| goal | Confab | µWS | ratio | target | met |');
console.log('|---|---|---|---|---|---|');
for (const g of rows) {
  const met = g.met == null ? '' : g.met ? 'yes' : 'no';
  console.log(`| ${g.goal} | ${show(g.confab)} | ${show(g.uws)} | ${g.ratio == null ? '' : g.ratio.toFixed(2) + '×'} | ${g.target} | ${met} |`);
}
const losses = [f50, f600, chat].map((rep) => rep.traffic.loss + rep.traffic.unacked + rep.traffic.errors);
console.log(`loss + unacked + errors in Confab's runs: ${losses.join(', ')}`);
JS
