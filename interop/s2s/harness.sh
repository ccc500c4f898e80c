#!/usr/bin/env bash
# Federation peers on loopback for weft's s2s tests: a DNS server (dnsmasq), Prosody and
# ejabberd (Debian packages), each domain on its own 127.0.0.x, certificates from a test CA.
#
#   interop/s2s/harness.sh up [--mode external|dialback] [--direct-tls] [--dir DIR] [--weft BIN | --no-weft]
#   interop/s2s/harness.sh status [--dir DIR]
#   interop/s2s/harness.sh env [--dir DIR]        # shell variables, for `eval`
#   interop/s2s/harness.sh restart-weft [--dir DIR]   # stop weft, start it again (same data)
#   interop/s2s/harness.sh drop-links prosody|ejabberd [--dir DIR]   # that peer closes its s2s
#   interop/s2s/harness.sh down [--dir DIR] [--purge]
#
# `up` makes DIR (default: a new mktemp dir, remembered in interop/s2s/.current-run so that
# down/status find it), prints where everything is, and leaves DIR/harness.json and
# DIR/harness.env for tests. It also starts weft as weft.test (binary: --weft BIN, else
# $WEFT_BIN, else target/debug/weft of this repository, honouring CARGO_TARGET_DIR) unless
# --no-weft. `down` stops exactly the processes `up` started (by pid, checked against DIR)
# and keeps DIR for its logs unless --purge. Modes:
#   external  peers and weft trust the test CA (peers require valid certificates): SASL EXTERNAL
#   dialback  everyone trusts only a decoy CA: TLS still, certificates unverifiable, dialback
# --bidi (or S2S_BIDI=1): Prosody loads mod_s2s_bidi (XEP-0288), so its links with weft.test
#   carry both directions
# --direct-tls (or S2S_DIRECT_TLS=1): weft.test's links use XEP-0368 Direct TLS on port 5270
# both ways (an _xmpps-server SRV record for weft.test, Direct TLS listeners on the peers, tls://
# routes in weft); Prosody <-> ejabberd stay on STARTTLS.
# Addresses (env overrides): S2S_DNS_IP=127.0.0.10 S2S_PROSODY_IP=127.0.0.2
# S2S_EJABBERD_IP=127.0.0.3 S2S_WEFT_IP=127.0.0.4. Needs root (port 53, users, mounts);
# interop/s2s/install.sh installs the packages.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib/certs.sh
source "$HERE/lib/certs.sh"
CURRENT="$HERE/.current-run"

DNS_IP=${S2S_DNS_IP:-127.0.0.10}
PROSODY_IP=${S2S_PROSODY_IP:-127.0.0.2}
EJABBERD_IP=${S2S_EJABBERD_IP:-127.0.0.3}
WEFT_IP=${S2S_WEFT_IP:-127.0.0.4}
PROSODY_DOMAIN=prosody.test
EJABBERD_DOMAIN=ejabberd.test
WEFT_DOMAIN=weft.test
# XEP-0045 services, one per server, federating under their own names (DNS, certificates).
MUC_PREFIX=conference
PROSODY_MUC=$MUC_PREFIX.$PROSODY_DOMAIN
EJABBERD_MUC=$MUC_PREFIX.$EJABBERD_DOMAIN
WEFT_MUC=$MUC_PREFIX.$WEFT_DOMAIN
EJABBERD_DIST_PORT=5210
PROSODY_USER=alice
EJABBERD_USER=bob
WEFT_USER=carol
# weft routes this domain to a port where nothing listens (a link that cannot be set up).
UNREACHABLE_DOMAIN=unreachable.test
UNREACHABLE_PORT=5999
PROSODY_LOGLEVEL=${S2S_PROSODY_LOGLEVEL:-debug}
EJABBERD_LOGLEVEL=${S2S_EJABBERD_LOGLEVEL:-debug}
WEFT_LOGLEVEL=${S2S_WEFT_LOGLEVEL:-weft_server=debug,weft=debug,info}

say() { printf '== %s\n' "$*"; }
die() { printf '== ERROR: %s\n' "$*" >&2; exit 1; }

# --- helpers --------------------------------------------------------------------------------

