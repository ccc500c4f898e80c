#!/usr/bin/env bash
# weft next to Prosody and ejabberd (Debian packages) and a bare WebSocket relay, in one run,
# with one table of ratios (issue 4). Installs the peers if missing (apt-get, no packaged
# service started), builds weft and weft-bench, then for each server in turn (one running at a
# time, pinned to CPU 1; the generator on CPU 0), scenario by scenario, each scenario against
# every server before the next scenario starts (the ratios compare figures taken close together):
#   connect   N sessions over ws:// with SCRAM-SHA-1 on a fresh server: logins/s, memory per
#             idle session, a ping sample, in LOGIN_ROUNDS rounds (weft also over wss://);
#             then once over plain TCP on every server
#   throughput PAIRS pairs over ws and TCP (window mode), PAIRS and BIG_PAIRS pairs over ws and
#             TCP at window BIG_WINDOW (MANY_ROUNDS rounds), and PAIRS pairs over ws at half the
#             server's own ws peak (LATENCY_ROUNDS rounds);
#             weft-relay, the ceiling, in the ws runs right after weft (at weft's half peak in
#             the latency run)
#   scale     SCALE_N idle ws sessions on weft (memory slope, projection to 1,000,000)
#   bosh      (issue 20) XEP-0124/XEP-0206 BOSH at /http-bind on each server's http port, the
#             way browser clients run it (HTTP/1.1 kept alive, hold 1, up to 2 requests in
#             flight, one empty request held for the server to push): N_BOSH logins
#             (SCRAM-SHA-1, bind, initial presence) on a fresh server, logins/s, memory per
#             idle session and a ping sample; then BOSH_PAIRS pairs (window BOSH_WINDOW), msgs/s;
#             every XMPP server in turn, in BOSH_ROUNDS rounds
#   roster    (issue 18) ROSTER_N logins over ws of accounts with ROSTER_SIZE contacts each,
#             subscription both, all offline: SCRAM-SHA-1, bind, roster get (all items checked),
#             initial presence (probes), ping; logins/s, bounded to ROSTER_SECONDS
#   fanout    (issue 18) one user with FANOUT_N online contacts changes presence FANOUT_CHANGES
#             times, FANOUT_WINDOW changes in flight: deliveries/s (the target), send to last
#             delivery p50/p99; then FANOUT_CHANGES_1 changes one at a time (latency)
#             (both on rosters written into each server's store just before, after the rest)
#   mam-throughput (issue 19) MAM_PAIRS pairs over ws (window 32) with every message archived
#             (XEP-0313: weft's [modules.mam] with its defaults; Prosody's mod_mam in its
#             internal storage, or PROSODY_ARCHIVE=sql; ejabberd's mod_mam in Mnesia, its
#             default db),
#             each server right after a run of its own without the archive, in MAM_ROUNDS
#             rounds; the archive emptied before and its rows counted after every run
#             (2 × messages sent, or the run fails)
#   muc       (issue 20) XEP-0045: MUC_OCCUPANTS users join one new room (occupant 1 creates
#             it as an instant room), MUC_SENDERS of them send MUC_MESSAGES groupchat
#             messages, MUC_WINDOW in flight: deliveries/s (every occupant gets every message)
#             and send to last delivery p50/p99; then MUC_JOINS more users join the full room
#             (with its default history), MUC_JOIN_WINDOW in flight: joins/s, join time p99;
#             on each server freshly started, in MUC_ROUNDS rounds
#   mam-query (issue 19) bench1's archive filled with MAMQ_FILL messages from bench2 through the
#             server (ejabberd, and Prosody with PROSODY_ARCHIVE=sql: written into their
#             stores, which archive about 125 and 30 messages/s through the server), then MAMQ_CLIENTS sessions of bench1 page through it with bench2, pages of
#             MAMQ_PAGE (the last page, then back page by page) for MAMQ_SECONDS: queries/s and
#             query time p50/p99; each reply must hold a full page and a <fin/>
# and writes the table to bench/results/<date>-<commit>.md (+ .jsonl, + latest.md).
#
#   bench/compare.sh           full run (N=10000, T=10 s, 10 and 500 pairs, scale 19500)
#   bench/compare.sh --smoke   N=20, 2 s, 20 contacts, a 500-message archive, all servers and
#                              the relay: checks that
#                              every scenario completes, not how fast (CI; about 4 minutes)
#   SCENARIOS="roster fanout" SERVERS="weft prosody ejabberd" bench/compare.sh   only those
#
# Exits non-zero if any scenario did not complete (failed logins, lost messages, unanswered
# pings, a server that did not start). Needs root for the peers (installing them, running them
# as the prosody/ejabberd users). Overrides (environment): N, T, PAIRS, BIG_PAIRS, BIG_WINDOW,
# PING, SCALE_N (0: no scale run), LOGIN_ROUNDS, MANY_ROUNDS and LATENCY_ROUNDS (3 each;
# --smoke: 1), WARMUP, ROSTER_N ROSTER_SIZE ROSTER_SECONDS (2000, 200, 30; --smoke 20, 20, 20),
# FANOUT_N FANOUT_CHANGES FANOUT_CHANGES_1 FANOUT_SECONDS (500, 2000, 200, 30; --smoke 20, 10,
# 10, 10), ROSTER_ROUNDS (1) and FANOUT_ROUNDS (3; --smoke 1), FANOUT_WINDOW (changes in
# flight, 16), MUC_OCCUPANTS MUC_SENDERS MUC_MESSAGES MUC_WINDOW MUC_JOINS MUC_JOIN_WINDOW
# MUC_SECONDS MUC_ROUNDS (500, 10, 2000, 16, 100, 8, 30, 3; --smoke 20, 2, 10, 16, 5, 8, 10, 1),
# N_BOSH (2000; --smoke 20), BOSH_PAIRS (PAIRS), BOSH_WINDOW (32), BOSH_ROUNDS (3; --smoke 1),
# MAM_PAIRS (PAIRS) and MAM_ROUNDS (3; --smoke 1), MAMQ_FILL (100000; --smoke 500),
# MAMQ_CLIENTS (10; --smoke 2), MAMQ_PAGE (50), MAMQ_SECONDS (T), MAMQ_FILL_SECONDS (600,
# the fill's bound), MAMQ_FILL_EJABBERD (10000, see below), PROSODY_ARCHIVE (internal, or sql: SQLite; see below),
# SCENARIOS (subset of "connect throughput latency scale bosh roster fanout muc mam-throughput
# mam-query"; latency needs
# throughput), SERVERS (subset of "weft prosody ejabberd relay"), RESULTS (directory for the
# table; --smoke: the run's temporary directory), WEFT_BIN (a weft binary to run instead of the build's, for A/B runs), PROFILE (cargo profile; dev reuses a debug build, fine for
# --smoke only), CARGO_TARGET_DIR, and the ports
# WEFT_HTTP_PORT WEFT_HTTPS_PORT WEFT_C2S_PORT PROSODY_C2S_PORT PROSODY_HTTP_PORT
# EJABBERD_C2S_PORT EJABBERD_HTTP_PORT EJABBERD_DIST_PORT RELAY_PORT (all on 127.0.0.1, away
# from quick.sh's 252xx and interop/s2s's 127.0.0.2-.10).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PEERS_DIR=$ROOT/bench/peers
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

SMOKE=0
for arg in "$@"; do
    case $arg in
        --smoke) SMOKE=1 ;;
        -h | --help) sed -n '2,75p' "$0"; exit 0 ;;
        *) echo "compare.sh: unknown argument $arg (--smoke, --help)" >&2; exit 2 ;;
    esac
