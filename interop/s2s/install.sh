#!/usr/bin/env bash
# Installs what interop/s2s/harness.sh needs on Debian 12 (bookworm), idempotently: Prosody
# with lua-unbound, ejabberd, dnsmasq-base (the dnsmasq binary without its system service),
# openssl, util-linux (unshare, setpriv) and iproute2 (ss). Run as root; does nothing when
# all are present. The packaged prosody/ejabberd services are not started: the harness runs
# its own instances (a policy-rc.d that denies service starts is in place during the install
# unless one already exists). Node.js 20+ (for the tests) is expected from interop's setup.
#
#   interop/s2s/install.sh             # install what is missing
#   interop/s2s/install.sh --missing   # only print what is missing (one line; empty if none)
set -euo pipefail

PACKAGES=(prosody lua-unbound ejabberd dnsmasq-base openssl util-linux iproute2)

missing=()
for p in "${PACKAGES[@]}"; do
  [[ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)" == installed ]] || missing+=("$p")
done
if [[ "${1:-}" == --missing ]]; then
  echo "${missing[*]}"
  exit 0
fi
if [[ ${#missing[@]} -eq 0 ]]; then
  echo "install.sh: all present (${PACKAGES[*]})"
else
  [[ $EUID -eq 0 ]] || { echo "install.sh: run as root to install: ${missing[*]}" >&2; exit 1; }
  policy=/usr/sbin/policy-rc.d
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\n# interop/s2s/install.sh: no service starts during this install\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    trap 'rm -f "$policy"' EXIT
  fi
  echo "install.sh: apt-get install ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# Report what the harness will run, and what it cannot do without.
echo "install.sh: Prosody $(dpkg-query -W -f='${Version}' prosody), ejabberd $(dpkg-query -W -f='${Version}' ejabberd), dnsmasq $(dpkg-query -W -f='${Version}' dnsmasq-base)"
if ! command -v node >/dev/null || ! node -e 'process.exit(Number(process.versions.node.split(".")[0]) < 20 ? 1 : 0)'; then
  echo "install.sh: warning: the tests need Node.js 20+ (node --test) and interop/node_modules" >&2
fi
# A packaged service left running (e.g. started by systemd on a developer's machine) holds
# 0.0.0.0:5222/5269; the harness refuses to start next to it.
if ss -Hltn 2>/dev/null | awk '{print $4}' | grep -Eq '^(0\.0\.0\.0|\*|\[::\]):(5222|5269)$'; then
  echo "install.sh: warning: something listens on *:5222 or *:5269 (a packaged prosody/ejabberd service?):" \
    "stop it (systemctl disable --now prosody ejabberd) before harness.sh up" >&2
fi
