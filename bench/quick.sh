#!/usr/bin/env bash
# One command for weft's own figures on this machine (issue 4): builds the release binaries,
# starts weft on loopback pinned to CPU 1, creates the accounts, runs weft-bench pinned to CPU 0
# (connect N over ws with SCRAM-SHA-1, SCRAM-SHA-256 and PLAIN; throughput PAIRS pairs over ws
# and over TCP for T seconds), then the bare WebSocket relay as the ceiling, prints the figures
# and stops what it started, by pid.
#
#   bench/quick.sh           N=1000 sessions, 10 pairs, 10 s
#   bench/quick.sh --smoke   N=20, 2 s: only checks that every scenario completes (CI)
#
# Overrides: N, PAIRS, T, PING (ping sample), HTTP_PORT, C2S_PORT, RELAY_PORT, OUT (JSON lines
# file; default in the run's temporary directory), PROFILE (cargo profile), CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

SMOKE=0
[[ ${1:-} == --smoke ]] && SMOKE=1
if ((SMOKE)); then
    N=${N:-20} T=${T:-2} PAIRS=${PAIRS:-10} WARMUP=0.5
else
    N=${N:-1000} T=${T:-10} PAIRS=${PAIRS:-10} WARMUP=1
fi
PING=${PING:-$((N < 1000 ? N : 1000))}
HTTP_PORT=${HTTP_PORT:-25280} C2S_PORT=${C2S_PORT:-25222} RELAY_PORT=${RELAY_PORT:-25290}
USERS=$((N > 2 * PAIRS ? N : 2 * PAIRS))

# PROFILE=dev reuses a debug build (e.g. in CI, where tests built it already): fine for
# --smoke, meaningless for figures.
PROFILE=${PROFILE:-release}
cargo build --profile "$PROFILE" -q -p weft -p weft-bench
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/$([[ $PROFILE == dev ]] && echo debug || echo "$PROFILE")
WORK=$(mktemp -d "${TMPDIR:-/tmp}/weft-bench.XXXXXX")
OUT=${OUT:-$WORK/results.jsonl}

# Server on CPU 1, generator on CPU 0, when the machine has two; the records say what was used.
SERVER_CPU=() GEN_CPU=()
if command -v taskset >/dev/null && (($(nproc) >= 2)); then
    SERVER_CPU=(taskset -c 1) GEN_CPU=(taskset -c 0)
fi
# Every session is a descriptor in both processes; the soft limit goes up to the hard one.
ulimit -n "$(ulimit -Hn)"

weft_config "$WORK/weft.toml" "$WORK/data" "$HTTP_PORT" "$C2S_PORT"

# Only processes this script started, by pid; a stopped one is forgotten so its pid is never reused.
WEFT='' RELAY=''
cleanup() {
    for pid in $WEFT $RELAY; do kill "$pid" 2>/dev/null || true; done
    for pid in $WEFT $RELAY; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$WORK/data"
}
trap cleanup EXIT

wait_port() { # bounded: 10 s
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "nothing listens on 127.0.0.1:$1" >&2
    return 1
}

"$BIN/weft-bench" users --weft-config "$WORK/weft.toml" --n "$USERS"
start_weft() {
    "${SERVER_CPU[@]}" "$BIN/weft" --config "$WORK/weft.toml" >>"$WORK/weft.log" 2>&1 &
    WEFT=$!
    wait_port "$HTTP_PORT"
    wait_port "$C2S_PORT"
}
stop_weft() {
    kill "$WEFT"
    wait "$WEFT" || true
    WEFT=
}

bench() { "${GEN_CPU[@]}" "$BIN/weft-bench" "$@" --json-out "$OUT"; echo; }
ws() { echo --transport ws --port "$HTTP_PORT" --server-pid "$WEFT" --label weft; }
tcp() { echo --transport tcp --port "$C2S_PORT" --server-pid "$WEFT" --label weft; }

# A fresh server for each connect run: memory freed by earlier sessions stays in the
# allocator and would hide the growth per session.
for mech in scram-sha-1 scram-sha-256 plain; do
    start_weft
    # shellcheck disable=SC2046 # word splitting of the option list is intended
    bench connect $(ws) --mech "$mech" --n "$N" --ping-sample "$PING"
    stop_weft
done
start_weft
# shellcheck disable=SC2046
bench throughput $(ws) --mech scram-sha-1 --pairs "$PAIRS" --seconds "$T" --warmup "$WARMUP"
# shellcheck disable=SC2046
bench throughput $(tcp) --mech scram-sha-1 --pairs "$PAIRS" --seconds "$T" --warmup "$WARMUP"
stop_weft

"${SERVER_CPU[@]}" "$BIN/weft-relay" --listen "127.0.0.1:$RELAY_PORT" --max-seconds 600 >"$WORK/relay.log" 2>&1 &
RELAY=$!
wait_port "$RELAY_PORT"
bench throughput --target relay --transport ws --port "$RELAY_PORT" --path /relay --server-pid "$RELAY" \
    --label relay --pairs "$PAIRS" --seconds "$T" --warmup "$WARMUP"

"$BIN/weft-bench" summary "$OUT"
echo "quick.sh: all scenarios completed; records in $OUT, weft log in $WORK/weft.log"