done
if ((SMOKE)); then
    N=${N:-20} T=${T:-2} PAIRS=${PAIRS:-10} BIG_PAIRS=${BIG_PAIRS:-20} WARMUP=${WARMUP:-0.5}
    SCALE_N=${SCALE_N:-0} SETTLE=0.5 BENCH_TIMEOUT=120 LOGIN_ROUNDS=${LOGIN_ROUNDS:-1}
    LATENCY_ROUNDS=${LATENCY_ROUNDS:-1} MANY_ROUNDS=${MANY_ROUNDS:-1}
    ROSTER_N=${ROSTER_N:-20} ROSTER_SIZE=${ROSTER_SIZE:-20} ROSTER_SECONDS=${ROSTER_SECONDS:-20}
    FANOUT_N=${FANOUT_N:-20} FANOUT_CHANGES=${FANOUT_CHANGES:-10} FANOUT_SECONDS=${FANOUT_SECONDS:-10}
    FANOUT_CHANGES_1=${FANOUT_CHANGES_1:-10}
    ROSTER_ROUNDS=${ROSTER_ROUNDS:-1} FANOUT_ROUNDS=${FANOUT_ROUNDS:-1}
    MAM_ROUNDS=${MAM_ROUNDS:-1} MAMQ_FILL=${MAMQ_FILL:-500} MAMQ_CLIENTS=${MAMQ_CLIENTS:-2}
    MUC_OCCUPANTS=${MUC_OCCUPANTS:-20} MUC_SENDERS=${MUC_SENDERS:-2} MUC_MESSAGES=${MUC_MESSAGES:-10}
    MUC_JOINS=${MUC_JOINS:-5} MUC_SECONDS=${MUC_SECONDS:-10} MUC_ROUNDS=${MUC_ROUNDS:-1}
    N_BOSH=${N_BOSH:-20} BOSH_ROUNDS=${BOSH_ROUNDS:-1}
else
    N=${N:-10000} T=${T:-10} PAIRS=${PAIRS:-10} BIG_PAIRS=${BIG_PAIRS:-500} WARMUP=${WARMUP:-1}
    SCALE_N=${SCALE_N:-19500} SETTLE=2 BENCH_TIMEOUT=1200 LOGIN_ROUNDS=${LOGIN_ROUNDS:-3}
    LATENCY_ROUNDS=${LATENCY_ROUNDS:-3} MANY_ROUNDS=${MANY_ROUNDS:-3}
    ROSTER_N=${ROSTER_N:-2000} ROSTER_SIZE=${ROSTER_SIZE:-200} ROSTER_SECONDS=${ROSTER_SECONDS:-30}
    FANOUT_N=${FANOUT_N:-500} FANOUT_CHANGES=${FANOUT_CHANGES:-2000} FANOUT_SECONDS=${FANOUT_SECONDS:-30}
    FANOUT_CHANGES_1=${FANOUT_CHANGES_1:-200}
    ROSTER_ROUNDS=${ROSTER_ROUNDS:-1} FANOUT_ROUNDS=${FANOUT_ROUNDS:-3}
    MAM_ROUNDS=${MAM_ROUNDS:-3} MAMQ_FILL=${MAMQ_FILL:-100000} MAMQ_CLIENTS=${MAMQ_CLIENTS:-10}
    MUC_OCCUPANTS=${MUC_OCCUPANTS:-500} MUC_SENDERS=${MUC_SENDERS:-10} MUC_MESSAGES=${MUC_MESSAGES:-2000}
    MUC_JOINS=${MUC_JOINS:-100} MUC_SECONDS=${MUC_SECONDS:-30} MUC_ROUNDS=${MUC_ROUNDS:-3}
    N_BOSH=${N_BOSH:-2000} BOSH_ROUNDS=${BOSH_ROUNDS:-3}
fi
# Messages (over all senders) and joins in flight in the room scenario.
MUC_WINDOW=${MUC_WINDOW:-16} MUC_JOIN_WINDOW=${MUC_JOIN_WINDOW:-8}
BOSH_PAIRS=${BOSH_PAIRS:-$PAIRS} BOSH_WINDOW=${BOSH_WINDOW:-32}
MAM_PAIRS=${MAM_PAIRS:-$PAIRS} MAMQ_PAGE=${MAMQ_PAGE:-50} MAMQ_SECONDS=${MAMQ_SECONDS:-$T}
MAMQ_FILL_SECONDS=${MAMQ_FILL_SECONDS:-600}
# ejabberd's archive_msg is a Mnesia bag keyed by account, on disk a dets file: every write
# compares the new record with all of that account's records, so a 100k-message archive took
# far longer to write than any bound (75 records/s at 50k, directly into the table). Its
# archive holds MAMQ_FILL_EJABBERD messages instead; its queries read all of the account's
# records, so their rate at 10k is an upper bound of its rate at 100k.
MAMQ_FILL_EJABBERD=${MAMQ_FILL_EJABBERD:-$((MAMQ_FILL < 10000 ? MAMQ_FILL : 10000))}
SCENARIOS=${SCENARIOS:-connect throughput latency scale bosh roster fanout muc mam-throughput mam-query}
# Presence changes in flight in the fan-out's rate runs. With one at a time the generator's
# round trip sets the pace, not the server: the next change waits until the generator has read
# all FANOUT_N deliveries, and weft's core idled while it did (117k deliveries/s at window 1
# against 430-470k at 16, 64 or 256, where weft's core is busy throughout). Prosody and
# ejabberd are CPU-bound at either. The one-at-a-time run follows for its latency.
FANOUT_WINDOW=${FANOUT_WINDOW:-16}
# With many pairs, in-flight messages = pairs × 2 × window: window 1 keeps latency meaningful.
BIG_WINDOW=${BIG_WINDOW:-1}
PING=${PING:-$((N < 1000 ? N : 1000))}
SERVERS=${SERVERS:-weft prosody ejabberd relay}
WEFT_HTTP_PORT=${WEFT_HTTP_PORT:-26280} WEFT_HTTPS_PORT=${WEFT_HTTPS_PORT:-26443} WEFT_C2S_PORT=${WEFT_C2S_PORT:-26222}
PROSODY_C2S_PORT=${PROSODY_C2S_PORT:-26322} PROSODY_HTTP_PORT=${PROSODY_HTTP_PORT:-26380}
EJABBERD_C2S_PORT=${EJABBERD_C2S_PORT:-26422} EJABBERD_HTTP_PORT=${EJABBERD_HTTP_PORT:-26480}
EJABBERD_DIST_PORT=${EJABBERD_DIST_PORT:-26410} RELAY_PORT=${RELAY_PORT:-26290}
PASSWORD=bench-password
# Accounts bench1..: enough for the connect runs and the many-pairs runs, plus two for the
# warm-up logins before each connect run (the last two: never in use by a measured run).
PEER_USERS=$(((N > 2 * BIG_PAIRS ? N : 2 * BIG_PAIRS) + 2))
# The room scenario's occupants and joiners are bench1.. too.
PEER_USERS=$((PEER_USERS > MUC_OCCUPANTS + MUC_JOINS ? PEER_USERS : MUC_OCCUPANTS + MUC_JOINS))
if [[ " $SCENARIOS " == *" bosh "* ]]; then
    PEER_USERS=$((PEER_USERS > N_BOSH + 2 ? PEER_USERS : N_BOSH + 2))
    PEER_USERS=$((PEER_USERS > 2 * BOSH_PAIRS + 2 ? PEER_USERS : 2 * BOSH_PAIRS + 2))
fi
WEFT_USERS=$((PEER_USERS > SCALE_N + 2 ? PEER_USERS : SCALE_N + 2))
# ejabberd's BEAM on one core: one normal and one dirty CPU scheduler, and no busy-waiting
# (a spinning scheduler would be counted as ejabberd's CPU per message).
EJABBERD_SCHED=${EJABBERD_SCHED:-+S 1:1 +SDcpu 1:1 +sbwt none +sbwtdcpu none +sbwtdio none}
T_START=$SECONDS

say() { printf '== %s\n' "$*"; }
die() { printf '== compare.sh: %s\n' "$*" >&2; exit 1; }
want() { [[ " $SERVERS " == *" $1 "* ]]; }
scenario() { [[ " $SCENARIOS " == *" $1 "* ]]; }
for sc in $SCENARIOS; do
    case $sc in
        connect | throughput | latency | scale | bosh | roster | fanout | muc | mam-throughput | mam-query) ;;
        *) die "unknown scenario $sc in SCENARIOS (connect throughput latency scale bosh roster fanout muc mam-throughput mam-query)" ;;
    esac
done

# --- installation ---------------------------------------------------------------------------

