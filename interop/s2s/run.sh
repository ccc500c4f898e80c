#!/usr/bin/env bash
# The federation harness's smoke test in one command: for each mode (external, then
# dialback), bring the peers up in a fresh directory, run test/*.test.js with node --test,
# bring them down. Closing line: "s2s: N passed, M failed"; non-zero exit on any failure.
#
#   interop/s2s/run.sh                       # both modes
#   S2S_MODES=dialback interop/s2s/run.sh    # one mode
#   S2S_KEEP=1 interop/s2s/run.sh            # keep the run directories (logs) even on success
#
# Needs root and the packages of install.sh (run it first on a fresh machine). A failed mode
# keeps its directory and prints the tail of each peer's log.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
INTEROP="$(cd "$HERE/.." && pwd)"
read -r -a MODES <<<"${S2S_MODES:-external dialback}"

log() { printf '\n== %s\n' "$*"; }

# xmpp.js comes from interop/node_modules, exactly as locked there.
stamp="$INTEROP/node_modules/.package-lock.json"
if [[ ! -f $stamp || $INTEROP/package-lock.json -nt $stamp || $INTEROP/package.json -nt $stamp ]]; then
  log "npm ci (interop/)"
  (cd "$INTEROP" && npm ci --no-audit --no-fund)
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
  if ! "$HERE/harness.sh" up --mode "$mode" --dir "$RUN"; then
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
    timeout -k 10 300 node --test --test-reporter="$reporter" --test-reporter-destination=stdout \
    --test-reporter=tap --test-reporter-destination="$TAP" "$HERE"/test/*.test.js || rc=$?
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
    for f in "$RUN/prosody/prosody.log" "$RUN/ejabberd/logs/ejabberd.log" "$RUN/dns/dnsmasq.log"; do
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