# render TEMPLATE OUT: replaces each @NAME@ by the value of shell variable NAME.
render() {
  local text name
  shopt -u patsub_replacement 2>/dev/null || true # bash 5.2: '&' in a value stays '&' 
  text="$(<"$1")"
  for name in $(grep -o '@[A-Z_]*@' "$1" | sort -u | tr -d @); do
    [[ -n "${!name+x}" ]] || die "template $1 uses @$name@, which is not set"
    text="${text//@$name@/${!name}}"
  done
  printf '%s\n' "$text" >"$2"
}

# Listening TCP/UDP sockets on one address ("ip:port" per line).
listening_on() { ss -Hlntu 2>/dev/null | awk -v ip="$1" '{ split($5, a, ":"); if (a[1] == ip) print $5 }' | sort -u; }

wait_listen() { # wait_listen IP PORT SECONDS PID
  local deadline=$((SECONDS + $3))
  while ((SECONDS < deadline)); do
    [[ -z "${4:-}" ]] || kill -0 "$4" 2>/dev/null || return 1
    ss -Hltn "src $1:$2" 2>/dev/null | grep -q . && return 0
    sleep 0.2
  done
  return 1
}

# A pid is ours only if that process's command line names this run's directory.
ours() { [[ -n "${1:-}" && -r /proc/$1/cmdline ]] && tr '\0' ' ' <"/proc/$1/cmdline" | grep -qF "$RUN/"; }

stop_pid() { # stop_pid NAME PID SECONDS: TERM, wait, then KILL
  local name=$1 pid=$2 deadline=$((SECONDS + $3))
  ours "$pid" || return 0
  kill -TERM "$pid" 2>/dev/null || true
  while ((SECONDS < deadline)) && ours "$pid"; do sleep 0.2; done
  if ours "$pid"; then
    say "$name (pid $pid) ignored SIGTERM for $3 s: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    sleep 0.5
  fi
}

ejctl() {
  local ej="$RUN/ejabberd"
  timeout -k 5 "${EJCTL_TIMEOUT:-60}" ejabberdctl --config-dir "$ej" --ctl-config "$ej/ejabberdctl.cfg" \
    --config "$ej/ejabberd.yml" --spool "$ej/spool" --logs "$ej/logs" "$@"
}

prosodyctl_run() { timeout -k 5 60 prosodyctl --config "$RUN/prosody/prosody.cfg.lua" "$@"; }

# DNS answers as the peers will see them (Node's resolver, pointed at the harness DNS).
dns_check() {
  command -v node >/dev/null || { echo "(node not found: DNS not checked)"; return 0; }
  timeout 20 node - "$DNS_IP" "$PROSODY_DOMAIN" "$EJABBERD_DOMAIN" "$WEFT_DOMAIN" \
    "$PROSODY_MUC" "$EJABBERD_MUC" "$WEFT_MUC" <<'EOF'
const { Resolver } = require('node:dns').promises;
const [server, ...names] = process.argv.slice(2);
const r = new Resolver({ timeout: 2000, tries: 2 });
r.setServers([server]);
(async () => {
  for (const n of names) {
    const a = await r.resolve4(n);
    const srv = await r.resolveSrv(`_xmpp-server._tcp.${n}`);
    // MUC services (conference.*) are server-to-server names only: no _xmpp-client.
    const c2s = n.startsWith('conference.') ? null : await r.resolveSrv(`_xmpp-client._tcp.${n}`);
    console.log(`${n} A ${a.join(',')}; _xmpp-server ${srv.map((s) => `${s.name}:${s.port}`)}` +
      (c2s ? `; _xmpp-client ${c2s.map((s) => `${s.name}:${s.port}`)}` : ''));
  }
  const nx = await r.resolve4('nowhere.test').then(() => 'answered', (e) => e.code);
  console.log(`nowhere.test ${nx}`);
  if (nx !== 'ENOTFOUND') process.exit(1);
})().catch((e) => { console.error(`DNS check failed: ${e.message}`); process.exit(1); });
EOF
}

peer_versions() {
  PROSODY_VERSION="$(prosodyctl about 2>/dev/null | sed -n '1s/^Prosody //p' || true)"
  PROSODY_VERSION="${PROSODY_VERSION:-unknown} (deb $(dpkg-query -W -f='${Version}' prosody 2>/dev/null || echo '?'))"
  EJABBERD_VERSION="$(dpkg-query -W -f='${Version}' ejabberd 2>/dev/null || echo unknown)"
  DNSMASQ_VERSION="$(dnsmasq --version 2>/dev/null | head -1 | awk '{print $3}')"
}