need_peers=0
if want prosody || want ejabberd; then need_peers=1; fi
if ((need_peers)); then
    [[ $EUID -eq 0 ]] || die "the peers need root (install, run as the prosody/ejabberd users): sudo, or SERVERS='weft relay'"
    missing=()
    wanted=()
    for p in prosody ejabberd; do want "$p" && wanted+=("$p"); done
    # Prosody's archive in SQLite needs LuaDBI's SQLite driver; the counts need sqlite3.
    if want prosody && [[ ${PROSODY_ARCHIVE:-internal} == sql ]] && { scenario mam-throughput || scenario mam-query; }; then
        wanted+=(lua-dbi-sqlite3)
    fi
    for p in "${wanted[@]}"; do
        [[ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)" == installed ]] || missing+=("$p")
    done
    if ((${#missing[@]})); then
        # No packaged service may start during the install: a policy-rc.d that denies starts,
        # unless one is already in place (as in interop/s2s/install.sh).
        policy=/usr/sbin/policy-rc.d
        made_policy=0
        if [[ ! -e $policy ]]; then
            printf '#!/bin/sh\n# bench/compare.sh: no service starts during this install\nexit 101\n' >"$policy"
            chmod 755 "$policy"
            made_policy=1
        fi
        say "apt-get install ${missing[*]}"
        rc=0
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null; } || rc=$?
        ((made_policy)) && rm -f "$policy"
        ((rc == 0)) || die "apt-get install ${missing[*]} failed"
    fi
    for c in setpriv ss timeout sqlite3; do command -v "$c" >/dev/null || die "$c not found (util-linux, iproute2, coreutils)"; done
fi

# --- build ----------------------------------------------------------------------------------

# PROFILE=dev reuses a debug build (e.g. in CI, where tests built it already): fine for
# --smoke, meaningless for figures.
PROFILE=${PROFILE:-release}
say "cargo build --profile $PROFILE -p weft -p weft-bench"
cargo build --profile "$PROFILE" -q -p weft -p weft-bench
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/$([[ $PROFILE == dev ]] && echo debug || echo "$PROFILE")
# WEFT_BIN: another weft binary to run (an A/B of two builds with the same generator).
WEFT_BIN=${WEFT_BIN:-$BIN/weft}

# Every session is a descriptor in both processes; the soft limit goes up to the hard one
# (inherited by every server started below).
ulimit -n "$(ulimit -Hn)"
SERVER_CPU=() GEN_CPU=() PINNING="none (taskset missing or fewer than 2 CPUs)"
if command -v taskset >/dev/null && (($(nproc) >= 2)); then
    SERVER_CPU=(taskset -c 1) GEN_CPU=(taskset -c 0)
    PINNING="servers and relay on CPU 1 (taskset -c 1), weft-bench on CPU 0 (taskset -c 0)"
fi

# Nothing may already listen on our ports (a leftover of an earlier run, or someone else's).
for port in $WEFT_HTTP_PORT $WEFT_HTTPS_PORT $WEFT_C2S_PORT $PROSODY_C2S_PORT $PROSODY_HTTP_PORT \
    $EJABBERD_C2S_PORT $EJABBERD_HTTP_PORT $EJABBERD_DIST_PORT $RELAY_PORT; do
    if ss -Hltn "sport = :$port" | grep -q .; then die "port $port is in use: $(ss -Hltnp "sport = :$port" | head -1)"; fi
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/weft-compare.XXXXXX")
chmod 755 "$WORK" # the prosody and ejabberd users work below it
OUT=$WORK/results.jsonl
: >"$OUT"
if ((SMOKE)); then RESULTS=${RESULTS:-$WORK/results}; else RESULTS=${RESULTS:-$ROOT/bench/results}; fi
say "run directory $WORK"

# --- processes: started in the background, stopped by pid -----------------------------------

WEFT="" PROSODY="" EJABBERD="" RELAY=""
FAILED=()

# A pid is ours only while its command line names this run's directory (a pid is never
# signalled after its process is gone and the number reused).
ours() { [[ -n "${1:-}" && -r /proc/$1/cmdline ]] && tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -qF "$WORK/"; }

stop_pid() { # stop_pid PID SECONDS: TERM, bounded wait, then KILL
    local pid=$1 deadline=$((SECONDS + $2))
    ours "$pid" || return 0
    kill -TERM "$pid" 2>/dev/null || true
    while ((SECONDS < deadline)) && ours "$pid"; do sleep 0.2; done
    if ours "$pid"; then
        say "pid $pid ignored SIGTERM for $2 s: SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true # reaps it if it is our child
}

wait_port() { # wait_port PORT SECONDS PID: bounded; fails early if PID died
    local deadline=$((SECONDS + $2))
    while ((SECONDS < deadline)); do
        [[ -z "${3:-}" ]] || kill -0 "$3" 2>/dev/null || return 1
        ss -Hltn "src 127.0.0.1:$1" | grep -q . && return 0
        sleep 0.1
    done
    return 1
}

cleanup() {
    set +e
    stop_weft
    stop_prosody
    stop_ejabberd
    stop_relay
    # The account stores are large and of no use afterwards; the logs stay for reading.
    rm -rf "$WORK/weft/data" "$WORK/prosody/data" "$WORK/ejabberd/spool"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- the message archive switch (issue 19) ----------------------------------------------------

# MAM=1: servers start with their archive on (weft-mam.toml, prosody-mam.cfg.lua,
# ejabberd-mam.yml, rendered next to the plain configurations, with the same stores).
MAM=0
mam_suffix() { if ((MAM)); then echo -mam; fi; }
# Prosody 0.12's mod_mam archiving every message (default_archive_policy), kept a year as
# weft's default retention, in PROSODY_ARCHIVE:
# - internal (the default): Prosody's default storage, as everything else here; one file per
#   account, appended to per message, read whole for every query. Its cap of 10,000 messages
#   per account is raised to 1,000,000 (weft's default cap), or the 100k archive could not be.
# - sql: SQLite through mod_storage_sql (LuaDBI), as Prosody's documentation suggests for large
#   archives. Prosody 0.12 opens it with SQLite's defaults (rollback journal, synchronous FULL):
#   every archived message is a transaction with its syncs, about 30 messages/s on this VM's
#   disk, where a 10-pair window-32 run delivers nothing within 10 s (all 640 messages in
#   flight go through one pass of Prosody's event loop); its mam-query archive is written
#   straight into the table (prosody_fill).
PROSODY_ARCHIVE=${PROSODY_ARCHIVE:-internal}
case $PROSODY_ARCHIVE in
    internal) PROSODY_ARCHIVE_STORAGE='storage_archive_item_limit = 1000000' ;;
    sql) PROSODY_ARCHIVE_STORAGE='default_storage = "internal"
storage = { archive = "sql" }
sql = { driver = "SQLite3", database = "prosody.sqlite" }' ;;
    *) die "PROSODY_ARCHIVE must be internal or sql" ;;
esac
PROSODY_MAM_MODULE='
	"mam";        -- XEP-0313 (bench/compare.sh archive scenarios)'
PROSODY_MAM_SETTINGS="
-- The archive scenarios (compare.sh mam-throughput, mam-query), in $PROSODY_ARCHIVE storage.
default_archive_policy = true
archive_expires_after = \"1y\"
$PROSODY_ARCHIVE_STORAGE"
# ejabberd 23.01's mod_mam, every message archived, in its default db (Mnesia).
EJABBERD_MAM_MODULE='
  # The archive scenarios (compare.sh mam-throughput, mam-query): XEP-0313, every message.
  mod_mam:
    default: always'

# --- weft -----------------------------------------------------------------------------------

setup_weft() {
    mkdir -p "$WORK/weft"
    weft_config "$WORK/weft/weft.toml" "$WORK/weft/data" "$WEFT_HTTP_PORT" "$WEFT_C2S_PORT" "$WEFT_HTTPS_PORT"
    # The archive scenarios' configuration: the same store, [modules.mam] on.
    WEFT_MAM=true weft_config "$WORK/weft/weft-mam.toml" "$WORK/weft/data" "$WEFT_HTTP_PORT" "$WEFT_C2S_PORT" "$WEFT_HTTPS_PORT"
    "$BIN/weft-bench" users --weft-config "$WORK/weft/weft.toml" --n "$WEFT_USERS"
}

start_weft() {
    "${SERVER_CPU[@]}" "$WEFT_BIN" --config "$WORK/weft/weft$(mam_suffix).toml" >>"$WORK/weft/weft.log" 2>&1 &
    WEFT=$!
    if ! { wait_port "$WEFT_HTTP_PORT" 20 "$WEFT" && wait_port "$WEFT_C2S_PORT" 10 "$WEFT" &&
        wait_port "$WEFT_HTTPS_PORT" 10 "$WEFT"; }; then
        tail -n 20 "$WORK/weft/weft.log" >&2
        die "weft did not start"
    fi
    SERVER_PID=$WEFT
}
stop_weft() { [[ -z $WEFT ]] || stop_pid "$WEFT" 15; WEFT=""; }

# --- Prosody --------------------------------------------------------------------------------

setup_prosody() {
    local P=$WORK/prosody
    mkdir -p "$P/data" "$P/certs"
    DIR=$P C2S_PORT=$PROSODY_C2S_PORT HTTP_PORT=$PROSODY_HTTP_PORT MAM_MODULE="" MAM_SETTINGS="" \
        render "$PEERS_DIR/prosody.cfg.lua.in" "$P/prosody.cfg.lua"
    DIR=$P C2S_PORT=$PROSODY_C2S_PORT HTTP_PORT=$PROSODY_HTTP_PORT MAM_MODULE="$PROSODY_MAM_MODULE" \
        MAM_SETTINGS="$PROSODY_MAM_SETTINGS" render "$PEERS_DIR/prosody.cfg.lua.in" "$P/prosody-mam.cfg.lua"
    chown -R prosody:prosody "$P"
    # One account through prosodyctl (Prosody's own internal_hashed format, SCRAM-SHA-1 keys at
    # default_iteration_count), then the same file for every other account: 10,000
    # `prosodyctl register` would take minutes, and a shared salt lets the generator derive its
    # salted password once.
    local log
    log=$(timeout -k 5 60 prosodyctl --config "$P/prosody.cfg.lua" register bench1 localhost "$PASSWORD" 2>&1) ||
        die "prosodyctl register bench1 failed: $log"
    local dir=$P/data/localhost/accounts
    [[ -s $dir/bench1.dat ]] || die "prosodyctl register wrote no $dir/bench1.dat"
    grep -q 'stored_key' "$dir/bench1.dat" || die "unexpected account format in $dir/bench1.dat"
    local content i
    content=$(<"$dir/bench1.dat")
    for ((i = 2; i <= PEER_USERS; i++)); do printf '%s\n' "$content" >"$dir/bench$i.dat"; done
    chown -R prosody:prosody "$P/data"
    say "Prosody: $PEER_USERS accounts (bench1's credentials copied)"
}

start_prosody() {
    local P=$WORK/prosody
    # Prosody refuses to run as root: its own user (setpriv and taskset exec, so $! is Prosody).
    "${SERVER_CPU[@]}" setpriv --reuid=prosody --regid=prosody --init-groups -- \
        prosody --config "$P/prosody$(mam_suffix).cfg.lua" -F >>"$P/console.log" 2>&1 &
    PROSODY=$!
    if ! { wait_port "$PROSODY_C2S_PORT" 20 "$PROSODY" && wait_port "$PROSODY_HTTP_PORT" 10 "$PROSODY"; }; then
        tail -n 20 "$P/console.log" "$P/prosody.log" >&2 || true
        die "Prosody did not start"
    fi
    SERVER_PID=$PROSODY
}
stop_prosody() { [[ -z $PROSODY ]] || stop_pid "$PROSODY" 15; PROSODY=""; }

# --- ejabberd -------------------------------------------------------------------------------

EJ_NODE=weft-bench-ejabberd@127.0.0.1
EJ_PIN=()
# ejabberdctl for our node, run as the ejabberd user: as root, ejabberdctl would `su`, which
# resets the open-files limit to 1024.
ejctl() {
    local E=$WORK/ejabberd
    (cd "$E" && HOME=$E/home timeout -k 5 "${EJCTL_TIMEOUT:-60}" "${EJ_PIN[@]}" \
        setpriv --reuid=ejabberd --regid=ejabberd --init-groups -- \
        ejabberdctl --config-dir "$E" --ctl-config "$E/ejabberdctl.cfg" --config "$E/ejabberd$(mam_suffix).yml" \
        --spool "$E/spool" --logs "$E/logs" "$@")
}

setup_ejabberd() {
    local E=$WORK/ejabberd
    mkdir -p "$E/spool" "$E/logs" "$E/contrib" "$E/modules.d" "$E/home"
    EJ_COOKIE=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
    DIR=$E C2S_PORT=$EJABBERD_C2S_PORT HTTP_PORT=$EJABBERD_HTTP_PORT MAM_MODULE="" \
        render "$PEERS_DIR/ejabberd.yml.in" "$E/ejabberd.yml"
    DIR=$E C2S_PORT=$EJABBERD_C2S_PORT HTTP_PORT=$EJABBERD_HTTP_PORT MAM_MODULE="$EJABBERD_MAM_MODULE" \
        render "$PEERS_DIR/ejabberd.yml.in" "$E/ejabberd-mam.yml"
    DIR=$E NODE=$EJ_NODE DIST_PORT=$EJABBERD_DIST_PORT COOKIE=$EJ_COOKIE MAX_PORTS=$(($(ulimit -n) + 1000)) \
        SCHED_OPTS=$EJABBERD_SCHED render "$PEERS_DIR/ejabberdctl.cfg.in" "$E/ejabberdctl.cfg"
    printf '%% bench/compare.sh: no resolver settings (loopback only)\n' >"$E/inetrc"
    chown -R ejabberd:ejabberd "$E"
    chmod 600 "$E/ejabberdctl.cfg" # holds the cookie
}

start_ejabberd() {
    local E=$WORK/ejabberd pid="" deadline
    rm -f "$E/ejabberd.pid"
    # `start` detaches the BEAM (its parent exits): the pid comes from the pid file, and the
    # CPU affinity set by taskset is inherited (only `start` is pinned, not the ctl commands).
    EJ_PIN=("${SERVER_CPU[@]}")
    ejctl start >>"$E/console.log" 2>&1 || die "ejabberdctl start failed: $(tail -n 5 "$E/console.log")"
    EJ_PIN=()
    deadline=$((SECONDS + 60))
    while ((SECONDS < deadline)); do
        pid=$(cat "$E/ejabberd.pid" 2>/dev/null || true)
        [[ -n $pid ]] && ours "$pid" && break
        sleep 0.2
    done
    if [[ -z $pid ]] || ! ours "$pid"; then
        tail -n 20 "$E/logs/ejabberd.log" >&2 || true
        die "ejabberd wrote no pid file"
    fi
    EJABBERD=$pid
    if ! { wait_port "$EJABBERD_C2S_PORT" 60 "$pid" && wait_port "$EJABBERD_HTTP_PORT" 10 "$pid"; }; then
        tail -n 20 "$E/logs/ejabberd.log" >&2 || true
        die "ejabberd did not open its ports"
    fi
    SERVER_PID=$EJABBERD
}

stop_ejabberd() {
    [[ -n $EJABBERD ]] || return 0
    if ours "$EJABBERD"; then
        EJCTL_TIMEOUT=30 ejctl stop >/dev/null 2>&1 || true
        stop_pid "$EJABBERD" 30
    fi
    EJABBERD=""
}

ejabberd_accounts() {
    local E=$WORK/ejabberd
    # A hidden client node that dials the node's fixed distribution port (no epmd).
    ERL_FLAGS="-name compare-ctl-$$@127.0.0.1 -setcookie $EJ_COOKIE -hidden -dist_listen false -erl_epmd_port $EJABBERD_DIST_PORT -start_epmd false" \
        HOME=$E/home timeout -k 5 600 escript "$PEERS_DIR/ejabberd-accounts.escript" \
        "$EJ_NODE" localhost bench 1 "$PEER_USERS" "$PASSWORD" || die "creating the ejabberd accounts failed"
}

# --- relay ----------------------------------------------------------------------------------

start_relay() {
    "${SERVER_CPU[@]}" "$BIN/weft-relay" --listen "127.0.0.1:$RELAY_PORT" --max-seconds 1800 >>"$WORK/relay.log" 2>&1 &
    RELAY=$!
    wait_port "$RELAY_PORT" 10 "$RELAY" || die "weft-relay did not start"
    SERVER_PID=$RELAY
}
# The relay's command line does not name the run directory: it is our child, stopped by $!.
stop_relay() {
    [[ -n $RELAY ]] || return 0
    kill -TERM "$RELAY" 2>/dev/null || true
    wait "$RELAY" 2>/dev/null || true
    RELAY=""
}

# --- scenarios ------------------------------------------------------------------------------

# bench WHAT ARGS…: weft-bench on CPU 0, bounded in time; a run that fails is noted and the
# others go on (its record, if any, is marked in the table).
bench() {
    local what=$1
    shift
    say "$what"
    if ! "${GEN_CPU[@]}" timeout -k 10 "$BENCH_TIMEOUT" "$BIN/weft-bench" "$@" --json-out "$OUT"; then
        FAILED+=("$what")
        say "$what: did not complete" >&2
    fi
    echo
}

# The JSON field KEY of the last record with this tag and label ("" if none).
field() {
    grep -F "\"tag\":\"$1\"" "$OUT" | grep -F "\"label\":\"$2\"" | tail -n 1 |
        sed -n "s/.*\"$3\":\([0-9.e+-]*\).*/\1/p"
}

# args LABEL TRANSPORT: the options that name the server under test.
args() {
    local port
    case $1:$2 in
        weft:ws) port=$WEFT_HTTP_PORT ;;
        weft:wss) port=$WEFT_HTTPS_PORT ;;
        weft:tcp) port=$WEFT_C2S_PORT ;;
        prosody:ws) port=$PROSODY_HTTP_PORT ;;
        prosody:tcp) port=$PROSODY_C2S_PORT ;;
        ejabberd:ws) port=$EJABBERD_HTTP_PORT ;;
        ejabberd:tcp) port=$EJABBERD_C2S_PORT ;;
        # BOSH at /http-bind (weft-bench's default path for it) on the http listeners.
        weft:bosh) port=$WEFT_HTTP_PORT ;;
        prosody:bosh) port=$PROSODY_HTTP_PORT ;;
        ejabberd:bosh) port=$EJABBERD_HTTP_PORT ;;
        relay:ws)
            echo --target relay --transport ws --port "$RELAY_PORT" --path /relay --server-pid "$SERVER_PID" --label relay
            return
            ;;
        *) die "no port for $1 over $2" ;;
    esac
    echo --label "$1" --transport "$2" --port "$port" --server-pid "$SERVER_PID" --mech scram-sha-1 --password "$PASSWORD"
}

