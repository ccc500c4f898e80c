#!/usr/bin/env bash
# Every test of weft in one command, on a fresh Debian machine, as root:
#
#   sudo ./test-all.sh        # or as root: ./test-all.sh
#
# 1. installs what the tests need and is missing (Debian packages, all in one apt-get install,
#    with service starts denied during the install): nodejs/npm, python3 + python3-venv,
#    nginx (reverse-proxy tests), chromium (Converse.js test), and Prosody, lua-unbound,
#    ejabberd, dnsmasq-base, openssl, util-linux, iproute2 (interop/s2s/install.sh's list).
#    Nothing is installed when everything is present. interop/run.sh then runs npm ci in
#    interop/ and makes the Python venv for slixmpp when they are missing or stale.
# 2. cargo test --workspace --locked --no-fail-fast -- --include-ignored: unit and wire tests,
#    including the ones marked #[ignore] because they need an outside program (nginx).
# 3. interop/run.sh: xmpp.js, strophe.js, raw RFC 7395, Converse.js in Chromium, slixmpp.
# 4. interop/s2s/run.sh: federation with Prosody and ejabberd (root: DNS on port 53).
#
# Each stage's counts are summed into one closing line, "test-all: N passed, M failed" (",
# K skipped" if any). The exit code is non-zero on any failure, and a stage that crashed
# before its summary or ran no test counts as one failure. Later stages run even when an
# earlier one failed, so one run shows everything that is wrong.
#
# Environment: CARGO_TARGET_DIR (honoured), CHROMIUM (browser for the Converse.js test),
# WEFT_NGINX (nginx binary), PYTHON (python3.11+ for slixmpp), S2S_MODES (see interop/s2s/run.sh).
set -euo pipefail
cd "$(dirname "$0")"

T_START=$SECONDS
STAGE_NO=0
STAGES=5
stage() {
  STAGE_NO=$((STAGE_NO + 1))
  printf '\n==================== test-all [%d/%d] %s\n' "$STAGE_NO" "$STAGES" "$*"
}
say() { printf 'test-all: %s\n' "$*"; }
die() {
  printf '\ntest-all: ERROR: %s\n' "$*" >&2
  echo "test-all: stopped before running the tests" >&2
  exit 1
}
since() { local s=$((SECONDS - $1)); printf '%dm%02ds' $((s / 60)) $((s % 60)); }

# --- 1/5: what is there, what is missing --------------------------------------------------
stage "what the tests need"
command -v cargo >/dev/null || die "cargo not found on PATH. Install Rust with rustup; under sudo, root's PATH may lack ~/.cargo/bin: sudo env \"PATH=\$PATH\" ./test-all.sh"
if [[ ! -f /etc/debian_version ]] || ! command -v apt-get >/dev/null || ! command -v dpkg-query >/dev/null; then
  die "this script installs Debian packages and runs Debian's Prosody and ejabberd: it needs Debian (12 or later) with apt-get"
fi

APT=() # Debian packages to install
node_major() { node -e 'console.log(process.versions.node.split(".")[0])' 2>/dev/null || echo 0; }

if ! command -v node >/dev/null; then APT+=(nodejs); fi
if ! command -v npm >/dev/null; then APT+=(npm); fi
PYTHON="${PYTHON:-python3}"
if ! command -v "$PYTHON" >/dev/null; then
  [[ "$PYTHON" == python3 ]] || die "PYTHON=$PYTHON not found"
  APT+=(python3 python3-venv)
elif ! "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null; then
  APT+=(python3-venv) # Debian splits venv's pip bootstrap out of python3
fi
if [[ -n "${WEFT_NGINX:-}" ]]; then
  [[ -x "$WEFT_NGINX" ]] || die "WEFT_NGINX=$WEFT_NGINX is not an executable"
elif ! command -v nginx >/dev/null && [[ ! -x /usr/sbin/nginx ]]; then
  APT+=(nginx)
fi
CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
if [[ ! -x "$CHROMIUM" ]]; then
  [[ "$CHROMIUM" == /usr/bin/chromium ]] || die "CHROMIUM=$CHROMIUM is not an executable"
  APT+=(chromium)
fi
read -r -a S2S_MISSING <<<"$(interop/s2s/install.sh --missing)"
APT+=("${S2S_MISSING[@]}")