# --- up ------------------------------------------------------------------------------------

preflight() {
  [[ $EUID -eq 0 ]] || die "run as root (DNS on port 53, per-peer users, a mount namespace for ejabberd)"
  local c
  for c in prosody prosodyctl ejabberdctl dnsmasq openssl unshare setpriv ss timeout; do
    command -v "$c" >/dev/null || die "$c not found: run interop/s2s/install.sh"
  done
  getent passwd prosody >/dev/null || die "no 'prosody' user: is the prosody package installed?"
  getent passwd ejabberd >/dev/null || die "no 'ejabberd' user: is the ejabberd package installed?"
  local ip busy
  for ip in "$DNS_IP" "$PROSODY_IP" "$EJABBERD_IP" ${WEFT_BIN:+"$WEFT_IP"}; do
    busy="$(listening_on "$ip")"
    [[ -z "$busy" ]] || die "something already listens on $ip: $(echo $busy) (harness.sh status; harness.sh down)"
  done
  busy="$(ss -Hlntu 2>/dev/null | awk '{print $5}' | grep -E '^(0\.0\.0\.0|\*|\[::\]):(53|5222|5269)$' || true)"
  [[ -z "$busy" ]] || die "a wildcard listener holds a port the peers need: $(echo $busy)"
}

make_certs() {
  say "test CA and certificates ($PROSODY_DOMAIN, $EJABBERD_DOMAIN, $WEFT_DOMAIN; each also for its $MUC_PREFIX.*)"
  certs_ca "$RUN/certs"
  local n
  # The MUC service of each server federates under its own domain (SASL EXTERNAL as
  # conference.NAME), so the server's one certificate names it too.
  for n in "$PROSODY_DOMAIN" "$EJABBERD_DOMAIN" "$WEFT_DOMAIN"; do certs_issue "$RUN/certs" "$n" 30 "$MUC_PREFIX.$n"; done
  mkdir -p "$RUN/certs/empty-capath"
  chmod 755 "$RUN/certs"
  chmod 644 "$RUN/certs"/*.crt "$RUN/certs"/*.fullchain.pem "$RUN/certs"/ca.pem "$RUN/certs"/decoy-ca.pem
}

start_dns() {
  say "dnsmasq on $DNS_IP:53"
  mkdir -p "$RUN/dns"
  render "$HERE/templates/resolv.conf.in" "$RUN/dns/resolv.conf"
  local args=() d ip
  local prio
  for d in "$PROSODY_DOMAIN:$PROSODY_IP" "$EJABBERD_DOMAIN:$EJABBERD_IP" "$WEFT_DOMAIN:$WEFT_IP" \
    "$PROSODY_MUC:$PROSODY_IP" "$EJABBERD_MUC:$EJABBERD_IP" "$WEFT_MUC:$WEFT_IP"; do
    ip=${d#*:} d=${d%%:*} prio=0
    # XEP-0368: with --direct-tls, weft.test's (and its MUC service's) _xmpps-server record
    # (5270) comes first by priority. ejabberd merges both SRV sets and orders them by
    # priority only (equal priorities: either one); Prosody asks _xmpps-server first whatever
    # the priorities.
    [[ -z "$DIRECT_TLS" || ( $d != "$WEFT_DOMAIN" && $d != "$WEFT_MUC" ) ]] || {
      prio=10
      args+=(--srv-host="_xmpps-server._tcp.$d,$d,5270,0,5")
    }
    # Each MUC service has its own A and s2s SRV records, at its server's address; no c2s.
    args+=(--host-record="$d,$ip"
      --srv-host="_xmpp-server._tcp.$d,$d,5269,$prio,5")
    [[ $d == "$MUC_PREFIX".* ]] || args+=(--srv-host="_xmpp-client._tcp.$d,$d,5222,0,5")
  done
  # -C /dev/null: no /etc/dnsmasq.conf; --local=/test/: NXDOMAIN for any other *.test name
  # and no upstream at all (--no-resolv); --bind-interfaces: this address only, no wildcard.
  dnsmasq -C /dev/null --keep-in-foreground --no-resolv --no-hosts --no-poll --user=root \
    --bind-interfaces --listen-address="$DNS_IP" --port=53 --local=/test/ \
    --log-queries --log-facility="$RUN/dns/dnsmasq.log" --pid-file= "${args[@]}" \
    >"$RUN/dns/console.log" 2>&1 &
  echo $! >"$RUN/pids/dnsmasq.pid"
  wait_listen "$DNS_IP" 53 10 "$!" || { cat "$RUN/dns/console.log" >&2; die "dnsmasq did not start"; }
  dns_check | sed 's/^/   /' || die "the harness DNS does not answer as expected"
}

start_prosody() {
  say "Prosody $PROSODY_VERSION as $PROSODY_DOMAIN on $PROSODY_IP (c2s 5222, s2s 5269)"
  local p="$RUN/prosody"
  # certs/: Prosody indexes this (empty) directory for certificates; ours are set in ssl.
  mkdir -p "$p/data" "$p/plugins" "$p/certs"
  render "$HERE/templates/prosody.cfg.lua.in" "$p/prosody.cfg.lua"
  cp "$HERE/templates/mod_harness_s2s_log.lua" "$p/plugins/"
  install -m 600 -o prosody -g prosody "$RUN/certs/$PROSODY_DOMAIN.key" "$p/$PROSODY_DOMAIN.key"
  chown -R prosody:prosody "$p"
  # Prosody refuses to run as root: start it as its user (setpriv execs, so $! is Prosody).
  setpriv --reuid=prosody --regid=prosody --init-groups -- \
    prosody --config "$p/prosody.cfg.lua" -F >"$p/console.log" 2>&1 &
  echo $! >"$RUN/pids/prosody.pid"
  if ! wait_listen "$PROSODY_IP" 5269 20 "$!" || ! wait_listen "$PROSODY_IP" 5222 5 "$!" ||
    { [[ -n "$DIRECT_TLS" ]] && ! wait_listen "$PROSODY_IP" 5270 5 "$!"; }; then
    tail -n 30 "$p/console.log" "$p/prosody.log" >&2 || true
    die "Prosody did not start"
  fi
  prosodyctl_run register "$PROSODY_USER" "$PROSODY_DOMAIN" "$PASSWORD" >/dev/null
}

start_ejabberd() {
  say "ejabberd $EJABBERD_VERSION as $EJABBERD_DOMAIN on $EJABBERD_IP (c2s 5222, s2s 5269, dist $EJABBERD_DIST_PORT)"
  local e="$RUN/ejabberd"
  mkdir -p "$e/spool" "$e/logs" "$e/modules.d" "$e/contrib"
  EJABBERD_COOKIE="$(openssl rand -hex 16)"
  EJABBERD_NODE="ejabberd-s2s@$EJABBERD_IP"
  DNS_IP_ERL="${DNS_IP//./,}"
  render "$HERE/templates/ejabberd.yml.in" "$e/ejabberd.yml"
  render "$HERE/templates/ejabberdctl.cfg.in" "$e/ejabberdctl.cfg"
  render "$HERE/templates/inetrc.in" "$e/inetrc"
  install -m 600 -o ejabberd -g ejabberd "$RUN/certs/$EJABBERD_DOMAIN.pem" "$e/$EJABBERD_DOMAIN.pem"
  chown -R ejabberd:ejabberd "$e"
  chmod 600 "$e/ejabberdctl.cfg" # holds the cookie
  # Outgoing s2s resolves SRV with inet_res (inetrc) but A/AAAA with getaddrinfo (libc, so
  # /etc/resolv.conf): ejabberd gets a mount namespace where that file is the harness's.
  # Network and everything else stay shared; the namespace ends with ejabberd's last process.
  unshare --mount --propagation private -- /bin/sh -c \
    'mount --bind "$1" /etc/resolv.conf && shift && exec "$@"' sh "$RUN/dns/resolv.conf" \
    timeout -k 5 60 ejabberdctl --config-dir "$e" --ctl-config "$e/ejabberdctl.cfg" \
    --config "$e/ejabberd.yml" --spool "$e/spool" --logs "$e/logs" start
  local deadline=$((SECONDS + 60)) pid=""
  while ((SECONDS < deadline)); do
    pid="$(cat "$e/ejabberd.pid" 2>/dev/null || true)"
    [[ -n "$pid" ]] && ours "$pid" && break
    sleep 0.3
  done
  [[ -n "$pid" ]] && ours "$pid" || { tail -n 40 "$e/logs/ejabberd.log" >&2 || true; die "ejabberd wrote no pid file"; }
  echo "$pid" >"$RUN/pids/ejabberd.pid"
  if ! wait_listen "$EJABBERD_IP" 5269 60 "$pid" || ! wait_listen "$EJABBERD_IP" 5222 10 "$pid" ||
    { [[ -n "$DIRECT_TLS" ]] && ! wait_listen "$EJABBERD_IP" 5270 10 "$pid"; }; then
    tail -n 40 "$e/logs/ejabberd.log" >&2 || true
    die "ejabberd did not open its ports"
  fi
  ejctl register "$EJABBERD_USER" "$EJABBERD_DOMAIN" "$PASSWORD" >/dev/null
}

# The weft binary for `up`: --weft BIN, $WEFT_BIN, or this repository's target/debug/weft
# (CARGO_TARGET_DIR honoured). Empty with --no-weft.
find_weft() {
  if [[ -n "$NO_WEFT" ]]; then WEFT_BIN=""; return 0; fi
  local bin=${WEFT_OPT:-${WEFT_BIN:-}}
  [[ -n "$bin" ]] || bin="${CARGO_TARGET_DIR:-$(cd "$HERE/../.." && pwd)/target}/debug/weft"
  [[ -x "$bin" ]] || die "weft binary not found at $bin (cargo build -p weft; or --weft BIN; or --no-weft)"
  WEFT_BIN="$(realpath "$bin")"
}

start_weft() {
  local w="$RUN/weft"
  say "weft as $WEFT_DOMAIN on $WEFT_IP (c2s 5222/5223, s2s 5269/5270, http 5280, https 5443): $WEFT_BIN"
  mkdir -p "$w/data"
  render "$HERE/templates/weft.toml.in" "$w/weft.toml"
  printf '%s\n' "$WEFT_BIN" >"$w/bin"
  "$WEFT_BIN" config check "$w/weft.toml" >/dev/null || die "weft refuses its configuration $w/weft.toml"
  printf '%s\n' "$PASSWORD" | "$WEFT_BIN" --config "$w/weft.toml" user add --create "$WEFT_USER@$WEFT_DOMAIN" >/dev/null ||
    die "weft user add $WEFT_USER@$WEFT_DOMAIN failed"
  launch_weft
}

# Starts weft from $RUN/weft (config, binary) and waits for its c2s and s2s ports. Its log
# ($RUN/weft/weft.log) is appended to, so a restart keeps what came before.
launch_weft() {
  local w="$RUN/weft" bin
  bin="$(cat "$w/bin")"
  printf '== harness: weft starting at %s\n' "$(date -u +%FT%TZ)" >>"$w/weft.log"
  "$bin" --config "$w/weft.toml" run </dev/null >>"$w/weft.log" 2>&1 &
  echo $! >"$RUN/pids/weft.pid"
  if ! wait_listen "$WEFT_IP" 5269 20 "$!" || ! wait_listen "$WEFT_IP" 5270 5 "$!" ||
    ! wait_listen "$WEFT_IP" 5222 5 "$!"; then
    tail -n 30 "$w/weft.log" >&2 || true
    die "weft did not start"
  fi
}

stop_weft() {
  local pid
  pid="$(cat "$RUN/pids/weft.pid" 2>/dev/null || true)"
  if ours "$pid"; then say "stopping weft (pid $pid)"; stop_pid weft "$pid" 15; fi
}

cmd_restart_weft() {
  [[ -n "$RUN" && -d "$RUN/pids" && -f "$RUN/weft/weft.toml" ]] || die "no run with weft is up${RUN:+ in $RUN}"
  local t0=$SECONDS
  stop_weft
  [[ -z "$(listening_on "$WEFT_IP")" ]] || die "something still listens on $WEFT_IP after stopping weft"
  launch_weft
  say "weft restarted in $((SECONDS - t0)) s (pid $(cat "$RUN/pids/weft.pid"))"
}

# The peer closes its s2s streams with weft.test (ejabberd: all its s2s streams), as an
# operator or an idle timeout would.
cmd_drop_links() {
  [[ -n "$RUN" && -d "$RUN/pids" ]] || die "no run is up${RUN:+ in $RUN}"
  case "$PEER" in
    prosody) prosodyctl_run shell "s2s:closeall('$WEFT_DOMAIN')" ;;
    ejabberd) EJCTL_TIMEOUT=30 ejctl stop_s2s_connections && echo "ejabberd: stop_s2s_connections done" ;;
    *) die "drop-links: prosody or ejabberd, not '$PEER'" ;;
  esac
}

write_env() {
  cat >"$RUN/harness.env" <<EOF
# interop/s2s/harness.sh up --mode $MODE (values single-quoted: source it, or eval "\$(harness.sh env)")
S2S_RUN_DIR='$RUN'
S2S_MODE='$MODE'
S2S_TRANSPORT='$TRANSPORT'
S2S_CA_FILE='$RUN/certs/ca.pem'
S2S_TRUST_FILE='$TRUST_FILE'
S2S_DNS_IP='$DNS_IP'
S2S_DNS_PORT='53'
S2S_RESOLV_CONF='$RUN/dns/resolv.conf'
S2S_PASSWORD='$PASSWORD'
S2S_PROSODY_DOMAIN='$PROSODY_DOMAIN'
S2S_PROSODY_IP='$PROSODY_IP'
S2S_PROSODY_USER='$PROSODY_USER'
S2S_PROSODY_MUC='$PROSODY_MUC'
S2S_PROSODY_LOG='$RUN/prosody/prosody.log'
S2S_PROSODY_VERSION='$PROSODY_VERSION'
S2S_EJABBERD_DOMAIN='$EJABBERD_DOMAIN'
S2S_EJABBERD_IP='$EJABBERD_IP'
S2S_EJABBERD_USER='$EJABBERD_USER'
S2S_EJABBERD_MUC='$EJABBERD_MUC'
S2S_EJABBERD_LOG='$RUN/ejabberd/logs/ejabberd.log'
S2S_EJABBERD_VERSION='$EJABBERD_VERSION'
S2S_DNSMASQ_VERSION='$DNSMASQ_VERSION'
S2S_WEFT_DOMAIN='$WEFT_DOMAIN'
S2S_WEFT_IP='$WEFT_IP'
S2S_WEFT_CERT='$RUN/certs/$WEFT_DOMAIN.fullchain.pem'
S2S_WEFT_KEY='$RUN/certs/$WEFT_DOMAIN.key'
S2S_WEFT_RUNNING='${WEFT_BIN:+1}'
S2S_WEFT_BIN='$WEFT_BIN'
S2S_WEFT_USER='$WEFT_USER'
S2S_WEFT_MUC='$WEFT_MUC'
S2S_WEFT_CONFIG='$RUN/weft/weft.toml'
S2S_WEFT_LOG='$RUN/weft/weft.log'
EOF
  cat >"$RUN/harness.json" <<EOF
{
  "runDir": "$RUN",
  "harness": "$HERE/harness.sh",
  "mode": "$MODE",
  "transport": "$TRANSPORT",
  "caFile": "$RUN/certs/ca.pem",
  "trustFile": "$TRUST_FILE",
  "dns": { "ip": "$DNS_IP", "port": 53, "resolvConf": "$RUN/dns/resolv.conf" },
  "password": "$PASSWORD",
  "peers": {
    "prosody": { "domain": "$PROSODY_DOMAIN", "ip": "$PROSODY_IP", "c2sPort": 5222, "s2sPort": 5269,
      "user": "$PROSODY_USER", "muc": "$PROSODY_MUC", "log": "$RUN/prosody/prosody.log", "version": "$PROSODY_VERSION" },
    "ejabberd": { "domain": "$EJABBERD_DOMAIN", "ip": "$EJABBERD_IP", "c2sPort": 5222, "s2sPort": 5269,
      "user": "$EJABBERD_USER", "muc": "$EJABBERD_MUC", "log": "$RUN/ejabberd/logs/ejabberd.log", "version": "$EJABBERD_VERSION" }
  },
  "dnsmasqVersion": "$DNSMASQ_VERSION",
  "weft": { "domain": "$WEFT_DOMAIN", "ip": "$WEFT_IP", "cert": "$RUN/certs/$WEFT_DOMAIN.fullchain.pem",
    "key": "$RUN/certs/$WEFT_DOMAIN.key", "running": $([[ -n "$WEFT_BIN" ]] && echo true || echo false),
    "bin": "$WEFT_BIN", "user": "$WEFT_USER", "muc": "$WEFT_MUC", "c2sPort": 5222, "s2sPort": 5269, "httpPort": 5280,
    "config": "$RUN/weft/weft.toml", "log": "$RUN/weft/weft.log",
    "unreachableDomain": "$UNREACHABLE_DOMAIN" }
}
EOF
}

cmd_up() {
  case "$MODE" in
    external) PROSODY_SECURE_AUTH=true ;;
    dialback) PROSODY_SECURE_AUTH=false ;;
    *) die "--mode must be external or dialback, not '$MODE'" ;;
  esac
  if [[ -n "$BIDI" ]]; then
    PROSODY_EXTRA_MODULES='"s2s_bidi";  -- XEP-0288 (--bidi)'
  else
    PROSODY_EXTRA_MODULES=""
  fi
  if [[ -n "$DIRECT_TLS" ]]; then
    TRANSPORT=direct-tls PEER_DIRECT_TLS_PORTS=5270
    EJABBERD_DIRECT_TLS_LISTENER="  -
    port: 5270
    ip: \"$EJABBERD_IP\"
    module: ejabberd_s2s_in
    tls: true"
    WEFT_ROUTE_PROSODY="tls://$PROSODY_IP:5270" WEFT_ROUTE_EJABBERD="tls://$EJABBERD_IP:5270"
  else
    TRANSPORT=starttls PEER_DIRECT_TLS_PORTS="" EJABBERD_DIRECT_TLS_LISTENER=""
    WEFT_ROUTE_PROSODY="tcp://$PROSODY_IP:5269" WEFT_ROUTE_EJABBERD="tcp://$EJABBERD_IP:5269"
  fi
  if [[ -z "$RUN" && -f "$CURRENT" ]]; then
    local prev; prev="$(cat "$CURRENT")"
    [[ ! -d "$prev/pids" ]] || die "a run is already up in $prev: interop/s2s/harness.sh down first"
  fi
  find_weft
  preflight
  if [[ -z "$RUN" ]]; then
    RUN="$(mktemp -d "${TMPDIR:-/tmp}/weft-s2s.XXXXXX")"
  else
    mkdir -p "$RUN"
    RUN="$(cd "$RUN" && pwd)"
    [[ -z "$(ls -A "$RUN")" ]] || die "$RUN is not empty"
  fi
  chmod 755 "$RUN"
  mkdir -p "$RUN/pids"
  echo "$RUN" >"$CURRENT"
  [[ "$MODE" == external ]] && TRUST_FILE="$RUN/certs/ca.pem" || TRUST_FILE="$RUN/certs/decoy-ca.pem"
  PASSWORD="s2s-$(openssl rand -hex 12)"
  local t0=$SECONDS
  # Whatever fails from here on, stop what was started.
  trap 'rc=$?; if [[ $rc -ne 0 ]]; then say "up failed: stopping what it started"; cmd_down || true; fi' EXIT
  say "run dir $RUN (mode $MODE, weft.test's links over $TRANSPORT)"
  peer_versions
  make_certs
  start_dns
  start_prosody
  start_ejabberd
  [[ -z "$WEFT_BIN" ]] || start_weft
  write_env
  trap - EXIT
  say "up in $((SECONDS - t0)) s: $PROSODY_USER@$PROSODY_DOMAIN and $EJABBERD_USER@$EJABBERD_DOMAIN${WEFT_BIN:+ and $WEFT_USER@$WEFT_DOMAIN} (password in $RUN/harness.env)"
  say "tests: S2S_RUN_DIR=$RUN node --test interop/s2s/test/   (or interop/s2s/run.sh)"
}

# --- down / status ---------------------------------------------------------------------------

cmd_down() {
  [[ -n "$RUN" && -d "$RUN/pids" ]] || { say "nothing to stop${RUN:+ in $RUN}"; rm -f "$CURRENT"; return 0; }
  local pid
  # weft first: it closes its links cleanly while the peers are still there.
  stop_weft
  # ejabberd: ask politely through ejabberdctl, then by signal. Its pid file as a fallback
  # when up failed before copying it.
  pid="$(cat "$RUN/pids/ejabberd.pid" 2>/dev/null || cat "$RUN/ejabberd/ejabberd.pid" 2>/dev/null || true)"
  if ours "$pid"; then
    say "stopping ejabberd (pid $pid)"
    EJCTL_TIMEOUT=30 ejctl stop >/dev/null 2>&1 || true
    stop_pid ejabberd "$pid" 30
  fi
  pid="$(cat "$RUN/pids/prosody.pid" 2>/dev/null || true)"
  if ours "$pid"; then say "stopping Prosody (pid $pid)"; stop_pid prosody "$pid" 15; fi
  pid="$(cat "$RUN/pids/dnsmasq.pid" 2>/dev/null || true)"
  if ours "$pid"; then say "stopping dnsmasq (pid $pid)"; stop_pid dnsmasq "$pid" 10; fi
  local ip left=""
  for ip in "$DNS_IP" "$PROSODY_IP" "$EJABBERD_IP" "$WEFT_IP"; do left+="$(listening_on "$ip")"; done
  [[ -z "$left" ]] || { say "still listening after down: $(echo $left)"; return 1; }
  rm -rf "$RUN/pids"
  [[ "$(cat "$CURRENT" 2>/dev/null)" != "$RUN" ]] || rm -f "$CURRENT"
  if [[ -n "$PURGE" ]]; then rm -rf "$RUN"; say "down; removed $RUN"; else say "down; logs kept in $RUN"; fi
}

cmd_status() {
  [[ -n "$RUN" && -d "$RUN" ]] || { say "no run (interop/s2s/harness.sh up)"; return 3; }
  local name pid rc=0
  say "run dir $RUN ($(sed -n "s/^S2S_MODE='\(.*\)'\$/\1/p" "$RUN/harness.env" 2>/dev/null | grep . || echo 'up incomplete'))"
  for name in dnsmasq prosody ejabberd weft; do
    pid="$(cat "$RUN/pids/$name.pid" 2>/dev/null || true)"
    if ours "$pid"; then say "$name: running, pid $pid"
    elif [[ $name == weft && ! -f "$RUN/weft/weft.toml" ]]; then say "weft: not part of this run (--no-weft)"
    else say "$name: not running"; rc=1; fi
  done
  local ip
  for ip in "$DNS_IP" "$PROSODY_IP" "$EJABBERD_IP" "$WEFT_IP"; do say "listening on $ip: $(listening_on "$ip" | tr '\n' ' ')"; done
  [[ $rc -ne 0 ]] && return $rc
  dns_check | sed 's/^/   /' || rc=1
  say "ejabberd: $(EJCTL_TIMEOUT=20 ejctl status 2>&1 | head -1)"
  say "ejabberd s2s: $(EJCTL_TIMEOUT=20 ejctl incoming_s2s_number 2>&1) incoming, $(EJCTL_TIMEOUT=20 ejctl outgoing_s2s_number 2>&1) outgoing"
  say "Prosody s2s:"
  prosodyctl_run shell 's2s:show()' 2>&1 | sed 's/^/   /' || true
  return $rc
}

# --- command line ----------------------------------------------------------------------------

CMD="${1:-}"; shift || true
MODE=${S2S_MODE:-external} RUN="" PURGE="" WEFT_OPT="" NO_WEFT="" WEFT_BIN=${WEFT_BIN:-} PEER=""
DIRECT_TLS=${S2S_DIRECT_TLS:-}
BIDI=${S2S_BIDI:-}
if [[ "$CMD" == drop-links ]]; then PEER=${1:-}; shift || true; fi
while [[ $# -gt 0 ]]; do
  case "$1" in
    --mode) MODE=$2; shift 2 ;;
    --dir) RUN=$2; shift 2 ;;
    --purge) PURGE=1; shift ;;
    --weft) WEFT_OPT=$2; shift 2 ;;
    --no-weft) NO_WEFT=1; shift ;;
    --direct-tls) DIRECT_TLS=1; shift ;;
    --bidi) BIDI=1; shift ;;
    *) die "unknown argument $1" ;;
  esac
done
if [[ "$CMD" != up && -z "$RUN" ]]; then RUN="${S2S_RUN_DIR:-$(cat "$CURRENT" 2>/dev/null || true)}"; fi
[[ "$CMD" == up || -z "$RUN" ]] || RUN="$(cd "$RUN" 2>/dev/null && pwd || echo "$RUN")"

case "$CMD" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  restart-weft) cmd_restart_weft ;;
  drop-links) cmd_drop_links ;;
  env) [[ -f "$RUN/harness.env" ]] || die "no run is up"; grep -v '^#' "$RUN/harness.env" | sed 's/^/export /' ;;
  *) sed -n '2,25p' "$0" >&2; exit 2 ;;
esac