# connect_run LABEL TRANSPORT TAG SESSIONS: a fresh server for every connect run, because memory
# freed by earlier sessions stays in the allocator and would hide the growth.
connect_run() {
    "start_$1"
    # Two logins first, not recorded: code loaded on first use (the BEAM loads modules lazily,
    # Lua compiles on require) is neither a login rate nor memory per session.
    local users=$PEER_USERS
    [[ $1 != weft ]] || users=$WEFT_USERS
    # shellcheck disable=SC2046
    "${GEN_CPU[@]}" timeout -k 5 60 "$BIN/weft-bench" connect $(args "$1" "$2") --n 2 --first-user "$((users - 1))" \
        --settle 0 >"$WORK/warmup.log" 2>&1 || { cat "$WORK/warmup.log" >&2; FAILED+=("$1: warm-up logins over $2"); }
    # shellcheck disable=SC2046 # word splitting of the option list is intended
    bench "$1: connect $4 over $2" connect $(args "$1" "$2") --tag "$3" --n "$4" \
        --ping-sample "$((PING < $4 ? PING : $4))" --settle "$SETTLE" --max-seconds 900
    "stop_$1"
}

# window_run SERVER TRANSPORT TAG PAIRS WINDOW: messages as fast as the window allows (the relay
# only over ws).
window_run() {
    [[ $1 != relay || $2 == ws ]] || return 0
    # shellcheck disable=SC2046 # word splitting of the option list is intended
    bench "$1: throughput $4 pairs over $2 (window $5)" throughput $(args "$1" "$2") --tag "$3" \
        --pairs "$4" --window "$5" --seconds "$T" --warmup "$WARMUP" ${DRAIN:+--drain "$DRAIN"}
}

