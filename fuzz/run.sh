#!/usr/bin/env bash
# Runs the cargo-fuzz targets, one after the other (or N at a time), and
# prints a Markdown row per target for README.md's "Fuzzing" table.
#
#   fuzz/run.sh [SECONDS] [TARGET...]      defaults: 600 s, every target
#   JOBS=2 fuzz/run.sh 600                 two targets at a time
#
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`); nightly features
# are enabled on the stable toolchain with RUSTC_BOOTSTRAP=1. New corpus
# entries go to fuzz/corpus/<target> (not committed), crashes to
# fuzz/artifacts/<target>; copy a crash to tests/fuzz_regressions/<target>/
# so `cargo test --test fuzz_equivalents` replays it forever.
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-600}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo fuzz list)
fi
export RUSTC_BOOTSTRAP=1
cargo fuzz build -O
mkdir -p logs
run_one() {
  local t="$1"
  mkdir -p "corpus/$t"
  # -max_len matches checks::MAX_INPUT; -timeout catches hangs (a request
  # through the layer takes microseconds).
  if cargo fuzz run -O "$t" "corpus/$t" "seeds/$t" -- \
      -dict="dict/$t.dict" -max_total_time="$seconds" -max_len=65536 \
      -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 >"logs/$t.log" 2>&1; then
    result="no crash"
  else
    result="CRASH: see fuzz/logs/$t.log and fuzz/artifacts/$t"
  fi
  local execs cov corpus took
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "logs/$t.log" | grep -o '[0-9]*$' || echo "?")
  # "Done N runs in S second(s)" when the time ran out; a crash ends it early.
  took=$(grep -o 'Done [0-9]* runs in [0-9]* second' "logs/$t.log" | grep -o '[0-9]* second' | grep -o '[0-9]*' || echo "<$seconds")
  cov=$(grep -o 'cov: [0-9]*' "logs/$t.log" | tail -1 | grep -o '[0-9]*' || echo "?")
  corpus=$(find "corpus/$t" -type f | wc -l)
  printf '| `%s` | %s s | %s | %s | %s | %s |\n' "$t" "$took" "$execs" "$cov" "$corpus" "$result"
}
echo "| target | time | executions | coverage (edges) | corpus | result |"
echo "|---|---|---|---|---|---|"
jobs_max="${JOBS:-1}"
for t in "${targets[@]}"; do
  while [ "$(jobs -rp | wc -l)" -ge "$jobs_max" ]; do wait -n; done
  run_one "$t" > "logs/$t.row" &
done
wait
for t in "${targets[@]}"; do cat "logs/$t.row"; done
