#!/usr/bin/env bash
# The interop suite in one command: build weft, start it on free loopback ports with a
# throwaway data dir, run the third-party client tests (node --test, then pytest), stop weft.
#
#   interop/run.sh                   # everything
#   interop/run.sh test/foo.test.js python/test_bar.py   # only some files (relative to interop/)
#   WEFT_BIN=/path/to/weft interop/run.sh   # skip the cargo build, test that binary
#   CHROMIUM=/path/to/chromium interop/run.sh   # browser for the Converse.js test
#   WEFT_EXTRA_CONFIG=$'[modules.pep]\nenabled = false' interop/run.sh ...   # appended to weft.toml
#
# The last line is "interop: N passed, M failed" (", K skipped" if any); the exit code is
# non-zero on any failure, including a runner that ran no test.
set -euo pipefail

CALLER_DIR="$PWD"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
cd "$HERE"

log() { printf '\n== %s\n' "$*"; }
die() { printf '\n== ERROR: %s\n' "$*" >&2; exit 1; }

# --- which tests: .js files go to node --test, .py files (or python/) to pytest --------------
NODE_FILES=() PY_FILES=()
if [[ $# -eq 0 ]]; then
  NODE_FILES=(test/*.test.js) PY_FILES=(python)
else
  for f in "$@"; do
    case "$f" in
      *.js) NODE_FILES+=("$f") ;;
      *.py | *.py::* | python | python/) PY_FILES+=("$f") ;;
      *) die "don't know how to run $f (expected test/*.test.js or python/*.py)" ;;
    esac
  done
fi

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
[[ -x "$WEFT" ]] || die "weft binary not found at $WEFT"

# --- node dependencies, exactly as locked -----------------------------------------------
# npm writes node_modules/.package-lock.json on install; older than the lockfile (or than
# package.json, which npm ci checks against the lockfile) means stale.
stamp=node_modules/.package-lock.json
if [[ ! -f $stamp || package-lock.json -nt $stamp || package.json -nt $stamp ]]; then
  log "npm ci"
  npm ci --no-audit --no-fund
fi

# --- Chromium for the Converse.js test: Debian's, never a download of its own -----------------
if [[ " ${NODE_FILES[*]} " == *browser* ]]; then
  CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
  if [[ ! -x "$CHROMIUM" && "$CHROMIUM" == /usr/bin/chromium ]]; then
    if [[ $EUID -eq 0 ]] && command -v apt-get >/dev/null; then
      log "apt-get install chromium (for test/converse-browser.test.js)"
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
      die "the Converse.js test needs Chromium at $CHROMIUM: run 'sudo apt-get install chromium' (Debian/Ubuntu) or set CHROMIUM=/path/to/chromium"
    fi
  fi
  [[ -x "$CHROMIUM" ]] || die "no Chromium at $CHROMIUM (set CHROMIUM=/path/to/chromium)"
  export WEFT_CHROMIUM="$CHROMIUM"
fi

# --- Python venv for the slixmpp tests, exactly as pinned --------------------------------------
VENV="$HERE/.venv"
if [[ ${#PY_FILES[@]} -gt 0 ]]; then
  PYTHON="${PYTHON:-python3}"
  "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null ||
    die "the slixmpp tests need Python 3.11+ as $PYTHON (or set PYTHON=/path/to/python3.11+)"
  # Debian splits venv's pip bootstrap (ensurepip) into python3-venv.
  if ! "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null; then
    if [[ $EUID -eq 0 ]] && command -v apt-get >/dev/null; then
      log "apt-get install python3-venv (for the slixmpp tests)"
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    else
      die "$PYTHON has no venv/ensurepip: run 'sudo apt-get install python3-venv' (Debian/Ubuntu)"
    fi
  fi
  # Rebuilt when the requirements change (a copy in the venv is the stamp) or the venv broke.
  if ! cmp -s python/requirements.txt "$VENV/requirements.txt" || ! "$VENV/bin/python" -c '' 2>/dev/null; then
    log "python venv in $VENV"
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
    # --no-deps: exactly the pinned set, nothing resolved at install time; pip check proves
    # that set is complete and consistent.
    "$VENV/bin/pip" install --disable-pip-version-check -q --no-deps -r python/requirements.txt
    "$VENV/bin/pip" check --disable-pip-version-check
    cp python/requirements.txt "$VENV/requirements.txt"
  fi
fi

# --- a throwaway server -----------------------------------------------------------------
TMP="$(mktemp -d "${TMPDIR:-/tmp}/weft-interop.XXXXXX")"
WEFT_LOG="$TMP/weft.log"
WEFT_PID=""
LOG_SHOWN=""

stop_weft() {
  if [[ -n "$WEFT_PID" ]] && kill -0 "$WEFT_PID" 2>/dev/null; then
    kill -TERM "$WEFT_PID" 2>/dev/null || true
    # Graceful shutdown takes up to shutdown_grace (2s here); then insist.
    for _ in $(seq 50); do kill -0 "$WEFT_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$WEFT_PID" 2>/dev/null || true
    wait "$WEFT_PID" 2>/dev/null || true
  fi
}
show_weft_log() {
  [[ -z "$LOG_SHOWN" && -f "$WEFT_LOG" ]] || return 0
  LOG_SHOWN=1
  log "weft's log follows" >&2
  cat "$WEFT_LOG" >&2
  log "end of weft's log" >&2
}
cleanup() {
  local rc=$?
  stop_weft
  if [[ $rc -ne 0 ]]; then show_weft_log; log "FAILED (exit $rc)" >&2; fi
  rm -rf "$TMP"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Free ports, chosen by the kernel (bind to port 0, read it back, release).
read -r HTTP_PORT HTTPS_PORT C2S_PORT C2S_TLS_PORT COMPONENT_PORT < <(node -e '
  const net = require("node:net");
  const servers = [0, 1, 2, 3, 4].map(() => net.createServer().listen(0, "127.0.0.1"));
  Promise.all(servers.map((s) => new Promise((r) => s.on("listening", r)))).then(() => {
    console.log(servers.map((s) => s.address().port).join(" "));
    servers.forEach((s) => s.close());
  });')
[[ -n "${COMPONENT_PORT:-}" ]] || die "could not pick free ports"
# The XEP-0114 component of python/test_slixmpp_component.py.
COMPONENT_DOMAIN="component.localhost"
COMPONENT_SECRET="component-$RANDOM$RANDOM"

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
# No federation here: the defaults (5269, 5270) would collide with any other weft running.
s2s = []
s2s_direct_tls = []
component = ["127.0.0.1:$COMPONENT_PORT"]

[c2s]
# The defaults, spelled out because tests depend on them: PLAIN only over TLS.
require_encryption = true
allow_plain_on_loopback = false

[limits]
# Small, so the oversize test needs only a small message.
max_stanza_size = "10 KiB"

[[components]]
domain = "$COMPONENT_DOMAIN"
secret = "$COMPONENT_SECRET"

[log]
# weft's own debug lines (stream errors and why) without the SQL chatter.
level = "info,weft_server=debug,sqlx=warn"
EOF
# Extra TOML for one run, e.g. a module turned off to see which tests depend on it.
if [[ -n "${WEFT_EXTRA_CONFIG:-}" ]]; then
  printf '\n# WEFT_EXTRA_CONFIG\n%s\n' "$WEFT_EXTRA_CONFIG" >>"$TMP/weft.toml"
  log "weft.toml gets WEFT_EXTRA_CONFIG:"$'\n'"$WEFT_EXTRA_CONFIG"
fi

# One password for every test account; each test file uses accounts of its own.
PASSWORD="interop-$RANDOM$RANDOM"
USERS=(ws-alice ws-bob tcp-carol tcp-dave mix-erin mix-frank tls-olivia strophe-grace strophe-heidi
  rfc-ivan rfc-judy py-peggy py-quentin py-rupert converse-sam converse-trent converse-uma
  converse-vera converse-walt converse-xena converse-hall converse-yara converse-zeno converse-abel converse-bria
  converse-cato converse-dora
  im-alma im-boris im-cleo im-dario im-ezra im-fiona im-gwen im-hugo im-iris im-jonas im-kira
  im-lev im-nadia im-olga im-pavel im-rita im-sven im-tara im-ugo
  jsim-mona jsim-omar jsim-petra jsim-quinn jsim-rhea
  sm-ada sm-bea sm-cyd sm-dina jssm-ana jssm-ben jssm-cas mam-ana mam-ben
  push-amy push-app push-ben omemo-ana omemo-ben comp-ana muc-ana muc-ben muc-cyd
  bosh-anna bosh-bert bosh-cara bosh-dan bosh-cleo bosh-dora)
log "weft $("$WEFT" --version) in $TMP; adding ${#USERS[@]} users"
for u in "${USERS[@]}"; do
  printf '%s\n' "$PASSWORD" | "$WEFT" --config "$TMP/weft.toml" user add --create "$u@localhost" >/dev/null
done

"$WEFT" --config "$TMP/weft.toml" run >"$WEFT_LOG" 2>&1 &
WEFT_PID=$!

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for _ in $(seq 100); do
  kill -0 "$WEFT_PID" 2>/dev/null || die "weft exited during startup"
  if port_open "$HTTP_PORT" && port_open "$HTTPS_PORT" && port_open "$C2S_PORT" && port_open "$C2S_TLS_PORT" &&
    port_open "$COMPONENT_PORT"; then
    break
  fi
  sleep 0.1
done
port_open "$HTTP_PORT" || die "weft did not open its ports within 10s"
CERT="$TMP/data/self-signed-cert.pem"
[[ -f "$CERT" ]] || die "weft generated no certificate at $CERT"

# --- the tests ----------------------------------------------------------------------------
export WEFT_DOMAIN=localhost WEFT_PASSWORD="$PASSWORD" WEFT_MAX_STANZA_SIZE="$MAX_STANZA_SIZE"
export WEFT_HTTP_PORT="$HTTP_PORT" WEFT_HTTPS_PORT="$HTTPS_PORT"
export WEFT_C2S_PORT="$C2S_PORT" WEFT_C2S_TLS_PORT="$C2S_TLS_PORT"
export WEFT_COMPONENT_PORT="$COMPONENT_PORT" WEFT_COMPONENT_DOMAIN="$COMPONENT_DOMAIN"
export WEFT_COMPONENT_SECRET="$COMPONENT_SECRET"
export WEFT_CA_FILE="$CERT"
# Screenshots and logs of failed browser tests; emptied so they are always this run's.
export WEFT_ARTIFACTS_DIR="$HERE/artifacts"
rm -rf "$WEFT_ARTIFACTS_DIR"
# Trust exactly weft's generated certificate (for libraries that take no `ca` option),
# rather than turning certificate checks off.
export NODE_EXTRA_CA_CERTS="$CERT"

# Each runner's counts, summed into the closing line. A runner that fails without reporting
# a failed test (crash, no test collected) still counts as one failure.
PASSED=0 FAILED=0 SKIPPED=0
count() { # count PASSED FAILED SKIPPED EXIT_CODE WHAT
  PASSED=$((PASSED + $1)) FAILED=$((FAILED + $2)) SKIPPED=$((SKIPPED + $3))
  if [[ $4 -ne 0 && $2 -eq 0 ]]; then
    FAILED=$((FAILED + 1))
    echo "== $5 exited $4 without reporting a failed test; counted as one failure" >&2
  fi
}

# node --test FILES with a TIMEOUT_MS budget, its TAP copy in $TMP/NAME.tap, counted.
node_tests() { # node_tests TIMEOUT_MS NAME FILES...
  local ms=$1 name=$2 rc=0; shift 2
  log "node --test $*"
  # Humans at a terminal get the spec reporter, everyone else TAP (with "# pass N" /
  # "# fail N"); a second TAP copy goes to a file for the closing line.
  local reporter=tap; [[ -t 1 ]] && reporter=spec
  # A timeout makes a missing reply fail the run instead of hanging it; `timeout` also ends a
  # test file that finished but keeps its process alive (say, a leaked socket).
  timeout -k 10 1200 node --test --test-timeout="$ms" \
    --test-reporter="$reporter" --test-reporter-destination=stdout \
    --test-reporter=tap --test-reporter-destination="$TMP/$name.tap" \
    "$@" || rc=$?
  tap_count() { sed -n "s/^# $1 \([0-9]*\)$/\1/p" "$TMP/$name.tap" | tail -1 | grep . || echo 0; }
  count "$(tap_count pass)" "$(($(tap_count fail) + $(tap_count cancelled)))" \
    "$(($(tap_count skipped) + $(tap_count todo)))" "$rc" "node --test $*"
}

if [[ ${#NODE_FILES[@]} -gt 0 ]]; then
  # Node 20's --test-timeout limits each test file as a whole, not only each test. The browser
  # file runs several browser sessions one after another, each test with a timeout of its own:
  # it gets a budget of 5 minutes, in a run of its own; the other files keep 60 s.
  FAST_FILES=() BROWSER_FILES=()
  for f in "${NODE_FILES[@]}"; do
    if [[ $f == *browser* ]]; then BROWSER_FILES+=("$f"); else FAST_FILES+=("$f"); fi
  done
  [[ ${#FAST_FILES[@]} -eq 0 ]] || node_tests 60000 node "${FAST_FILES[@]}"
  [[ ${#BROWSER_FILES[@]} -eq 0 ]] || node_tests 300000 browser "${BROWSER_FILES[@]}"
fi

if [[ ${#PY_FILES[@]} -gt 0 ]]; then
  log "pytest ${PY_FILES[*]}"
  rc=0
  # pytest's own summary line ("N passed in Xs") closes its output; exit code 5 means it
  # collected no test, which count() turns into a failure. timeout: no hang past 5 minutes.
  timeout -k 10 300 "$VENV/bin/python" -m pytest -c python/pytest.ini --rootdir=python \
    --junitxml="$TMP/pytest.xml" "${PY_FILES[@]}" || rc=$?
  read -r p f s < <("$VENV/bin/python" - "$TMP/pytest.xml" <<'EOF' 2>/dev/null || echo "0 0 0"
import sys, xml.etree.ElementTree as ET
t = ET.parse(sys.argv[1]).getroot()
t = t if t.tag == "testsuite" else t.find("testsuite")
n = {k: int(t.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
print(n["tests"] - n["failures"] - n["errors"] - n["skipped"], n["failures"] + n["errors"], n["skipped"])
EOF
  )
  count "$p" "$f" "$s" "$rc" "pytest"
fi

stop_weft
[[ $FAILED -eq 0 ]] || show_weft_log
# The plain closing line CI readers recognise, whatever the runners printed above.
echo "interop: $PASSED passed, $FAILED failed$([[ $SKIPPED -eq 0 ]] || echo ", $SKIPPED skipped")"
[[ $FAILED -eq 0 && $PASSED -gt 0 ]]