# latency_run SERVER: PAIRS pairs over ws offered half of the server's own few-pair ws peak
# (the relay: half of weft's, the latency floor of this machine at weft's load). A server that
# cannot keep up even so (unbatched messages cost more than the window mode's batches) shows it
# as latency: up to 2 × PAIRS × 1000 messages may be queued, and the drain waits up to 30 s for
# them rather than calling them lost.
latency_run() {
    local peak rate of=$1
    [[ $1 != relay ]] || of=weft
    peak=$(field tput-ws-small "$of" msgs_per_s)
    rate=$(awk -v p="${peak:-0}" 'BEGIN { r = int(p / 2); print (r > 0 ? r : 0) }')
    if ((rate > 0)); then
        # shellcheck disable=SC2046
        bench "$1: latency, $PAIRS pairs over ws at $rate msgs/s (half of $of's peak)" throughput \
            $(args "$1" ws) --tag latency-ws --pairs "$PAIRS" --rate "$rate" --seconds "$T" \
            --warmup "$WARMUP" --drain 30
    else
        FAILED+=("$1: latency at half peak (no peak measured)")
    fi
}

# each_server FUNCTION ARGS…: FUNCTION SERVER ARGS… for every server of the run, one after the
# other, each freshly started and the only one running. One scenario goes through all servers
# before the next begins, so every ratio in the table compares figures taken within a minute
# of each other: this VM's speed drifts by up to 2× over minutes, and a run that measured one
# server after the other for all scenarios compared figures up to eight minutes apart.
each_server() {
    local fn=$1 s
    shift
    for s in $THROUGHPUT_SERVERS; do
        "start_$s"
        "$fn" "$s" "$@"
        "stop_$s"
    done
}

# bosh_tput_run SERVER: BOSH_PAIRS pairs over BOSH, window BOSH_WINDOW (issue 20).
bosh_tput_run() { window_run "$1" bosh tput-bosh "$BOSH_PAIRS" "$BOSH_WINDOW"; }

# --- the roster scenarios (issue 18) ---------------------------------------------------------

# Accounts (the shared password, as bench1..) and mutual rosters, written into each server's
# store (bench/src/rosters.rs). Login scenario: rl1..rl<ROSTER_N + 2> (the last two for the
# unrecorded warm-up logins) each with ROSTER_SIZE contacts among rc1..rc<ROSTER_N + 2>, rl<i>
# having rc<i>, rc<i+1>, … (wrapping around), every contact having those rl accounts in turn:
# every roster holds ROSTER_SIZE items, all `both`, and no rc account ever logs in, so every
# contact is offline when its rl accounts log in. Fan-out: fu1 with FANOUT_N contacts
# fc1..fc<FANOUT_N>, each with fu1 alone on its roster.
RL_N=$((ROSTER_N + 2))
ROSTER_PLANS=("rl $RL_N rc $RL_N $ROSTER_SIZE" "fu 1 fc $FANOUT_N $FANOUT_N")
roster_accounts() { # roster_accounts FUNCTION: FUNCTION PREFIX COUNT for every account range
    "$1" rl "$RL_N"
    "$1" rc "$RL_N"
    "$1" fu 1
    "$1" fc "$FANOUT_N"
}

weft_roster_users() { "$BIN/weft-bench" users --weft-config "$WORK/weft/weft.toml" --users-prefix "$1" --n "$2"; }
prosody_roster_users() {
    local dir=$WORK/prosody/data/localhost/accounts content i
    content=$(<"$dir/bench1.dat")
    for ((i = 1; i <= $2; i++)); do printf '%s\n' "$content" >"$dir/$1$i.dat"; done
}
ejabberd_roster_users() {
    ERL_FLAGS="-name compare-ctl-$$@127.0.0.1 -setcookie $EJ_COOKIE -hidden -dist_listen false -erl_epmd_port $EJABBERD_DIST_PORT -start_epmd false" \
        HOME=$WORK/ejabberd/home timeout -k 5 600 escript "$PEERS_DIR/ejabberd-accounts.escript" \
        "$EJ_NODE" localhost "$1" 1 "$2" "$PASSWORD" || die "creating the ejabberd accounts $1.. failed"
}

