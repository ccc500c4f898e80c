#!/usr/bin/env bash
# The interop suite in one command: build weft, start it on free loopback ports with a
# throwaway data dir, run the third-party client tests (node --test), stop weft.
#
#   interop/run.sh                 # everything
#   interop/run.sh test/foo.test.js  # only some test files (paths relative to interop/)
#   WEFT_BIN=/path/to/weft interop/run.sh   # skip the cargo build, test that binary
set -euo pipefail

CALLER_DIR="$PWD"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
cd "$HERE"

log() { printf '\n== %s\n' "$*"; }

# --- weft binary: build it unless one is given ------------------------------------------
if [[ -n "${WEFT_BIN:-}" ]]; then
  # Relative to where run.sh was called from, not to interop/.
  WEFT="$(cd "$CALLER_DIR" && realpath "$WEFT_BIN")"
else
  log "cargo build -p weft"
  (cd "$ROOT" && cargo build -p weft)
  # Ask cargo where it put the binary: honours CARGO_TARGET_DIR and .cargo/config alike.
  TARGET_DIR="$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps |
    node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).target_directory))')"
  WEFT="$TARGET_DIR/debug/weft"
fi
[[ -x "$WEFT" ]] || { echo "weft binary not found at $WEFT" >&2; exit 1; }

# --- node dependencies, exactly as locked -----------------------------------------------
# npm writes node_modules/.package-lock.json on install; older than the lockfile (or than
# package.json, which npm ci checks against the lockfile) means stale.
stamp=node_modules/.package-lock.json
if [[ ! -f $stamp || package-lock.json -nt $stamp || package.json -nt $stamp ]]; then
  log "npm ci"
  npm ci --no-audit --no-fund
fi

# --- a throwaway server -----------------------------------------------------------------
TMP="$(mktemp -d "${TMPDIR:-/tmp}/weft-interop.XXXXXX")"
WEFT_LOG="$TMP/weft.log"
WEFT_PID=""

cleanup() {
  local rc=$?
  if [[ -n "$WEFT_PID" ]] && kill -0 "$WEFT_PID" 2>/dev/null; then
    kill -TERM "$WEFT_PID" 2>/dev/null || true
    # Graceful shutdown takes up to shutdown_grace (2s here); then insist.
    for _ in $(seq 50); do kill -0 "$WEFT_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$WEFT_PID" 2>/dev/null || true
    wait "$WEFT_PID" 2>/dev/null || true
  fi
  if [[ $rc -ne 0 && -f "$WEFT_LOG" ]]; then
    log "FAILED (exit $rc): weft's log follows" >&2
    cat "$WEFT_LOG" >&2
    log "end of weft's log; FAILED (exit $rc)" >&2
  fi
  rm -rf "$TMP"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Free ports, chosen by the kernel (bind to port 0, read it back, release).
read -r HTTP_PORT HTTPS_PORT C2S_PORT C2S_TLS_PORT < <(node -e '
  const net = require("node:net");
  const servers = [0, 1, 2, 3].map(() => net.createServer().listen(0, "127.0.0.1"));
  Promise.all(servers.map((s) => new Promise((r) => s.on("listening", r)))).then(() => {
    console.log(servers.map((s) => s.address().port).join(" "));
    servers.forEach((s) => s.close());
  });')
[[ -n "${C2S_TLS_PORT:-}" ]] || { echo "could not pick free ports" >&2; exit 1; }

MAX_STANZA_SIZE=10240
cat >"$TMP/weft.toml" <<EOF
[server]
domains = ["localhost"]
data_dir = "$TMP/data"
shutdown_grace = "2s"

[listen]
http = ["127.0.0.1:$HTTP_PORT"]
https = ["127.0.0.1:$HTTPS_PORT"]
c2s = ["127.0.0.1:$C2S_PORT"]
c2s_direct_tls = ["127.0.0.1:$C2S_TLS_PORT"]

[c2s]
# The defaults, spelled out because tests depend on them: PLAIN only over TLS.
require_encryption = true
allow_plain_on_loopback = false

[limits]
# Small, so the oversize test needs only a small message.
max_stanza_size = "10 KiB"

[log]
# weft's own debug lines (stream errors and why) without the SQL chatter.
level = "info,weft_server=debug,sqlx=warn"
EOF

# One password for every test account; each test file uses accounts of its own.
PASSWORD="interop-$RANDOM$RANDOM"
USERS=(ws-alice ws-bob tcp-carol tcp-dave mix-erin mix-frank tls-olivia strophe-grace strophe-heidi rfc-ivan rfc-judy)
log "weft $("$WEFT" --version) in $TMP; adding ${#USERS[@]} users"
for u in "${USERS[@]}"; do
  printf '%s\n' "$PASSWORD" | "$WEFT" --config "$TMP/weft.toml" user add "$u@localhost" >/dev/null
done

"$WEFT" --config "$TMP/weft.toml" run >"$WEFT_LOG" 2>&1 &
WEFT_PID=$!

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for _ in $(seq 100); do
  kill -0 "$WEFT_PID" 2>/dev/null || { echo "weft exited during startup" >&2; exit 1; }
  if port_open "$HTTP_PORT" && port_open "$HTTPS_PORT" && port_open "$C2S_PORT" && port_open "$C2S_TLS_PORT"; then
    break
  fi
  sleep 0.1
done
port_open "$HTTP_PORT" || { echo "weft did not open its ports within 10s" >&2; exit 1; }
CERT="$TMP/data/self-signed-cert.pem"
[[ -f "$CERT" ]] || { echo "weft generated no certificate at $CERT" >&2; exit 1; }

# --- the tests ----------------------------------------------------------------------------
export WEFT_DOMAIN=localhost WEFT_PASSWORD="$PASSWORD" WEFT_MAX_STANZA_SIZE="$MAX_STANZA_SIZE"
export WEFT_HTTP_PORT="$HTTP_PORT" WEFT_HTTPS_PORT="$HTTPS_PORT"
export WEFT_C2S_PORT="$C2S_PORT" WEFT_C2S_TLS_PORT="$C2S_TLS_PORT"
export WEFT_CA_FILE="$CERT"
# Trust exactly weft's generated certificate (for libraries that take no `ca` option),
# rather than turning certificate checks off.
export NODE_EXTRA_CA_CERTS="$CERT"

if [[ $# -gt 0 ]]; then FILES=("$@"); else FILES=(test/*.test.js); fi
log "node --test ${FILES[*]}"
# A per-test timeout makes a missing reply fail the run instead of hanging it.
node --test --test-timeout=60000 "${FILES[@]}"
