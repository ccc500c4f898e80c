# shellcheck shell=bash
# Shell helpers shared by bench/quick.sh and bench/compare.sh (sourced, not run).

# glibc picks its string functions (memcmp, memmove, …) by CPU features; on this benchmark's
# VM its AVX-512 (EVEX) variants are far slower than its AVX2 ones: with them, memcmp alone was
# 29% of weft's CPU at 10 pairs over TCP, and without them weft delivered 1.5× the messages
# (interleaved, 3 rounds). A property of the machine, not of one server: every process the
# benchmark starts (the servers, the relay and the generator) runs with the same setting, and
# compare.sh's report names it. GLIBC_TUNABLES= (empty) runs with glibc's own choice.
export GLIBC_TUNABLES=${GLIBC_TUNABLES-glibc.cpu.hwcaps=-AVX512F,-AVX512VL,-AVX512BW}

# render TEMPLATE OUT: replaces each @NAME@ by the value of shell variable NAME (which must be
# set; empty is allowed).
render() {
    local text name
    shopt -u patsub_replacement 2>/dev/null || true # bash 5.2: '&' in a value stays '&'
    text="$(<"$1")"
    for name in $(grep -o '@[A-Z0-9_]*@' "$1" | sort -u | tr -d @); do
        if [[ -z "${!name+x}" ]]; then
            printf '== %s: template %s uses @%s@, which is not set\n' "$0" "$1" "$name" >&2
            exit 1
        fi
        text="${text//@$name@/${!name}}"
    done
    printf '%s\n' "$text" >"$2"
}

# weft_config OUT DATA_DIR HTTP_PORT C2S_PORT [HTTPS_PORT]: weft's benchmark configuration
# (bench/weft.toml.in); with HTTPS_PORT, an https listener for wss:// too. WEFT_MAM=true turns
# the message archive on (default false).
weft_config() {
    local https=""
    [[ -z ${5:-} ]] || https="\"127.0.0.1:$5\""
    MAM=${WEFT_MAM:-false} DATA_DIR=$2 HTTP_PORT=$3 C2S_PORT=$4 HTTPS=$https render "$(dirname "${BASH_SOURCE[0]}")/weft.toml.in" "$1"
}
