#!/usr/bin/env bash
# sweep.sh [OUT_DIR]: the runs behind benches/plots (issue 16), then the plots. Each point is one
# benches/peers/compare.sh run (a fresh Confab, then a fresh µWebSockets.js peer, same
# arguments): fan-out at 4 rates, chat at 3, idle at 3 connection counts, then `confab-bench
# floor` once. The reports stay in $SWEEP_DIR (default: a new temp dir, printed first) as
# confab/NAME.json, uws/NAME.json and floor.json, with the load average before each point in
# load.txt; `confab-bench plot` draws them into OUT_DIR (default benches/plots). The sizes are
# small on purpose (2 shared cores): about 2–3 minutes. Run from the repository root with the
# release binaries built and node/npm on the path:
#   cargo build --release -p confab-server --bin confab -p confab-benches --bin confab-bench
set -euo pipefail
out=${1:-benches/plots}
here=$(cd "$(dirname "$0")" && pwd)
bench=${CONFAB_BENCH:-target/release/confab-bench}
reports=${SWEEP_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/confab-sweep.XXXXXX")}
mkdir -p "$reports"
echo "reports in $reports" >&2

# compare NAME SCENARIO [args...]: one compare.sh run, its reports kept as NAME.json.
compare() {
    echo "$(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg): ${*:2}" | tee -a "$reports/load.txt" >&2
    COMPARE_SAVE_DIR=$reports COMPARE_SAVE_NAME=$1 "$here/peers/compare.sh" "${@:2}"
}

short=(--warmup-secs 1 --duration-secs 4 --drain-secs 3)
for rate in 10 25 50 100; do
    compare "fanout-$rate" fanout --members 1000 --rate "$rate" "${short[@]}"
done
for rate in 250 1000 2000; do
    compare "chat-$rate" chat --connections 2000 --conversations 400 --rate "$rate" "${short[@]}"
done
for connections in 1000 5000 10000; do
    compare "idle-$connections" idle --connections "$connections" \
        --conversations $((connections / 10)) --hold-secs 3
done
# The kernel's price of one write, as a fan-out to 1,000 members at 25 msg/s makes them.
"$bench" floor --connections 1000 --rounds 100 --gap-ms 40 >"$reports/floor.json"

"$bench" plot --out-dir "$out" "confab=$reports/confab" "µWebSockets.js=$reports/uws" \
    "$reports/floor.json"
