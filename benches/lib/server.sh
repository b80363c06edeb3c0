# Sourced by the bench scripts: one fresh Confab for a measurement.
#
# start_fresh_server BIN WORK [server options...]: starts BIN on an ephemeral loopback port with
# its data in WORK/data and its log in WORK/confab.log, rate limits off, secret
# $CONFAB_JWT_SECRET; sets `server_pid` and `server_addr` (host:port) once it listens.
start_fresh_server() {
    local bin=$1 work=$2
    shift 2
    "$bin" serve --listen 127.0.0.1:0 --data-dir "$work/data" --message-rate-per-minute 0 \
        --join-rate-per-minute 0 --rest-rate-per-minute 0 --jwt-secret "$CONFAB_JWT_SECRET" \
        --log warn "$@" >"$work/confab.log" 2>&1 &
    server_pid=$!
    server_addr=
    for _ in $(seq 200); do
        server_addr=$(grep -soE '127\.0\.0\.1:[0-9]+' "$work/confab.log" | head -n1 || true)
        [[ -n $server_addr ]] && return 0
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.05
    done
    echo "start_fresh_server: $bin did not start listening:" >&2
    cat "$work/confab.log" >&2
    return 1
}
