#!/usr/bin/env bash
# Mutation testing of the security-critical files, by hand (too slow for
# .ci/run: each mutant is one incremental build and one test run, about
# 10-40 s here). The results table and the equivalent mutants excluded from
# the score are in .cargo/mutants.toml, which cargo-mutants reads.
#
#   .ci/mutants.sh            # every file
#   .ci/mutants.sh origin     # one file: origin bearer subprotocol cookie upgrade rejection
#
# Each file is mutated on its own and tested with the lib tests and the test
# binaries that exercise it (what `.ci/run` runs, narrowed to them; see
# `measure`). upgrade.rs is tested twice, as .ci/run does: with every
# feature, then its survivors against `cargo test --lib --no-default-features`,
# the only build that compiles the code for servers without `http2`.
# A mutant counts as caught if either build's tests catch it.
#
# Do not build this crate in the same CARGO_TARGET_DIR while it runs: the
# scratch copy and the checkout share artifact names, so a build of the
# checkout can make cargo-mutants test a stale binary.
# Results: $CARGO_TARGET_DIR/mutants/<file>/mutants.out/{caught,missed,unviable,timeout}.txt
set -euo pipefail
cd "$(dirname "$0")/.."

version=27.1.0
tools="${HOME:-/root}/.cache/tower-ws-auth/tools"
# The pinned version: the one on PATH if it is that, else installed once
# into the tools directory .ci/run uses.
pinned() { cargo mutants --version 2>/dev/null | grep -q "^cargo-mutants $version$"; }
if ! pinned; then
  export PATH="$tools/bin:$PATH"
  pinned || cargo install cargo-mutants --version "$version" --locked --root "$tools"
fi
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${HOME:-/root}/.cache/tower-ws-auth/target}"
# Incremental builds: a mutant rebuilds one crate.
export CARGO_INCREMENTAL=1
out="${MUTANTS_OUT:-$CARGO_TARGET_DIR/mutants}"
# Some tests need Redis (tests/e2e/security); start one as .ci/run does if unset.
if [ -z "${TOWER_WS_AUTH_REDIS_URL:-}" ] && command -v redis-server >/dev/null 2>&1; then
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --daemonize no >/dev/null 2>&1 &
  redis_pid=$!
  trap 'kill "$redis_pid" 2>/dev/null || true' EXIT
  export TOWER_WS_AUTH_REDIS_URL="redis://127.0.0.1:$port"
fi

# mutate NAME FILE [cargo-mutants options] -- TEST TARGETS
mutate() {
  local name=$1 file=$2 opts=() targets=()
  shift 2
  while [ $# -gt 0 ] && [ "$1" != "--" ]; do opts+=("$1"); shift; done
  shift
  for t in "$@"; do targets+=("--cargo-arg=$t"); done
  echo "==> $file ($name) ${opts[*]} $*"
  mkdir -p "$out/$name"
  # cargo-mutants exits 2 when mutants are missed and 3 on timeouts: the
  # summary reports them. Anything else (a failing baseline) stops here.
  local rc=0
  cargo mutants --file "$file" --jobs 1 --output "$out/$name" "${opts[@]}" "${targets[@]}" || rc=$?
  case $rc in 0 | 2 | 3) ;; *) echo "cargo mutants failed ($rc) on $file" >&2; exit "$rc" ;; esac
}

# measure NAME FILE LIB-TEST-FILTER TEST TARGETS: two passes with the same
# result as one, faster. First every mutant against the file's own unit
# tests only (one small build, a second of tests); then, with `--iterate`,
# the survivors against the whole lib test binary and the test targets.
measure() {
  local name=$1 file=$2 filter=$3
  shift 3
  rm -rf "${out:?}/$name"
  mutate "$name" "$file" --all-features --timeout 60 "--cargo-test-arg=$filter" -- --lib
  mutate "$name" "$file" --all-features --iterate --baseline skip --timeout 120 -- --lib "$@"
}

run() {
  case "$1" in
    origin) measure origin src/origin.rs origin:: --test=e2e ;;
    bearer) measure bearer src/credential/bearer.rs credential::bearer --test=e2e ;;
    subprotocol) measure subprotocol src/credential/subprotocol.rs credential::subprotocol \
      --test=e2e ;;
    cookie) measure cookie src/credential/cookie.rs credential::cookie \
      --test=e2e ;;
    upgrade)
      measure upgrade src/upgrade.rs upgrade:: --test=e2e
      mutate upgrade src/upgrade.rs --iterate --baseline skip --timeout 120 --no-default-features -- --lib ;;
    rejection) measure rejection src/rejection.rs rejection:: \
      --test=e2e ;;
    *) echo "unknown file: $1" >&2; exit 1 ;;
  esac
}

if [ $# -eq 0 ]; then
  set -- origin bearer subprotocol cookie upgrade rejection
fi
for name in "$@"; do run "$name"; done
# After `--iterate`, the mutants caught (or unviable) by the first pass are
# in previously_caught.txt.
count() { if [ -f "$1" ]; then wc -l <"$1"; else echo 0; fi; }
for name in "$@"; do
  m="$out/$name/mutants.out"
  printf '%-12s caught %3s  unviable %3s  timeout %3s  previously caught %3s  missed %3s\n' "$name" \
    "$(count "$m/caught.txt")" "$(count "$m/unviable.txt")" "$(count "$m/timeout.txt")" \
    "$(count "$m/previously_caught.txt")" "$(count "$m/missed.txt")"
  if [ -f "$m/missed.txt" ]; then sed 's/^/    MISSED /' "$m/missed.txt"; fi
done