say "cargo $(cargo --version | awk '{print $2}'), node $(node --version 2>/dev/null || echo missing), npm $(npm --version 2>/dev/null || echo missing), $("$PYTHON" --version 2>/dev/null || echo 'python3 missing')"
if ((${#APT[@]})); then
  say "will install (apt-get): ${APT[*]}"
else
  say "every package is present: nothing to install"
fi
say "interop/run.sh will run npm ci in interop/ and make interop/.venv (pinned slixmpp) if missing or stale"

if [[ $EUID -ne 0 ]]; then
  if ((${#APT[@]})); then
    die "not root, and these Debian packages are missing: ${APT[*]}.
  Run the whole thing as root:   sudo ./test-all.sh
  (or install them first:        sudo apt-get install ${APT[*]}
  the federation stage still needs root, for its DNS server on port 53 and the peers' own users)"
  fi
  die "the federation stage (interop/s2s) needs root: DNS on port 53, Prosody and ejabberd as their own users, a mount namespace. Run: sudo ./test-all.sh
  (cargo test --workspace alone needs no root)"
fi

# --- 2/5: install ------------------------------------------------------------------------------
stage "install"
t0=$SECONDS
if ((${#APT[@]})); then
  # No service starts during the install (nginx would listen on *:80, Prosody and ejabberd on
  # *:5222/5269): the tests run their own instances on loopback. An existing policy is kept.
  policy=/usr/sbin/policy-rc.d
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\n# test-all.sh: no service starts during this install\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    trap 'rm -f "$policy"' EXIT
  fi
  say "apt-get update"
  apt-get update -qq || die "apt-get update failed"
  say "apt-get install ${APT[*]} (chromium alone is a few hundred MB: minutes)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${APT[@]}" >/dev/null ||
    die "apt-get install ${APT[*]} failed"
  if [[ -f $policy ]] && grep -q '^# test-all.sh' "$policy"; then rm -f "$policy"; trap - EXIT; fi
fi
# Reports Prosody's and ejabberd's versions and warns about packaged services left running.
interop/s2s/install.sh || die "interop/s2s/install.sh failed"
NODE_MAJOR="$(node_major)"
((NODE_MAJOR >= 20)) || die "the interop tests need Node.js 20+ (node --test options), and node is $(node --version 2>/dev/null || echo missing).
  Debian 12's own nodejs is 18: install Node.js 20 or later (Debian 13's nodejs, or another Debian package source) and run again"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
  die "the slixmpp tests need Python 3.11+ as $PYTHON (set PYTHON=/path/to/python3.11+)"
"$PYTHON" -c 'import ensurepip, venv' 2>/dev/null ||
  die "$PYTHON has no venv/ensurepip even after installing python3-venv (set PYTHON to a python3 that has)"
command -v nginx >/dev/null || [[ -x /usr/sbin/nginx || -n "${WEFT_NGINX:-}" ]] || die "nginx is still missing"
[[ -x "$CHROMIUM" ]] || die "chromium is still missing at $CHROMIUM"
say "install done in $(since "$t0")"

# --- the runners -------------------------------------------------------------------------------
LOGS="$(mktemp -d "${TMPDIR:-/tmp}/weft-test-all.XXXXXX")"
PASSED=0 FAILED=0 SKIPPED=0
RESULTS=()
# record NAME PASSED FAILED SKIPPED EXIT_CODE SUMMARY_SEEN SECONDS
record() {
  local name=$1 p=$2 f=$3 s=$4 rc=$5 seen=$6 took=$7 why=""
  if [[ $seen -eq 0 ]]; then
    f=$((f + 1)) why="no summary line (crashed or did not start): counted as one failure"
  elif [[ $rc -ne 0 && $f -eq 0 ]]; then
    f=$((f + 1)) why="exited $rc without reporting a failed test: counted as one failure"
  elif [[ $p -eq 0 && $f -eq 0 ]]; then
    f=$((f + 1)) why="ran no test: counted as one failure"
  fi
  [[ -z "$why" ]] || printf '\ntest-all: %s %s\n' "$name" "$why" >&2
  PASSED=$((PASSED + p)) FAILED=$((FAILED + f)) SKIPPED=$((SKIPPED + s))
  RESULTS+=("$(printf '%-40s %5d passed %4d failed %4d skipped   exit %-3s %s' "$name" "$p" "$f" "$s" "$rc" "$took")")
}

# --- 3/5: cargo test ---------------------------------------------------------------------------
stage "cargo test --workspace --locked --no-fail-fast -- --include-ignored (unit and wire tests)"
t0=$SECONDS
rc=0
cargo test --workspace --locked --no-fail-fast -- --include-ignored 2>&1 | tee "$LOGS/cargo.log" || rc=$?
# One "test result: ok. N passed; M failed; K ignored; ..." line per test binary and doc-test run.
read -r p f s n < <(awk '
  /^test result: / { n++; for (i = 1; i <= NF; i++) {
    if ($(i+1) ~ /^passed;/) p += $i; if ($(i+1) ~ /^failed;/) f += $i; if ($(i+1) ~ /^ignored;/) s += $i } }
  END { print p + 0, f + 0, s + 0, n + 0 }' "$LOGS/cargo.log")
record "cargo test ($n test binaries)" "$p" "$f" "$s" "$rc" "$((n > 0 ? 1 : 0))" "$(since "$t0")"

# The weft binary the interop stages test: the one cargo test just built for
# crates/weft/tests (target/debug/weft), else (cargo test did not get to run) a cargo build.
TARGET_DIR="$(cargo metadata --format-version 1 --no-deps --locked |
  "$PYTHON" -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')" || TARGET_DIR=""
WEFT_BIN="${TARGET_DIR:+$TARGET_DIR/debug/weft}"
if [[ -z "$WEFT_BIN" || $n -eq 0 || ! -x "$WEFT_BIN" ]]; then
  say "cargo build -p weft --locked (cargo test built no weft binary)"
  if ! cargo build -p weft --locked || [[ -z "$WEFT_BIN" || ! -x "$WEFT_BIN" ]]; then
    echo "test-all: no weft binary: the interop stages will fail" >&2
    WEFT_BIN=""
  fi
fi
[[ -z "$WEFT_BIN" ]] || say "the interop stages test $WEFT_BIN"

# Runs one interop runner and reads its closing line "WORD: N passed, M failed[, K skipped]".
run_interop() { # run_interop NAME WORD COMMAND...
  local name=$1 word=$2 log="$LOGS/$2.log" t0=$SECONDS rc=0 line p=0 f=0 s=0 seen=0
  shift 2
  if [[ -n "$WEFT_BIN" ]]; then
    WEFT_BIN="$WEFT_BIN" "$@" 2>&1 | tee "$log" || rc=$?
  else
    rc=1
    : >"$log"
  fi
  line="$(grep -E "^$word: [0-9]+ passed, [0-9]+ failed(, [0-9]+ skipped)?$" "$log" | tail -1 || true)"
  if [[ -n "$line" ]]; then
    seen=1
    p="$(sed -E 's/.*: ([0-9]+) passed.*/\1/' <<<"$line")"
    f="$(sed -E 's/.* ([0-9]+) failed.*/\1/' <<<"$line")"
    [[ "$line" != *skipped ]] || s="$(sed -E 's/.* ([0-9]+) skipped$/\1/' <<<"$line")"
  fi
  record "$name" "$p" "$f" "$s" "$rc" "$seen" "$(since "$t0")"
}

# --- 4/5: interop ------------------------------------------------------------------------------
stage "interop/run.sh (xmpp.js, strophe.js, raw RFC 7395, Converse.js in Chromium, slixmpp)"
CHROMIUM="$CHROMIUM" PYTHON="$PYTHON" run_interop "interop (interop/run.sh)" interop interop/run.sh

# --- 5/5: federation ---------------------------------------------------------------------------
stage "interop/s2s/run.sh (federation with Prosody and ejabberd: EXTERNAL, dialback, STARTTLS, Direct TLS)"
run_interop "federation (interop/s2s/run.sh)" s2s interop/s2s/run.sh

# --- summary -----------------------------------------------------------------------------------
printf '\n==================== test-all: summary (%s in all)\n' "$(since "$T_START")"
printf '  %s\n' "${RESULTS[@]}"
if [[ $FAILED -eq 0 && $PASSED -gt 0 ]]; then rm -rf "$LOGS"; else echo "  each stage's output: $LOGS"; fi
echo "test-all: $PASSED passed, $FAILED failed$([[ $SKIPPED -eq 0 ]] || echo ", $SKIPPED skipped")"
[[ $FAILED -eq 0 && $PASSED -gt 0 ]]
