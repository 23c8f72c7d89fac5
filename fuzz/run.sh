#!/bin/bash
# Fuzzes one target: ./fuzz/run.sh [seconds, default 600] [extra libFuzzer flags...]
# Targets: decode (daemon wire protocol, the default) and directive (config parser);
# pick one with FUZZ_TARGET=directive.
#
# Needs a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`). The corpus grows in
# fuzz/corpus/<target> (in git, minimised after a long run with
#   cargo +nightly fuzz cmin <target> corpus/<target>
# inside fuzz/; 2026-12-04: decode 372 inputs after 10 min / 3.0 M runs, directive 493
# after 10 min / 6.3 M runs, no crash), also reading the seeds in
# fuzz/seeds/decode (in git). Crashes land in fuzz/artifacts/decode; reproduce one with
#   cargo +nightly fuzz run decode fuzz/artifacts/decode/<file>
set -euo pipefail
cd "$(dirname "$0")"

secs="${1:-600}"
shift || true
toolchain="${FUZZ_TOOLCHAIN:-nightly}"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz is missing: cargo install cargo-fuzz" >&2
    exit 2
fi
if ! rustup run "$toolchain" rustc --version >/dev/null 2>&1; then
    echo "toolchain '$toolchain' is missing: rustup toolchain install nightly (or set FUZZ_TOOLCHAIN)" >&2
    exit 2
fi

target="${FUZZ_TARGET:-decode}"
mkdir -p "corpus/$target" "artifacts/$target"
# New inputs are written to the first corpus dir; the seeds dir is only read.
exec cargo "+$toolchain" fuzz run "$target" "corpus/$target" "seeds/$target" -- \
    -max_total_time="$secs" -max_len=65536 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 "$@"