# rosters_args PLAN: the weft-bench rosters options of one plan ("A_PREFIX A_N B_PREFIX B_N SIZE").
rosters_args() {
    local a an b bn size
    read -r a an b bn size <<<"$1"
    echo --a-prefix "$a" --a-n "$an" --b-prefix "$b" --b-n "$bn" --size "$size"
}

setup_rosters() {
    local t0=$SECONDS plan
    ((ROSTER_SIZE <= RL_N)) || die "ROSTER_SIZE ($ROSTER_SIZE) must be at most ROSTER_N + 2 ($RL_N)"
    if want weft; then
        roster_accounts weft_roster_users
        for plan in "${ROSTER_PLANS[@]}"; do
            # shellcheck disable=SC2046 # word splitting of the option list is intended
            "$BIN/weft-bench" rosters $(rosters_args "$plan") --weft-config "$WORK/weft/weft.toml" ||
                die "weft rosters failed"
        done
    fi
    if want prosody; then
        roster_accounts prosody_roster_users
        for plan in "${ROSTER_PLANS[@]}"; do
            # shellcheck disable=SC2046
            "$BIN/weft-bench" rosters $(rosters_args "$plan") --prosody-data "$WORK/prosody/data" ||
                die "Prosody rosters failed"
        done
        chown -R prosody:prosody "$WORK/prosody/data"
    fi
    if want ejabberd; then
        start_ejabberd
        roster_accounts ejabberd_roster_users
        for plan in "${ROSTER_PLANS[@]}"; do
            # shellcheck disable=SC2046
            "$BIN/weft-bench" rosters $(rosters_args "$plan") --ejabberd-pairs "$WORK/ejabberd-rosters.txt" ||
                die "the ejabberd roster list failed"
            chmod 644 "$WORK/ejabberd-rosters.txt"
            ERL_FLAGS="-name compare-ctl-$$@127.0.0.1 -setcookie $EJ_COOKIE -hidden -dist_listen false -erl_epmd_port $EJABBERD_DIST_PORT -start_epmd false" \
                HOME=$WORK/ejabberd/home timeout -k 5 600 escript "$PEERS_DIR/ejabberd-rosters.escript" \
                "$EJ_NODE" localhost "$WORK/ejabberd-rosters.txt" || die "writing the ejabberd rosters failed"
        done
        rm -f "$WORK/ejabberd-rosters.txt"
        stop_ejabberd
    fi
    say "rosters provisioned in $((SECONDS - t0)) s"
}

# xmpp_servers FUNCTION: FUNCTION SERVER for weft, ejabberd and Prosody in turn (the ones of
# this run), each freshly started, alone, pinned as every other run.
xmpp_servers() {
    local s
    for s in weft ejabberd prosody; do
        want "$s" || continue
        "start_$s"
        "$1" "$s"
        "stop_$s"
    done
}

roster_run() {
    # shellcheck disable=SC2046 # word splitting of the option list is intended
    bench "$1: $ROSTER_N logins with a $ROSTER_SIZE-contact roster over ws" roster-login $(args "$1" ws) \
        --tag roster-login-ws --users-prefix rl --n "$ROSTER_N" --roster-size "$ROSTER_SIZE" \
        --warmup 2 --max-seconds "$ROSTER_SECONDS"
}

fanout_run() {
    # shellcheck disable=SC2046
    bench "$1: presence of fu1 to $FANOUT_N online contacts over ws, $FANOUT_WINDOW in flight" \
        fanout $(args "$1" ws) --tag fanout-ws --user fu1 --users-prefix fc --contacts "$FANOUT_N" \
        --changes "$FANOUT_CHANGES" --max-seconds "$FANOUT_SECONDS" --window "$FANOUT_WINDOW"
}

# The same one change at a time (each change's latency alone), on a fresh server too.
fanout_one_run() {
    # shellcheck disable=SC2046
    bench "$1: presence of fu1 to $FANOUT_N online contacts over ws, one at a time" \
        fanout $(args "$1" ws) --tag fanout1-ws --user fu1 --users-prefix fc --contacts "$FANOUT_N" \
        --changes "$FANOUT_CHANGES_1" --max-seconds "$FANOUT_SECONDS" --window 1
}

# --- the room scenario (issue 20) ------------------------------------------------------------

# muc_run SERVER: a new room (its own name per round) on the freshly started server.
muc_run() {
    # shellcheck disable=SC2046
    bench "$1: room of $MUC_OCCUPANTS over ws, $MUC_SENDERS senders, $MUC_WINDOW in flight; $MUC_JOINS joins" \
        muc $(args "$1" ws) --tag muc-ws --room "bench-r$round" --occupants "$MUC_OCCUPANTS" \
        --senders "$MUC_SENDERS" --messages "$MUC_MESSAGES" --window "$MUC_WINDOW" \
        --joins "$MUC_JOINS" --join-window "$MUC_JOIN_WINDOW" --max-seconds "$MUC_SECONDS"
}

# --- the archive scenarios (issue 19) --------------------------------------------------------

ejabberd_mam() { # ejabberd_mam count|clear|fill ARGS…: the node's archive_msg table
    ERL_FLAGS="-name compare-ctl-$$@127.0.0.1 -setcookie $EJ_COOKIE -hidden -dist_listen false -erl_epmd_port $EJABBERD_DIST_PORT -start_epmd false" \
        HOME=$WORK/ejabberd/home timeout -k 5 600 escript "$PEERS_DIR/ejabberd-mam.escript" "$EJ_NODE" "$@"
}
prosody_sqlite() { # prosody_sqlite SQL: on Prosody's archive database, as the prosody user
    setpriv --reuid=prosody --regid=prosody --init-groups -- sqlite3 "$WORK/prosody/data/prosody.sqlite" "$1"
}

# archive_clear SERVER: empties its archive, so that every run starts from the same empty one
# (weft and Prosody while stopped, ejabberd while running).
archive_clear() {
    case $1:$PROSODY_ARCHIVE in
        weft:*) sqlite3 "$WORK/weft/data/weft.sqlite" "DELETE FROM archive_chunks;" ;;
        prosody:internal) rm -rf "$WORK/prosody/data/localhost/archive" ;;
        prosody:sql)
            # The table exists once Prosody has started with the archive on.
            [[ ! -e $WORK/prosody/data/prosody.sqlite ]] || prosody_sqlite 'DELETE FROM "prosodyarchive";'
            ;;
        ejabberd:*) ejabberd_mam clear >/dev/null ;;
    esac
}

# archive_count SERVER: archived messages (all accounts); weft and Prosody after they stopped
# (weft writes what it still queued when it stops), ejabberd while running.
archive_count() {
    case $1:$PROSODY_ARCHIVE in
        weft:*) sqlite3 "$WORK/weft/data/weft.sqlite" "SELECT COALESCE(SUM(count), 0) FROM archive_chunks;" ;;
        # One `item(…);` line per archived message (util.datamanager's list files).
        prosody:internal) cat "$WORK/prosody/data/localhost/archive/"*.list 2>/dev/null | grep -c '^item(' || true ;;
        prosody:sql) prosody_sqlite 'SELECT COUNT(*) FROM "prosodyarchive";' ;;
        ejabberd:*) ejabberd_mam count ;;
    esac
}

# archived_record TAG SERVER COUNT EXPECTED: the count as a record for the table.
archived_record() {
    say "$2: $3 messages archived, $4 expected"
    printf '{"scenario":"mam-archived","tag":"%s","label":"%s","archived":%s,"expected":%s,"unix_time":%s}\n' \
        "$1" "$2" "${3:-0}" "${4:-0}" "$(date +%s)" >>"$OUT"
    [[ $3 == "$4" ]] || FAILED+=("$2: $3 messages archived in $1, $4 expected")
}

