#!/usr/bin/env bash
# weft's federation tests against Prosody and ejabberd in one command: build weft, then for
# each mode bring the peers and weft (as weft.test) up in a fresh directory, run
# test/*.test.js with node --test (one file at a time: they read the same logs), bring
# everything down. Modes: external, dialback (weft.test's links over STARTTLS on 5269), and the
# same over XEP-0368 Direct TLS on 5270 (external+direct-tls, dialback+direct-tls). Closing
# line: "s2s: N passed, M failed"; non-zero exit on any failure.
#
#   interop/s2s/run.sh                       # all four modes
#   S2S_MODES="external dialback" interop/s2s/run.sh   # STARTTLS only
#   S2S_MODES=dialback interop/s2s/run.sh    # one mode
#   S2S_KEEP=1 interop/s2s/run.sh            # keep the run directories (logs) even on success
#   WEFT_BIN=target/debug/weft interop/s2s/run.sh   # no cargo build: test this binary
#   S2S_NO_WEFT=1 interop/s2s/run.sh         # the peers only (weft's tests are skipped)
#
# Needs root, cargo, and the packages of install.sh (run it first on a fresh machine). A failed
# mode keeps its directory and prints the tail of each server's log.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
unset S2S_DIRECT_TLS S2S_MODE # chosen per mode below
INTEROP="$(cd "$HERE/.." && pwd)"
read -r -a MODES <<<"${S2S_MODES:-external dialback external+direct-tls dialback+direct-tls external+bidi}"
for mode in "${MODES[@]}"; do
  case "$mode" in
    external | dialback | external+direct-tls | dialback+direct-tls | external+bidi) ;;
    *) echo "run.sh: unknown mode '$mode' (external, dialback, external+direct-tls, dialback+direct-tls, external+bidi)" >&2; exit 2 ;;
  esac
done

log() { printf '\n== %s\n' "$*"; }

# xmpp.js comes from interop/node_modules, exactly as locked there.
stamp="$INTEROP/node_modules/.package-lock.json"
if [[ ! -f $stamp || $INTEROP/package-lock.json -nt $stamp || $INTEROP/package.json -nt $stamp ]]; then
  log "npm ci (interop/)"
  (cd "$INTEROP" && npm ci --no-audit --no-fund)
fi

# weft: the given binary, or a fresh build (cargo says where: CARGO_TARGET_DIR is honoured).
WEFT_ARGS=()
if [[ -n "${S2S_NO_WEFT:-}" ]]; then
  WEFT_ARGS=(--no-weft)
elif [[ -n "${WEFT_BIN:-}" ]]; then
  WEFT_ARGS=(--weft "$(realpath "$WEFT_BIN")")
else
  ROOT="$(cd "$INTEROP/.." && pwd)"
  log "cargo build -p weft"
  t0=$SECONDS
  (cd "$ROOT" && cargo build -p weft)
  TARGET_DIR="$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps |
    node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).target_directory))')"
  WEFT_ARGS=(--weft "$TARGET_DIR/debug/weft")
  log "weft built in $((SECONDS - t0))s: $TARGET_DIR/debug/weft"
fi

RUN=""
cleanup() {
  local rc=$?
  if [[ -n "$RUN" ]]; then "$HERE/harness.sh" down --dir "$RUN" || rc=1; fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

PASSED=0 FAILED=0
TAP="$(mktemp "${TMPDIR:-/tmp}/weft-s2s-tap.XXXXXX")"
for mode in "${MODES[@]}"; do
  RUN="$(mktemp -d "${TMPDIR:-/tmp}/weft-s2s-$mode.XXXXXX")"
  log "mode $mode: harness up in $RUN"
  t0=$SECONDS
  up_args=(--mode "${mode%%+*}" --dir "$RUN" "${WEFT_ARGS[@]}")
  [[ $mode != *+direct-tls ]] || up_args+=(--direct-tls)
  # external+bidi: Prosody with mod_s2s_bidi, and only the tests of bidirectional links (the
  # others count one link per direction).
  tests=("$HERE"/test/*.test.js)
  if [[ $mode == *+bidi ]]; then up_args+=(--bidi); tests=("$HERE"/test-bidi/*.test.js); fi
  if ! "$HERE/harness.sh" up "${up_args[@]}"; then
    FAILED=$((FAILED + 1))
    log "mode $mode: harness did not come up (counted as one failure); logs in $RUN"
    RUN=""
    continue
  fi
  t_up=$((SECONDS - t0))
  log "mode $mode: node --test"
  reporter=tap; [[ -t 1 ]] && reporter=spec
  rc=0
  S2S_RUN_DIR="$RUN" NODE_EXTRA_CA_CERTS="$RUN/certs/ca.pem" \
    timeout -k 10 300 node --test --test-concurrency=1 \
    --test-reporter="$reporter" --test-reporter-destination=stdout \
    --test-reporter=tap --test-reporter-destination="$TAP" "${tests[@]}" || rc=$?
  t_test=$((SECONDS - t0 - t_up))
  pass="$(sed -n 's/^# pass \([0-9]*\)$/\1/p' "$TAP" | tail -1)"
  fail="$(sed -n 's/^# fail \([0-9]*\)$/\1/p' "$TAP" | tail -1)"
  cancelled="$(sed -n 's/^# cancelled \([0-9]*\)$/\1/p' "$TAP" | tail -1)"
  pass=${pass:-0} fail=$((${fail:-0} + ${cancelled:-0}))
  [[ $rc -eq 0 || $fail -gt 0 ]] || fail=1 # a crash that reported no failed test
  PASSED=$((PASSED + pass)) FAILED=$((FAILED + fail))
  t1=$SECONDS
  "$HERE/harness.sh" down --dir "$RUN" || FAILED=$((FAILED + 1))
  log "mode $mode: $pass passed, $fail failed (up ${t_up}s, tests ${t_test}s, down $((SECONDS - t1))s)"
  if [[ $fail -gt 0 ]]; then
    for f in "$RUN/prosody/prosody.log" "$RUN/ejabberd/logs/ejabberd.log" "$RUN/dns/dnsmasq.log" "$RUN/weft/weft.log"; do
      [[ -f "$f" ]] || continue
      log "tail of $f"; grep -v 's2s-raw' "$f" | tail -n 40 || true
    done
    log "mode $mode: logs kept in $RUN"
  elif [[ -z "${S2S_KEEP:-}" ]]; then
    rm -rf "$RUN"
  else
    log "mode $mode: logs kept in $RUN"
  fi
  RUN=""
done
rm -f "$TAP"
echo "s2s: $PASSED passed, $FAILED failed"
[[ $FAILED -eq 0 && $PASSED -gt 0 ]]
