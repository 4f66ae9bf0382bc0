#!/usr/bin/env bash
# Coverage-guided fuzzing (libFuzzer through cargo fuzz, nightly toolchain) of
# the ONNX frontend, the checkpoint frontend, the plan/recipe loaders and the
# whole compile on small graphs (fuzz/fuzz_targets/).
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     (default: 60 s, all four)
#
# Seeds are fuzz/seeds/<target> (made by fuzz/make_seeds.py); what the fuzzer
# finds goes to fuzz/corpus/<target>, crashes to fuzz/artifacts/<target>
# (both ignored by git). Built with overflow checks (-a) and without a
# sanitizer, so that every run lives under an 8 GiB address-space limit
# (`ulimit -v`); a run over 30 s on one input counts as a hang. Exits 1 on any
# crash, hang or out-of-memory abort, printing the input that caused it.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(onnx_import checkpoint plan_recipe compile)
if ! rustup toolchain list | grep -q '^nightly'; then
    echo "fuzz: skipped: no nightly toolchain (rustup toolchain list); cargo fuzz needs one"
    exit 0
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked --version 0.13.2
fi
flags=(-O -a -s none)
(cd fuzz && cargo +nightly fuzz build "${flags[@]}")
status=0
for t in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/$t"
    log="fuzz/corpus/$t.log"
    echo "fuzz: $t for ${secs} s"
    if ! (cd fuzz && ulimit -v $((8 * 1024 * 1024)) &&
        cargo +nightly fuzz run "${flags[@]}" "$t" "corpus/$t" "seeds/$t" -- \
            -max_total_time="$secs" -timeout=30 -rss_limit_mb=8192 -malloc_limit_mb=8192 \
            -max_len=262144 -print_final_stats=1) >"$log" 2>&1; then
        status=1
        echo "fuzz: $t FAILED; the end of $log:"
        tail -40 "$log"
    fi
    grep -E "^stat::(number_of_executed_units|peak_rss_mb|new_units_added)|cov: " "$log" | tail -4 || true
done
exit $status
