#!/usr/bin/env bash
# Test PKI for the federation harness: one throwaway CA, one certificate per domain, and a
# decoy CA that signed nothing (the trust anchor of the "untrusted" dialback mode).
#
#   lib/certs.sh ca    DIR                 # DIR/ca.{key,pem}, DIR/decoy-ca.{key,pem}
#   lib/certs.sh issue DIR NAME [DAYS [ALTNAME...]]   # DIR/NAME.{key,crt,fullchain.pem,pem}
#
# Leaf certificates carry subjectAltName DNS:NAME, plus DNS:ALTNAME for each further name (the
# harness adds each server's MUC service, conference.NAME, which federates under its own
# domain), and no other kind of name (ejabberd 23.01 crashes in s2s SASL EXTERNAL on an
# id-on-xmppAddr SAN). They have both serverAuth and clientAuth extended key usages
# (a server's certificate is also its client certificate on s2s; xmpp-proxy checks it as a
# server certificate). Keys are EC P-256. NAME.pem is key + certificate + CA, for ejabberd.
# Sourced by harness.sh, or run on its own (e.g. by weft's tests for extra certificates).
set -euo pipefail

certs_ca() {
  local dir=$1
  mkdir -p "$dir"
  local which
  for which in ca decoy-ca; do
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
      -keyout "$dir/$which.key" -out "$dir/$which.pem" -days 30 \
      -subj "/O=weft interop/CN=weft s2s test ${which}" \
      -addext "basicConstraints=critical,CA:TRUE" \
      -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
    chmod 600 "$dir/$which.key"
  done
  # The decoy CA's key is of no use to anyone: nothing may ever be signed by it.
  rm -f "$dir/decoy-ca.key"
}

certs_issue() {
  local dir=$1 name=$2 days=${3:-30}
  shift 3 2>/dev/null || shift $#
  local alt sans="DNS:$name"
  for alt in "$@"; do sans+=",DNS:$alt"; done
  [[ -f "$dir/ca.key" ]] || { echo "certs: no CA in $dir (run: certs.sh ca $dir)" >&2; return 1; }
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$dir/$name.key" -out "$dir/$name.csr" -subj "/CN=$name" 2>/dev/null
  chmod 600 "$dir/$name.key"
  openssl x509 -req -in "$dir/$name.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
    -set_serial "0x$(openssl rand -hex 16)" -days "$days" -out "$dir/$name.crt" \
    -extfile <(printf '%s\n' \
      "basicConstraints=critical,CA:FALSE" \
      "keyUsage=critical,digitalSignature" \
      "extendedKeyUsage=serverAuth,clientAuth" \
      "subjectAltName=$sans" \
      "subjectKeyIdentifier=hash" \
      "authorityKeyIdentifier=keyid") 2>/dev/null
  rm -f "$dir/$name.csr"
  cat "$dir/$name.crt" "$dir/ca.pem" >"$dir/$name.fullchain.pem"
  (umask 077 && cat "$dir/$name.key" "$dir/$name.crt" "$dir/ca.pem" >"$dir/$name.pem")
  # Prove what we made: chains to the CA, right name, right purposes (both of them).
  openssl verify -CAfile "$dir/ca.pem" -purpose sslserver "$dir/$name.crt" >/dev/null
  openssl verify -CAfile "$dir/ca.pem" -purpose sslclient "$dir/$name.crt" >/dev/null
  for alt in "$name" "$@"; do
    openssl x509 -in "$dir/$name.crt" -noout -checkhost "$alt" | grep -q 'does match'
  done
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  case "${1:-}" in
    ca) shift; certs_ca "$@" ;;
    issue) shift; certs_issue "$@" ;;
    *) sed -n '2,15p' "$0" >&2; exit 2 ;;
  esac
fi