# mam_server_run SERVER RUN ARGS…: RUN SERVER ARGS… on SERVER started with its archive on, the
# archive emptied before; echoes nothing, leaves the count in ARCHIVED.
mam_server_run() {
    local s=$1 fn=$2
    shift 2
    MAM=1
    [[ $s == ejabberd ]] || archive_clear "$s" || die "emptying $s's archive failed"
    "start_$s"
    [[ $s != ejabberd ]] || archive_clear "$s" || die "emptying ejabberd's archive failed"
    "$fn" "$s" "$@"
    ARCHIVED=""
    [[ $s != ejabberd ]] || ARCHIVED=$(archive_count "$s") || ARCHIVED=0
    "stop_$s"
    [[ $s == ejabberd ]] || ARCHIVED=$(archive_count "$s") || ARCHIVED=0
    MAM=0
}

# mam_tput_round SERVER: PAIRS pairs over ws without the archive, then with it on.
mam_tput_round() {
    local s=$1 sent
    MAM=0
    "start_$s"
    window_run "$s" ws mam-off-ws "$MAM_PAIRS" 32
    "stop_$s"
    # A slow archive holds messages back: up to 2 × pairs × 32 in flight when sending stops.
    DRAIN=60 mam_server_run "$s" window_run ws mam-tput-ws "$MAM_PAIRS" 32
    # Every message archived for its sender and its recipient (warm-up and drain included).
    sent=$(grep -F '"tag":"mam-tput-ws"' "$OUT" | grep -F "\"label\":\"$s\"" | tail -n 1 |
        sed -n 's/.*"sent":\([0-9]*\).*/\1/p')
    archived_record mam-tput-archived "$s" "$ARCHIVED" "$((2 * ${sent:-0}))"
}

# prosody_fill N: N messages from bench2 to bench1 written into Prosody's archive table, for
# both (bench1's incoming, bench2's outgoing), as mod_mam and mod_storage_sql store them:
# store 'archive', "with" the other's bare JID, a unique key, type 'xml' and the stanza's
# text, one second apart and ending now. Through Prosody itself the fill would take the better
# part of an hour here: every archived message is a SQLite transaction with its syncs.
prosody_fill() {
    local sql="" user with from to
    for user in bench1 bench2; do
        if [[ $user == bench1 ]]; then with=bench2; else with=bench1; fi
        from=bench2@localhost/fill to=bench1@localhost/fill
        sql+="WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < $1)
INSERT INTO \"prosodyarchive\" (\"host\", \"user\", \"store\", \"when\", \"with\", \"key\", \"type\", \"value\")
SELECT 'localhost', '$user', 'archive', CAST(strftime('%s', 'now') AS INTEGER) - $1 + i,
    '$with@localhost', printf('fill-$user-%08d', i), 'xml',
    printf('<message xmlns=\"jabber:client\" from=\"$from\" to=\"$to\" type=\"chat\" id=\"f%d\"><body>%d archived message number %d</body></message>', i, i, i)
FROM c;
"
    done
    prosody_sqlite "BEGIN; $sql COMMIT;" || die "filling Prosody's archive failed"
}

mam_query_bench() {
    local fill=(--fill "$MAMQ_FILL")
    if [[ $1 == prosody && $PROSODY_ARCHIVE == sql ]]; then
        prosody_fill "$MAMQ_FILL"
        fill=(--fill 0 --prefilled "$MAMQ_FILL")
    elif [[ $1 == ejabberd ]]; then
        # Through ejabberd the fill ran at about 125 msgs/s (a dets write per archived message).
        ejabberd_mam fill localhost bench1 bench2 "$MAMQ_FILL_EJABBERD" || die "filling ejabberd's archive failed"
        fill=(--fill 0 --prefilled "$MAMQ_FILL_EJABBERD")
    fi
    # shellcheck disable=SC2046 # word splitting of the option list is intended
    bench "$1: MAM pages of $MAMQ_PAGE from a $MAMQ_FILL-message archive, $MAMQ_CLIENTS clients over ws" \
        mam-query $(args "$1" ws) --tag mam-query-ws --owner bench1 --peer bench2 \
        "${fill[@]}" --max-fill-seconds "$MAMQ_FILL_SECONDS" --clients "$MAMQ_CLIENTS" \
        --page "$MAMQ_PAGE" --seconds "$MAMQ_SECONDS" --warmup "$WARMUP"
}

mam_query_run() {
    local fill=$MAMQ_FILL
    [[ $1 != ejabberd ]] || fill=$MAMQ_FILL_EJABBERD
    mam_server_run "$1" mam_query_bench
    archived_record mam-query-archived "$1" "$ARCHIVED" "$((2 * fill))"
}

SERVER_PID=""
# The relay right after weft: weft's fraction of it is the closest pair of figures.
THROUGHPUT_SERVERS=""
for s in weft relay prosody ejabberd; do
    if want "$s"; then THROUGHPUT_SERVERS+=" $s"; fi
done
if want weft; then setup_weft; fi
if want prosody; then setup_prosody; fi
if want ejabberd; then
    setup_ejabberd
    start_ejabberd
    ejabberd_accounts
    stop_ejabberd
fi
say "weft $WEFT_BIN; Prosody $(dpkg-query -W -f='${Version}' prosody 2>/dev/null || echo -); ejabberd $(dpkg-query -W -f='${Version}' ejabberd 2>/dev/null || echo -) ($EJABBERD_SCHED)"
# Logins in LOGIN_ROUNDS rounds, each round every server once, weft and ejabberd back to back
# (their ratio is the close one): the table gives each server's median and the median of the
# per-round ratios, as one login run takes seconds on a VM whose speed moves by up to 2× over
# minutes (weft alone: 5.4k to 8.3k logins/s within ten minutes on one machine).
if scenario connect; then
    for ((round = 1; round <= LOGIN_ROUNDS; round++)); do
        for s in weft ejabberd prosody; do
            if want "$s"; then connect_run "$s" ws connect-ws "$N"; fi
        done
    done
    if want weft; then connect_run weft wss connect-wss "$N"; fi
    # The same over plain TCP (RFC 6120), every server, one round: no target, the other half
    # of a deployment (desktop and mobile clients).
    for s in weft ejabberd prosody; do
        if want "$s"; then connect_run "$s" tcp connect-tcp "$N"; fi
    done
fi
if scenario throughput; then
    for tr in ws tcp; do
        each_server window_run "$tr" "tput-$tr-small" "$PAIRS" 32
    done
fi
# The many-pairs runs against the few-pair runs at the same window: with window 1 every
# message is its own read and write on both sides, so comparing it with the batched window-32
# rate would measure batching, not the cost of many sessions.
# Each server's few-pair and many-pair runs back to back on one start of it: their ratio is the
# target, and this VM's speed drifts between runs a few minutes apart.
few_and_many() {
    window_run "$1" "$2" "tput-$2-small-w" "$PAIRS" "$BIG_WINDOW"
    window_run "$1" "$2" "tput-$2-big" "$BIG_PAIRS" "$BIG_WINDOW"
}
# In MANY_ROUNDS rounds, judged on the median of the per-round shares: the same binary's
# 500-pair rate moved from 62k to 98k msgs/s within minutes while its 10-pair rate held.
if scenario throughput; then
    for ((round = 1; round <= MANY_ROUNDS; round++)); do
        for tr in ws tcp; do
            each_server few_and_many "$tr"
        done
    done
fi
# The latency target is weft's own p99, a tail that moves with the VM's state from run to run
# (2.7 to 8.5 ms for the same weft on one machine, the relay 0.6 to 6.5 ms): LATENCY_ROUNDS
# rounds, and the table judges the median.
if scenario latency; then
    for ((round = 1; round <= LATENCY_ROUNDS; round++)); do
        each_server latency_run
    done
fi
if scenario scale && want weft && ((SCALE_N > 0)); then connect_run weft ws scale "$SCALE_N"; fi
# BOSH (issue 20): in each round, every XMPP server's logins (a fresh server each, as the other
# connect runs), then every server's throughput; no relay (it speaks WebSocket only).
if scenario bosh; then
    for ((round = 1; round <= BOSH_ROUNDS; round++)); do
        for s in weft ejabberd prosody; do
            if want "$s"; then connect_run "$s" bosh connect-bosh "$N_BOSH"; fi
        done
        xmpp_servers bosh_tput_run
    done
fi
# The roster scenarios last, on stores provisioned only now: the runs above see the same
# servers and stores as before they existed.
# Rounds as for the other ratios: the logins run for seconds to the time bound on every server,
# one round by default; weft's fan-out takes one to two seconds, in which this VM's speed moved
# weft's CPU per delivery from 8 to 18 µs between consecutive runs, so three rounds by default.
if scenario roster || scenario fanout; then
    setup_rosters
    if scenario roster; then
        for ((round = 1; round <= ROSTER_ROUNDS; round++)); do xmpp_servers roster_run; done
    fi
    if scenario fanout; then
        for ((round = 1; round <= FANOUT_ROUNDS; round++)); do
            xmpp_servers fanout_run
            xmpp_servers fanout_one_run
        done
    fi
fi

# The room scenario (issue 20): each round every server freshly started, a new room each.
if scenario muc; then
    for ((round = 1; round <= MUC_ROUNDS; round++)); do xmpp_servers muc_run; done
fi

# The archive scenarios last (issue 19), each run on its server restarted with the archive on.
# Throughput: each server's run without the archive right before its run with it, so that the
# ratio compares figures a minute apart; MAM_ROUNDS rounds, judged on the median.
if scenario mam-throughput; then
    for ((round = 1; round <= MAM_ROUNDS; round++)); do
        for s in weft prosody ejabberd; do
            if want "$s"; then mam_tput_round "$s"; fi
        done
    done
fi
if scenario mam-query; then
    for s in weft prosody ejabberd; do
        if want "$s"; then mam_query_run "$s"; fi
    done
fi

# --- the table ------------------------------------------------------------------------------

COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
[[ -z "$(git status --porcelain -- crates bench/src 2>/dev/null)" ]] || COMMIT_NOTE=" (with uncommitted changes)"
DATE=$(date -u +%F)
mkdir -p "$RESULTS"
BASE=$RESULTS/$DATE-$COMMIT
{
    echo "# weft next to Prosody and ejabberd$( ((SMOKE)) && echo ' (smoke run: figures are meaningless)')"
    echo
    echo "bench/compare.sh$( ((SMOKE)) && echo ' --smoke'), $(date -u '+%F %T') UTC, $((SECONDS - T_START)) s."
    echo
    echo "- commit: $COMMIT${COMMIT_NOTE:-} on $(git rev-parse --abbrev-ref HEAD 2>/dev/null || echo '?'), cargo profile $PROFILE"
    echo "- machine: $(nproc) CPUs, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | sort | uniq -c | sed 's/^ *\([0-9]*\) /\1 × /' | paste -sd ';'), $(awk '/MemTotal/ { printf "%.1f GiB RAM", $2 / 1048576 }' /proc/meminfo); kernel $(uname -r); open files $(ulimit -n)"
    echo "- Prosody $(dpkg-query -W -f='${Version}' prosody 2>/dev/null || echo '-') (Lua $(lua5.4 -v 2>/dev/null | awk '{print $2}'), network_backend epoll), ejabberd $(dpkg-query -W -f='${Version}' ejabberd 2>/dev/null || echo '-') (Erlang/OTP $(erl -noshell -eval 'io:format("~s", [erlang:system_info(otp_release)]), halt().' 2>/dev/null || echo '-'), Mnesia)"
    echo "- pinning: $PINNING; ejabberd's BEAM: \`$EJABBERD_SCHED\`"
    echo "- every process started with GLIBC_TUNABLES=\`${GLIBC_TUNABLES:-}\` (empty: glibc's own choice of string functions)"
    echo "- roster scenarios: $ROSTER_N logins (bounded to $ROSTER_SECONDS s of starting logins) of accounts with $ROSTER_SIZE contacts each (all \`both\`, all offline), each SCRAM-SHA-1, bind, roster get, initial presence, ping, in $ROSTER_ROUNDS round(s); fan-out: one user with $FANOUT_N online contacts, $FANOUT_CHANGES presence changes, $FANOUT_WINDOW in flight, then $FANOUT_CHANGES_1 one at a time (each bounded to $FANOUT_SECONDS s), in $FANOUT_ROUNDS round(s); scenarios run: $SCENARIOS"
    if scenario bosh; then
        echo "- BOSH (XEP-0124/XEP-0206 at /http-bind, http:// on loopback): every session hold 1, up to 2 requests in flight on up to 2 kept-alive HTTP/1.1 connections, an empty request held for the server to push, stanzas of one flush in one body; $N_BOSH logins (SCRAM-SHA-1, bind, initial presence) on a fresh server, then $BOSH_PAIRS pairs at window $BOSH_WINDOW for $T s, in $BOSH_ROUNDS round(s); servers' BOSH limits at their defaults (weft [bosh], Prosody mod_bosh, ejabberd mod_bosh)"
    fi
    if scenario mam-throughput || scenario mam-query; then
        echo "- archive scenarios: weft [modules.mam] defaults (archive always, SQLite); Prosody mod_mam (default_archive_policy = true, archive_expires_after 1y, archive in $PROSODY_ARCHIVE storage$([[ $PROSODY_ARCHIVE == sql ]] && echo ': SQLite via mod_storage_sql with SQLite defaults' || echo ', storage_archive_item_limit 1000000')); ejabberd mod_mam (default: always, Mnesia); throughput $MAM_PAIRS pairs over ws, window 32, archive off then on, in $MAM_ROUNDS round(s), every archive emptied before a run and counted after; queries: $MAMQ_FILL messages from bench2 to bench1 sent through the server first$([[ $PROSODY_ARCHIVE == sql ]] && echo ' (ejabberd and Prosody: written into their stores)' || echo ' (ejabberd: $MAMQ_FILL_EJABBERD written into its Mnesia table, an upper bound of its rate at $MAMQ_FILL)'), then $MAMQ_CLIENTS sessions of bench1 query pages of $MAMQ_PAGE with bench2 (last page, then back) for $MAMQ_SECONDS s"
    fi
    if scenario muc; then
        echo "- room scenario: $MUC_OCCUPANTS occupants over ws in one new room (weft's muc module, Prosody's MUC component, ejabberd's mod_muc, each with default room settings but max occupants 1000), $MUC_SENDERS of them sending $MUC_MESSAGES messages with $MUC_WINDOW in flight (each bounded to $MUC_SECONDS s), then $MUC_JOINS joins with the default history, $MUC_JOIN_WINDOW in flight, in $MUC_ROUNDS round(s)"
    fi
    echo "- settings: connect N=$N (ping sample $PING) in $LOGIN_ROUNDS rounds, SCRAM-SHA-1 everywhere (4096 iterations, one salt for all accounts); throughput $T s after ${WARMUP} s warm-up, $PAIRS pairs window 32, $BIG_PAIRS pairs window $BIG_WINDOW against $PAIRS at that window in $MANY_ROUNDS rounds, latency at half of each server's own $PAIRS-pair ws peak in $LATENCY_ROUNDS rounds; scale run ${SCALE_N} sessions (weft only; 0 = none)"
    echo "- servers: no TLS on loopback except weft's wss listener, PLAIN allowed, no rate limits or shapers, stream management on (configs: bench/peers/, weft's in compare.sh)"
    echo "- raw records: $(basename "$BASE").jsonl"
    if ((${#FAILED[@]})); then
        echo "- **did not complete**: $(printf '%s; ' "${FAILED[@]}")"
    else
        echo "- every scenario completed"
    fi
} >"$WORK/header.md"
cp "$OUT" "$BASE.jsonl"
"$BIN/weft-bench" compare "$OUT" --header "$WORK/header.md" --out "$BASE.md" --target-sessions 10000
cp "$BASE.md" "$RESULTS/latest.md"
say "table: $BASE.md (also $RESULTS/latest.md); logs in $WORK; $((SECONDS - T_START)) s"
if ((${#FAILED[@]})); then
    say "did not complete: $(printf '%s; ' "${FAILED[@]}")" >&2
    exit 1
fi
say "compare.sh: all scenarios completed"
